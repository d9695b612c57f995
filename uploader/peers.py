"""Who may write what: the daemon's peers, each with a secret and a scope, and the unsigned scope.

A peer is a key id with a secret (messages signed with it carry ``key_id=``, protocol/auth.py) and
the buckets and key prefixes it may write, and whether it may send inline payloads. The peers come
from ``--peers-file`` (TOML, docs/deploy.md "Peers") and ``--secret-file`` (the peer ``default``,
scoped by ``--bucket`` and ``--key-prefix``). Unsigned messages (loopback, or mutual TLS) get the
scope ``unsigned``: the same ``--bucket`` and ``--key-prefix``, and inline payloads only with
``--allow-unsigned-inline``, since a payload skips ``--allow-dir``, the confinement that a local
user's file permissions give to paths.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.options import read_secret
from common.settings import ConfigError
from protocol import DEFAULT_KEY_ID, IndexMessage
from protocol.message import is_bucket_name, is_key_id, is_key_prefix

# The scope of a message without a tag, named so in refusals and logs.
UNSIGNED = "unsigned"

_PEER_KEYS = {"secret-file", "buckets", "key-prefixes", "inline-payloads", "takeover"}


def prefix_allows(allowed: str, key_prefix: str) -> bool:
    """True when ``allowed`` covers ``key_prefix``, whole ``/``-separated segments at a time:
    ``cams`` covers ``cams`` and ``cams/east``, not ``camsx``; ``""`` covers everything."""
    return not allowed or key_prefix == allowed or key_prefix.startswith(allowed + "/")


@dataclass(frozen=True, slots=True)
class Scope:
    """What one peer may write. ``buckets`` None: any bucket (``--any-bucket``); ``key_prefixes``
    empty: any prefix in those buckets. ``peers_file``: where the scope is set (None: options)."""

    name: str  # the key id, or UNSIGNED
    buckets: frozenset[str] | None
    key_prefixes: tuple[str, ...]
    inline: bool
    peers_file: Path | None = None
    secret: bytes | None = field(default=None, repr=False)  # None for UNSIGNED
    takeover: bool = False  # may take a live stream from another peer's writer (takeover=1)

    def refusal(self, message: IndexMessage) -> str | None:
        """Why ``message`` is outside this scope (one line naming what and the fix), else None."""
        who = "unsigned messages" if self.name == UNSIGNED else f"peer {self.name!r}"
        if self.buckets is not None and message.bucket not in self.buckets:
            return f"bucket {message.bucket} is not allowed for {who} ({self._fix('--bucket', 'buckets', message.bucket)})"
        if self.key_prefixes and not any(prefix_allows(p, message.key_prefix) for p in self.key_prefixes):
            return (f"key prefix {message.key_prefix!r} is not allowed for {who}"
                    f" ({self._fix('--key-prefix', 'key-prefixes', message.key_prefix)})")
        if message.size is not None and not self.inline:
            if self.peers_file is None:
                return (f"inline payloads are not allowed for {who}: name the segment's directory (--allow-dir),"
                        " sign (--secret-file), or start hls-uploadd with --allow-unsigned-inline")
            return (f"inline payloads are not allowed for {who} (set inline-payloads = true in"
                    f" [peers.{self.name}] of {self.peers_file})")
        return None

    def _fix(self, flag: str, setting: str, value: str) -> str:
        """Where to allow ``value``: hls-uploadd's ``flag``, or the peer's ``setting`` in its file."""
        if self.peers_file is None:
            return f"add {flag} {value or repr(value)}"
        return f"add {value!r} to {setting} of [peers.{self.name}] in {self.peers_file}"


@dataclass(frozen=True, slots=True)
class Peers:
    """The signed peers by key id, and the scope of unsigned messages."""

    signed: Mapping[str, Scope]
    unsigned: Scope

    @property
    def secrets(self) -> dict[str, bytes]:
        """Key id -> secret, for protocol.ChallengeSession."""
        return {name: scope.secret for name, scope in self.signed.items() if scope.secret is not None}

    @property
    def buckets(self) -> frozenset[str]:
        """Every bucket some scope names (not "any"): the ones checked at start."""
        scopes = [*self.signed.values(), self.unsigned]
        return frozenset().union(*(scope.buckets for scope in scopes if scope.buckets is not None))

    @property
    def require_signature(self) -> bool:
        """With any secret, every message must be signed."""
        return bool(self.signed)

    def scope_of(self, message: IndexMessage) -> Scope:
        """The scope ``message`` is judged by: its signer's (once authenticated), else unsigned; on
        a daemon that checks no signature, unsigned whatever tag and key id the message carries."""
        if message.tag is None or not self.require_signature:
            return self.unsigned
        return self.signed[message.key_id or DEFAULT_KEY_ID]


def read_peers_file(path: Path) -> dict[str, Scope]:
    """The peers of a TOML peers file, by key id. Each is a table ``[peers.ID]`` with
    ``secret-file`` (a path, relative to the file's directory; read like --secret-file: at least
    16 bytes, a warning when its group or others may read it), ``buckets`` (a non-empty list),
    ``key-prefixes`` (optional non-empty list; absent: the whole buckets), ``inline-payloads`` (optional,
    default true) and ``takeover`` (optional, default false: may take a live stream from another
    peer's writer with takeover=1). Two peers with the same secret are refused. Raises ConfigError naming the file, the peer and what is wrong."""
    where = f"--peers-file {path}"
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read {where}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    unknown = set(document) - {"peers"}
    if unknown:
        raise ConfigError(f"{where}: unknown table or key {sorted(unknown)[0]!r} (only [peers.ID] tables)")
    tables = document.get("peers", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where} names no peer: add a [peers.ID] table per peer")
    peers: dict[str, Scope] = {}
    for name, table in tables.items():
        peers[name] = _peer(path, name, table)
        for other in peers.values():
            if other.name != name and other.secret == peers[name].secret:
                raise ConfigError(f"{where}: peers {other.name!r} and {name!r} have the same secret, so either"
                                  " could sign as the other: give each peer its own secret-file")
    return peers


def _peer(file: Path, name: str, table: object) -> Scope:
    where = f"--peers-file {file}: peer {name!r}"
    if not is_key_id(name):
        raise ConfigError(f"{where}: an id is 1-64 of [A-Za-z0-9._-], not starting with . or -")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    if unknown := set(table) - _PEER_KEYS:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_PEER_KEYS))})")
    secret_path = table.get("secret-file")
    if not isinstance(secret_path, str) or not secret_path:
        raise ConfigError(f"{where}: secret-file (a path) is missing")
    buckets = table.get("buckets")
    if not isinstance(buckets, list) or not buckets or not all(isinstance(b, str) for b in buckets):
        raise ConfigError(f"{where}: buckets must be a non-empty list of bucket names")
    for bucket in buckets:
        if not is_bucket_name(bucket):
            raise ConfigError(f"{where}: {bucket!r} is not a valid S3 bucket name")
    prefixes = table.get("key-prefixes", [])
    if "key-prefixes" in table and (not isinstance(prefixes, list) or not prefixes or "" in prefixes):
        raise ConfigError(f"{where}: key-prefixes must name at least one non-empty prefix (leave key-prefixes"
                          " out to allow the whole buckets)")
    if not all(isinstance(p, str) and is_key_prefix(p) for p in prefixes):
        raise ConfigError(f"{where}: key-prefixes must be a list of key prefixes ([A-Za-z0-9._~-/], no leading /)")
    inline = table.get("inline-payloads", True)
    takeover = table.get("takeover", False)
    for key, value in (("inline-payloads", inline), ("takeover", takeover)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
    try:
        secret = read_secret("secret-file", str(file.parent / Path(secret_path).expanduser()))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    assert secret is not None
    return Scope(name, frozenset(buckets), tuple(prefixes), inline, file, secret, takeover)
