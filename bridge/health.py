"""What the service knows about its dependencies, for `/readyz`, `status` and metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Dependency:
    ok: bool = True
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None


@dataclass
class Health:
    """Thread-safe record of the last success and failure per dependency."""

    clock: Any = time.time
    _deps: dict[str, Dependency] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_failure(self, name: str, error: str) -> None:
        with self._lock:
            dep = self._deps.setdefault(name, Dependency())
            dep.ok, dep.last_error, dep.last_error_at = False, error, self.clock()

    def record_success(self, name: str) -> None:
        with self._lock:
            dep = self._deps.setdefault(name, Dependency())
            dep.ok, dep.last_ok_at = True, self.clock()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(vars(dep)) for name, dep in sorted(self._deps.items())}

    def failing(self) -> dict[str, str]:
        with self._lock:
            return {n: d.last_error or "failing" for n, d in self._deps.items() if not d.ok}
