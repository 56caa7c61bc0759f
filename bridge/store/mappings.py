"""Mapping versions (docs/design.md, Operating): every mapping the service ran with is kept, newest
current."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from bridge.store.clock import to_datetime
from bridge.store.records import MappingVersion
from bridge.store.tables import mapping_versions

_m = mapping_versions.c


def save(connection: Connection, now: float, text: str, source: str) -> int:
    """Store `text` as the new current version; saving the current text again is a no-op."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    latest = connection.execute(
        select(_m.version, _m.sha256).order_by(_m.version.desc()).limit(1)
    ).first()
    if latest is not None and latest.sha256 == digest:
        return int(latest.version)
    statement = (
        insert(mapping_versions)
        .values(text=text, source=source, sha256=digest, saved_at=now)
        .returning(_m.version)
    )
    return int(connection.execute(statement).scalar_one())


def current(connection: Connection) -> tuple[int, str] | None:
    row = connection.execute(
        select(_m.version, _m.text).order_by(_m.version.desc()).limit(1)
    ).first()
    return None if row is None else (int(row.version), str(row.text))


def latest_version(connection: Connection) -> int | None:
    """The newest version number: what every process checks before it plans."""
    found = connection.execute(select(func.max(_m.version))).scalar_one_or_none()
    return None if found is None else int(found)


def last_from(connection: Connection, source: str) -> MappingVersion | None:
    """The newest version saved from `source` (the mapping file: `file`)."""
    row = connection.execute(
        select(mapping_versions).where(_m.source == source).order_by(_m.version.desc()).limit(1)
    ).first()
    return None if row is None else _version(row)


def text_of(connection: Connection, version: int) -> str | None:
    return connection.execute(select(_m.text).where(_m.version == version)).scalar_one_or_none()


def versions(connection: Connection) -> list[MappingVersion]:
    """Newest first."""
    rows = connection.execute(select(mapping_versions).order_by(_m.version.desc()))
    return [_version(row) for row in rows]


def _version(row: Row[Any]) -> MappingVersion:
    return MappingVersion(
        version=row.version,
        source=row.source,
        saved_at=to_datetime(row.saved_at),
        sha256=row.sha256,
        text=row.text,
    )
