"""Builders shared by the safety tests: a bridge deployment in a temporary directory (settings
TOML, mapping, IdP snapshot, SQLite store) pointed at a Tines fake, driven through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.store import Store
from tests.tines_fake import TinesFake

MAPPING = {
    "mappings": [
        {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
        {"group_name": "Ops", "team_name": "Ops", "role_name": "VIEWER"},
    ]
}


def idp_user(name: str, *groups: str) -> dict[str, Any]:
    return {
        "id": f"id-{name}",
        "username": name,
        "email": f"{name}@example.com",
        "email_verified": True,
        "first_name": name.title(),
        "last_name": "Test",
        "enabled": True,
        "groups": list(groups),
    }


@dataclass
class Deployment:
    """One bridge installation: its files live in `root`, its target is `tines`."""

    root: Path
    tines: TinesFake

    @property
    def settings(self) -> Path:
        return self.root / "settings.toml"

    @property
    def idp(self) -> Path:
        return self.root / "idp.json"

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    def configure(self, **extra: Any) -> None:
        lines = {
            "mode": "enhanced",
            "target": "tines",
            "tines_url": self.tines.url,
            "tines_api_key": self.tines.api_key,
            "database_url": f"sqlite:///{self.database}",
            "mapping_file": str(self.root / "mapping.json"),
            **extra,
        }
        self.settings.write_text(
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in lines.items()), encoding="utf-8"
        )
        (self.root / "mapping.json").write_text(json.dumps(MAPPING), encoding="utf-8")

    def set_idp(self, users: Iterable[dict[str, Any]]) -> None:
        self.idp.write_text(json.dumps({"users": list(users)}), encoding="utf-8")

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--settings", str(self.settings)])
        out, err = capsys.readouterr()
        return code, out, err

    def store(self) -> Store:
        """A new Store on the same SQLite file: what a restarted process sees."""
        store = Store.open(f"sqlite:///{self.database}")
        store.upgrade()
        return store

    def team_members(self, team: str) -> dict[str, str]:
        """email → role in `team`, read from the fake tenant."""
        state = self.tines.state.export()
        emails = {u.id: u.email for u in state.users}
        [found] = [t for t in state.teams if t.name == team]
        return {emails[m.user_id]: m.role for m in found.members}


def seed_tenant(tines: TinesFake, members: dict[str, list[str]]) -> None:
    """Teams Analytics and Ops; `members` maps team → user names holding it (as given role)."""
    analytics, ops = tines.state.add_team("Analytics"), tines.state.add_team("Ops")
    team_ids = {"Analytics": (analytics, "EDITOR"), "Ops": (ops, "VIEWER")}
    users: dict[str, int] = {}
    for team, names in members.items():
        team_id, role = team_ids[team]
        for name in names:
            if name not in users:
                users[name] = tines.state.add_user(f"{name}@example.com")
            tines.state.containers[team_id].members[users[name]] = role


def make_deployment(
    monkeypatch: pytest.MonkeyPatch, root: Path, tines: TinesFake, **settings: Any
) -> Deployment:
    """A deployment whose settings come only from its own TOML file."""
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(root)
    deployment = Deployment(root, tines)
    deployment.configure(**settings)
    return deployment
