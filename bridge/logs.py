"""One log format for everything the process writes: the bridge, uvicorn and the scheduler.

`log_format = "text"` writes `TIME LEVEL LOGGER: message`; `"json"` writes one JSON object a
line (`time`, `level`, `logger`, `message`, and the structured fields a line carries, such as
a run's id and counts), for a log pipeline. The scheduler's "running job" lines are routine
ticks, and the schema check's lines come with every start: they are written at DEBUG, so an
INFO log holds what the bridge did, not its clock.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The attribute `log.info(..., extra={FIELDS: {...}})` puts structured fields under.
FIELDS = "fields"
_QUIET_LOGGERS = ("apscheduler", "alembic")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra={"fields": {...}}` adds keys to it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TicksAtDebug(logging.Filter):
    """Writes the INFO lines of the scheduler (every job run) and of the schema migrations
    (every start) as DEBUG, and drops them unless the log level is DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith(_QUIET_LOGGERS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send every logger (uvicorn's included, see `uvicorn_log_config`) to stderr in one
    format. Replaces whatever handlers the root logger had."""
    numeric = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_TicksAtDebug(numeric))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's loggers without handlers of their own, so their lines reach the root
    handler and are written like every other line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            name: {"handlers": [], "level": level.upper(), "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
