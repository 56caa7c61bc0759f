"""How far a long run has got: users read, operations planned, operations applied.

The reconciler updates a `RunProgress` as it goes; whoever watches (the CLI's terminal line,
the service for its console) gets a call after each change. Watching is optional and costs
nothing when no one watches.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class RunProgress:
    stage: str = "reading Keycloak and the target"
    users_read: int | None = None
    target_users: int | None = None
    planned: int | None = None
    applied: int = 0
    watchers: list[Callable[[RunProgress], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        for watch in self.watchers:
            watch(self)

    def one_applied(self) -> None:
        """Count one more applied operation (writes for several users run at once)."""
        with self._lock:
            self.update(applied=self.applied + 1)

    def to_json(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "users_read": self.users_read,
            "target_users": self.target_users,
            "planned": self.planned,
            "applied": self.applied,
        }

    def describe(self) -> str:
        parts = [self.stage]
        if self.users_read is not None:
            parts.append(f"{self.users_read} Keycloak users read")
        if self.target_users is not None:
            parts.append(f"{self.target_users} target users read")
        if self.planned is not None:
            parts.append(f"{self.planned} operations planned")
            if self.stage == "applying":
                parts.append(f"{self.applied}/{self.planned} applied")
        return ": ".join(parts[:1]) + (" · " + ", ".join(parts[1:]) if parts[1:] else "")


class TerminalProgress:
    """One line on a terminal, rewritten in place; nothing at all when `stream` is not a
    terminal (a pipe or a file gets only the command's real output)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = False

    def __call__(self, progress: RunProgress) -> None:
        if not self.enabled:
            return
        self.stream.write("\r\033[K" + progress.describe())
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False
