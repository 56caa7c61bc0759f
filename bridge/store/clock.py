"""Conversions between the store's clock (epoch seconds) and the datetimes people read."""

from __future__ import annotations

from datetime import UTC, datetime


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def to_seconds(moment: datetime | float) -> float:
    """Epoch seconds of `moment`; a naive datetime is taken to be UTC."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return float(moment)
