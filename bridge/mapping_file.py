"""Reading, validating and writing the mapping file (docs/design.md, Mapping).

The pydantic models below are the one description of the on-disk format: they validate files,
and `mapping_json_schema()` turns them into `bridge/data/mapping-schema.json` (shipped in the
package; `jit-bridge mapping-schema` prints it). A file is refused as a whole,
with every problem at once and each at its JSON pointer, because an operator fixing a mapping
should not have to play whack-a-mole, and a half-read mapping could silently drop access.

Older Tines configurations are accepted too (`sso_group`, `tenant_owners_group`,
`tenant_permissions`, lower-case roles, a leftover `group_attribute_name`); any other unknown
key is an error, because a typo such as `rol_name` must never quietly grant nothing.

Run `python -m bridge.mapping_file schema > bridge/data/mapping-schema.json` to regenerate it.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from bridge.mapping import GroupSelector, Mapping, MappingEntry, PermissionGrant

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE_SCHEMA = "python -m bridge.mapping_file schema > bridge/data/mapping-schema.json"

_ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A JSON string (an unterminated one runs to the end of the text) or a bracket. Linear: every
# alternative either matches or fails on its first character, so no input can make it backtrack.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


# --------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a mapping. `pointer` is an RFC 6901 JSON pointer; "" = the file."""

    pointer: str
    message: str

    def __str__(self) -> str:
        text = f"{self.pointer}: {self.message}" if self.pointer else self.message
        return _printable(text)


def _printable(text: str) -> str:
    """Control characters from keys or values escaped, so one problem stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class MappingError(Exception):
    """A mapping was refused. `problems` lists everything wrong, not just the first thing."""

    def __init__(self, problems: list[Problem], source: str = "<mapping>") -> None:
        super().__init__(problems, source)
        self.problems = problems
        self.source = source

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


# --------------------------------------------------------------------------------------
# Value types


def _shown(value: str) -> str:
    """A user value quoted for a message, cut short so a huge value cannot flood the log."""
    return f"'{value}'" if len(value) <= 80 else f"'{value[:77]}...'"


def _check_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty or only spaces")
    return value


def _check_selector(value: str) -> str:
    try:
        GroupSelector.parse(_check_text(value))
    except ValueError as err:
        raise PydanticCustomError("group_selector", "{reason}", {"reason": str(err)}) from None
    return value


def _normalise_role(value: str) -> str:
    # Checked before upper-casing: str.upper() maps some non-ASCII letters to ASCII ones
    # (dotless i becomes I), and a role must not come into existence by accident.
    if not _ROLE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "role_name",
            "{role} is not a role name: use letters, digits and '_', starting with a letter "
            "(TEAM_ADMIN, EDITOR, VIEWER or a custom role of the target)",
            {"role": _shown(value)},
        )
    return value.upper()


_SELECTOR_HELP = (
    "A plain name matches every Keycloak group of that name at any depth; '/A/B' matches "
    "exactly that group path; 'realm-role:NAME' matches holders of a realm role; "
    "'client-role:CLIENT/NAME' holders of a client role; 'organization:ALIAS' members of a "
    "Keycloak organization, 'organization:ALIAS/GROUP/PATH' members of one of its groups "
    "(Keycloak 26.6 and newer). Case-sensitive."
)
_NOT_BLANK = {"pattern": "\\S"}

Text = Annotated[
    str, Field(min_length=1, json_schema_extra=_NOT_BLANK), AfterValidator(_check_text)
]
Selector = Annotated[
    str,
    Field(
        min_length=1,
        json_schema_extra=_NOT_BLANK,
        description=_SELECTOR_HELP,
        examples=[
            "Managers",
            "/Ops/Tier1",
            "realm-role:auditor",
            "client-role:tines/admin",
            "organization:acme",
            "organization:acme/Sales/EMEA",
        ],
    ),
    AfterValidator(_check_selector),
]
RoleName = Annotated[
    str,
    Field(
        min_length=1,
        json_schema_extra={"pattern": f"^{_ROLE_NAME.pattern}$"},
        examples=["TEAM_ADMIN", "EDITOR", "VIEWER"],
    ),
    AfterValidator(_normalise_role),
]


def _absent_or(kind: Any) -> PlainValidator:
    """An optional key: left out it is None, but an explicit null is refused like any non-string.

    A plain `X | None` would accept null and report a failure once per union member.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def validate(value: object) -> object:
        if value is None:
            raise PydanticCustomError("null", "must not be null; leave the key out instead")
        return adapter.validate_python(value, strict=True)

    return PlainValidator(validate, json_schema_input_type=kind)


OptionalSelector = Annotated[str | None, _absent_or(Selector)]
OptionalText = Annotated[str | None, _absent_or(Text)]


# --------------------------------------------------------------------------------------
# The on-disk format


def _legacy_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Put the 'one spelling, not both' rules of `_FileObject` into the JSON Schema too."""
    assert issubclass(model, _FileObject)
    for key, spec in schema.get("properties", {}).items():
        if spec.get("default", ...) is None:
            del spec["default"]  # "default: null" would read as "null is allowed"
        if key in model.legacy_spellings:
            spec["deprecated"] = True
    conflicts = [
        {"required": [current, legacy]} for legacy, current in model.legacy_spellings.items()
    ]
    if conflicts:
        schema["not"] = {"anyOf": conflicts}
    for current in model.one_spelling_required:
        spellings = [current, *(k for k, v in model.legacy_spellings.items() if v == current)]
        schema["anyOf"] = [{"required": [spelling]} for spelling in spellings]


class _FileObject(BaseModel):
    """An object of the mapping file: unknown keys refused, no type coercion (5 is not "5")."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra=_legacy_schema
    )

    legacy_spellings: ClassVar[dict[str, str]] = {}
    """Older key → the current key it stands for; giving both is an error."""
    one_spelling_required: ClassVar[tuple[str, ...]] = ()
    """Current keys that must be present, in the current or the older spelling."""

    @model_validator(mode="wrap")
    @classmethod
    def _report_every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Whole-object checks run even when a field fails, and report alongside it."""
        found = cls._whole_object_problems(data) if isinstance(data, dict) else []
        try:
            validated = handler(data)
        except ValidationError as err:
            found = [*_reraisable(err.errors()), *found]
        if found:
            raise ValidationError.from_exception_data(cls.__name__, found)
        return validated

    @classmethod
    def _whole_object_problems(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        found: list[InitErrorDetails] = []
        for legacy, current in cls.legacy_spellings.items():
            if legacy in data and current in data:
                error = PydanticCustomError(
                    "both_spellings",
                    "'{current}' is given too; keep only '{current}' (the newer spelling of "
                    "'{legacy}')",
                    {"current": current, "legacy": legacy},
                )
                found.append(InitErrorDetails(type=error, loc=(legacy,), input=data[legacy]))
        for current in cls.one_spelling_required:
            olders = [k for k, v in cls.legacy_spellings.items() if v == current]
            if not any(spelling in data for spelling in [current, *olders]):
                found.append(InitErrorDetails(type="missing", loc=(current,), input=data))
        return found


def _reraisable(errors: list[ErrorDetails]) -> list[InitErrorDetails]:
    """Errors of a nested ValidationError in a form `from_exception_data` accepts again."""
    return [
        InitErrorDetails(
            type=PydanticCustomError(error["type"], error["msg"]),
            loc=error["loc"],
            input=error["input"],
        )
        for error in errors
    ]


class MappingFileEntry(_FileObject):
    """One entry of `mappings`: members of a group get a role in a team (or a case group)."""

    model_config = ConfigDict(title="Mapping entry")
    legacy_spellings = {"sso_group": "group_name"}
    one_spelling_required = ("group_name",)

    group_name: OptionalSelector = Field(default=None, title="Keycloak group or role")
    sso_group: OptionalSelector = Field(
        default=None,
        title="Keycloak group or role (older spelling)",
        description="Older Tines spelling of group_name; give one of the two, not both.",
    )
    team_name: Text = Field(
        title="Team", description="Name of the team in the target, exactly as written there."
    )
    case_group_name: OptionalText = Field(
        default=None,
        title="Case group",
        description="Optional: the role is given in this case group of the team instead.",
    )
    role_name: RoleName = Field(
        title="Role",
        description=(
            "TEAM_ADMIN, EDITOR, VIEWER or a custom role of the target. Lower case is "
            "accepted and read as upper case. When several entries give one user the same "
            "team (or case group), the setting role_conflict decides: 'highest' (default) "
            "gives the highest role by role_precedence, 'first_entry' (Tines' rule) the role "
            "of the first matching entry in file order."
        ),
    )

    @property
    def group(self) -> str:
        """The group selector, whichever spelling the file used."""
        return self.group_name or self.sso_group or ""

    def identity(self) -> tuple[str, str, str | None, str]:
        """What makes two entries the same grant."""
        return (self.group, self.team_name, self.case_group_name, self.role_name)


class PermissionGrantFile(_FileObject):
    """Members of a group get tenant-wide permissions."""

    model_config = ConfigDict(title="Tenant permission grant")

    group_name: Selector = Field(title="Keycloak group or role")
    permissions: list[Text] = Field(
        min_length=1,
        title="Tenant permissions",
        description="Permission names of the target, e.g. AUDIT_LOG_READ.",
        examples=[["AUDIT_LOG_READ"]],
    )


class MappingFile(_FileObject):
    """The mapping file: Keycloak groups → teams, roles, tenant owners and tenant permissions."""

    model_config = ConfigDict(title="jit-bridge mapping file")
    legacy_spellings = {
        "tenant_owners_group": "tenant_owners_groups",
        "tenant_permissions": "tenant_permission",
    }

    mappings: list[MappingFileEntry] = Field(
        min_length=1,
        title="Mappings",
        description="Which groups get which team and role; at least one entry.",
        json_schema_extra={"uniqueItems": True},
    )
    tenant_owners_groups: list[Selector] = Field(
        default_factory=list,
        title="Tenant owner groups",
        description="Members of any of these groups are tenant owners.",
    )
    tenant_owners_group: OptionalSelector = Field(
        default=None,
        title="Tenant owner group (older spelling)",
        description="Older Tines form: one group. Use tenant_owners_groups instead.",
    )
    tenant_permission: list[PermissionGrantFile] = Field(
        default_factory=list,
        title="Tenant permissions",
        description="Tenant-wide permissions granted to members of a group.",
    )
    tenant_permissions: Annotated[
        list[PermissionGrantFile] | None, _absent_or(list[PermissionGrantFile])
    ] = Field(
        default=None,
        title="Tenant permissions (older spelling)",
        description="Older spelling of tenant_permission; give one of the two, not both.",
    )
    group_attribute_name: JsonValue = Field(
        default=None,
        title="Group attribute name (ignored)",
        description=(
            "Ignored. Older Tines configurations name the SAML attribute carrying groups "
            "here; jit-bridge reads groups from Keycloak itself."
        ),
    )

    @classmethod
    def _whole_object_problems(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return [*super()._whole_object_problems(data), *_repeated_entries(data.get("mappings"))]

    def to_mapping(self) -> Mapping:
        """The resolved mapping the planner uses; numbers are 1-based positions in the file."""
        owners = (
            self.tenant_owners_groups
            if self.tenant_owners_group is None
            else [self.tenant_owners_group]
        )
        grants = self.tenant_permission or self.tenant_permissions or []
        return Mapping(
            entries=tuple(
                MappingEntry(
                    number=number,
                    group=GroupSelector.parse(entry.group),
                    team=entry.team_name,
                    case_group=entry.case_group_name,
                    role=entry.role_name,
                )
                for number, entry in enumerate(self.mappings, start=1)
            ),
            tenant_owner_groups=tuple(GroupSelector.parse(group) for group in owners),
            tenant_permissions=tuple(
                PermissionGrant(
                    number=number,
                    group=GroupSelector.parse(grant.group_name),
                    permissions=tuple(grant.permissions),
                )
                for number, grant in enumerate(grants, start=1)
            ),
        )


def _repeated_entries(raw_entries: object) -> list[InitErrorDetails]:
    """Exact repeats among the entries that are valid on their own.

    Each entry is validated by itself here, so a repeat is reported even while another entry
    of the file is broken.
    """
    if not isinstance(raw_entries, list):
        return []
    first_at: dict[tuple[str, str, str | None, str], int] = {}
    found: list[InitErrorDetails] = []
    for index, raw in enumerate(raw_entries):
        try:
            identity = MappingFileEntry.model_validate(raw).identity()
        except ValidationError:
            continue
        if identity in first_at:
            error = PydanticCustomError(
                "repeated_entry",
                "repeats /mappings/{first} (entry {number}): same group, team, case group and "
                "role; remove one of them",
                {"first": first_at[identity], "number": first_at[identity] + 1},
            )
            found.append(InitErrorDetails(type=error, loc=("mappings", index), input=raw))
        else:
            first_at[identity] = index
    return found


# --------------------------------------------------------------------------------------
# From pydantic errors to problems an operator can act on


_OBJECTS: dict[tuple[str, ...], type[_FileObject]] = {
    (): MappingFile,
    ("mappings",): MappingFileEntry,
    ("tenant_permission",): PermissionGrantFile,
    ("tenant_permissions",): PermissionGrantFile,
}


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    model = _OBJECTS.get(tuple(part for part in loc[:-1] if isinstance(part, str)))
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {_shown(key)}; did you mean '{close[0]}'?"
    return f"unknown key {_shown(key)}; keys allowed here: {', '.join(known)}"


def _problem(error: ErrorDetails) -> Problem:
    loc, kind, value = error["loc"], error["type"], error["input"]
    if kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind == "missing":
        message = f"missing required key '{loc[-1]}'"
    elif kind == "string_type":
        message = f"must be a string, not {_json_kind(value)}"
    elif kind == "list_type":
        message = f"must be a list, not {_json_kind(value)}"
    elif kind in {"model_type", "model_attributes_type", "dict_type"}:
        message = f"must be an object, not {_json_kind(value)}"
        if not loc:
            message = (
                f'the top level must be an object {{"mappings": [...]}}, not {_json_kind(value)}'
            )
    elif kind == "string_unicode":
        message = "contains an unpaired surrogate escape (\\ud800-\\udfff); write the character"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "too_short":
        message = "needs at least one entry"
    else:
        message = error["msg"]
    return Problem(_pointer(loc), message)


def _sort_key(problem: Problem) -> list[tuple[int, int, str]]:
    """Document order for list indices (2 before 10), then by key."""
    parts = problem.pointer.split("/")[1:]
    return [(0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in parts]


# --------------------------------------------------------------------------------------
# From bytes to a JSON value


class _JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers keys written more than once in it."""

    repeated_keys: list[str]


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    obj.repeated_keys = []
    for key, value in pairs:
        if key in obj and key not in obj.repeated_keys:
            obj.repeated_keys.append(key)
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _repeated_keys(value: object, loc: tuple[int | str, ...] = ()) -> list[Problem]:
    """Keys written twice in one object, anywhere: JSON parsers silently keep the last one."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _repeated_keys(item, (*loc, i))]
    if not isinstance(value, _JsonObject):
        return []
    found = [
        Problem(_pointer((*loc, key)), f"key {_shown(key)} appears more than once; keep one")
        for key in value.repeated_keys
    ]
    for key, item in value.items():
        found += _repeated_keys(item, (*loc, key))
    return found


def _line_column(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _too_deep(text: str) -> Problem | None:
    """Refuse deep nesting before `json` parses it: `[[[[…` 100k deep would crash the parser."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                where = _line_column(text, token.start())
                return Problem("", f"nested deeper than {MAX_DEPTH} levels at {where}")
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def _decode(data: bytes | str) -> str:
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > MAX_FILE_BYTES:
        raise MappingError(
            [Problem("", f"larger than 1 MiB ({size} bytes); a mapping file must be smaller")]
        )
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        message = (
            f"not UTF-8: invalid byte 0x{data[err.start]:02x} at byte offset {err.start} "
            f"(line {line}); save the file as UTF-8"
        )
        raise MappingError([Problem("", message)]) from None


def _parse_json(text: str) -> object:
    if not text.strip():
        raise MappingError(
            [Problem("", 'the file is empty; it needs a JSON object with "mappings"')]
        )
    deep = _too_deep(text)
    if deep:
        raise MappingError([deep])
    try:
        return json.loads(
            text, object_pairs_hook=_object_from_pairs, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as err:
        where = _line_column(text, err.pos)
        reason = err.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise MappingError([Problem("", f"not valid JSON: {reason} at {where}")]) from None
    except (ValueError, RecursionError) as err:  # e.g. NaN, or an integer of 5000 digits
        raise MappingError([Problem("", f"not valid JSON: {err}")]) from None


# --------------------------------------------------------------------------------------
# Public entry points


def parse_mapping(data: bytes | str, source: str = "<mapping>") -> Mapping:
    """Validate a mapping document; raise MappingError listing every problem in it.

    `source` names the document in the messages (a path, "admin API", …).
    """
    try:
        document = _parse_json(_decode(data))
    except MappingError as err:
        raise MappingError(err.problems, source) from None
    problems = _repeated_keys(document)
    validated: MappingFile | None = None
    try:
        validated = MappingFile.model_validate(document)
    except ValidationError as err:
        problems += [_problem(error) for error in err.errors()]
    if problems or validated is None:
        raise MappingError(sorted(problems, key=_sort_key), source)
    return validated.to_mapping()


def load_mapping(path: Path) -> Mapping:
    """Read and validate a mapping file; an unreadable file is a MappingError too."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        problem = Problem(
            "",
            f"cannot read the mapping file: {reason}; "
            "check the path (setting mapping_file, or --mapping)",
        )
        raise MappingError([problem], str(path)) from None
    return parse_mapping(data, str(path))


def dump_mapping(mapping: Mapping) -> dict[str, Any]:
    """The mapping as a document of the current format; `parse_mapping` reads it back equal."""
    entries: list[dict[str, Any]] = []
    for entry in mapping.entries:
        written = {"group_name": entry.group.raw, "team_name": entry.team}
        if entry.case_group is not None:
            written["case_group_name"] = entry.case_group
        entries.append({**written, "role_name": entry.role})
    document: dict[str, Any] = {"mappings": entries}
    if mapping.tenant_owner_groups:
        document["tenant_owners_groups"] = [group.raw for group in mapping.tenant_owner_groups]
    if mapping.tenant_permissions:
        document["tenant_permission"] = [
            {"group_name": grant.group.raw, "permissions": list(grant.permissions)}
            for grant in mapping.tenant_permissions
        ]
    return document


def mapping_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the mapping file, generated from the models."""
    schema = MappingFile.model_json_schema(mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["description"] = (
        "Which Keycloak groups give which teams, roles, tenant ownership and tenant "
        f"permissions (jit-bridge, Tines-compatible). Generated: {REGENERATE_SCHEMA}"
    )
    return schema


def main(argv: list[str]) -> int:
    """`python -m bridge.mapping_file schema`: print the JSON Schema."""
    if argv != ["schema"]:
        print("usage: python -m bridge.mapping_file schema", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(mapping_json_schema(), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
