"""The policy settings the pure core needs (docs/design.md: Modes, Safety), separate from where
they come from.

`bridge.settings` reads these from the environment and TOML; the planner and the guard only
ever see this frozen value, so they stay pure and trivially testable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.model import Mode

DEFAULT_ROLE_PRECEDENCE = ("TEAM_ADMIN", "EDITOR", "VIEWER")

RoleConflict = Literal["highest", "first_entry"]


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "jit"
    manage_teams: Literal["all", "mapped"] = "all"
    inherit_parent_groups: bool = True
    role_precedence: tuple[str, ...] = DEFAULT_ROLE_PRECEDENCE
    #: Which entry wins when several give one user the same team or case group: the highest
    #: role by `role_precedence`, or the first matching entry in file order (Tines' own rule).
    role_conflict: RoleConflict = "highest"
    protected_users: frozenset[str] = frozenset()
    require_verified_email: bool = True
    on_idp_user_disabled: Literal["remove_access", "deactivate", "ignore"] = "remove_access"
    sync_profile: bool = False
    avatar_attribute: str = "avatar"
    max_removals: int = Field(default=25, ge=0)
    max_removal_fraction: float = Field(default=0.10, ge=0.0, le=1.0)
    managed_email_domains: frozenset[str] = frozenset()
    orphan_accounts: Literal["report", "remove_access"] = "report"

    @field_validator("role_precedence")
    @classmethod
    def _upper_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(r.upper() for r in roles)

    @field_validator("protected_users")
    @classmethod
    def _lower_emails(cls, emails: frozenset[str]) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in emails)

    @field_validator("managed_email_domains")
    @classmethod
    def _domains(cls, domains: frozenset[str]) -> frozenset[str]:
        cleaned = {d.strip().lower().removeprefix("@") for d in domains}
        for domain in sorted(cleaned):
            if not domain or "@" in domain or " " in domain or "." not in domain:
                raise ValueError(f"{domain!r} is not an email domain (like example.com)")
        return frozenset(cleaned)

    def is_protected(self, email: str) -> bool:
        return email.lower() in self.protected_users

    def in_managed_domain(self, email: str) -> bool:
        """Whether an account with this email is the bridge's business when no Keycloak user
        has it (an orphan); `managed_email_domains` lists domains, compared case-insensitively."""
        domain = email.rpartition("@")[2].lower()
        return bool(domain) and domain in self.managed_email_domains
