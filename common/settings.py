"""Settings shared by both commands: addresses, option precedence, value types, the shared
secret. Pure: callers read files."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")


class ConfigError(Exception):
    """Local misconfiguration (an option, a config file): the operator's to fix, not a peer's."""


def parse_address(text: str, *, default_port: int = 10234) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST`` or ``:PORT`` -> (host, port)."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigError(f"address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"address {text!r}: port {port} is outside 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; names are not resolved."""
    if host == "localhost":
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


def merge_settings(
    given: Mapping[str, Any], from_file: Mapping[str, Any], defaults: Mapping[str, Any], *, source: str
) -> dict[str, Any]:
    """Options given on the command line or in the environment win, then the file, then defaults.

    ``given`` holds None for an option that was not given. A key in the file that is no option is
    an error, so a typo in a config file does not pass silently.
    """
    unknown = sorted(set(from_file) - set(defaults))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s): {', '.join(unknown)}")
    merged = dict(defaults)
    merged.update(from_file)
    merged.update({key: value for key, value in given.items() if value is not None})
    return merged


def option_name(setting: str) -> str:
    """The command-line option of a setting: ``max_inflight`` -> ``--max-inflight``."""
    return "--" + setting.replace("_", "-")


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


def parse_secret(data: bytes, *, source: str) -> bytes:
    """A shared secret from a secret file's bytes: white space around it is not part of it."""
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret file {source} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret


def secret_from_file(path: object, read: Callable[[str], bytes]) -> bytes | None:
    """The shared secret of ``--secret-file PATH``, None when not given; ``read`` (the caller's)
    returns the file's bytes or raises OSError. Read once, at startup."""
    if not path:
        return None
    try:
        data = read(str(path))
    except OSError as error:
        raise ConfigError(f"cannot read --secret-file {path}: {error.strerror or error}") from None
    return parse_secret(data, source=str(path))
