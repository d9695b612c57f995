"""Settings shared by both commands: addresses, value types, the TOML table, the shared secret.
Pure: callers read files."""

from __future__ import annotations

import ipaddress
import re
import stat
import tomllib
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

_T = TypeVar("_T")


class ConfigError(Exception):
    """Local misconfiguration (an option, a config file): the operator's to fix, not a peer's."""


# hls-uploadd's port, where hls-segment finds it unless told otherwise.
DEFAULT_PORT = 10234

# The daemon's address by default: this host only.
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


# A host name: dot-separated labels of letters, digits and inner hyphens, 63 at most each (RFC 1123 2.1).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT`` alone, ``HOST`` or ``[IPV6]`` alone
    -> (host, port): no host is 127.0.0.1, no port DEFAULT_PORT. HOST is an IPv4 address, an IPv6
    address (in brackets when a port follows) or a host name (RFC 1123 labels, at most 253
    characters, the last not all digits: RFC 3696 2, so ``127.1`` or ``0:PORT`` is refused, not read as
    127.0.0.1 or 0.0.0.0). Raises ConfigError, one line naming what is wrong, for anything else: a colon
    with no port after it, a port that is not a number or outside 0..65535, a host that is none of
    those (``a:1,b:2``: several addresses where one is taken)."""
    port_text: str | None = None
    if _digits(text):  # a port alone, never a host (digits would be taken for an IPv4 address)
        host, port_text = "", text
    elif text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or rest[:1] not in ("", ":") or _ip_version(host) != 6:
            raise ConfigError(f"address {text!r} is not [IPV6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a host alone, or an IPv6 address alone
        if ":" in host.partition("%")[2]:  # fe80::1%eth0:8080 would be scope "eth0:8080", port 10234
            raise ConfigError(f"address {text!r}: an IPv6 address with a port goes in brackets: [IPV6%SCOPE]:PORT")
    if port_text == "":
        raise ConfigError(f"address {text!r}: no port after the colon")
    if host and _ip_version(host) is None and (len(host) > 253 or not _HOST_NAME.fullmatch(host)):
        several = " (one address is taken here)" if "," in text or " " in text.strip() else ""
        raise ConfigError(f"address {text!r}: {host!r} is neither an IP address nor a host name{several}")
    if host and _ip_version(host) is None and _digits(host.rstrip(".").rpartition(".")[2]):
        _refuse_numeric_name(text, host)
    if not port_text:
        return host or "127.0.0.1", DEFAULT_PORT
    if not _digits(port_text):
        raise ConfigError(f"address {text!r}: port {port_text!r} is not a number")
    if len(port_text.lstrip("0")) > 5 or int(port_text) > 65535:
        raise ConfigError(f"address {text!r}: port {port_text} is outside 0..65535")
    return host or "127.0.0.1", int(port_text)


def _refuse_numeric_name(text: str, host: str) -> None:
    """A name whose last label is all digits, which no host name has (RFC 3696 section 2): one of
    digits and dots alone is a mistyped IPv4 address, which the resolver may read as another
    (inet_aton: ``127.1`` is 127.0.0.1, ``0`` is 0.0.0.0, ``0177.0.0.1`` octal 127.0.0.1)."""
    if all(_digits(label) for label in host.split(".") if label):
        raise ConfigError(
            f"address {text!r}: {host!r} is no IPv4 address (a resolver may read it as another one, 127.1 as"
            " 127.0.0.1): write the IPv4 address in full dotted-quad form, four numbers 0..255 without leading"
            " zeros (127.0.0.1)")
    raise ConfigError(f"address {text!r}: {host!r} is neither an IP address nor a host name"
                      " (a host name's last label is never all digits, RFC 3696 2)")


def _digits(text: str) -> bool:
    """ASCII digits only (str.isdigit also takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def option_address(flag: str, text: str) -> tuple[str, int]:
    """``parse_address`` for option ``flag``, whose name its ConfigError then begins with."""
    try:
        return parse_address(text)
    except ConfigError as error:
        raise ConfigError(f"{flag}: {error}") from None


def _ip_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, None for anything else."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def metrics_address(flag: str, text: str | None) -> tuple[str, int] | None:
    """``--metrics-listen``: ``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1); None or ""
    when not given (no endpoint). Raises ConfigError for anything else, an address without a
    port too (``parse_address`` would give it DEFAULT_PORT, the protocol's)."""
    if not text:
        return None
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    host, colon, port = text.rpartition(":")
    if not colon or not port or "]" in port or (":" in host and not host.startswith("[")):
        raise ConfigError(f"{flag} {text!r} is not HOST:PORT or PORT")
    return option_address(flag, text)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; names are not resolved."""
    if host.lower() == "localhost":  # names are case-blind (RFC 4343)
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_toml(text: str, *, source: str, section: str) -> dict[str, Any]:
    """The table ``[section]`` of a TOML document (or its top level when there is no such table)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: {error}") from None
    table = document.get(section, document)
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}


def option_name(setting: str) -> str:
    """The command-line option of a setting: ``max_inflight`` -> ``--max-inflight``."""
    return "--" + setting.replace("_", "-")


def as_text(setting: str, value: object) -> str:
    """A text setting: any value as its text (a path, a TOML number)."""
    return str(value)


def as_list(setting: str, value: object) -> list[str]:
    """A repeatable setting: a list of strings or paths; one string is a list of one."""
    items = [value] if isinstance(value, (str, PurePath)) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, (str, PurePath)) for item in items):
        raise ConfigError(f"{option_name(setting)} must be a list of strings")
    return [str(item) for item in items]


def as_int(setting: str, value: object) -> int:
    """An integer setting: an int (options, TOML) or its digits (environment); not a bool or 2.5."""
    return _convert(setting, value, int, (int, str), "an integer")


def as_seconds(setting: str, value: object) -> float:
    """A duration setting in seconds: a number or its text; not a bool."""
    return _convert(setting, value, float, (int, float, str), "a number of seconds")


def as_bool(setting: str, value: object) -> bool:
    """An on/off setting: true or false (options and the environment give bools; TOML must too)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{option_name(setting)} must be true or false, not {value!r}")
    return value


def _convert(setting: str, value: object, kind: Callable[[Any], _T], accepted: tuple[type, ...], what: str) -> _T:
    try:
        if isinstance(value, accepted) and not isinstance(value, bool):
            return kind(value)
    except ValueError:
        pass
    raise ConfigError(f"{option_name(setting)} must be {what}, not {value!r}")


# Shortest shared secret accepted: 16 bytes (128 bits) if random; shorter ones are guessable
# offline from one captured message and its tag.
MIN_SECRET_BYTES = 16

# Largest secret file read: a secret is one line; more is a wrong path (/dev/zero, a video file),
# of which no more than this many bytes (plus one, to tell) are ever read.
MAX_SECRET_FILE_BYTES = 4096


def parse_secret(data: bytes, *, source: str) -> bytes:
    """A shared secret from a secret file's bytes (at most MAX_SECRET_FILE_BYTES): white space
    around it is not part of it. Raises ConfigError for a secret too short or a file too large."""
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(
            f"secret file {source} holds more than {MAX_SECRET_FILE_BYTES} bytes: a secret is one line"
            " (is it the right file?)"
        )
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret file {source} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret


def secret_file_warning(source: str, mode: int) -> str | None:
    """The warning for a regular secret file whose ``st_mode`` lets its group or others read it, else None."""
    if not stat.S_ISREG(mode) or mode & 0o044 == 0:
        return None
    return (f"secret file {source} is readable by its group or others (mode {mode & 0o777:04o}):"
            f" chmod 600 {source}")


def secret_from_file(path: object, read: Callable[[str], bytes]) -> bytes | None:
    """The shared secret of ``--secret-file PATH``, None when not given; ``read`` (the caller's)
    returns the file's first MAX_SECRET_FILE_BYTES + 1 bytes or raises OSError. Read once, at startup."""
    if not path:
        return None
    try:
        data = read(str(path))
    except OSError as error:
        raise ConfigError(f"cannot read --secret-file {path}: {error.strerror or error}") from None
    return parse_secret(data, source=str(path))
