"""What `jit-bridge init` changed, kept in `<dir>/init-record.json` so `--undo` can take it
back, and so a run stopped half-way still says what it had done.

The record is rewritten after every change (before the next one starts). It holds no
secrets: ids, names and the values a change replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_NAME = "init-record.json"


class RecordError(Exception):
    """The record file is unreadable or belongs to another Keycloak realm."""


@dataclass
class Record:
    path: Path
    keycloak_url: str
    realm: str
    #: Keycloak changes, oldest first; each has a "step" and a human "did" line.
    keycloak: list[dict[str, Any]] = field(default_factory=list)
    #: Files init created in the settings directory (names relative to it).
    files: list[str] = field(default_factory=list)
    #: Who set it up (a name, never a password), so `--undo` need not be told again.
    admin_user: str | None = None
    admin_realm: str | None = None
    #: What this run changed, for people (not stored).
    done_now: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, directory: Path, keycloak_url: str, realm: str) -> Record:
        path = directory / RECORD_NAME
        if not path.exists():
            return cls(path=path, keycloak_url=keycloak_url, realm=realm)
        record = cls.load(directory)
        if (record.keycloak_url, record.realm) != (keycloak_url, realm):
            raise RecordError(
                f"{path} records a setup of realm '{record.realm}' at {record.keycloak_url}; "
                f"undo it first (jit-bridge init --undo --dir {directory}) or choose another "
                "--dir"
            )
        return record

    @classmethod
    def load(cls, directory: Path) -> Record:
        path = directory / RECORD_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                path=path,
                keycloak_url=str(raw["keycloak_url"]),
                realm=str(raw["realm"]),
                keycloak=list(raw.get("keycloak", [])),
                files=list(raw.get("files", [])),
                admin_user=raw.get("admin_user"),
                admin_realm=raw.get("admin_realm"),
            )
        except FileNotFoundError:
            raise RecordError(
                f"{path} does not exist: there is nothing jit-bridge init recorded to undo"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"{path}: not a jit-bridge init record ({exc})") from None

    @property
    def empty(self) -> bool:
        return not self.keycloak and not self.files

    def add(self, entry: dict[str, Any]) -> None:
        """One Keycloak change that has just been made."""
        self.keycloak.append(entry)
        self.done_now.append(str(entry["did"]))
        self.save()

    def add_file(self, name: str, did: str) -> None:
        if name not in self.files:
            self.files.append(name)
        self.done_now.append(did)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {
            "keycloak_url": self.keycloak_url,
            "realm": self.realm,
            "admin_user": self.admin_user,
            "admin_realm": self.admin_realm,
            "keycloak": self.keycloak,
            "files": self.files,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out, indent=2)
            out.write("\n")
        os.replace(temporary, self.path)
