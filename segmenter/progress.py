"""Progress: a one-line status on a terminal, one log line per segment otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() and not quiet
        self._started = time.monotonic()
        self._media_s = 0.0
        self.segments = 0
        self._last = "none yet"  # the last segment's name
        self._queued = 0  # messages waiting for the daemon at the last segment

    @property
    def status_line(self) -> bool:
        return self._tty

    def segment(self, name: str, duration_s: float | None, start_s: float | None, size: int,
                discontinuity: bool, queued: int) -> None:
        self.segments += 1
        self._media_s += duration_s or 0.0
        self._last, self._queued = name, queued
        wall = max(time.monotonic() - self._started, 1e-6)
        rate = f"{size * 8 / duration_s / 1e6:.2f} Mbit/s" if duration_s else "? Mbit/s"
        length = f"{duration_s:.3f} s" if duration_s is not None else "? s"
        at = f" at {start_s:.3f}" if start_s is not None else ""
        log.log(
            logging.DEBUG if self._tty else logging.INFO,
            "segment %s: %s%s, %d bytes, %s%s; %d message(s) queued for the daemon",
            name, length, at, size, rate, ", discontinuity" if discontinuity else "", queued,
            extra={"segment": name},
        )
        if self._tty:
            self._stream.write(
                f"\r\x1b[K{self.segments} segments, last {length}, {rate}, "
                f"{self._media_s / wall:.1f}x realtime, {queued} queued to daemon"
            )
            self._stream.flush()

    def summary(self) -> str:
        """One line on the run so far: segments, media and wall seconds, the last segment, the
        messages waiting for the daemon when it was written."""
        wall = max(time.monotonic() - self._started, 1e-6)
        return (
            f"{self.segments} segment(s) written, {self._media_s:.1f} s of media in {wall:.1f} s"
            f" ({self._media_s / wall:.2f}x realtime); last {self._last};"
            f" {self._queued} message(s) queued for the daemon then"
        )

    def done(self) -> None:
        if self._tty and self.segments:
            self._stream.write("\n")
            self._stream.flush()


class StatusAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Clears the status line before a log line so the two do not mix on a terminal."""

    def __init__(self, stream: TextIO, *, clear: bool) -> None:
        super().__init__(stream)
        self._clear = clear

    def emit(self, record: logging.LogRecord) -> None:
        if self._clear:
            self.stream.write("\r\x1b[K")
        super().emit(record)
