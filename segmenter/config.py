"""The one validated configuration of an hls-segment process, built once by the command line."""

from __future__ import annotations

import enum
import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from common.options import (
    LOG_FORMAT,
    INTEGER,
    SECONDS,
    SWITCH,
    TEXT,
    Option,
    config_fields,
    metrics_listen,
    optional_path,
    optional_text,
    read_secret,
)
from common.settings import DEFAULT_ADDRESS, ConfigError, is_loopback, option_address
from common.tls import check_cas, check_pair, client_context
from protocol import IndexMessage, ProtocolError
from protocol.limits import MAX_SEGMENT_DURATION_S, MAX_SEGMENT_NUMBER
from protocol.message import is_key_id

SECTION = "segment"
ENV_PREFIX = "HLS_SEGMENT_"

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


# The converts of OPTIONS: (flag, the setting's value) -> its config field's, or ConfigError.


def _daemon_addresses(flag: str, text: str) -> tuple[tuple[str, int], ...]:
    """``HOST:PORT[,HOST:PORT...]``: the daemons to send to, each once (docs/segmenter.md,
    "Several daemons"). Raises ConfigError."""
    addresses: list[tuple[str, int]] = []
    for item in text.split(","):
        if not item.strip():
            raise ConfigError(f"{flag}: an empty address in {text!r} (addresses are separated by one comma)")
        host, port = option_address(flag, item.strip())
        if not 0 < port <= 65535:
            raise ConfigError(f"{flag} needs a port between 1 and 65535")
        if (host, port) in addresses:
            raise ConfigError(f"{flag}: {host}:{port} is listed twice")
        addresses.append((host, port))
    return tuple(addresses)


def _wire(flag: str, value: str) -> WireMode:
    try:
        return WireMode(value)
    except ValueError:
        raise ConfigError(f"{flag} must be ext or v1, not {value!r}") from None


def _between(low: int, high: int, unit: str = "") -> Callable[[str, int | None], int | None]:
    """Convert for an optional whole number that must lie in low..high (``unit`` names it)."""
    suffix = f" {unit}" if unit else ""

    def check(flag: str, value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{flag} must be between {low} and {high}{suffix}")
        return value

    return check


def _key_id(flag: str, value: str | None) -> str | None:
    if value and not is_key_id(value):
        raise ConfigError(f"{flag} {value!r} is not a key id: 1-64 of [A-Za-z0-9._-], not starting with . or -")
    return value or None


def positive_seconds(flag: str, seconds: float) -> float:
    """Convert for a setting in seconds that must be more than 0; raises ConfigError."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{flag} must be a positive number of seconds")
    return seconds


def seconds_or_zero(flag: str, seconds: float) -> float:
    """Convert for a setting in seconds where 0 means never; raises ConfigError."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{flag} must be zero or a positive number of seconds")
    return seconds


def check_stalls(stall_warning_s: float, stall_end_s: float) -> None:
    """--stall-end (0: never) must come after --stall-warning; raises ConfigError."""
    if 0 < stall_end_s <= stall_warning_s:
        raise ConfigError("--stall-end must be longer than --stall-warning (or 0: never)")


# Every option of hls-segment, in the order --help lists them (after the positional arguments).
OPTIONS = (
    Option(
        "uploader", TEXT, DEFAULT_ADDRESS,
        "Daemon address HOST:PORT; several, comma-separated, spread the programs over them and take"
        " over for one that stops answering.",
        convert=_daemon_addresses, fields=("uploaders",), metavar="HOST:PORT[,...]",
    ),
    Option(
        "wire", TEXT, "ext", "ext: extensions and replies; v1: the original's bytes, no reply.",
        convert=_wire, metavar="MODE",
    ),
    Option(
        "start_number", INTEGER, None, "First segment number.",
        convert=_between(1, MAX_SEGMENT_NUMBER), metavar="N", shown_default="1, or after the highest in OUTPUT_DIR",
    ),
    # Long enough for an encoder that takes a while to start (a camera, a remote source) to send
    # its first bytes; short enough that a forgotten pipe is reported within a minute.
    Option(
        "probe_timeout", SECONDS, 30.0, "Seconds to wait for the input to start.",
        convert=positive_seconds, fields=("probe_timeout_s",), metavar="SECONDS",
    ),
    # At exit, how long to keep trying to deliver what the daemon has not acknowledged: a few
    # reconnect attempts, not so long that a service manager's stop timeout kills us first.
    Option(
        "drain_timeout", SECONDS, 10.0, "Seconds to wait at exit for acknowledgements.",
        convert=seconds_or_zero, fields=("drain_timeout_s",), metavar="SECONDS",
    ),
    Option(
        "secret_file", TEXT, None,
        "Secret to sign every message with, over the daemon's HELLO challenge (hls-uploadd --secret-file,"
        " or this peer's secret-file in its --peers-file).",
        convert=read_secret, fields=("secret",), metavar="PATH",
    ),
    Option(
        "key_id", TEXT, None, "This peer's id in the daemon's --peers-file (with --secret-file).",
        convert=_key_id, metavar="ID", shown_default="default: the daemon's --secret-file",
    ),
    Option(
        "input_ca", TEXT, None,
        "CA certificate(s) (PEM) that sign a URL INPUT's TLS certificate (https://, or http:// redirected to it).",
        convert=optional_path, metavar="FILE", shown_default="the system's CAs",
    ),
    Option(
        "tls", SWITCH, None,
        "Speak TLS to the daemon (hls-uploadd --tls-cert) and verify its certificate: chain and name.",
        flags=("--tls/--no-tls",), shown_default="on when --tls-ca is given",
    ),
    Option(
        "tls_ca", TEXT, None, "CA certificate(s) (PEM) that sign the daemon's certificate; implies --tls.",
        convert=optional_path, metavar="FILE", shown_default="the system's CAs",
    ),
    Option(
        "tls_server_name", TEXT, None, "Name the daemon's certificate must carry.",
        convert=optional_text, metavar="NAME", shown_default="the --uploader host",
    ),
    Option(
        "tls_cert", TEXT, None, "Client certificate (PEM) for a daemon that asks for one (--tls-client-ca).",
        convert=optional_path, metavar="FILE",
    ),
    Option("tls_key", TEXT, None, "Private key (PEM) of --tls-cert.", convert=optional_path, metavar="FILE"),
    Option(
        "send_segments", SWITCH, None,
        "Send each segment's bytes after its message (for a daemon on another host).",
        flags=("--send-segments/--no-send-segments",), shown_default="on when an --uploader is not loopback",
    ),
    # With --send-segments the segment is in the store once the daemon confirmed it published, so
    # the file is not needed any more (without it, the daemon reads the file and removes it itself).
    Option(
        "keep_segments", SWITCH, False,
        "With --send-segments, keep each segment file once the daemon published it (else removed).",
        flags=("--keep-segments",),
    ),
    Option(
        "take_over", SWITCH, False,
        "Take the stream over from the writer the daemon has for it, even a live one (docs/protocol.md).",
        flags=("--take-over",),
    ),
    Option(
        "bandwidth", INTEGER, None, "Declared peak bit/s of this rendition (the daemon also measures it).",
        convert=_between(1, MAX_BANDWIDTH, "bit/s"), metavar="BIT/S",
    ),
    # Stale-input watchdog. A live encoder writes every few milliseconds; 10 s of silence on stdin
    # is worth a warning (a stalled camera, a hung encoder), but it is not the end of the stream:
    # the input may resume. Ending the stream on silence is the operator's choice (0: never).
    Option(
        "stall_warning", SECONDS, 10.0, "Warn when the input has sent nothing for this many seconds.",
        convert=positive_seconds, fields=("stall_warning_s",), metavar="SECONDS",
    ),
    Option(
        "stall_end", SECONDS, 0.0,
        "End the stream (ENDLIST) when the input has sent nothing for this many seconds; 0: never.",
        convert=seconds_or_zero, fields=("stall_end_s",), metavar="SECONDS",
    ),
    LOG_FORMAT,
    metrics_listen("/metrics (Prometheus) and /healthz"),
    # A multi-program MPEG-TS (a DVB or IPTV mux) carries several channels: one is segmented.
    Option(
        "program", INTEGER, None, "The MPEG-TS program to segment, by its program_number in the PAT.",
        convert=_between(1, 65535), metavar="N", shown_default="the first program with video, else the first",
    ),
    Option(
        "fast_path", SWITCH, True,
        "Cut MPEG-TS at packet level when the input allows it; off: always demux and remux with PyAV.",
        flags=("--fast-path/--no-fast-path",),
    ),
    Option("quiet", SWITCH, False, "Warnings and errors only.", flags=("--quiet", "-q")),
)


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
    uploaders: tuple[tuple[str, int], ...]  # the daemons' (host, port), as listed
    wire: WireMode
    start_number: int | None  # None: 1, or after the highest segment already in output_dir
    probe_timeout_s: float
    drain_timeout_s: float
    secret: bytes | None = field(repr=False)  # HMAC key; never printed
    key_id: str | None  # the peer the secret belongs to; None: the daemon's "default"
    send_segments: bool  # segment bytes travel inline after each message (size=N)
    keep_segments: bool  # with send_segments: files stay after the daemon's OK
    take_over: bool  # the start-up message says takeover=1
    bandwidth: int | None  # declared peak bit/s, sent as bandwidth=
    stall_warning_s: float  # silence of the input worth a warning
    stall_end_s: float  # silence of the input that ends the stream; 0: never
    program: int | None  # program_number of the program to copy; None: the first with video
    metrics_address: tuple[str, int] | None  # --metrics-listen; None: no endpoint
    log_format: str  # "text" or "json"
    fast_path: bool  # MPEG-TS inputs cut at packet level when they allow it
    quiet: bool
    input_ca: Path | None  # the CAs an https INPUT's certificate is checked against; None: the system's
    tls: bool  # the control channel is TLS
    tls_ca: Path | None  # None: the system's CAs
    tls_server_name: str | None  # None: each daemon's host
    tls_cert: Path | None  # a client certificate, for mutual TLS
    tls_key: Path | None
    directory_text: str = ""  # output_dir as the messages name it; derived when empty
    tls_context: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("INPUT is empty (use - for stdin)")
        if not 0 < self.segment_seconds <= MAX_SEGMENT_DURATION_S:
            raise ConfigError(f"SEGMENT_DURATION must be more than 0 and at most {MAX_SEGMENT_DURATION_S} s")
        if not self.output_dir.is_absolute():
            raise ConfigError("output_dir must be absolute")
        check_stalls(self.stall_warning_s, self.stall_end_s)
        if self.wire is WireMode.V1 and (self.secret is not None or self.send_segments or self.take_over):
            raise ConfigError("--wire v1 carries no extensions: --secret-file, --send-segments and --take-over"
                              " need --wire ext")
        if self.wire is WireMode.V1 and len(self.uploaders) > 1:
            raise ConfigError("--wire v1 has no replies, so no daemon can say a message is published: several"
                              " --uploader addresses need --wire ext")
        if self.key_id is not None and self.secret is None:
            raise ConfigError("--key-id names the peer whose secret signs: give --secret-file too")
        if self.input_ca is not None:
            if "://" not in self.input:
                raise ConfigError("--input-ca applies to a URL INPUT (https://...), not to stdin or a file")
            check_cas("--input-ca", self.input_ca)
        check_pair(self.tls_cert, self.tls_key)
        if self.tls:
            if self.wire is WireMode.V1:
                raise ConfigError("--wire v1 is plaintext only: --tls needs --wire ext")
            object.__setattr__(self, "tls_context", client_context(self.tls_ca, self.tls_cert, self.tls_key))
        elif self.tls_ca or self.tls_server_name or self.tls_cert:
            raise ConfigError("--tls-ca, --tls-server-name and --tls-cert only apply with --tls")
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
        settings: Mapping[str, Any],
    ) -> SegmenterConfig:
        """Build from the positional arguments and settings by name (see OPTIONS; a missing one
        takes its default); raises ConfigError."""
        fields = config_fields(OPTIONS, settings)
        if fields["tls"] is None:
            fields["tls"] = fields["tls_ca"] is not None
        if fields["send_segments"] is None:  # inline segments for a daemon on another host
            fields["send_segments"] = fields["wire"] is WireMode.EXT and not all(
                is_loopback(host) for host, _ in fields["uploaders"])
        return cls(
            input=input,
            segment_seconds=parse_segment_seconds(segment_duration),
            output_dir=Path(os.path.abspath(output_dir)),
            output_prefix=output_prefix,
            index_name=index_name,
            http_prefix=http_prefix,
            bucket=bucket,
            key_prefix=key_prefix,
            directory_text=message_directory(output_dir),
            **fields,
        )
