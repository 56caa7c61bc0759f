"""The mapping file: what an operator sees when a mapping is good, legacy, or wrong
(docs/design.md, Mapping)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mapping import GroupSelector, Mapping
from bridge.mapping_file import (
    REGENERATE_SCHEMA,
    MappingError,
    dump_mapping,
    load_mapping,
    main,
    mapping_json_schema,
    parse_mapping,
)
from bridge.packaged import MAPPING_SCHEMA
from tests.examples import examples

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "data" / "mappings"

# Every file in the bad corpus, with the JSON pointers of every problem it must report
# ("" = the file as a whole).
BAD_FILES: dict[str, list[str]] = {
    "attribute_name_in_entry.json": ["/mappings/0/group_attribute_name"],
    "bad_role_names.json": [f"/mappings/{i}/role_name" for i in range(4)],
    "bad_organization_selectors.json": [
        "/mappings/0/group_name",
        "/mappings/1/group_name",
        "/mappings/2/group_name",
        "/mappings/3/group_name",
        "/tenant_owners_groups/0",
    ],
    "bad_selectors.json": [
        "/mappings/0/group_name",
        "/mappings/1/group_name",
        "/mappings/2/group_name",
        "/mappings/3/group_name",
        "/mappings/4/sso_group",
        "/tenant_owners_groups/0",
        "/tenant_permission/0/group_name",
    ],
    "both_spellings.json": ["/mappings/0/sso_group", "/tenant_owners_group", "/tenant_permissions"],
    "duplicate_json_keys.json": ["/mappings"],
    "empty_file.json": [""],
    "empty_mappings.json": ["/mappings"],
    "empty_permissions.json": ["/tenant_permission/1/permissions"],
    "empty_strings.json": [
        "/mappings/0/group_name",
        "/mappings/0/role_name",
        "/mappings/0/team_name",
        "/mappings/1/case_group_name",
        "/mappings/1/team_name",
        "/tenant_owners_groups/0",
        "/tenant_permission/0/permissions/0",
    ],
    "entries_not_objects.json": ["/mappings/0", "/mappings/1", "/tenant_permission/0"],
    "latin1.json": [""],
    "missing_entry_keys.json": [
        "/mappings/0/group_name",
        "/mappings/1/role_name",
        "/mappings/1/team_name",
        "/tenant_permission/0/group_name",
        "/tenant_permission/0/permissions",
    ],
    "missing_mappings.json": ["/mappings"],
    "nan.json": [""],
    "non_string_values.json": [
        "/mappings/0/group_name",
        "/mappings/0/role_name",
        "/mappings/0/team_name",
        "/mappings/1/case_group_name",
        "/mappings/1/role_name",
        "/tenant_owners_group",  # null
        "/tenant_owners_group",  # and given next to tenant_owners_groups
        "/tenant_owners_groups/0",
    ],
    "repeated_entries.json": ["/mappings/2", "/mappings/4"],
    "several_problems.json": [
        "/mappings/1/group_name",
        "/mappings/2/team_name",
        "/mappings/3/rol_name",
        "/mappings/3/role_name",
        "/mappings/4",
        "/teams",
        "/tenant_owners_groups/1",
        "/tenant_permission/0/permissions",
        "/tenant_permissions",
    ],
    "too_deep.json": [""],
    "top_level_list.json": [""],
    "top_level_string.json": [""],
    "trailing_comma.json": [""],
    "unknown_entry_key.json": ["/mappings/3/rol_name", "/mappings/3/role_name"],
    "unknown_grant_key.json": [
        "/tenant_permission/0/permission",
        "/tenant_permission/0/permissions",
    ],
    "unknown_top_level_key.json": ["/tenant_owner_groups"],
    "wrong_containers.json": ["/mappings", "/tenant_owners_groups", "/tenant_permission"],
}


def refusal(path: Path) -> MappingError:
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    return caught.value


def messages(err: MappingError) -> dict[str, str]:
    return {problem.pointer: problem.message for problem in err.problems}


# --------------------------------------------------------------------------------------
# The bad corpus


def test_every_bad_file_has_its_expected_pointers_listed() -> None:
    assert sorted(p.name for p in (CORPUS / "bad").iterdir()) == sorted(BAD_FILES)


@pytest.mark.parametrize(("name", "pointers"), sorted(BAD_FILES.items()))
def test_bad_file_is_refused_with_every_problem_at_its_pointer(
    name: str, pointers: list[str]
) -> None:
    path = CORPUS / "bad" / name
    err = refusal(path)
    assert [problem.pointer for problem in err.problems] == pointers
    lines = str(err).splitlines()
    assert len(lines) == len(pointers)
    for line, problem in zip(lines, err.problems, strict=True):
        assert line == f"{path}: {problem}"


def test_unknown_key_points_at_the_typo_and_suggests_the_key_meant() -> None:
    path = CORPUS / "bad" / "unknown_entry_key.json"
    lines = str(refusal(path)).splitlines()
    assert (
        lines[0]
        == f"{path}: /mappings/3/rol_name: unknown key 'rol_name'; did you mean 'role_name'?"
    )
    assert lines[1] == f"{path}: /mappings/3/role_name: missing required key 'role_name'"


def test_unknown_key_without_a_near_miss_lists_the_keys_allowed() -> None:
    found = messages(refusal(CORPUS / "bad" / "several_problems.json"))
    assert found["/teams"].startswith(
        "unknown key 'teams'; keys allowed here: group_attribute_name"
    )


def test_file_level_problems_say_where_in_the_file() -> None:
    assert "byte offset 33" in str(refusal(CORPUS / "bad" / "latin1.json"))
    assert "line 4, column 3" in str(refusal(CORPUS / "bad" / "trailing_comma.json"))
    assert "deeper than 32 levels" in str(refusal(CORPUS / "bad" / "too_deep.json"))
    assert "top level must be an object" in str(refusal(CORPUS / "bad" / "top_level_list.json"))


def test_repeated_entry_names_the_entry_it_repeats() -> None:
    found = messages(refusal(CORPUS / "bad" / "repeated_entries.json"))
    assert found["/mappings/2"].startswith("repeats /mappings/0 (entry 1)")
    assert found["/mappings/4"].startswith("repeats /mappings/1 (entry 2)")


def test_both_spellings_tell_which_one_to_keep() -> None:
    found = messages(refusal(CORPUS / "bad" / "both_spellings.json"))
    assert "keep only 'group_name'" in found["/mappings/0/sso_group"]
    assert "keep only 'tenant_permission'" in found["/tenant_permissions"]


def test_selector_problem_carries_the_reason() -> None:
    found = messages(refusal(CORPUS / "bad" / "bad_selectors.json"))
    assert found["/mappings/2/group_name"] == "'/Ops//Tier1' is not a valid group path"
    assert found["/mappings/1/group_name"] == "'client-role:' must be followed by CLIENT/ROLE"


def test_malformed_organization_selectors_say_what_to_write() -> None:
    found = messages(refusal(CORPUS / "bad" / "bad_organization_selectors.json"))
    assert found["/mappings/0/group_name"] == (
        "'organization:' must be followed by an organization alias"
    )
    assert found["/mappings/1/group_name"] == (
        "'/' is not a valid group path of organization 'acme' "
        "(write organization:ALIAS/GROUP/SUBGROUP)"
    )
    assert "'//Sales' is not a valid group path" in found["/mappings/2/group_name"]
    assert found["/tenant_owners_groups/0"] == (
        "organization alias ' acme' has leading or trailing spaces"
    )


def test_organization_selectors_parse_to_alias_and_group_path() -> None:
    whole = GroupSelector.parse("organization:acme")
    assert (whole.kind, whole.organization, whole.name) == ("organization", "acme", "acme")
    group = GroupSelector.parse("organization:acme/Sales/EMEA")
    assert (group.kind, group.organization, group.name) == (
        "organization_group",
        "acme",
        "/Sales/EMEA",
    )


def test_non_string_values_say_what_was_found() -> None:
    found = messages(refusal(CORPUS / "bad" / "non_string_values.json"))
    assert found["/mappings/0/team_name"] == "must be a string, not a number"
    assert found["/mappings/1/case_group_name"] == "must be a string, not a boolean"


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    entry = '{"group_name": "Managers", "team_name": "Analytics", "role_name": "EDITOR"}'
    big = tmp_path / "big.json"
    big.write_text('{"mappings": [' + entry + "]}" + " " * (1024 * 1024))
    assert "larger than 1 MiB" in str(refusal(big))
    with pytest.raises(MappingError, match="larger than 1 MiB"):
        parse_mapping(big.read_text())


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_very_deep_nesting_is_a_mapping_error_not_a_crash(opener: str) -> None:
    with pytest.raises(MappingError, match="deeper than 32 levels"):
        parse_mapping(opener * 100_000)


def test_nesting_up_to_the_limit_is_only_judged_on_content() -> None:
    # depth 32: the object, the ignored key's 31 lists
    document = '{"group_attribute_name": ' + "[" * 31 + "]" * 31 + ', "mappings": []}'
    with pytest.raises(MappingError) as caught:
        parse_mapping(document)
    assert [p.pointer for p in caught.value.problems] == ["/mappings"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    team = "[" * 50 + '"{' * 10 + "\\"
    document = {"mappings": [{"group_name": "M", "team_name": team, "role_name": "EDITOR"}]}
    assert parse_mapping(json.dumps(document)).entries[0].team == team


def test_missing_file_is_a_mapping_error_naming_the_path(tmp_path: Path) -> None:
    err = refusal(tmp_path / "nope.json")
    assert str(err).startswith(f"{tmp_path / 'nope.json'}: cannot read the mapping file")
    assert "mapping_file" in str(err)


def test_directory_is_a_mapping_error(tmp_path: Path) -> None:
    assert "cannot read the mapping file" in str(refusal(tmp_path))


def test_control_characters_in_keys_cannot_split_a_problem_over_lines() -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping('{"mappings": [], "a\\nb": 1}')
    assert str(caught.value).splitlines() == [
        "<mapping>: /a\\nb: unknown key 'a\\nb'; keys allowed here: group_attribute_name, "
        "mappings, tenant_owners_group, tenant_owners_groups, tenant_permission, "
        "tenant_permissions",
        "<mapping>: /mappings: needs at least one entry",
    ]


def test_default_source_name_in_messages() -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping('{"mappings": []}')
    assert str(caught.value) == "<mapping>: /mappings: needs at least one entry"


# --------------------------------------------------------------------------------------
# Good files


def test_legacy_file_loads_to_the_same_mapping_as_its_modern_twin() -> None:
    legacy = load_mapping(CORPUS / "good" / "legacy.json")
    modern = load_mapping(CORPUS / "good" / "modern.json")
    assert legacy == modern
    assert [e.role for e in legacy.entries] == ["TEAM_ADMIN", "EDITOR", "VIEWER", "READ_ONLY_GUEST"]
    assert [g.raw for g in legacy.tenant_owner_groups] == ["Administrators"]


def test_custom_roles_are_allowed() -> None:
    mapping = load_mapping(CORPUS / "good" / "modern.json")
    assert mapping.entries[3].role == "READ_ONLY_GUEST"


def test_group_attribute_name_is_ignored_whatever_it_holds() -> None:
    entry = {"group_name": "M", "team_name": "T", "role_name": "EDITOR"}
    plain = parse_mapping(json.dumps({"mappings": [entry]}))
    for value in ["Group", None, 7, {"saml": ["Group"]}]:
        document = {"group_attribute_name": value, "mappings": [entry]}
        assert parse_mapping(json.dumps(document)) == plain


def test_selectors_of_all_four_forms() -> None:
    mapping = load_mapping(CORPUS / "good" / "selectors.json")
    assert [e.group for e in mapping.entries] == [
        GroupSelector(raw="SRE", kind="name", name="SRE"),
        GroupSelector(raw="/Eng/SRE", kind="path", name="/Eng/SRE"),
        GroupSelector(raw="realm-role:auditor", kind="realm_role", name="auditor"),
        GroupSelector(
            raw="client-role:tines/admin", kind="client_role", name="admin", client="tines"
        ),
    ]
    assert [g.kind for g in mapping.tenant_owner_groups] == ["client_role", "path"]
    assert mapping.tenant_permissions[0].group.kind == "realm_role"


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    assert load_mapping(CORPUS / "good" / "utf8_bom.json").entries[0].team == "Analytics"


def test_the_example_of_the_spec_loads() -> None:
    mapping = load_mapping(ROOT / "mappings" / "example.json")
    assert [(e.number, e.group.raw, e.team, e.case_group, e.role) for e in mapping.entries] == [
        (1, "Managers", "Analytics", None, "TEAM_ADMIN"),
        (2, "Managers", "Incident Response", None, "EDITOR"),
        (3, "Analysts", "Analytics", None, "EDITOR"),
        (4, "/Ops/Tier1", "Incident Response", "Tier 1", "VIEWER"),
    ]
    assert [g.raw for g in mapping.tenant_owner_groups] == ["Administrators"]
    grants = [(g.number, g.group.raw, g.permissions) for g in mapping.tenant_permissions]
    assert grants == [(1, "Auditors", ("AUDIT_LOG_READ",))]


def test_the_default_mapping_file_loads() -> None:
    assert load_mapping(ROOT / "mappings" / "mapping.json").entries


def test_permission_grants_are_numbered_from_one() -> None:
    mapping = load_mapping(CORPUS / "good" / "modern.json")
    assert [g.number for g in mapping.tenant_permissions] == [1, 2]
    assert mapping.tenant_permissions[1].permissions == ("AUDIT_LOG_READ", "TENANT_SETTINGS_MANAGE")


# --------------------------------------------------------------------------------------
# Writing


def test_dump_writes_the_current_format_for_a_legacy_file() -> None:
    legacy = load_mapping(CORPUS / "good" / "legacy.json")
    written = dump_mapping(legacy)
    assert written == json.loads((CORPUS / "good" / "modern.json").read_text())
    assert parse_mapping(json.dumps(written)) == legacy


def test_dump_of_the_example_is_the_example() -> None:
    path = ROOT / "mappings" / "example.json"
    assert dump_mapping(load_mapping(path)) == json.loads(path.read_text())


def test_dump_leaves_out_empty_tenant_keys() -> None:
    entry = {"group_name": "M", "team_name": "T", "role_name": "EDITOR"}
    assert dump_mapping(parse_mapping(json.dumps({"mappings": [entry]}))) == {"mappings": [entry]}


# --------------------------------------------------------------------------------------
# The JSON Schema


def test_committed_schema_is_what_the_code_generates() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "bridge.mapping_file", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    committed = MAPPING_SCHEMA.read_text()
    assert committed == generated, (
        f"{MAPPING_SCHEMA} is stale; regenerate it with `{REGENERATE_SCHEMA}`"
    )


def test_schema_is_draft_2020_12_and_describes_every_key() -> None:
    schema = mapping_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["mappings"]
    assert set(schema["properties"]) == {
        "mappings",
        "tenant_owners_groups",
        "tenant_owners_group",
        "tenant_permission",
        "tenant_permissions",
        "group_attribute_name",
    }
    entry = schema["$defs"]["MappingFileEntry"]
    assert entry["additionalProperties"] is False
    assert entry["properties"]["sso_group"]["deprecated"] is True
    assert all(spec.get("description") for spec in entry["properties"].values())


def test_schema_command_usage_error() -> None:
    assert main(["scheme"]) == 2


# --------------------------------------------------------------------------------------
# Properties

KNOWN_KEYS = [
    "mappings",
    "tenant_owners_groups",
    "tenant_owners_group",
    "tenant_permission",
    "tenant_permissions",
    "group_attribute_name",
    "group_name",
    "sso_group",
    "team_name",
    "case_group_name",
    "role_name",
    "permissions",
]
SELECTOR_LIKE = st.sampled_from(
    [
        "Managers",
        "/Ops/Tier1",
        "/",
        "//",
        "realm-role:",
        "realm-role:x",
        "client-role:c/r",
        "editor",
    ]
)
json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | SELECTOR_LIKE,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)


def parse_or_refuse(data: bytes | str) -> None:
    """The only two outcomes allowed: a Mapping, or a MappingError that lists its problems."""
    result: Mapping | MappingError
    try:
        result = parse_mapping(data)
    except MappingError as err:
        result = err
    if isinstance(result, MappingError):
        assert result.problems
        assert str(result).splitlines() == [f"<mapping>: {p}" for p in result.problems]
    else:
        assert isinstance(result, Mapping)


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(json_ish)
def test_any_json_document_is_a_mapping_or_a_mapping_error(document: Any) -> None:
    parse_or_refuse(json.dumps(document))
    parse_or_refuse(json.dumps({"mappings": document}))


@settings(max_examples=examples(200))
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda s: "{" + s))
def test_any_bytes_are_a_mapping_or_a_mapping_error(data: bytes | str) -> None:
    parse_or_refuse(data)


plain_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12
).filter(str.strip)
segment = plain_text.filter(lambda s: "/" not in s)
selectors = st.one_of(
    plain_text.filter(lambda s: not s.startswith(("/", "realm-role:", "client-role:"))),
    st.lists(segment, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)),
    segment.map(lambda role: f"realm-role:{role}"),
    st.tuples(segment, plain_text).map(lambda cr: f"client-role:{cr[0]}/{cr[1]}"),
)
roles = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)
entries = st.fixed_dictionaries(
    {"group_name": selectors, "team_name": plain_text, "role_name": roles},
    optional={"case_group_name": plain_text},
)


def distinct(documents: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: dict[tuple[str, str, str | None, str], dict[str, str]] = {}
    for entry in documents:
        key = (
            entry["group_name"],
            entry["team_name"],
            entry.get("case_group_name"),
            entry["role_name"].upper(),
        )
        seen.setdefault(key, entry)
    return list(seen.values())


valid_documents = st.fixed_dictionaries(
    {"mappings": st.lists(entries, min_size=1, max_size=6).map(distinct)},
    optional={
        "tenant_owners_groups": st.lists(selectors, max_size=3),
        "tenant_permission": st.lists(
            st.fixed_dictionaries(
                {
                    "group_name": selectors,
                    "permissions": st.lists(plain_text, min_size=1, max_size=3),
                }
            ),
            max_size=3,
        ),
    },
)


@settings(max_examples=examples(100))
@given(valid_documents)
def test_a_valid_document_loads_and_round_trips(document: dict[str, Any]) -> None:
    mapping = parse_mapping(json.dumps(document))
    assert [e.number for e in mapping.entries] == list(range(1, len(document["mappings"]) + 1))
    written = dump_mapping(mapping)
    assert parse_mapping(json.dumps(written)) == mapping
    assert parse_mapping(json.dumps(written).encode()) == mapping
