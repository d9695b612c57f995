"""Opening the input (stdin or anything FFmpeg opens) and describing its streams."""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container

from .codecs import codec_string, codecs_list
from .cutter import StreamInfo, StreamKind

log = logging.getLogger("segmenter.input")

# Say that we are waiting for stdin after this long without a byte (at once on a terminal), so
# an operator who forgot the pipe is told long before the probe timeout.
WAITING_NOTICE_AFTER_S = 2.0

# How often a blocked stdin read wakes up to see whether a signal asked us to stop.
STOP_POLL_S = 0.2

# Bytes asked of stdin per read: large enough that the per-call cost vanishes, small enough
# that a slow live stream is passed on as it arrives (a read returns what the pipe has).
READ_CHUNK_BYTES = 256 * 1024


class InputError(Exception):
    """The input cannot be segmented (nothing arrived, empty, not media): exit code 2."""


class StdinSource:
    """stdin as a file object for PyAV: waits with a timeout while probing, stops on request.

    A read during the probe that sees no byte for ``probe_timeout_s`` raises InputError; later
    reads block (a live stream may pause) but return end of input once ``stop`` is set.
    """

    def __init__(self, fd: int, *, probe_timeout_s: float, stop: threading.Event,
                 stall_warning_s: float = math.inf, stall_end_s: float = 0.0) -> None:
        self._fd = fd
        self._stall_warning_s = stall_warning_s
        self._stall_end_s = stall_end_s  # 0: silence never ends the input
        self._last_data = time.monotonic()
        self._stalled = False  # the stall warning was given and no byte came since
        self._ended = False
        self._stop = stop
        self._probe_timeout_s = probe_timeout_s
        self._probing = True
        self._noticed = False
        self._started = time.monotonic()
        self._interactive = os.isatty(fd)
        self.bytes_read = 0
        # Every byte read, until the shell chose a path: the MPEG-TS fast path replays what the
        # probe consumed, the PyAV path forgets it (so memory stays bounded).
        self._recording: bytearray | None = bytearray()

    def probed(self) -> None:
        self._probing = False

    def recorded(self) -> bytes:
        """The bytes read so far (only while recording)."""
        return bytes(self._recording or b"")

    def replay(self) -> bytes:
        """The bytes read so far, to be read again; recording stops."""
        data, self._recording = bytes(self._recording or b""), None
        return data

    def forget(self) -> None:
        self._recording = None

    def read(self, size: int) -> bytes:
        while True:
            if self._stop.is_set() or self._ended:
                return b""
            wait_s = STOP_POLL_S
            if not self._probing or self.bytes_read:
                self._watch_for_stall()
                if self._ended:
                    return b""
            if self._probing and self.bytes_read == 0:
                waited = time.monotonic() - self._started
                if waited >= self._probe_timeout_s:
                    raise InputError(
                        f"nothing arrived on stdin in {self._probe_timeout_s:g} s: "
                        "expected an MPEG-TS stream, e.g. ffmpeg ... -f mpegts - | hls-segment - ..."
                    )
                if not self._noticed and (self._interactive or waited >= WAITING_NOTICE_AFTER_S):
                    self._noticed = True
                    log.warning(
                        "waiting for MPEG-TS on stdin (giving up after %g s)", self._probe_timeout_s
                    )
                wait_s = min(wait_s, self._probe_timeout_s - waited)
            readable, _, _ = select.select([self._fd], [], [], max(wait_s, 0.0))
            if readable:
                data = os.read(self._fd, min(size, READ_CHUNK_BYTES))
                self.bytes_read += len(data)
                if self._recording is not None:
                    self._recording += data
                now = time.monotonic()
                if self._stalled and data:
                    log.warning("input resumed after %.1f s without data", now - self._last_data)
                    self._stalled = False
                self._last_data = now
                return data

    def _watch_for_stall(self) -> None:
        """The stale-input watchdog: a warning after --stall-warning, the end after --stall-end."""
        silent_s = time.monotonic() - self._last_data
        if self._stall_end_s and silent_s >= self._stall_end_s:
            log.warning("no input for %.0f s (--stall-end %g): ending the stream", silent_s, self._stall_end_s)
            self._ended = True
        elif not self._stalled and silent_s >= self._stall_warning_s:
            self._stalled = True
            then = f"the stream ends after {self._stall_end_s:g} s" if self._stall_end_s else "waiting for it"
            log.warning("no input for %.0f s: the encoder may have stalled; %s", silent_s, then)


@dataclass(frozen=True, slots=True)
class InputDescription:
    """What the probe found: the streams to copy and what the messages say about them."""

    streams: tuple[StreamInfo, ...]
    format_name: str
    codecs: str | None  # RFC 6381 list
    resolution: str | None  # WIDTHxHEIGHT of the first video stream
    frame_rate: float | None
    skipped: tuple[str, ...]  # streams that are neither audio nor video, described


def open_input(
    target: str, *, probe_timeout_s: float, stop: threading.Event,
    stall_warning_s: float = math.inf, stall_end_s: float = 0.0,
) -> tuple[av.container.InputContainer, StdinSource | None]:
    """Open and probe INPUT. Raises InputError for an empty, silent or unrecognisable input."""
    source: StdinSource | None = None
    try:
        if target == "-":
            source = StdinSource(0, probe_timeout_s=probe_timeout_s, stop=stop,
                                 stall_warning_s=stall_warning_s, stall_end_s=stall_end_s)
            container = av.open(source, "r", buffer_size=64 * 1024)
            source.probed()
        else:
            container = av.open(target, "r", timeout=(probe_timeout_s, None))
    except InputError:
        raise
    except av.error.FFmpegError as error:
        if source is not None and source.bytes_read == 0:
            raise InputError("stdin is empty: it ended before any byte arrived (expected MPEG-TS)") from None
        name = "stdin" if target == "-" else target
        reason = getattr(error, "strerror", None) or str(error)
        raise InputError(f"{name} is not MPEG-TS or any media FFmpeg recognises ({reason})") from None
    except OSError as error:  # a file that cannot be opened, with PyAV's own I/O
        raise InputError(f"cannot open {target}: {error}") from None
    return container, source


def describe(container: av.container.InputContainer) -> InputDescription:
    """The audio and video streams, in input order, with their codecs and video geometry."""
    streams: list[StreamInfo] = []
    codec_strings: list[str | None] = []
    skipped: list[str] = []
    resolution: str | None = None
    frame_rate: float | None = None
    wraps = container.format.name == "mpegts"
    for stream in container.streams:
        kind = {"video": StreamKind.VIDEO, "audio": StreamKind.AUDIO}.get(stream.type)
        context = stream.codec_context
        if kind is None or context is None:
            skipped.append(f"#{stream.index} ({stream.type})")
            continue
        time_base = stream.time_base or Fraction(1, 90000)
        streams.append(StreamInfo(stream.index, kind, Fraction(time_base), wraps=wraps and time_base == Fraction(1, 90000)))
        level = getattr(context, "level", None)
        codec_strings.append(codec_string(context.name, context.extradata, context.profile, level))
        if kind is StreamKind.VIDEO and resolution is None and context.width and context.height:
            resolution = f"{context.width}x{context.height}"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate and 0 < rate <= 1000:
                frame_rate = round(float(rate), 3)
    if not streams:
        found = ", ".join(skipped) or "no streams"
        raise InputError(f"input has no audio or video stream to segment ({found})")
    return InputDescription(
        streams=tuple(streams),
        format_name=container.format.name,
        codecs=codecs_list(codec_strings),
        resolution=resolution,
        frame_rate=frame_rate,
        skipped=tuple(skipped),
    )
