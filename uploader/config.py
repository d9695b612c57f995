"""The daemon's one validated configuration, built once from options, environment and TOML."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.options import (
    LOG_FORMAT,
    INTEGER,
    PATH_LIST,
    SECONDS,
    SWITCH,
    TEXT,
    TEXT_LIST,
    Option,
    config_fields,
    metrics_listen,
    optional_path,
    optional_text,
    read_secret,
)
from common.settings import DEFAULT_ADDRESS, ConfigError, is_loopback, option_address
from common.tls import check_pair, server_context
from protocol.limits import DEFAULT_MAX_PAYLOAD_BYTES, IDLE_TIMEOUT_S
from protocol import DEFAULT_KEY_ID
from protocol.message import is_bucket_name, is_key_prefix

from .lease import MAX_TTL_S, MIN_TTL_S
from .peers import UNSIGNED, Peers, Scope, read_peers_file
from .playlist import PlaylistType
from .remote import StoreUrl, parse_store_url
from .stream import MIN_TARGET_DURATIONS_LISTED
from .urls import SIGV4_MAX_TTL_S, UrlMode

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
# The canned ACLs that grant no one but the bucket owner (and the writer) a read: the only ones
# private streams take.
_PRIVATE_ACLS = ("private", "bucket-owner-read", "bucket-owner-full-control")
_CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)


def default_spool_dir() -> Path:
    """systemd's StateDirectory when run as a service, else the XDG state directory."""
    if state_directory := os.environ.get("STATE_DIRECTORY"):
        return Path(state_directory.split(":")[0])
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state_home) / "hls-uploadd"


# The converts of OPTIONS: (flag, the setting's value) -> its config field's, or ConfigError.


def _within(low: float, high: float, unit: str = "") -> Callable[[str, float], float]:
    """Convert for a number that must lie in low..high (``unit`` names it in the message)."""
    suffix = f" {unit}" if unit else ""

    def check(flag: str, value: float) -> float:
        if not low <= value <= high:
            raise ConfigError(f"{flag} {value} is outside {low}..{high}{suffix}")
        return value

    return check


def _lease_ttl(flag: str, value: float) -> float:
    """0 (no leases) or ``lease.MIN_TTL_S``..``MAX_TTL_S`` seconds (uploader/lease.py)."""
    if value != 0 and not MIN_TTL_S <= value <= MAX_TTL_S:
        raise ConfigError(f"{flag} {value} is neither 0 (no leases) nor within {MIN_TTL_S:g}..{MAX_TTL_S:g} seconds")
    return value


def _window(flag: str, value: int) -> int:
    """--window: at least 3, since a live playlist of fewer segments than 3 cannot hold 3 target
    durations of media (RFC 8216 6.2.2) whatever the segments' lengths; at most MAX_WINDOW."""
    if value < MIN_TARGET_DURATIONS_LISTED:
        raise ConfigError(
            f"{flag} {value} is below {MIN_TARGET_DURATIONS_LISTED}: a live playlist must hold at least"
            f" {MIN_TARGET_DURATIONS_LISTED} target durations of media after removing a segment (RFC 8216 6.2.2),"
            f" which fewer than {MIN_TARGET_DURATIONS_LISTED} segments never do"
        )
    return _within(MIN_TARGET_DURATIONS_LISTED, MAX_WINDOW)(flag, value)


def _one_of(flag: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{flag} {value!r} is not one of {', '.join(choices)}")
    return value


def _listen(flag: str, address: str) -> tuple[str, int]:
    return option_address(flag, address)


def spool_directory(given: str | Path | None) -> Path:
    """The spool directory an option gave (expanded, absolute), or the daemon's default one."""
    return Path(given).expanduser().absolute() if given else default_spool_dir()


def _spool_dir(flag: str, path: str | None) -> Path:
    return spool_directory(path)


def _allow_dirs(flag: str, paths: list[str]) -> tuple[Path, ...]:
    """Each --allow-dir, symlinks resolved once now; it must be an existing directory. It is not
    made here: hls-segment writes into it, as its own user, so its owner, group and mode are the
    operator's choice (the error says how)."""
    resolved: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"{flag} {text!r}{' (an empty path)' if not text else ''} must be an absolute path")
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise ConfigError(f"{flag} {text!r} does not exist: create it first, writable by the user hls-segment runs"
                              f" as (e.g. install -d -m 2775 -g GROUP {text}; hls-segment makes OUTPUT_DIR inside it)")
        if not real.is_dir():
            raise ConfigError(f"{flag} {text!r} is not a directory")
        if real not in resolved:
            resolved.append(real)
    return tuple(resolved)


def _buckets(flag: str, names: list[str]) -> frozenset[str]:
    for name in names:
        if not is_bucket_name(name):
            raise ConfigError(f"{flag} {name!r} is not a valid S3 bucket name")
    return frozenset(names)


def _key_prefixes(flag: str, prefixes: list[str]) -> tuple[str, ...]:
    for prefix in prefixes:
        if not prefix or not is_key_prefix(prefix):
            raise ConfigError(f"{flag} {prefix!r} is not a key prefix ([A-Za-z0-9._~-/], no leading or doubled /)")
    return tuple(prefixes)


def _peers_file(flag: str, path: str | None) -> Mapping[str, Scope]:
    return read_peers_file(Path(path).expanduser().absolute()) if path else {}


def _playlist_type(flag: str, value: str) -> PlaylistType:
    return PlaylistType(_one_of(flag, value.lower(), [kind.value for kind in PlaylistType]))


# botocore's Config(s3={"addressing_style": ...}) and Config(request_checksum_calculation=...) values.
ADDRESSING_STYLES = ("auto", "path", "virtual")
CHECKSUM_POLICIES = ("when_supported", "when_required")


def _addressing_style(flag: str, value: str) -> str:
    return _one_of(flag, value.lower(), ADDRESSING_STYLES)


def _checksums(flag: str, value: str | None) -> str | None:
    return None if value is None else _one_of(flag, value.lower(), CHECKSUM_POLICIES)


def _stores(flag: str, texts: list[str]) -> tuple[StoreUrl, ...]:
    """Each --store parsed (``remote.parse_store_url``), with netrc's credentials; ``s3`` when
    none is given. Raises ConfigError for a bad one, or one given twice."""
    stores = tuple(parse_store_url(text).with_netrc() for text in texts or ["s3"])
    places = [store.identity for store in stores]
    for place in places:
        if places.count(place) > 1:
            raise ConfigError(f"{flag} {place} is given twice")
    return stores


def _acl(flag: str, value: str | None) -> str | None:
    return _one_of(flag, value, _CANNED_ACLS) if value else None


def _url_mode(flag: str, value: str) -> UrlMode:
    return UrlMode(_one_of(flag, value.lower(), tuple(UrlMode)))


def _cloudfront_domain(flag: str, value: str | None) -> str | None:
    if not value:
        return None
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", value):
        raise ConfigError(f"{flag} {value!r} is not a host name such as d111111abcdef8.cloudfront.net (no scheme, no path)")
    return value.lower()


def check_cloudfront(url_mode: UrlMode, *cloudfront: object) -> None:
    """``cloudfront``: --cloudfront-domain, --cloudfront-key-pair-id and --cloudfront-private-key,
    all of which cloudfront-signed needs and no other mode takes. Raises ConfigError."""
    if url_mode is UrlMode.CLOUDFRONT_SIGNED and None in cloudfront:
        raise ConfigError("--url-mode cloudfront-signed needs --cloudfront-domain, --cloudfront-key-pair-id and"
                          " --cloudfront-private-key")
    if url_mode is not UrlMode.CLOUDFRONT_SIGNED and any(value is not None for value in cloudfront):
        raise ConfigError(f"--cloudfront-* options are for --url-mode cloudfront-signed, not {url_mode}")


def _header_value(flag: str, value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ConfigError(f"{flag} must be printable ASCII")
    return value


def _log_level(flag: str, value: str) -> str:
    return _one_of(flag, value.upper(), _LOG_LEVELS)


def _port_file(flag: str, path: str | None) -> Path | None:
    """The port file's absolute path; its directory must exist (checked before the port is bound)."""
    if not path:
        return None
    chosen = Path(path).absolute()
    if not chosen.parent.is_dir():
        raise ConfigError(f"{flag} {path}: directory {chosen.parent} does not exist")
    return chosen


def _master_name(flag: str, name: str) -> str:
    if name and not _MASTER_NAME.fullmatch(name):
        raise ConfigError(f"{flag} {name!r} is not a plain file name ending in .m3u8")
    return name


# Every setting of hls-uploadd, in the order --help lists them.
OPTIONS = (
    Option(
        "listen", TEXT, DEFAULT_ADDRESS, "HOST:PORT to listen on (PORT alone: on 127.0.0.1); port 0 picks a free one.",
        convert=_listen, fields=("listen_host", "listen_port"), metavar="HOST:PORT",
    ),
    Option(
        "spool_dir", TEXT, None, "Durable queue and stream state.",
        convert=_spool_dir, metavar="PATH", shown_default="$STATE_DIRECTORY or ~/.local/state/hls-uploadd",
    ),
    Option(
        "allow_dir", PATH_LIST, (), "Directory segment files may be read from.",
        convert=_allow_dirs, fields=("allow_dirs",), metavar="PATH", shown_default="none",
    ),
    Option(
        "bucket", TEXT_LIST, (), "Buckets unsigned messages and the --secret-file peer may write (required,"
        " unless --any-bucket or --peers-file).",
        convert=_buckets, fields=("buckets",), metavar="NAME", shown_default="none",
    ),
    Option(
        "any_bucket", SWITCH, False,
        "Instead of --bucket: every bucket the store's credentials reach.",
        flags=("--any-bucket",),
    ),
    Option(
        "key_prefix", TEXT_LIST, (), "Key prefixes (whole /-separated segments) unsigned messages and the"
        " --secret-file peer may write in their buckets.",
        convert=_key_prefixes, fields=("key_prefixes",), metavar="PREFIX", shown_default="any",
    ),
    Option(
        "allow_unsigned_inline", SWITCH, False,
        "Accept inline payloads (size=N) in unsigned messages; they skip --allow-dir.",
        flags=("--allow-unsigned-inline",),
    ),
    Option(
        "peers_file", TEXT, None,
        "TOML file of signing peers: key id, secret file, buckets, key prefixes, inline payloads"
        " (docs/deploy.md, Peers).",
        convert=_peers_file, fields=("peers",), metavar="FILE", shown_default="none",
    ),
    Option(
        "window", INTEGER, 5,
        "Least segments in a live playlist (3..1000); more while they last under 3 target durations.",
        convert=_window, metavar="N",
    ),
    Option(
        "playlist_type", TEXT, "live", "live (sliding window), event or vod.",
        convert=_playlist_type, metavar="TYPE",
    ),
    Option(
        "store", TEXT_LIST, (), "Where objects go (DIR/BUCKET/KEY): 's3'; file:///DIR; ftp:// or ftps://[USER@]HOST/DIR"
        " (DIR relative to the login directory, /%2F for an absolute one; a password from netrc or the URL);"
        " sftp://USER@HOST/DIR?key=FILE&known_hosts=FILE (/~/DIR: in the login directory); http(s)://[USER@]HOST/DIR"
        " (WebDAV, or any server taking PUT). Repeat it to publish to several at once, each with its own queue,"
        " retries and retention (docs/deploy.md, Destinations).",
        convert=_stores, fields=("stores",), metavar="STORE", shown_default="s3",
    ),
    Option(
        "endpoint_url", TEXT, None, "S3 endpoint (else AWS_ENDPOINT_URL or AWS).",
        convert=optional_text, metavar="URL",
    ),
    Option("region", TEXT, None, "S3 region (else boto3's default chain).", convert=optional_text, metavar="NAME"),
    Option(
        "s3_addressing_style", TEXT, "auto", "auto, path (BUCKET in the URL's path: MinIO, most S3 clones) or virtual.",
        convert=_addressing_style, metavar="STYLE",
    ),
    Option(
        "s3_checksums", TEXT, None, "when_supported (boto3's default: a checksum on every PUT, x-amz-checksum-sha256; CRC32"
        " with --acl) or when_required (only where S3 demands one: for stores that refuse the checksum headers).",
        convert=_checksums, metavar="WHEN",
        shown_default="boto3's (AWS_REQUEST_CHECKSUM_CALCULATION, else when_supported)",
    ),
    Option(
        "acl", TEXT, None, "Canned ACL for every object, e.g. public-read.",
        convert=_acl, metavar="ACL", shown_default="none",
    ),
    # About half of a typical 2-4 s segment, so a CDN never serves a playlist a whole segment old.
    Option(
        "cache_control_playlist", TEXT, "max-age=1", "Cache-Control of playlists.",
        convert=_header_value, metavar="VALUE",
    ),
    # A segment's bytes never change under its name.
    Option(
        "cache_control_segment", TEXT, "max-age=31536000, immutable", "Cache-Control of segments.",
        convert=_header_value, metavar="VALUE",
    ),
    Option(
        "max_inflight", INTEGER, 8, "Uploads in flight across all streams.",
        convert=_within(1, MAX_INFLIGHT_LIMIT), metavar="N",
    ),
    Option(
        "retry_max_delay", SECONDS, 5.0, "Longest wait between retries of a failing upload, seconds.",
        convert=_within(0.1, 3600, "seconds"), fields=("retry_max_delay_s",), metavar="SECONDS",
    ),
    Option(
        "drain_timeout", SECONDS, 10.0, "On SIGTERM, how long running uploads may finish, seconds.",
        convert=_within(0, 3600, "seconds"), fields=("drain_timeout_s",), metavar="SECONDS",
    ),
    Option(
        "lease_ttl", SECONDS, 0.0,
        "With several daemons: publish a program only while holding its lease in the store, renewed every third of"
        " this time to live; another daemon takes it over this long after its last renewal. 0: no leases (one daemon).",
        convert=_lease_ttl, fields=("lease_ttl_s",), metavar="SECONDS",
    ),
    Option("log_level", TEXT, "INFO", "DEBUG, INFO, WARNING or ERROR.", convert=_log_level, metavar="LEVEL"),
    LOG_FORMAT,
    metrics_listen("/metrics (Prometheus), /healthz and /readyz"),
    Option(
        "not_ready_after", SECONDS, 30.0,
        "/readyz fails once the store has failed every request, or a stream has been held, this long; seconds.",
        convert=_within(0, 86400, "seconds"), fields=("not_ready_after_s",), metavar="SECONDS",
    ),
    Option(
        "port_file", TEXT, None, "Write the port actually listened on to this file, once started.",
        convert=_port_file, metavar="PATH",
    ),
    # Private streams (uploader/urls.py; docs/deploy.md, "Private streams").
    Option(
        "url_mode", TEXT, "public",
        "URIs playlists list: public (names relative to the playlist), presigned (SigV4 presigned S3 GET"
        " URLs) or cloudfront-signed (CloudFront signed URLs, canned policy).",
        convert=_url_mode, metavar="MODE",
    ),
    Option(
        "url_ttl", SECONDS, 3600.0,
        "How long each signed segment URL is valid, seconds; a URL is signed again once a quarter of it has passed.",
        convert=_within(1, SIGV4_MAX_TTL_S, "seconds"), fields=("url_ttl_s",), metavar="SECONDS",
    ),
    Option(
        "playlist_url_ttl", SECONDS, 43200.0,
        "How long the signed media playlist URLs a master lists are valid, seconds: a viewer may play at"
        " least 3/8 of it from one load of the master.",
        convert=_within(1, SIGV4_MAX_TTL_S, "seconds"), fields=("playlist_url_ttl_s",), metavar="SECONDS",
    ),
    Option(
        "cloudfront_domain", TEXT, None, "Distribution domain of cloudfront-signed URLs (its origin: the bucket).",
        convert=_cloudfront_domain, metavar="HOST", shown_default="none",
    ),
    Option(
        "cloudfront_key_pair_id", TEXT, None, "CloudFront public key id (key group) of cloudfront-signed URLs.",
        convert=optional_text, metavar="ID", shown_default="none",
    ),
    Option(
        "cloudfront_private_key", TEXT, None, "RSA private key (PEM) matching --cloudfront-key-pair-id.",
        convert=optional_path, metavar="FILE", shown_default="none",
    ),
    Option(
        "player_page", SWITCH, False, "Upload a player page (index.html + hls.js) beside each stream's playlist.",
        flags=("--player-page/--no-player-page",),
    ),
    Option(
        "secret_file", TEXT, None,
        "Secret of the peer 'default' (scoped by --bucket, --key-prefix): messages must be signed with it"
        " over the HELLO challenge. A non-loopback --listen needs it, --peers-file or --tls-client-ca.",
        convert=read_secret, fields=("secret",), metavar="PATH",
    ),
    Option(
        "insecure_no_auth", SWITCH, False,
        "Allow a non-loopback --listen without --secret-file (anyone who reaches the port can queue messages).",
        flags=("--insecure-no-auth",),
    ),
    Option(
        "max_payload_size", INTEGER, DEFAULT_MAX_PAYLOAD_BYTES,
        "Largest inline segment payload (size=N) accepted; 0 refuses them.",
        convert=_within(0, MAX_PAYLOAD_SIZE_LIMIT, "bytes"), fields=("max_payload_bytes",), metavar="BYTES",
    ),
    Option(
        "max_payload_inflight", INTEGER, DEFAULT_MAX_PAYLOAD_INFLIGHT,
        "Inline payloads being received at once, all connections together; past it a message gets"
        " 'ERR try again'.",
        fields=("max_payload_inflight_bytes",), metavar="BYTES",
    ),
    Option(
        "master_name", TEXT, "master.m3u8",
        "Master playlist written under a KEY_PREFIX shared by several streams; '' for none.",
        convert=_master_name, metavar="NAME",
    ),
    Option(
        "idle_timeout", SECONDS, IDLE_TIMEOUT_S, "Close a connection that sends nothing for this long, seconds.",
        convert=_within(0.1, 86400, "seconds"), fields=("idle_timeout_s",), metavar="SECONDS",
    ),
    Option(
        "tls_cert", TEXT, None,
        "Certificate chain (PEM) to serve TLS with: the control channel is then TLS only (no --wire v1 peers).",
        convert=optional_path, metavar="FILE", shown_default="none: plaintext",
    ),
    Option("tls_key", TEXT, None, "Private key (PEM) of --tls-cert.", convert=optional_path, metavar="FILE"),
    Option(
        "tls_client_ca", TEXT, None,
        "Mutual TLS: every peer must present a certificate signed by a CA in this file (PEM); counts as"
        " peer authentication for a non-loopback --listen.",
        convert=optional_path, metavar="FILE",
    ),
    # A live writer sends once per segment: half a minute of silence (or three target durations,
    # the longer) means it is gone (uploader/ownership.py).
    Option(
        "takeover_after", SECONDS, 30.0,
        "Another writer may take a stream over once its writer sent nothing for this long (at least"
        " 3 target durations), seconds.",
        convert=_within(1, 86400, "seconds"), fields=("takeover_after_s",), metavar="SECONDS",
    ),
    # Retention (docs/deploy.md, "Retention"; uploader/retention.py).
    Option(
        "keep_segment_files", SWITCH, False,
        "Keep segment files read from --allow-dir once stored (else each is removed after its upload).",
        flags=("--keep-segment-files",),
    ),
    Option(
        "keep_segment_objects", SWITCH, False,
        "Never delete segment objects that left a live window (else deleted after RFC 8216 6.2.2's time"
        " plus --cdn-allowance; needs s3:DeleteObject).",
        flags=("--keep-segment-objects",),
    ),
    # A CDN may hold a playlist for its max-age and more; a minute covers the usual few seconds.
    Option(
        "cdn_allowance", SECONDS, 60.0,
        "Extra time a removed segment stays in the store beyond RFC 8216 6.2.2's, seconds.",
        convert=_within(0, 86400 * 30, "seconds"), fields=("cdn_allowance_s",), metavar="SECONDS",
    ),
    Option(
        "end_silent_after", SECONDS, 3600.0,
        "End a stream (EXT-X-ENDLIST) after this long without a message, seconds; 0 never.",
        convert=_within(0, 86400 * 365, "seconds"), fields=("end_silent_after_s",), metavar="SECONDS",
    ),
    Option(
        "forget_ended_after", SECONDS, 86400.0,
        "Remove an ended stream's state from the spool after this long without a message, seconds; 0 never.",
        convert=_within(0, 86400 * 365, "seconds"), fields=("forget_ended_after_s",), metavar="SECONDS",
    ),
)


@dataclass(frozen=True, slots=True)
class UploaderConfig:
    listen_host: str
    listen_port: int
    spool_dir: Path
    allow_dirs: tuple[Path, ...]  # resolved (realpath) at startup
    buckets: frozenset[str]  # for unsigned messages and the --secret-file peer
    any_bucket: bool  # instead of buckets: every bucket
    key_prefixes: tuple[str, ...]  # with buckets; empty: any
    allow_unsigned_inline: bool
    peers: Mapping[str, Scope]  # from --peers-file, by key id
    window: int
    playlist_type: PlaylistType
    stores: tuple[StoreUrl, ...]  # --store, at least one; str() of each leaves its password out
    endpoint_url: str | None
    region: str | None
    s3_addressing_style: str  # ADDRESSING_STYLES
    s3_checksums: str | None  # CHECKSUM_POLICIES, or None: boto3's own choice
    acl: str | None
    cache_control_playlist: str
    cache_control_segment: str
    max_inflight: int
    retry_max_delay_s: float
    drain_timeout_s: float
    lease_ttl_s: float  # 0: no leases
    log_level: str
    log_format: str  # "text" or "json"
    port_file: Path | None
    metrics_address: tuple[str, int] | None  # --metrics-listen; None: no endpoint
    not_ready_after_s: float  # a store failing or a stream held this long: /readyz fails
    player_page: bool  # upload index.html and hls.js beside each stream's playlist
    url_mode: UrlMode  # the URIs playlists list (uploader/urls.py)
    url_ttl_s: float  # of a signed segment URL
    playlist_url_ttl_s: float  # of a signed media playlist URL in a master
    cloudfront_domain: str | None
    cloudfront_key_pair_id: str | None
    cloudfront_private_key: Path | None
    secret: bytes | None = field(repr=False)  # HMAC key; never printed
    insecure_no_auth: bool  # a non-loopback listener without a secret, on purpose
    max_payload_bytes: int  # 0: inline payloads refused
    max_payload_inflight_bytes: int  # payloads being received, all connections
    master_name: str  # "" : none
    idle_timeout_s: float  # a connection without a byte for this long is closed
    tls_cert: Path | None  # None: plaintext
    tls_key: Path | None
    tls_client_ca: Path | None  # peers' certificates are required and checked against it
    keep_segment_files: bool  # segment files under --allow-dir stay after their upload
    keep_segment_objects: bool  # segments that left a live window stay in the store
    cdn_allowance_s: float  # beyond RFC 8216 6.2.2's time before such a segment is deleted
    end_silent_after_s: float  # a stream without a message for this long is ended; 0 never
    forget_ended_after_s: float  # an ended stream quiet this long is removed from the spool; 0 never
    takeover_after_s: float  # a stream's writer silent this long may be taken over
    tls_context: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_payload_inflight_bytes < self.max_payload_bytes:
            raise ConfigError(
                f"--max-payload-inflight {self.max_payload_inflight_bytes} is below --max-payload-size"
                f" {self.max_payload_bytes}: a payload of the largest size could never be received"
            )
        check_pair(self.tls_cert, self.tls_key)
        if self.tls_cert is not None and self.tls_key is not None:
            object.__setattr__(self, "tls_context", server_context(self.tls_cert, self.tls_key, self.tls_client_ca))
        elif self.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in TLS")
        if self.any_bucket and self.buckets:
            raise ConfigError("--any-bucket and --bucket contradict each other: give one of them")
        if self.secret is not None and DEFAULT_KEY_ID in self.peers:
            raise ConfigError(f"--secret-file is the peer {DEFAULT_KEY_ID!r}, which --peers-file names too:"
                              " give one of them")
        if not is_loopback(self.listen_host) and not self.authenticated and not self.insecure_no_auth:
            raise ConfigError(
                f"--listen {self.listen_host} is not a loopback address: give --secret-file PATH (or --tls-client-ca"
                " FILE) so peers are authenticated (or --insecure-no-auth to accept anyone who can reach the port)"
            )
        self._check_url_mode()
        if self.lease_ttl_s and (plain := [store for store in self.stores if store.scheme not in ("s3", "file")]):
            raise ConfigError(f"--lease-ttl needs conditional writes, which --store {plain[0]} has none of: use S3 or"
                              " a local directory, or leave --lease-ttl 0")
        if not self.buckets and not self.any_bucket and not self.peers:
            raise ConfigError("no bucket is allowed: give --bucket NAME (repeatable) for the buckets messages may"
                              " write, or --any-bucket for every bucket the store's credentials reach")

    def _check_url_mode(self) -> None:
        """Private modes need what signs their URLs, and make nothing public (docs/deploy.md)."""
        check_cloudfront(self.url_mode, self.cloudfront_domain, self.cloudfront_key_pair_id,
                         self.cloudfront_private_key)
        if self.url_mode is UrlMode.PUBLIC:
            return
        if len(self.stores) > 1:
            raise ConfigError(f"--url-mode {self.url_mode} signs the URLs of one origin: give one --store")
        if self.url_mode is UrlMode.PRESIGNED and self.stores[0].scheme != "s3":
            raise ConfigError(f"--url-mode presigned signs S3 GET URLs: --store {self.stores[0]} has none")
        if self.acl and self.acl not in _PRIVATE_ACLS:
            raise ConfigError(f"--acl {self.acl} lets others than the bucket owner read every object, which --url-mode"
                              f" {self.url_mode} exists to prevent: leave --acl unset (or {', '.join(_PRIVATE_ACLS)})")

    @property
    def authenticated(self) -> bool:
        """Peers prove who they are: HMAC secrets, or client certificates (mutual TLS)."""
        return self.secret is not None or bool(self.peers) or self.tls_client_ca is not None

    @property
    def allowed_buckets(self) -> frozenset[str] | None:
        """The buckets of --bucket, None for --any-bucket."""
        return None if self.any_bucket else self.buckets

    @property
    def scopes(self) -> Peers:
        """The signing peers (--peers-file, and --secret-file as ``default``) and the unsigned scope."""
        signed = dict(self.peers)
        if self.secret is not None:
            signed[DEFAULT_KEY_ID] = Scope(DEFAULT_KEY_ID, self.allowed_buckets, self.key_prefixes, inline=True,
                                           secret=self.secret)
        unsigned = Scope(UNSIGNED, self.allowed_buckets, self.key_prefixes, inline=self.allow_unsigned_inline)
        return Peers(signed, unsigned)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> UploaderConfig:
        """Build from settings by name (see OPTIONS; a missing one takes its default); raises ConfigError."""
        try:
            return cls(**config_fields(OPTIONS, settings))
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
