"""Settings shared by both commands: addresses, option precedence, the shared secret. Pure:
callers read files."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from typing import Any


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


# Shortest shared secret accepted: 16 bytes (128 bits) if random; shorter ones are guessable
# offline from one captured message and its tag.
MIN_SECRET_BYTES = 16


def parse_secret(data: bytes, *, source: str) -> bytes:
    """A shared secret from a secret file's bytes: white space around it is not part of it."""
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret file {source} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret

