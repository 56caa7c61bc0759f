"""SCIM group names that carry a membership: `{team}:{role}` and `{team}/{case_group}:{role}`.

SCIM has groups but no teams or roles, so a membership (team, role) is membership of one group
whose displayName the template builds, and reading a group's displayName back through the same
template recovers the membership. Groups whose names match neither template are not ours and
are ignored.

Parsing is only unambiguous if the separators cannot occur inside a value. The rule: every
character of the text *between* two placeholders, in either template, is a separator, and no
team, case group or role name may contain a separator. With the defaults the separators are
`:` and `/`, so "Incident Response" or "Équipe 1" are fine and "Ops/Tier 1" is refused with
an error that names the team, the character and the template. Text before the first or after
the last placeholder (a prefix such as `app-`) is matched literally and reserves nothing.
Every name built is parsed back before use, so a pair of templates that could still read one
name two ways is refused at the write instead of silently mis-filed.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from bridge.targets.base import BadRequestError

TEAM_PLACEHOLDERS = ("team", "role")
CASE_GROUP_PLACEHOLDERS = ("team", "case_group", "role")


@dataclass(frozen=True)
class GroupKey:
    """The membership one SCIM group stands for."""

    team: str
    case_group: str | None
    role: str


class TemplateError(ValueError):
    """A group name template that cannot be parsed back unambiguously."""


def _split(template: str, placeholders: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """The template as (literal text, placeholder or None) pairs, checked for use."""
    try:
        parts = [
            (literal, field) for literal, field, _spec, _conv in string.Formatter().parse(template)
        ]
    except ValueError as exc:
        raise TemplateError(f"SCIM group template {template!r} is not valid: {exc}") from exc
    fields = [field for _literal, field in parts if field is not None]
    if sorted(fields) != sorted(placeholders):
        wanted = ", ".join("{" + name + "}" for name in placeholders)
        raise TemplateError(
            f"SCIM group template {template!r} must use each of {wanted} exactly once "
            "and nothing else"
        )
    for index, (literal, field) in enumerate(parts[1:], start=1):
        if not literal and parts[index - 1][1] is not None and field is not None:
            raise TemplateError(
                f"SCIM group template {template!r} puts two placeholders next to each other; "
                "put a separator such as ':' between them"
            )
    return parts


def _inner_literals(parts: list[tuple[str, str | None]]) -> str:
    """The literal text between placeholders (not the prefix or the suffix)."""
    return "".join(literal for index, (literal, _field) in enumerate(parts) if index > 0)


class GroupNaming:
    """Builds and parses the displayNames of the bridge's SCIM groups."""

    def __init__(self, team_template: str, case_group_template: str) -> None:
        self.team_template = team_template
        self.case_group_template = case_group_template
        team_parts = _split(team_template, TEAM_PLACEHOLDERS)
        case_parts = _split(case_group_template, CASE_GROUP_PLACEHOLDERS)
        self.separators = "".join(
            sorted(set(_inner_literals(team_parts) + _inner_literals(case_parts)))
        )
        if not self.separators:
            raise TemplateError("SCIM group templates need a separator between placeholders")
        value = f"[^{re.escape(self.separators)}]+"
        self._team_pattern = self._compile(team_parts, value)
        self._case_pattern = self._compile(case_parts, value)

    @staticmethod
    def _compile(parts: list[tuple[str, str | None]], value: str) -> re.Pattern[str]:
        body = "".join(
            re.escape(literal) + (f"(?P<{field}>{value})" if field else "")
            for literal, field in parts
        )
        return re.compile(body)

    def group_name(self, key: GroupKey) -> str:
        """The displayName of the group for this membership; refuses names it cannot read back."""
        values = {"team": key.team, "role": key.role}
        if key.case_group is not None:
            values["case_group"] = key.case_group
        for kind, value in values.items():
            self._check_value(kind.replace("_", " "), value)
        template = self.team_template if key.case_group is None else self.case_group_template
        name = template.format(**values)
        if self.parse(name) != key:
            raise BadRequestError(
                f"SCIM group name {name!r} for team {key.team!r} would read back as a "
                "different membership; change scim_group_template so the two templates "
                "cannot produce the same name"
            )
        return name

    def _check_value(self, kind: str, value: str) -> None:
        if not value:
            raise BadRequestError(f"a {kind} name must not be empty in a SCIM group name")
        clashes = sorted({char for char in value if char in self.separators})
        if clashes:
            shown = " ".join(repr(char) for char in clashes)
            raise BadRequestError(
                f"{kind} {value!r} contains {shown}, a separator of the SCIM group templates "
                f"{self.team_template!r} / {self.case_group_template!r}, so its group name "
                f"could not be read back; rename the {kind} or choose templates with other "
                "separators"
            )

    def parse(self, display_name: str) -> GroupKey | None:
        """The membership a group stands for, or None for a group that is not ours."""
        team_match = self._team_pattern.fullmatch(display_name)
        case_match = self._case_pattern.fullmatch(display_name)
        if team_match and case_match:
            return None  # readable two ways: not safe to treat as ours
        if team_match:
            return GroupKey(team_match["team"], None, team_match["role"])
        if case_match:
            return GroupKey(case_match["team"], case_match["case_group"], case_match["role"])
        return None
