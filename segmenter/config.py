"""The one validated configuration of an hls-segment process, built once by the command line."""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from protocol import IndexMessage, ProtocolError
from protocol.limits import MAX_SEGMENT_DURATION_S, MAX_SEGMENT_NUMBER
from common.settings import (
    ConfigError,
    as_bool,
    as_int,
    as_seconds,
    is_loopback,
    parse_address,
    secret_from_file,
)

DEFAULT_UPLOADER = "127.0.0.1:10234"

# Long enough for an encoder that takes a while to start (a camera, a remote source) to send its
# first bytes; short enough that a forgotten pipe is reported within a minute.
DEFAULT_PROBE_TIMEOUT_S = 30.0

# At exit, how long to keep trying to deliver what the daemon has not acknowledged: a few
# reconnect attempts, not so long that a service manager's stop timeout kills us first.
DEFAULT_DRAIN_TIMEOUT_S = 10.0

# Stale-input watchdog. A live encoder writes every few milliseconds; 10 s of silence on stdin is
# worth a warning (a stalled camera, a hung encoder), but it is not the end of the stream: the
# input may resume. Ending the stream on silence is the operator's choice (0: never).
DEFAULT_STALL_WARNING_S = 10.0
DEFAULT_STALL_END_S = 0.0

# Defaults of every option that a config file may also set ([segment] table), by setting name.
OPTION_DEFAULTS: dict[str, Any] = {
    "uploader": DEFAULT_UPLOADER,
    "wire": "ext",
    "start_number": None,
    "probe_timeout": DEFAULT_PROBE_TIMEOUT_S,
    "drain_timeout": DEFAULT_DRAIN_TIMEOUT_S,
    "quiet": False,
    "secret_file": None,  # None: messages are not signed
    "send_segments": None,  # None: on when --uploader is not a loopback address
    "bandwidth": None,  # declared peak bit/s; the daemon measures it anyway
    "stall_warning": DEFAULT_STALL_WARNING_S,
    "stall_end": DEFAULT_STALL_END_S,
    "fast_path": True,  # MPEG-TS cut at packet level when the input allows (fastrun.py)
}

# Largest --bandwidth: 1 Tbit/s, as the protocol's field allows.
MAX_BANDWIDTH = 10**12


class WireMode(enum.Enum):
    EXT = "ext"  # one connection, newline-terminated messages with extensions, one reply each
    V1 = "v1"  # the original's bytes: ten fields, one connection per message, no reply read


def parse_segment_seconds(text: str) -> Fraction:
    """SEGMENT_DURATION as an exact fraction ("2.5" -> 5/2), so the grid never drifts."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"SEGMENT_DURATION {text!r} is not a number of seconds") from None
    if not value.is_finite() or not 0 < value <= MAX_SEGMENT_DURATION_S:
        raise ConfigError(f"SEGMENT_DURATION {text!r} must be more than 0 and at most {MAX_SEGMENT_DURATION_S} s")
    return Fraction(value)


def message_directory(output_dir: str) -> str:
    """OUTPUT_DIR as sent to the daemon: absolute, keeping a trailing slash as the original did."""
    absolute = os.path.abspath(output_dir)
    return absolute + "/" if output_dir.endswith("/") and absolute != "/" else absolute


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    input: str  # "-" is stdin; anything else is a file or URL FFmpeg opens
    segment_seconds: Fraction
    output_dir: Path  # absolute
    output_prefix: str
    index_name: str
    http_prefix: str
    bucket: str
    key_prefix: str
    uploader_host: str = "127.0.0.1"
    uploader_port: int = 10234
    wire: WireMode = WireMode.EXT
    start_number: int | None = None  # None: 1, or after the highest segment already in output_dir
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    quiet: bool = False
    directory_text: str = ""  # output_dir as the messages name it; derived when empty
    secret: bytes | None = field(default=None, repr=False)  # HMAC key; never printed
    send_segments: bool = False  # segment bytes travel inline after each message (size=N)
    bandwidth: int | None = None  # declared peak bit/s, sent as bandwidth=
    stall_warning_s: float = DEFAULT_STALL_WARNING_S  # silence of the input worth a warning
    stall_end_s: float = DEFAULT_STALL_END_S  # silence of the input that ends the stream; 0: never
    fast_path: bool = True  # MPEG-TS inputs cut at packet level when they allow it

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("INPUT is empty (use - for stdin)")
        if not 0 < self.segment_seconds <= MAX_SEGMENT_DURATION_S:
            raise ConfigError(f"SEGMENT_DURATION must be more than 0 and at most {MAX_SEGMENT_DURATION_S} s")
        if not self.output_dir.is_absolute():
            raise ConfigError("output_dir must be absolute")
        if self.start_number is not None and not 1 <= self.start_number <= MAX_SEGMENT_NUMBER:
            raise ConfigError(f"--start-number must be between 1 and {MAX_SEGMENT_NUMBER}")
        if not (math.isfinite(self.probe_timeout_s) and self.probe_timeout_s > 0):
            raise ConfigError("--probe-timeout must be a positive number of seconds")
        if not (math.isfinite(self.drain_timeout_s) and self.drain_timeout_s >= 0):
            raise ConfigError("--drain-timeout must be zero or a positive number of seconds")
        if not (math.isfinite(self.stall_warning_s) and self.stall_warning_s > 0):
            raise ConfigError("--stall-warning must be a positive number of seconds")
        if not (math.isfinite(self.stall_end_s) and self.stall_end_s >= 0):
            raise ConfigError("--stall-end must be zero (never) or a positive number of seconds")
        if 0 < self.stall_end_s <= self.stall_warning_s:
            raise ConfigError("--stall-end must be longer than --stall-warning (or 0: never)")
        if not 0 < self.uploader_port <= 65535:
            raise ConfigError("--uploader needs a port between 1 and 65535")
        if self.wire is WireMode.V1 and (self.secret is not None or self.send_segments):
            raise ConfigError("--wire v1 carries no extensions: --secret-file and --send-segments need --wire ext")
        if self.bandwidth is not None and not 1 <= self.bandwidth <= MAX_BANDWIDTH:
            raise ConfigError(f"--bandwidth must be between 1 and {MAX_BANDWIDTH} bit/s")
        if not self.directory_text:
            object.__setattr__(self, "directory_text", str(self.output_dir))
        try:
            self.message(first_segment=1, last_segment=1, end=False)
        except ProtocolError as error:
            # The fields are checked by the same code that checks them on the daemon's side.
            raise ConfigError(f"the index message would be refused: {error}") from None

    @property
    def segment_duration_field(self) -> int:
        """SEGMENT_DURATION as the message's integer field: rounded up, as a target duration is."""
        return max(1, math.ceil(self.segment_seconds))

    def message(self, *, first_segment: int, last_segment: int, end: bool, **extensions: Any) -> IndexMessage:
        return IndexMessage(
            index=self.index_name,
            output_directory=self.directory_text,
            segment_duration=self.segment_duration_field,
            output_prefix=self.output_prefix,
            http_prefix=self.http_prefix,
            first_segment=first_segment,
            bandwidth=self.bandwidth,
            last_segment=last_segment,
            end=end,
            bucket=self.bucket,
            key_prefix=self.key_prefix,
            **extensions,
        )

    @classmethod
    def from_settings(
        cls,
        *,
        input: str,
        segment_duration: str,
        output_dir: str,
        output_prefix: str,
        index_name: str,
        http_prefix: str,
        bucket: str,
        key_prefix: str,
        settings: dict[str, Any],
    ) -> SegmenterConfig:
        """Build from the positional arguments and merged options (see OPTION_DEFAULTS)."""
        host, port = parse_address(str(settings["uploader"]))
        try:
            wire = WireMode(str(settings["wire"]))
        except ValueError:
            raise ConfigError(f"--wire must be ext or v1, not {settings['wire']!r}") from None
        return cls(
            input=input,
            segment_seconds=parse_segment_seconds(segment_duration),
            output_dir=Path(os.path.abspath(output_dir)),
            output_prefix=output_prefix,
            index_name=index_name,
            http_prefix=http_prefix,
            bucket=bucket,
            key_prefix=key_prefix,
            uploader_host=host,
            uploader_port=port,
            wire=wire,
            start_number=_optional_int("start_number", settings["start_number"]),
            probe_timeout_s=as_seconds("probe_timeout", settings["probe_timeout"]),
            drain_timeout_s=as_seconds("drain_timeout", settings["drain_timeout"]),
            quiet=as_bool("quiet", settings["quiet"]),
            directory_text=message_directory(output_dir),
            secret=secret_from_file(settings["secret_file"], _read_file),
            send_segments=(
                as_bool("send_segments", settings["send_segments"]) if settings["send_segments"] is not None
                else wire is WireMode.EXT and not is_loopback(host)
            ),
            bandwidth=_optional_int("bandwidth", settings["bandwidth"]),
            stall_warning_s=as_seconds("stall_warning", settings["stall_warning"]),
            stall_end_s=as_seconds("stall_end", settings["stall_end"]),
            fast_path=as_bool("fast_path", settings["fast_path"]),
        )


def _read_file(path: str) -> bytes:
    """The I/O that common.settings.secret_from_file leaves to its caller."""
    return Path(path).expanduser().read_bytes()


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else as_int(name, value)
