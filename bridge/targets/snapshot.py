"""A read-only target answering from a target snapshot (docs/design.md, Formats), for offline
planning."""

from __future__ import annotations

from bridge.model import CaseGroup, TargetState, TargetUser, Team
from bridge.targets.base import DryRunRejectedError, Target


class SnapshotTarget(Target):
    name = "snapshot"

    def __init__(self, state: TargetState) -> None:
        self._state = state

    def read_state(self) -> TargetState:
        return self._state

    def ping(self) -> None:
        """A snapshot is always there."""

    def read_user_state(
        self, email: str, *, creating: bool = False, account_id: str | None = None
    ) -> TargetState:
        wanted = email.lower()
        ids = {u.id for u in self._state.users if u.email.lower() == wanted}
        if not ids and account_id is not None:
            ids = {u.id for u in self._state.users if u.id == account_id}
        users = [u for u in self._state.users if u.id in ids or u.tenant_owner]
        return TargetState(
            users=users,
            teams=[
                Team(
                    id=t.id,
                    name=t.name,
                    members=[m for m in t.members if m.user_id in ids],
                    case_groups=[
                        CaseGroup(
                            id=c.id,
                            name=c.name,
                            members=[m for m in c.members if m.user_id in ids],
                        )
                        for c in t.case_groups
                    ],
                )
                for t in self._state.teams
            ],
        )

    def _refuse(self) -> DryRunRejectedError:
        return DryRunRejectedError("a snapshot target is read-only: nothing was sent")

    def create_user(
        self, email: str, first_name: str | None, last_name: str | None, avatar_url: str | None
    ) -> TargetUser:
        raise self._refuse()

    def update_user(
        self,
        user: TargetUser,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        tenant_owner: bool | None = None,
        tenant_permissions: list[str] | None = None,
        active: bool | None = None,
    ) -> TargetUser:
        raise self._refuse()

    def add_membership(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        raise self._refuse()

    def change_role(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        raise self._refuse()

    def remove_membership(self, user: TargetUser, team_id: str, case_group_id: str | None) -> None:
        raise self._refuse()
