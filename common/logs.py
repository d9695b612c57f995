"""Log lines of both programs: text for a person, or one JSON object per line for a log pipeline
(``--log-format json``, python-json-logger).

A JSON line has ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and, where the line is
about one, ``stream`` (BUCKET/KEY_PREFIX/INDEX), ``segment`` (its file name), ``destination`` (the
daemon's ``--store`` it is about, when it has several) and ``error_kind`` (what kind of failure: a
store error's kind, a refusal's reason). They come from the record's ``extra``, else from the
context the line was logged in (``STREAM``, ``SEGMENT``, ``DESTINATION``: an asyncio task's own,
set where a task works on one stream or destination), else from the handler (``static``: the one
stream of a segmenter process). A text line about a destination starts its message with
``[DESTINATION]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from .settings import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")

# The stream and segment the current asyncio task (or thread) works on, for JSON log lines.
STREAM: ContextVar[str | None] = ContextVar("stream", default=None)
SEGMENT: ContextVar[str | None] = ContextVar("segment", default=None)
# The destination (--store) the current task works for, set only when the daemon has several.
DESTINATION: ContextVar[str | None] = ContextVar("destination", default=None)

_CONTEXT_FIELDS = ("stream", "segment", "destination", "error_kind")


def log_format(flag: str, value: str) -> str:
    """``--log-format``: text or json. Raises ConfigError for anything else."""
    if value not in LOG_FORMATS:
        raise ConfigError(f"{flag} {value!r} is not {' or '.join(LOG_FORMATS)}")
    return value


class _JsonLines(JsonFormatter):
    """python-json-logger's formatter, leaving out the context fields a line has none of."""

    def process_log_record(self, log_data: dict[str, object]) -> dict[str, object]:
        return {name: value for name, value in log_data.items() if value is not None}


class _Context(logging.Filter):
    """Gives each record ``stream``, ``segment``, ``destination`` and ``error_kind`` (None where
    there is none)."""

    def __init__(self, static: Mapping[str, str]) -> None:
        super().__init__()
        self._static = dict(static)

    def filter(self, record: logging.LogRecord) -> bool:
        found = {"stream": STREAM.get(), "segment": SEGMENT.get(), "destination": DESTINATION.get(),
                 "error_kind": None}
        for name in _CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, found[name] or self._static.get(name))
        return True


def format_handler(handler: logging.Handler, kind: str, *, static: Mapping[str, str] = {}) -> logging.Handler:
    """Set ``handler``'s formatter for ``kind`` (``LOG_FORMATS``); in JSON, every line gets the
    context fields, ``static`` filling those the line and its context leave empty. Returns it."""
    if kind == "json":
        handler.setFormatter(_JsonLines(
            "{levelname}{name}{message}{stream}{segment}{destination}{error_kind}", style="{", timestamp="time",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "traceback"},
        ))
        handler.addFilter(_Context(static))
    else:
        handler.setFormatter(_Text(TEXT_FORMAT))
    return handler


class _Text(logging.Formatter):
    """The text format, a line about a destination (``DESTINATION``) marked ``[DESTINATION]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        destination = DESTINATION.get()
        if destination is None:
            return super().formatMessage(record)
        marked = logging.makeLogRecord(record.__dict__)
        marked.message = f"[{destination}] {record.message}"
        return super().formatMessage(marked)


def logs_json() -> bool:
    """Whether the root logger writes JSON lines (a program's last words go the same way)."""
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


class Throttle:
    """At most one report per ``interval_s`` per key; the next one counts those left out.

    ``due(key, now)`` returns None when a report for ``key`` was made less than ``interval_s``
    seconds before ``now`` (monotonic seconds; the call is counted as left out), else the number
    of calls left out since the last report (the caller reports now).
    """

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last: dict[object, tuple[float, int]] = {}

    def due(self, key: object, now: float) -> int | None:
        logged_at, unlogged = self._last.get(key, (None, 0))
        if logged_at is not None and now - logged_at < self._interval_s:
            self._last[key] = (logged_at, unlogged + 1)
            return None
        self._last[key] = (now, 0)
        return unlogged

    def forget(self, key: object) -> None:
        self._last.pop(key, None)
