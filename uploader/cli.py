"""Command line of hls-uploadd: options -> one UploaderConfig -> the daemon; errors -> exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import re
import sqlite3
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import typer

from common.logs import format_handler, logs_json
from common.options import config_fields, settings_from_file, with_options
from common.settings import ConfigError

from .config import ENV_PREFIX, OPTIONS, SECTION, UploaderConfig, check_cloudfront, spool_directory
from .daemon import SpoolDamaged, SpoolInUse, SpoolOfAnotherStore, StartupError, run_daemon
from .leases import LEASE_CONNECTIONS
from .cost import Audience, Prices, cost_sheet, render, sheet_json
from .player import PAGE_NAME
from .spool import SPOOL_FILE_NAME, Spool, SpoolBusy, SpoolError, open_read_only, read_summaries, read_usage
from .status import status_json, status_line
from .ftp_store import FtpStore
from .remote import StoreUrl
from .http_store import HttpStore
from .sftp_store import SftpStore
from .stores import FileStore, S3Store, Store
from .stream import stream_label
from .urls import SIGV4_MAX_TTL_S, UrlMode, UrlSigner, cloudfront_signer, presigned_signer, read_private_key

# Exit codes: the operator's configuration is wrong (or another daemon holds the spool) / the
# daemon could not start / the spool is damaged or was removed: the operator must act first.
EXIT_CONFIG = 2
EXIT_STARTUP = 1
EXIT_SPOOL = 3

# S3 client limits. Connect fails fast so the publisher's own backoff takes over; a read may take
# long for a large segment on a slow link, but not forever.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 30.0

app = typer.Typer(
    add_completion=False, rich_markup_mode=None,
    help="Upload daemon: index messages in, segments and playlists out. `hls-uploadd status --help`: the streams of"
    " its spool; `hls-uploadd cost --help`: what they cost; `hls-uploadd requeue --help`: queue failed segments"
    " again; `hls-uploadd sign --help`: a signed URL of a private stream's playlist.",
)


def _fail(message: str, code: int) -> NoReturn:
    if logs_json():
        logging.getLogger(__name__).error(message)
    else:
        print(f"hls-uploadd: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _config_error(error: ConfigError) -> NoReturn:
    _fail(f"configuration error: {error}", EXIT_CONFIG)


@app.command()
@with_options(OPTIONS, env_prefix=ENV_PREFIX, section=SECTION, fail=_config_error, program="hls-uploadd")
def run(**settings: Any) -> None:
    """Run the upload daemon in the foreground."""
    try:
        uploader_config = UploaderConfig.from_settings(settings)
        _setup_logging(uploader_config.log_level, uploader_config.log_format)
        stores = build_stores(uploader_config)
        signer = build_signer(uploader_config)
    except ConfigError as error:
        _config_error(error)
    try:
        outcome = asyncio.run(run_daemon(uploader_config, stores, announce=_announce, signer=signer))
    except (SpoolInUse, SpoolOfAnotherStore) as error:
        _fail(f"cannot start: {error}", EXIT_CONFIG)
    except SpoolDamaged as error:
        _fail(f"cannot start: {error}", EXIT_SPOOL)
    except StartupError as error:
        _fail(f"cannot start: {error}", EXIT_STARTUP)
    if outcome.spool_failure is not None:
        logging.shutdown()
        os._exit(EXIT_SPOOL)  # PUT threads may still run; the spool can take nothing more
    if outcome.puts_abandoned:
        # Threads blocked in a PUT would hold the interpreter's exit for their whole timeout;
        # the spool already has everything, so leave at once.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def build_stores(config: UploaderConfig) -> list[Store]:
    """The stores --store names, in its order. Raises ConfigError."""
    return [build_store(config, url) for url in config.stores]


def build_store(config: UploaderConfig, url: StoreUrl) -> Store:
    """The store ``url`` names (uploader/remote.py has the forms): S3 through a boto3 client
    (``s3_client``; its requests go out through uploader/s3wire.py), a directory, an FTP(S),
    SFTP or HTTP server. Raises ConfigError."""
    if url.scheme == "s3":
        client = s3_client(config)
        store = S3Store(client, acl=config.acl, description=f"s3 ({client.meta.endpoint_url})")
        if urlsplit(client.meta.endpoint_url).scheme.lower() == "https" and store.ca_bundle is not None:
            _check_ca_bundle(store.ca_bundle)
        return store
    if url.scheme == "file":
        return FileStore(Path(url.path))
    if url.scheme in ("ftps", "https"):
        _check_system_trust()
    if url.scheme in ("ftp", "ftps"):
        return FtpStore(url)
    if url.scheme == "sftp":
        return SftpStore(url)
    return HttpStore(url, connections=config.max_inflight + 2)


# How OpenSSL finds a CA in a directory: by the hash of its subject, HASH.N (openssl rehash).
_HASH_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def _check_ca_bundle(path: str) -> None:
    """Load the CA bundle the S3 client would check the store's certificate with, as it would (one
    PEM file: botocore passes a directory to OpenSSL as a file too); ConfigError naming the file
    and where it was set when it cannot: every request over HTTPS would fail."""
    if os.environ.get("AWS_CA_BUNDLE") == path:
        source = "AWS_CA_BUNDLE"
    elif os.environ.get("REQUESTS_CA_BUNDLE") == path:
        source = "REQUESTS_CA_BUNDLE"  # botocore's fallback when neither of the others names one
    else:
        source = (f"ca_bundle of profile {os.environ.get('AWS_PROFILE') or 'default'} in"
                  f" {os.environ.get('AWS_CONFIG_FILE') or '~/.aws/config'}")
    _check_ca_file(path, f"the CA bundle {path} ({source})", "the S3 client reads one PEM file")


def _check_system_trust() -> None:
    """Read the CA file and directories SSL_CERT_FILE and SSL_CERT_DIR (':'-separated) name, which
    the ftps and https stores trust in place of OpenSSL's defaults (remote.system_trust);
    ConfigError naming the one that cannot be used (OpenSSL would skip it without a word, and
    refuse every certificate its CA signed): set but empty, missing, no certificate in it, a
    directory without OpenSSL's hash links (``openssl rehash``)."""
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(variable) == "":
            raise ConfigError(f"{variable} is set but empty, so OpenSSL reads no CA from it: unset it, or name"
                              f" a {'file' if variable == 'SSL_CERT_FILE' else 'directory'}")
    if path := os.environ.get("SSL_CERT_FILE"):
        _check_ca_file(path, f"the CA file {path} (SSL_CERT_FILE)",
                       "name a directory in SSL_CERT_DIR (after openssl rehash)")
    for directory in filter(None, os.environ.get("SSL_CERT_DIR", "").split(os.pathsep)):
        try:
            names = os.listdir(directory)
        except OSError as error:
            raise ConfigError(f"the CA directory {directory} (SSL_CERT_DIR) cannot be read: {error.strerror}") from None
        if not any(_HASH_LINK.fullmatch(name) for name in names):
            raise ConfigError(f"the CA directory {directory} (SSL_CERT_DIR) has no certificate OpenSSL looks up (no"
                              f" HASH.0 names): run openssl rehash {directory}")


def _check_ca_file(path: str, named: str, if_a_directory: str) -> None:
    """Load the PEM file ``path`` as OpenSSL would to check a certificate; ConfigError naming it
    (``named``: what it is and where it was set) when it cannot, or is a directory."""
    if os.path.isdir(path):
        raise ConfigError(f"{named} is a directory: {if_a_directory}")
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{named} cannot be read: {reason}") from None


def build_signer(config: UploaderConfig | SigningSettings) -> UrlSigner | None:
    """What signs the URIs of private streams' playlists (--url-mode; uploader/urls.py), None when
    they are public. Raises ConfigError (an unreadable or non-RSA CloudFront key)."""
    if config.url_mode is UrlMode.PRESIGNED:
        # On AWS, "auto" presigns with the global host name, which a bucket outside us-east-1
        # answers with a redirect the signature does not cover: its region's host instead.
        on_aws_auto = config.endpoint_url is None and config.s3_addressing_style == "auto"
        return presigned_signer(s3_client(config, addressing_style="virtual" if on_aws_auto else None))
    if config.url_mode is UrlMode.CLOUDFRONT_SIGNED:
        assert config.cloudfront_domain and config.cloudfront_key_pair_id and config.cloudfront_private_key
        return cloudfront_signer(config.cloudfront_domain, config.cloudfront_key_pair_id,
                                 read_private_key(config.cloudfront_private_key))
    return None


def s3_pool_connections(max_inflight: int) -> int:
    """The connections an S3 client's pool keeps to its store, for --max-inflight uploads: room
    for every in-flight PUT plus the playlist PUT that follows it, and the lease requests' own
    threads (``leases.LEASE_CONNECTIONS``). object_store's idle pool has the same bound."""
    return max_inflight + 2 + LEASE_CONNECTIONS


def s3_client(config: UploaderConfig | SigningSettings, addressing_style: str | None = None) -> Any:
    """A boto3 S3 client for --endpoint-url, --region, --s3-addressing-style (or
    ``addressing_style``) and --s3-checksums, with boto3's own retries off (the publisher
    retries). Raises ConfigError."""
    import boto3
    import botocore.config

    client_config = botocore.config.Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        max_pool_connections=s3_pool_connections(config.max_inflight),
        # The publisher retries with its own backoff and logs; no hidden second layer.
        retries={"mode": "standard", "total_max_attempts": 1},
        s3={"addressing_style": addressing_style or config.s3_addressing_style},
        signature_version="s3v4",  # presigned URLs too (boto3 may presign with SigV2 otherwise)
        # None leaves boto3's own choice (AWS_REQUEST_CHECKSUM_CALCULATION, the shared config file).
        request_checksum_calculation=config.s3_checksums,
        response_checksum_validation=config.s3_checksums,
    )
    try:
        session = boto3.session.Session(region_name=config.region)
        return session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
    except Exception as error:  # botocore raises several unrelated types for a bad endpoint/region
        raise ConfigError(f"cannot set up the S3 client: {error}") from None


def _setup_logging(level: str, kind: str) -> None:
    logging.basicConfig(level=level, handlers=[format_handler(logging.StreamHandler(sys.stderr), kind)], force=True)
    # boto's own chatter (retries, credential lookups) is not the operator's concern at INFO.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # paramiko logs each failed connection with its traceback before raising it, and the SFTP store
    # reports what it raises (one line, sorted, with the fix).
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def _announce(line: str) -> None:
    print(line, flush=True)


# The --spool-dir of the commands that read a daemon's spool (requeue, status, cost).
SPOOL_DIR = typer.Option(None, "--spool-dir", envvar=f"{ENV_PREFIX}SPOOL_DIR", metavar="PATH",
                         help="The daemon's spool (its --spool-dir).")


requeue_app = typer.Typer(add_completion=False, rich_markup_mode=None)


@requeue_app.command()
def requeue(
    stream: str = typer.Argument(None, metavar="BUCKET/KEY_PREFIX/INDEX",
                                 help="Only this stream (as the log names it); every stream when left out."),
    spool_dir: Path = SPOOL_DIR,
) -> None:
    """Queue a stream's failed segments again, once what failed them is corrected.

    Run it while the daemon is stopped; the next start publishes them.
    """
    key = None
    if stream is not None:
        parts = stream.split("/")
        if len(parts) < 2 or not all(parts):
            _fail(f"stream {stream!r} is not BUCKET/KEY_PREFIX/INDEX or BUCKET/INDEX", EXIT_CONFIG)
        key = (parts[0], "/".join(parts[1:-1]), parts[-1])
    directory = spool_directory(spool_dir)
    if not (directory / SPOOL_FILE_NAME).is_file():
        _fail(f"no spool in {directory} (give the daemon's --spool-dir)", EXIT_CONFIG)
    try:
        spool = Spool.open(directory)
        try:
            outcomes = spool.requeue_failed(key)
        finally:
            spool.close()
    except SpoolBusy as error:
        _fail(f"{error}: stop it, then requeue", EXIT_STARTUP)
    except SpoolError as error:
        _fail(str(error), EXIT_STARTUP)
    for outcome in outcomes:
        left = f"; {outcome.inline} inline segment(s) have no payload left and stay failed" if outcome.inline else ""
        if outcome.refused:
            print(f"stream {stream_label(outcome.stream)}: nothing requeued: {outcome.refused}{left}")
        else:
            print(f"stream {stream_label(outcome.stream)}: {outcome.count} failed message(s) queued again,"
                  f" published at the daemon's next start{left}")
    if not outcomes:
        print(f"no failed message{' of stream ' + stream if stream else ''} in {directory}")
    if not any(outcome.count for outcome in outcomes) and stream is not None:
        raise typer.Exit(EXIT_STARTUP)


status_app = typer.Typer(add_completion=False, rich_markup_mode=None)


@status_app.command()
def status(
    spool_dir: Path = SPOOL_DIR,
    as_json: bool = typer.Option(False, "--json", help="One JSON list of streams, for scripts."),
) -> None:
    """One line per stream of a daemon's spool, running or stopped: its state (live, blocked,
    failed, ended), last segment and its age, queue, window, target duration, failures.

    Reads the spool only: safe beside a running daemon.
    """
    directory = spool_directory(spool_dir)
    try:
        db = open_read_only(directory)
        try:
            summaries = read_summaries(db)
        finally:
            db.close()
    except sqlite3.Error as error:
        _fail(f"cannot read the spool in {directory}: {error}", EXIT_STARTUP)
    except SpoolError as error:
        _fail(str(error), EXIT_CONFIG)
    now = time.time()
    if as_json:
        print(status_json(summaries, now))
    elif not summaries:
        print(f"no stream in {directory}")
    for summary in summaries if not as_json else ():
        print(status_line(summary, now))


cost_app = typer.Typer(add_completion=False, rich_markup_mode=None)

# The price tables shipped with the package (uploader/prices/NAME.toml); the first is the default.
PRICE_TABLES = ("aws-us-east-1", "aws-2009")


@cost_app.command()
def cost(
    program: str = typer.Argument(None, metavar="BUCKET[/KEY_PREFIX]",
                                  help="Only the streams under it; every stream of the spool when left out."),
    spool_dir: Path = SPOOL_DIR,
    prices: str = typer.Option(PRICE_TABLES[0], "--prices", metavar="NAME|FILE",
                               help=f"A price table: {', '.join(PRICE_TABLES)}, or a TOML file of your own (docs/operations.md)."),
    viewers: int = typer.Option(100, "--viewers", min=0, help="Viewers, each watching a whole stream."),
    shares: list[str] = typer.Option([], "--share", metavar="INDEX=SHARE",
                                     help="Share of the viewers watching rendition INDEX: 25% or 0.25; the rest"
                                          " share equally."),
    origin_fetches: float = typer.Option(3.0, "--origin-fetches", min=0,
                                         help="Times the CDN fetches each segment from the store."),
    playlists_from: str = typer.Option("cdn", "--playlists-from", metavar="cdn|store",
                                       help="Where viewers fetch playlists from."),
    as_json: bool = typer.Option(False, "--json", help="The sheet as JSON, for scripts."),
) -> None:
    """What the store and the CDN charge for the streams of a daemon's spool: its counts of
    requests, bytes and storage, a price table, and assumptions about viewers (docs/operations.md)."""
    directory = spool_directory(spool_dir)
    try:
        table = _price_table(prices)
        audience = Audience(viewers, _shares(shares), origin_fetches, _playlists_from_store(playlists_from))
        db = open_read_only(directory)
        try:
            usages = read_usage(db, time.time())
        finally:
            db.close()
        if program is not None:
            bucket, _, key_prefix = program.partition("/")
            usages = [u for u in usages if u.key[0] == bucket and (not key_prefix or u.key[1] == key_prefix.strip("/"))]
        if not usages:
            _fail(f"no stream{' under ' + program if program else ''} in {directory}", EXIT_CONFIG)
        sheet = cost_sheet(usages, table, audience)
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except SpoolError as error:
        _fail(str(error), EXIT_CONFIG)
    except sqlite3.Error as error:
        _fail(f"cannot read the spool in {directory}: {error}", EXIT_STARTUP)
    print(sheet_json(sheet, audience) if as_json else render(sheet, audience))


def _price_table(name: str) -> Prices:
    """A shipped table by name, else a file. Raises ConfigError."""
    if name in PRICE_TABLES:
        text = (Path(__file__).parent / "prices" / f"{name}.toml").read_text()
        return Prices.from_toml(text, f"price table {name}")
    try:
        text = Path(name).expanduser().read_text()
    except OSError as error:
        raise ConfigError(f"--prices {name}: not {' or '.join(PRICE_TABLES)}, and {error.strerror or error}") from None
    return Prices.from_toml(text, name)


def _shares(given: list[str]) -> dict[str, float]:
    """--share INDEX=25% or INDEX=0.25 -> {INDEX: 0.25}. Raises ConfigError."""
    shares: dict[str, float] = {}
    for entry in given:
        index, _, text = entry.rpartition("=")
        try:
            share = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            share = -1.0
        if not index or not 0 <= share <= 1:
            raise ConfigError(f"--share {entry!r} is not INDEX=PERCENT% or INDEX=FRACTION (0..1)")
        shares[index] = share
    return shares


def _playlists_from_store(where: str) -> bool:
    if where not in ("cdn", "store"):
        raise ConfigError(f"--playlists-from {where!r} is not cdn or store")
    return where == "store"


@dataclass(frozen=True, slots=True)
class SigningSettings:
    """The daemon's settings ``hls-uploadd sign`` needs (same names as UploaderConfig's)."""

    url_mode: UrlMode
    endpoint_url: str | None
    region: str | None
    s3_addressing_style: str
    cloudfront_domain: str | None
    cloudfront_key_pair_id: str | None
    cloudfront_private_key: Path | None
    s3_checksums: str | None
    max_inflight: int


# The daemon's options ``SigningSettings`` holds.
SIGNING_OPTIONS = tuple(option for option in OPTIONS if option.name in SigningSettings.__slots__)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_DURATION_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """A TTL such as ``3600``, ``90s``, ``30m``, ``1h`` or ``7d``, in seconds (1 s to SigV4's 7
    days). Raises ConfigError."""
    match = _DURATION.fullmatch(text.strip().lower())
    ttl_s = float(match.group(1)) * _DURATION_UNITS_S[match.group(2)] if match else 0.0
    if not 1 <= ttl_s <= SIGV4_MAX_TTL_S:
        raise ConfigError(f"--ttl {text!r} is not a duration from 1 s to 7 days (3600, 90s, 30m, 1h, 7d)")
    return ttl_s


sign_app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _env(name: str) -> str:
    return f"{ENV_PREFIX}{name}"


@sign_app.command()
def sign(
    target: str = typer.Argument(..., metavar="s3://BUCKET/KEY",
                                 help="The object, its key as it is: a stream's playlist or its program's master."),
    ttl: str = typer.Option("1h", "--ttl", metavar="DURATION",
                            help="How long the URL can be loaded: 3600, 30m, 1h, 7d."),
    player: bool = typer.Option(False, "--player", help="The URL of the player page beside it (--player-page),"
                                " playing it: index.html's signed URL, #src= the playlist's."),
    config_file: Path = typer.Option(None, "--config", envvar=_env("CONFIG"), metavar="FILE",
                                     help="The daemon's TOML file: its url_mode, endpoint, region, cloudfront_*."),
    url_mode: str = typer.Option(None, "--url-mode", envvar=_env("URL_MODE"), metavar="MODE",
                                 help="presigned (the default) or cloudfront-signed, as the daemon's."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar=[_env("ENDPOINT_URL"), "AWS_ENDPOINT_URL"],
                                     metavar="URL", help="S3 endpoint, as the daemon's."),
    region: str = typer.Option(None, "--region", envvar=_env("REGION"), metavar="NAME",
                               help="The bucket's region, as the daemon's."),
    addressing_style: str = typer.Option(None, "--s3-addressing-style", envvar=_env("S3_ADDRESSING_STYLE"),
                                         metavar="STYLE", help="auto, path or virtual, as the daemon's."),
    cloudfront_domain: str = typer.Option(None, "--cloudfront-domain", envvar=_env("CLOUDFRONT_DOMAIN"),
                                          metavar="HOST"),
    cloudfront_key_pair_id: str = typer.Option(None, "--cloudfront-key-pair-id", envvar=_env("CLOUDFRONT_KEY_PAIR_ID"),
                                               metavar="ID"),
    cloudfront_private_key: str = typer.Option(None, "--cloudfront-private-key",
                                               envvar=_env("CLOUDFRONT_PRIVATE_KEY"), metavar="FILE"),
) -> None:
    """Print a signed URL of a private stream's playlist or master, which can be loaded for --ttl:
    what an application hands a viewer. A viewer who loaded it plays on with the URLs it lists,
    which the daemon signs for --url-ttl (a master's: --playlist-url-ttl). Options, environment
    and --config as the daemon takes them."""
    from botocore.exceptions import BotoCoreError

    try:
        bucket, slash, key = target.removeprefix("s3://").partition("/")
        if not target.startswith("s3://") or not bucket or not slash or not key or key.endswith("/"):
            raise ConfigError(f"{target!r} is not s3://BUCKET/KEY (an object's key, not a prefix)")
        ttl_s = parse_ttl(ttl)
        given = {"url_mode": url_mode, "endpoint_url": endpoint_url, "region": region,
                 "s3_addressing_style": addressing_style, "cloudfront_domain": cloudfront_domain,
                 "cloudfront_key_pair_id": cloudfront_key_pair_id, "cloudfront_private_key": cloudfront_private_key}
        settings = {"url_mode": UrlMode.PRESIGNED.value,
                    **(settings_from_file(OPTIONS, config_file, section=SECTION) if config_file else {}),
                    **{name: value for name, value in given.items() if value is not None}}
        # Only the settings signing uses are read: the daemon's others (an --allow-dir) need not
        # hold where an application signs.
        signing = SigningSettings(**config_fields(SIGNING_OPTIONS, settings))
        if signing.url_mode is UrlMode.PUBLIC:
            raise ConfigError("--url-mode public: sign makes presigned or cloudfront-signed URLs")
        check_cloudfront(signing.url_mode, signing.cloudfront_domain, signing.cloudfront_key_pair_id,
                         signing.cloudfront_private_key)
        signer = build_signer(signing)
        assert signer is not None
        url = signer(bucket, key, ttl_s)
        if player:
            page = posixpath.join(posixpath.dirname(key), PAGE_NAME)
            url = f"{signer(bucket, page, ttl_s)}#src={quote(url, safe='')}"
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except BotoCoreError as error:  # no credentials, mostly
        _fail(f"cannot sign {target}: {error}", EXIT_CONFIG)
    print(url)


def main() -> None:
    if sys.argv[1:2] == ["requeue"]:
        requeue_app(sys.argv[2:], prog_name="hls-uploadd requeue")
    elif sys.argv[1:2] == ["status"]:
        status_app(sys.argv[2:], prog_name="hls-uploadd status")
    elif sys.argv[1:2] == ["cost"]:
        cost_app(sys.argv[2:], prog_name="hls-uploadd cost")
    elif sys.argv[1:2] == ["sign"]:
        sign_app(sys.argv[2:], prog_name="hls-uploadd sign")
    else:
        app()
