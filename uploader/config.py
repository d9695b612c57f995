"""The daemon's one validated configuration, built once from options, environment and TOML."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protocol.limits import DEFAULT_MAX_PAYLOAD_BYTES
from common.settings import (
    ConfigError,
    as_bool,
    as_int,
    as_seconds,
    is_loopback,
    option_name,
    parse_address,
    secret_from_file,
)

SECTION = "uploadd"
ENV_PREFIX = "HLS_UPLOADD_"

# Cap on --max-inflight: each in-flight PUT holds a thread and a pooled connection.
MAX_INFLIGHT_LIMIT = 256

# Longest window: a live playlist of more than 1000 segments is a configuration mistake.
MAX_WINDOW = 1000

# Largest --max-payload-size: 1 GiB; a segment beyond it is a misconfigured encoder.
MAX_PAYLOAD_SIZE_LIMIT = 1024 * 1024 * 1024

# Default --max-payload-inflight: 1 GiB of payloads being received at once, across all
# connections: sixteen payloads at the 64 MiB cap, hundreds of real few-MB segments. Without it,
# 512 connections x 64 MiB of temp files could fill the spool's disk. Never below the largest
# payload, or that payload could not be received at all.
DEFAULT_MAX_PAYLOAD_INFLIGHT = 1024 * 1024 * 1024

_MASTER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,249}\.m3u8")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)


class PlaylistType(enum.StrEnum):
    LIVE = "live"  # sliding window, no EXT-X-PLAYLIST-TYPE
    EVENT = "event"  # every segment kept, EXT-X-PLAYLIST-TYPE:EVENT
    VOD = "vod"  # every segment kept, published once the stream ends


def default_spool_dir() -> Path:
    """systemd's StateDirectory when run as a service, else the XDG state directory."""
    if state_directory := os.environ.get("STATE_DIRECTORY"):
        return Path(state_directory.split(":")[0])
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state_home) / "hls-uploadd"


# Every setting with its default. Keys are the option names with "-" as "_", the TOML keys, and
# (upper-cased, after ENV_PREFIX) the environment variable names.
DEFAULTS: Mapping[str, Any] = {
    "listen": "127.0.0.1:10234",
    "spool_dir": None,  # None: default_spool_dir()
    "allow_dir": [],
    "bucket": [],
    "window": 5,
    "playlist_type": "live",
    "store": "s3",
    "endpoint_url": None,
    "region": None,
    "acl": None,
    # About half of a typical 2-4 s segment, so a CDN never serves a playlist a whole segment old.
    "cache_control_playlist": "max-age=1",
    # A segment's bytes never change under its name.
    "cache_control_segment": "max-age=31536000, immutable",
    "max_inflight": 8,
    "retry_max_delay": 5.0,
    "drain_timeout": 10.0,
    "log_level": "INFO",
    "port_file": None,
    "player_page": False,
    "secret_file": None,  # None: peers are not authenticated (loopback listeners only)
    "insecure_no_auth": False,
    "max_payload_size": DEFAULT_MAX_PAYLOAD_BYTES,
    "max_payload_inflight": DEFAULT_MAX_PAYLOAD_INFLIGHT,
    "master_name": "master.m3u8",  # "" : no master playlists
    "idle_timeout": 300.0,  # uploader/server.py IDLE_TIMEOUT_S
}


@dataclass(frozen=True, slots=True)
class UploaderConfig:
    listen_host: str
    listen_port: int
    spool_dir: Path
    allow_dirs: tuple[Path, ...]  # resolved (realpath) at startup
    buckets: frozenset[str]  # empty: every bucket is allowed
    window: int
    playlist_type: PlaylistType
    store: str  # "s3" or "file:///PATH"
    endpoint_url: str | None
    region: str | None
    acl: str | None
    cache_control_playlist: str
    cache_control_segment: str
    max_inflight: int
    retry_max_delay_s: float
    drain_timeout_s: float
    log_level: str
    port_file: Path | None
    player_page: bool  # upload index.html and hls.js beside each stream's playlist
    secret: bytes | None = field(default=None, repr=False)  # HMAC key; never printed
    insecure_no_auth: bool = False  # a non-loopback listener without a secret, on purpose
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES  # 0: inline payloads refused
    max_payload_inflight_bytes: int = DEFAULT_MAX_PAYLOAD_INFLIGHT  # payloads being received, all connections
    master_name: str = "master.m3u8"  # "" : none
    idle_timeout_s: float = 300.0  # a connection without a byte for this long is closed

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"--window {self.window} is outside 1..{MAX_WINDOW}")
        if not 1 <= self.max_inflight <= MAX_INFLIGHT_LIMIT:
            raise ConfigError(f"--max-inflight {self.max_inflight} is outside 1..{MAX_INFLIGHT_LIMIT}")
        if not 0.1 <= self.retry_max_delay_s <= 3600:
            raise ConfigError(f"--retry-max-delay {self.retry_max_delay_s} is outside 0.1..3600 seconds")
        if not 0 <= self.drain_timeout_s <= 3600:
            raise ConfigError(f"--drain-timeout {self.drain_timeout_s} is outside 0..3600 seconds")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"--log-level {self.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        for name in self.buckets:
            if not _BUCKET.fullmatch(name):
                raise ConfigError(f"--bucket {name!r} is not a valid S3 bucket name")
        if self.acl is not None and self.acl not in _CANNED_ACLS:
            raise ConfigError(f"--acl {self.acl!r} is not one of {', '.join(_CANNED_ACLS)}")
        for option, value in (
            ("--cache-control-playlist", self.cache_control_playlist),
            ("--cache-control-segment", self.cache_control_segment),
        ):
            if not value.isascii() or not value.isprintable():
                raise ConfigError(f"{option} must be printable ASCII")
        _ = self.store_root  # raises ConfigError for a bad --store
        if not 0 <= self.max_payload_bytes <= MAX_PAYLOAD_SIZE_LIMIT:
            raise ConfigError(f"--max-payload-size {self.max_payload_bytes} is outside 0..{MAX_PAYLOAD_SIZE_LIMIT} bytes")
        if self.max_payload_inflight_bytes < self.max_payload_bytes:
            raise ConfigError(
                f"--max-payload-inflight {self.max_payload_inflight_bytes} is below --max-payload-size"
                f" {self.max_payload_bytes}: a payload of the largest size could never be received"
            )
        if not 0.1 <= self.idle_timeout_s <= 86400:
            raise ConfigError(f"--idle-timeout {self.idle_timeout_s} is outside 0.1..86400 seconds")
        if self.master_name and not _MASTER_NAME.fullmatch(self.master_name):
            raise ConfigError(f"--master-name {self.master_name!r} is not a plain file name ending in .m3u8")
        if not is_loopback(self.listen_host) and self.secret is None and not self.insecure_no_auth:
            raise ConfigError(
                f"--listen {self.listen_host} is not a loopback address: give --secret-file PATH so peers"
                " are authenticated (or --insecure-no-auth to accept anyone who can reach the port)"
            )

    @property
    def authenticated(self) -> bool:
        return self.secret is not None

    @property
    def store_root(self) -> Path | None:
        """The directory of a ``file://`` store, None for S3."""
        if self.store == "s3":
            return None
        parts = urlsplit(self.store)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"--store {self.store!r} is neither 's3' nor 'file:///ABSOLUTE/PATH'")
        return Path(parts.path)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> UploaderConfig:
        """Build from merged settings (keys of DEFAULTS); raises ConfigError."""
        try:
            host, port = parse_address(str(settings["listen"]))
            spool_dir = settings["spool_dir"]
            return cls(
                listen_host=host,
                listen_port=port,
                spool_dir=Path(spool_dir).expanduser().absolute() if spool_dir else default_spool_dir(),
                allow_dirs=_resolve_dirs(_as_list("allow_dir", settings["allow_dir"])),
                buckets=frozenset(_as_list("bucket", settings["bucket"])),
                window=as_int("window", settings["window"]),
                playlist_type=_as_playlist_type(settings["playlist_type"]),
                store=str(settings["store"]),
                endpoint_url=_optional_text(settings["endpoint_url"]),
                region=_optional_text(settings["region"]),
                acl=_optional_text(settings["acl"]),
                cache_control_playlist=str(settings["cache_control_playlist"]),
                cache_control_segment=str(settings["cache_control_segment"]),
                max_inflight=as_int("max_inflight", settings["max_inflight"]),
                retry_max_delay_s=as_seconds("retry_max_delay", settings["retry_max_delay"]),
                drain_timeout_s=as_seconds("drain_timeout", settings["drain_timeout"]),
                log_level=str(settings["log_level"]).upper(),
                port_file=Path(settings["port_file"]).absolute() if settings["port_file"] else None,
                player_page=as_bool("player_page", settings["player_page"]),
                secret=secret_from_file(settings["secret_file"], _read_file),
                insecure_no_auth=as_bool("insecure_no_auth", settings["insecure_no_auth"]),
                max_payload_bytes=as_int("max_payload_size", settings["max_payload_size"]),
                max_payload_inflight_bytes=as_int("max_payload_inflight", settings["max_payload_inflight"]),
                master_name=str(settings["master_name"] or ""),
                idle_timeout_s=as_seconds("idle_timeout", settings["idle_timeout"]),
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None


def _read_file(path: str) -> bytes:
    """The I/O that common.settings.secret_from_file leaves to its caller."""
    return Path(path).expanduser().read_bytes()


def _as_list(name: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{option_name(name)} must be a list of strings")
    return list(value)


def _as_playlist_type(value: object) -> PlaylistType:
    try:
        return PlaylistType(str(value).lower())
    except ValueError:
        choices = ", ".join(kind.value for kind in PlaylistType)
        raise ConfigError(f"--playlist-type {value!r} is not one of {choices}") from None


def _optional_text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _resolve_dirs(paths: list[str]) -> tuple[Path, ...]:
    """Each --allow-dir, symlinks resolved once now; it must be an existing directory."""
    resolved: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"--allow-dir {text!r} must be an absolute path")
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            raise ConfigError(f"--allow-dir {text!r} is not an existing directory")
        if real not in resolved:
            resolved.append(real)
    return tuple(resolved)
