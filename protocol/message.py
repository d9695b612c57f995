"""The index message: the original's ten fields, then optional ``key=value`` extensions.

Version 1 is byte for byte what the 2009 C segmenter sends::

    stream-128k.m3u8, /tmp/, 10, sample_128k, http://cdn.example.net/stream0001/, 1, 3, 0, ionlivestream, stream0001

Extensions follow the tenth field as ``, key=value`` with the value percent-encoded (a codecs
list contains commas). Unknown but well-formed keys are kept in ``extras`` so that a newer
segmenter can talk to an older daemon; malformed or repeated keys are refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

from .errors import ProtocolError
from .limits import (
    MAX_KEY_PREFIX_CHARS,
    MAX_MESSAGE_COUNTER,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_SEGMENT_DURATION_S,
    MAX_SEGMENT_NUMBER,
)

V1_FIELD_NAMES = (
    "index",
    "output_directory",
    "segment_duration",
    "output_prefix",
    "http_prefix",
    "first_segment",
    "last_segment",
    "end",
    "bucket",
    "key_prefix",
)

# The original daemon splits with Ruby's %r{,\s*}; control characters are refused afterwards.
_FIELD_SEPARATOR = re.compile(r",[ \t\r\n\f\v]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"[0-9]{1,19}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_FILE_STEM = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_RESOLUTION = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")
_CODECS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(,[A-Za-z0-9][A-Za-z0-9.+-]*)*")
_EXTENSION_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TAG = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_WRITER = re.compile(r"[0-9a-f]{16,32}")
# Characters left as they are in an extension value; everything else is %XX.
_VALUE_SAFE = "./:+-_~"


def _show(value: str) -> str:
    """A peer's value, quoted and cut short, safe to put in a one-line reason."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def writer_label(writer: str | None) -> str:
    """How refusals and logs, on both sides, name a writer (``writer=``, docs/protocol.md "Stream
    ownership"): ``writer #`` and the first 8 hex digits of the SHA-256 of its id, which tells
    writers apart without giving away the id a sender would claim."""
    if writer is None:
        return "no writer (a v1 message)"
    return "writer #" + hashlib.sha256(writer.encode("ascii")).hexdigest()[:8]


def segment_file_name(output_prefix: str, number: int) -> str:
    """``OUTPUT_PREFIX-%05u.ts``: five digits at least, wider past 99999."""
    return f"{output_prefix}-{number:05d}.ts"


def segment_number(name: str, output_prefix: str) -> int | None:
    """The number in ``name`` when ``segment_file_name(output_prefix, number)`` makes it, else None."""
    digits = name.removeprefix(f"{output_prefix}-").removesuffix(".ts")
    if len(digits) + len(output_prefix) + 4 != len(name) or len(digits) < 5 or not digits.isdigit() \
            or not digits.isascii() or segment_file_name(output_prefix, int(digits)) != name:
        return None
    return int(digits)


@dataclass(frozen=True, slots=True)
class IndexMessage:
    """One index message. Validates itself; any violation raises ProtocolError."""

    index: str
    output_directory: str
    segment_duration: int
    output_prefix: str
    http_prefix: str
    first_segment: int
    last_segment: int
    end: bool
    bucket: str
    key_prefix: str
    # Extensions (absent in version 1 messages).
    duration: float | None = None  # real duration of last_segment, seconds
    discontinuity: bool = False  # last_segment does not continue the previous one
    start: float | None = None  # presentation time of last_segment's first packet, seconds
    bandwidth: int | None = None  # declared rendition bandwidth, bits per second
    resolution: str | None = None  # WIDTHxHEIGHT
    codecs: str | None = None  # RFC 6381 list, e.g. "avc1.64001f,mp4a.40.2"
    frame_rate: float | None = None
    size: int | None = None  # bytes of segment payload that follow the line
    sent_at_ms: int | None = None  # sender's clock, Unix ms: bounds replays of signed messages
    independent: bool = False  # last_segment starts with a keyframe: decodable on its own
    payload_sha256: str | None = None  # hex SHA-256 of the inline payload, so the tag covers its bytes
    key_id: str | None = None  # the peer whose secret signs the message; None: the peer "default"
    counter: int | None = None  # n=: a signed sender's message number on its connection, 1, 2, 3...
    writer: str | None = None  # 16..32 lowercase hex: the segmenter (one OUTPUT_DIR) that sends it
    takeover: bool = False  # the writer takes the stream over from a live one (hls-segment --take-over)
    confirm: bool = False  # the sender keeps the message until published: replies carry published=
    probe: bool = False  # a start-up message that only asks where the stream is: claims nothing
    extras: tuple[tuple[str, str], ...] = ()  # unknown extensions, kept in order
    tag: str | None = None  # HMAC-SHA256 hex over the message without this field

    def __post_init__(self) -> None:
        for name in ("index", "output_directory", "output_prefix", "http_prefix", "bucket", "key_prefix"):
            _check_v1_text(name, getattr(self, name))
        _check_file_name("index", self.index)
        if not self.index.endswith(".m3u8"):
            raise ProtocolError(f"index {_show(self.index)} must end in .m3u8")
        _check_file_name("output_prefix", self.output_prefix)
        if not self.output_directory:
            raise ProtocolError("output_directory is empty")
        if len(self.output_directory) > MAX_PATH_CHARS:
            raise ProtocolError(f"output_directory is longer than {MAX_PATH_CHARS} characters")
        _check_range("segment_duration", self.segment_duration, 1, MAX_SEGMENT_DURATION_S)
        _check_range("first_segment", self.first_segment, 0, MAX_SEGMENT_NUMBER)
        _check_range("last_segment", self.last_segment, 0, MAX_SEGMENT_NUMBER)
        # last_segment 0 is the original's start-up message, sent with first_segment 1.
        if self.last_segment and self.first_segment > self.last_segment:
            raise ProtocolError(
                f"first_segment {self.first_segment} is after last_segment {self.last_segment}"
            )
        if not isinstance(self.end, bool):
            raise ProtocolError("end must be 0 or 1")
        _check_http_prefix(self.http_prefix)
        _check_bucket(self.bucket)
        _check_key_prefix(self.key_prefix)
        self._check_extensions()

    def _check_extensions(self) -> None:
        if self.duration is not None:
            _check_real("duration", self.duration, 0.0, float(MAX_SEGMENT_DURATION_S), open_low=True)
        if not isinstance(self.discontinuity, bool):
            raise ProtocolError("discontinuity must be 0 or 1")
        if self.start is not None:
            _check_real("start", self.start, 0.0, 999_999_999_999.0)  # 12 integer digits on the wire
        if self.bandwidth is not None:
            _check_range("bandwidth", self.bandwidth, 1, 10**12)
        if self.resolution is not None and not _RESOLUTION.fullmatch(self.resolution):
            raise ProtocolError(f"resolution {_show(self.resolution)} is not WIDTHxHEIGHT")
        if self.codecs is not None and not (len(self.codecs) <= 200 and _CODECS.fullmatch(self.codecs)):
            raise ProtocolError(f"codecs {_show(self.codecs)} is not an RFC 6381 codecs list")
        if self.frame_rate is not None:
            _check_real("frame_rate", self.frame_rate, 0.0, 1000.0, open_low=True)
        if self.size is not None:
            _check_range("size", self.size, 0, 10**12)
        if self.sent_at_ms is not None:
            _check_range("ts", self.sent_at_ms, 0, 10**15)
        if not isinstance(self.independent, bool):
            raise ProtocolError("independent must be 0 or 1")
        if self.payload_sha256 is not None:
            if not _TAG.fullmatch(self.payload_sha256):
                raise ProtocolError("sha256 must be 64 lowercase hex digits")
            if self.size is None:
                raise ProtocolError("sha256 without size: there is no payload to check")
        if self.key_id is not None and not is_key_id(self.key_id):
            raise ProtocolError(f"key_id {_show(self.key_id)} is not 1-64 of [A-Za-z0-9._-]")
        if self.counter is not None:
            _check_range("n", self.counter, 1, MAX_MESSAGE_COUNTER)
        if self.writer is not None and not _WRITER.fullmatch(self.writer):
            raise ProtocolError(f"writer {_show(self.writer)} is not 16 to 32 lowercase hex digits")
        if not isinstance(self.takeover, bool):
            raise ProtocolError("takeover must be 0 or 1")
        if self.takeover and self.writer is None:
            raise ProtocolError("takeover without writer: there is no writer to take the stream over")
        for name in ("confirm", "probe"):
            if not isinstance(getattr(self, name), bool):
                raise ProtocolError(f"{name} must be 0 or 1")
        if self.probe and (self.last_segment != 0 or self.takeover):
            raise ProtocolError("probe asks where the stream is: only on a start-up message (LAST_SEGMENT 0),"
                                " without takeover")
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise ProtocolError("tag must be 64 lowercase hex digits")
        seen = set(_EXTENSIONS_BY_KEY)
        for key, value in self.extras:
            if not _EXTENSION_KEY.fullmatch(key):
                raise ProtocolError(f"extension key {_show(key)} is not [a-z][a-z0-9_-]*")
            if key in seen:
                raise ProtocolError(f"extension {key!r} appears twice")
            if not isinstance(value, str) or _CONTROL.search(value):
                raise ProtocolError(f"extension {key!r} has a control character")
            seen.add(key)

    # Names and keys derived from the fields; the daemon and the segmenter share them.

    @property
    def stream_id(self) -> tuple[str, str, str]:
        """A stream is (bucket, key_prefix, index)."""
        return (self.bucket, self.key_prefix, self.index)

    @property
    def segment_name(self) -> str:
        return segment_file_name(self.output_prefix, self.last_segment)

    @property
    def segment_key(self) -> str:
        return self.key_for(self.segment_name)

    @property
    def playlist_key(self) -> str:
        return self.key_for(self.index)

    def key_for(self, name: str) -> str:
        return f"{self.key_prefix}/{name}" if self.key_prefix else name

    def unsigned(self) -> IndexMessage:
        return replace(self, tag=None) if self.tag is not None else self


def _check_v1_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be text")
    if _CONTROL.search(value):
        raise ProtocolError(f"{name} contains a control character")
    if "," in value:
        raise ProtocolError(f"{name} contains a comma")
    if value != value.strip():
        raise ProtocolError(f"{name} has leading or trailing white space")


def _check_file_name(name: str, value: str) -> None:
    if not value:
        raise ProtocolError(f"{name} is empty")
    if len(value) > MAX_NAME_CHARS or not _FILE_STEM.fullmatch(value):
        raise ProtocolError(f"{name} {_show(value)} is not a plain file name ([A-Za-z0-9._-])")


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ProtocolError(f"{name} {value} is outside {low}..{high}")


def _check_real(name: str, value: object, low: float, high: float, *, open_low: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ProtocolError(f"{name} must be a finite number")
    if value < low or (open_low and value == low) or value > high:
        raise ProtocolError(f"{name} {value} is outside {'(' if open_low else '['}{low:g}, {high:g}]")
    if not _DECIMAL.fullmatch(_format_decimal(value)):
        # What the wire cannot carry is refused when built, so that every message parses back.
        raise ProtocolError(f"{name} {value} has more digits than a message carries (12 before and 12 after the point)")


def _check_http_prefix(value: str) -> None:
    if not value:
        return  # empty: segment URIs are relative to the playlist
    parts = urlsplit(value) if value.isascii() and value.isprintable() and " " not in value else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProtocolError(f"http_prefix {_show(value)} is not an http(s) URL")


def is_bucket_name(value: str) -> bool:
    """True for a name S3's bucket naming rules allow (3-63 of ``a-z0-9.-``, no IPv4 address,
    no reserved prefix or suffix): the one rule for messages and for hls-uploadd --bucket."""
    return (
        _BUCKET.fullmatch(value) is not None
        and not any(pair in value for pair in ("..", ".-", "-."))
        and _IPV4.fullmatch(value) is None
        and not value.startswith("xn--")
        and not value.endswith("-s3alias")
    )


def is_key_id(value: str) -> bool:
    """True for a peer's key id: 1-64 of ``[A-Za-z0-9._-]``, not starting with ``.`` or ``-``."""
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


def is_key_prefix(value: str) -> bool:
    """True for a KEY_PREFIX a message may carry (the rule of docs/protocol.md's table)."""
    try:
        _check_key_prefix(value)
    except ProtocolError:
        return False
    return True


def _check_bucket(value: str) -> None:
    if not is_bucket_name(value):
        raise ProtocolError(f"bucket {_show(value)} is not a valid S3 bucket name")


def _check_key_prefix(value: str) -> None:
    if not value:
        return  # the bucket's root
    if len(value) > MAX_KEY_PREFIX_CHARS:
        raise ProtocolError(f"key_prefix is longer than {MAX_KEY_PREFIX_CHARS} characters")
    if value.startswith("/"):
        raise ProtocolError(f"key_prefix {_show(value)} must be relative (no leading /)")
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            raise ProtocolError(f"key_prefix {_show(value)} has an empty, . or .. path segment")
        if not _KEY_SEGMENT.fullmatch(segment):
            raise ProtocolError(f"key_prefix {_show(value)} has characters outside [A-Za-z0-9._~-/]")


# Wire codecs for field values.


def _parse_int(name: str, text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ProtocolError(f"{name} {_show(text)} is not a non-negative integer")
    return int(text)


def _parse_flag(name: str, text: str) -> bool:
    if text not in ("0", "1"):
        raise ProtocolError(f"{name} {_show(text)} must be 0 or 1")
    return text == "1"


def _parse_decimal(name: str, text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"{name} {_show(text)} is not a plain decimal number")
    return float(text)


def _parse_hex(name: str, text: str) -> str:
    if not _TAG.fullmatch(text):
        raise ProtocolError(f"{name} {_show(text)} is not 64 lowercase hex digits")
    return text


def _parse_writer(name: str, text: str) -> str:
    if not _WRITER.fullmatch(text):
        raise ProtocolError(f"{name} {_show(text)} is not 16 to 32 lowercase hex digits")
    return text


def _format_decimal(value: float) -> str:
    # The shortest text that reads back as the same float, without an exponent.
    return format(Decimal(repr(float(value))), "f")


@dataclass(frozen=True, slots=True)
class _Extension:
    key: str  # on the wire
    attribute: str  # on IndexMessage
    parse: Callable[[str, str], object]
    format: Callable[[object], str]


def _text(name: str, text: str) -> str:
    return text


_EXTENSIONS = (
    _Extension("duration", "duration", _parse_decimal, _format_decimal),
    _Extension("discontinuity", "discontinuity", _parse_flag, lambda v: "1"),
    _Extension("start", "start", _parse_decimal, _format_decimal),
    _Extension("bandwidth", "bandwidth", _parse_int, str),
    _Extension("resolution", "resolution", _text, str),
    _Extension("codecs", "codecs", _text, str),
    _Extension("frame_rate", "frame_rate", _parse_decimal, _format_decimal),
    _Extension("size", "size", _parse_int, str),
    _Extension("ts", "sent_at_ms", _parse_int, str),
    _Extension("independent", "independent", _parse_flag, lambda v: "1"),
    _Extension("sha256", "payload_sha256", _parse_hex, str),
    _Extension("key_id", "key_id", _text, str),
    _Extension("n", "counter", _parse_int, str),
    _Extension("writer", "writer", _parse_writer, str),
    _Extension("takeover", "takeover", _parse_flag, lambda v: "1"),
    _Extension("confirm", "confirm", _parse_flag, lambda v: "1"),
    _Extension("probe", "probe", _parse_flag, lambda v: "1"),
)
_EXTENSIONS_BY_KEY = {extension.key: extension for extension in _EXTENSIONS} | {"tag": None}
_DEFAULTS = {"discontinuity": False, "independent": False, "takeover": False, "confirm": False, "probe": False}


def encode_message(message: IndexMessage, *, newline: bool = False) -> bytes:
    """The message as bytes: the ten v1 fields joined by ", ", then the extensions.

    A v1-only message is exactly the original client's bytes. ``newline`` ends it with "\\n",
    as a client that keeps the connection open must.
    """
    v1 = (
        message.index,
        message.output_directory,
        str(message.segment_duration),
        message.output_prefix,
        message.http_prefix,
        str(message.first_segment),
        str(message.last_segment),
        "1" if message.end else "0",
        message.bucket,
        message.key_prefix,
    )
    fields = list(v1)
    for extension in _EXTENSIONS:
        value = getattr(message, extension.attribute)
        if value is not None and value != _DEFAULTS.get(extension.attribute):
            fields.append(f"{extension.key}={quote(extension.format(value), safe=_VALUE_SAFE)}")
    fields.extend(f"{key}={quote(value, safe=_VALUE_SAFE)}" for key, value in message.extras)
    if message.tag is not None:
        fields.append(f"tag={message.tag}")
    return (", ".join(fields) + ("\n" if newline else "")).encode("utf-8")


def parse_message(line: bytes) -> IndexMessage:
    """Parse one message line (without its line ending, or with it); raise ProtocolError."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("message is not valid UTF-8") from None
    fields = _FIELD_SEPARATOR.split(text.strip(" \t\r\n"))
    if len(fields) < len(V1_FIELD_NAMES):
        raise ProtocolError(f"expected {len(V1_FIELD_NAMES)} comma-separated fields, got {len(fields)}")
    for number, field_text in enumerate(fields, start=1):
        if _CONTROL.search(field_text):
            raise ProtocolError(f"field {number} contains a control character")
    v1 = dict(zip(V1_FIELD_NAMES, fields))
    values: dict[str, object] = {
        "index": v1["index"],
        "output_directory": v1["output_directory"],
        "segment_duration": _parse_int("segment_duration", v1["segment_duration"]),
        "output_prefix": v1["output_prefix"],
        "http_prefix": v1["http_prefix"],
        "first_segment": _parse_int("first_segment", v1["first_segment"]),
        "last_segment": _parse_int("last_segment", v1["last_segment"]),
        "end": _parse_flag("end", v1["end"]),
        "bucket": v1["bucket"],
        "key_prefix": v1["key_prefix"],
    }
    values.update(_parse_extensions(fields[len(V1_FIELD_NAMES):]))
    return IndexMessage(**values)  # type: ignore[arg-type]


def _parse_extensions(fields: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    extras: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, field_text in enumerate(fields, start=len(V1_FIELD_NAMES) + 1):
        key, equals, raw = field_text.partition("=")
        if not equals or not _EXTENSION_KEY.fullmatch(key):
            raise ProtocolError(f"field {position} {_show(field_text)} is not key=value")
        if key in seen:
            raise ProtocolError(f"extension {key!r} appears twice")
        seen.add(key)
        if "tag" in seen and key != "tag":
            raise ProtocolError("tag must be the last field")
        try:
            value = unquote(raw, errors="strict") if "%" in raw else raw
        except UnicodeDecodeError:
            raise ProtocolError(f"extension {key!r} is not valid UTF-8 once percent-decoded") from None
        if key == "tag":
            values["tag"] = value
        elif key in _EXTENSIONS_BY_KEY:
            extension = _EXTENSIONS_BY_KEY[key]
            assert extension is not None
            values[extension.attribute] = extension.parse(key, value)
        else:
            extras.append((key, value))
    if extras:
        values["extras"] = tuple(extras)
    return values
