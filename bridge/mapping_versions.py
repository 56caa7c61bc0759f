"""One mapping in force for the whole installation: the newest version in the state store.

Every `run` process and every CLI command that uses the store plans with the store's newest
mapping version, so two processes (or a process and `jit-bridge sync`) never plan under two
mappings and undo each other's work. Versions come from two places:

- the mapping file: when its text differs from the last version saved from the file, it is
  saved as a new version (at start, by the service's file watch, and by each CLI command);
- the admin API (`PUT /api/v1/mapping`): a new version that stays in force until the file
  changes again.

A broken file never replaces a good stored version: it is reported and the stored one stays.
`--mapping F` on the CLI bypasses all this and plans with F alone (offline, what-if).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from bridge.mapping import Mapping
from bridge.mapping_file import MappingError, Problem, load_mapping, parse_mapping
from bridge.store import Store

log = logging.getLogger(__name__)

FILE_SOURCE = "file"
API_SOURCE = "api"


@dataclass(frozen=True)
class MappingInUse:
    mapping: Mapping
    #: The store's version number; None for a mapping that is not in the store (`--mapping F`).
    version: int | None


class MappingInForce:
    """The store's newest mapping version, re-read whenever the version number moved.

    `get()` costs one indexed query for the newest version number, so a reconcile always
    plans with the version in force at its start, whichever process stored it.
    """

    def __init__(self, store: Store, file: Path | None) -> None:
        """Record the file as a new version when it changed, then take the newest version.

        Raises `MappingError` (or `OSError`) only when the file is unusable and the store
        holds no version to fall back on.
        """
        self._store = store
        self._file = file
        self._lock = threading.Lock()
        self._file_problem: str | None = None
        self.record_file_change()
        stored = store.current_mapping()
        if stored is None:
            if file is None:
                message = "no mapping version is stored yet; set mapping_file"
                raise MappingError([Problem("", message)], "state store")
            load_mapping(file)  # raises the file's own problem: there is nothing else
            raise AssertionError("unreachable: a usable file was saved above")
        self._in_use = _parsed(*stored)

    @property
    def version(self) -> int | None:
        return self.current().version

    def get(self) -> Mapping:
        return self.current().mapping

    def current(self) -> MappingInUse:
        """The newest version, re-parsed only when its number changed since the last call."""
        latest = self._store.latest_mapping_version()
        with self._lock:
            in_use = self._in_use
        if latest is None or latest == in_use.version:
            return in_use
        return self.refresh()

    def refresh(self) -> MappingInUse:
        stored = self._store.current_mapping()
        with self._lock:
            if stored is None or self._in_use.version == stored[0]:
                return self._in_use
            previous = self._in_use.version
            self._in_use = _parsed(*stored)
        log.info("mapping version %s in force (was %s)", stored[0], previous)
        return self._in_use

    def record_file_change(self) -> int | None:
        """Save the mapping file as a new version if its text changed since the last version
        saved from it; returns the new version, or None when nothing was saved."""
        if self._file is None:
            return None
        try:
            text = self._file.read_text(encoding="utf-8")
            parse_mapping(text, source=str(self._file))
        except (OSError, UnicodeDecodeError, MappingError) as exc:
            problem = f"mapping file {self._file} is unusable ({exc})"
            if problem != self._file_problem:
                self._file_problem = problem
                in_force = self._store.latest_mapping_version()
                if in_force is not None:
                    log.error("%s; mapping version %s stays in force", problem, in_force)
            return None
        self._file_problem = None
        last = self._store.last_mapping_from(FILE_SOURCE)
        if last is not None and last.text == text:
            return None
        current = self._store.current_mapping()
        if current is not None and current[1] == text:
            return None  # e.g. the same text was PUT through the admin API first
        version = self._store.save_mapping(text, source=FILE_SOURCE)
        log.info("mapping file %s saved as mapping version %s", self._file, version)
        return version


def _parsed(version: int, text: str) -> MappingInUse:
    return MappingInUse(parse_mapping(text, source=f"stored mapping version {version}"), version)
