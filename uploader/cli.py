"""Command line of hls-uploadd: options -> one UploaderConfig -> the daemon; errors -> exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from common.settings import ConfigError, merge_settings, parse_toml

from .config import DEFAULTS, ENV_PREFIX, SECTION, UploaderConfig
from .daemon import StartupError, run_daemon
from .stores import FileStore, S3Store, Store

# Exit codes: the operator's configuration is wrong / the daemon could not start.
EXIT_CONFIG = 2
EXIT_STARTUP = 1

# S3 client limits. Connect fails fast so the publisher's own backoff takes over; a read may take
# long for a large segment on a slow link, but not forever.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 30.0

app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Upload daemon: index messages in, segments and playlists out.")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


@app.command()
def run(
    listen: Annotated[str | None, typer.Option(envvar=_env("listen"), metavar="HOST:PORT", help="HOST:PORT to listen on [127.0.0.1:10234]; port 0 picks a free one.")] = None,
    spool_dir: Annotated[Path | None, typer.Option(envvar=_env("spool_dir"), metavar="PATH", help="Durable queue and stream state [$STATE_DIRECTORY or ~/.local/state/hls-uploadd].")] = None,
    allow_dir: Annotated[list[Path] | None, typer.Option(envvar=_env("allow_dir"), metavar="PATH", help="Directory segment files may be read from (repeatable; env: ':'-separated). Default: none.")] = None,
    bucket: Annotated[list[str] | None, typer.Option(envvar=_env("bucket"), metavar="NAME", help="Only these buckets are accepted (repeatable; env: space-separated). Default: any.")] = None,
    window: Annotated[int | None, typer.Option(envvar=_env("window"), metavar="N", help="Segments in a live playlist [5].")] = None,
    playlist_type: Annotated[str | None, typer.Option(envvar=_env("playlist_type"), metavar="TYPE", help="live (sliding window), event or vod [live].")] = None,
    store: Annotated[str | None, typer.Option(envvar=_env("store"), metavar="STORE", help="'s3' or 'file:///PATH' (objects written to PATH/BUCKET/KEY) [s3].")] = None,
    endpoint_url: Annotated[str | None, typer.Option(envvar=_env("endpoint_url"), metavar="URL", help="S3 endpoint (else AWS_ENDPOINT_URL or AWS).")] = None,
    region: Annotated[str | None, typer.Option(envvar=_env("region"), metavar="NAME", help="S3 region (else boto3's default chain).")] = None,
    acl: Annotated[str | None, typer.Option(envvar=_env("acl"), metavar="ACL", help="Canned ACL for every object, e.g. public-read [none].")] = None,
    cache_control_playlist: Annotated[str | None, typer.Option(envvar=_env("cache_control_playlist"), metavar="VALUE", help="Cache-Control of playlists [max-age=1].")] = None,
    cache_control_segment: Annotated[str | None, typer.Option(envvar=_env("cache_control_segment"), metavar="VALUE", help="Cache-Control of segments [max-age=31536000, immutable].")] = None,
    max_inflight: Annotated[int | None, typer.Option(envvar=_env("max_inflight"), metavar="N", help="Uploads in flight across all streams [8].")] = None,
    retry_max_delay: Annotated[float | None, typer.Option(envvar=_env("retry_max_delay"), metavar="SECONDS", help="Longest wait between retries of a failing upload, seconds [5].")] = None,
    drain_timeout: Annotated[float | None, typer.Option(envvar=_env("drain_timeout"), metavar="SECONDS", help="On SIGTERM, how long running uploads may finish, seconds [10].")] = None,
    log_level: Annotated[str | None, typer.Option(envvar=_env("log_level"), metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR [INFO].")] = None,
    port_file: Annotated[Path | None, typer.Option(envvar=_env("port_file"), metavar="PATH", help="Write the port actually listened on to this file.")] = None,
    player_page: Annotated[bool | None, typer.Option("--player-page/--no-player-page", envvar=_env("player_page"), help="Upload a player page (index.html + hls.js) beside each stream's playlist [off].")] = None,
    secret_file: Annotated[Path | None, typer.Option(envvar=_env("secret_file"), metavar="PATH", help="Shared secret: every message must carry ts= and an HMAC tag= made with it. Required for a non-loopback --listen.")] = None,
    insecure_no_auth: Annotated[bool | None, typer.Option("--insecure-no-auth", envvar=_env("insecure_no_auth"), help="Allow a non-loopback --listen without --secret-file (anyone who reaches the port can queue messages) [off].")] = None,
    max_payload_size: Annotated[int | None, typer.Option(envvar=_env("max_payload_size"), metavar="BYTES", help="Largest inline segment payload (size=N) accepted; 0 refuses them [67108864].")] = None,
    max_payload_inflight: Annotated[int | None, typer.Option(envvar=_env("max_payload_inflight"), metavar="BYTES", help="Inline payloads being received at once, all connections together; past it a message gets 'ERR try again' [1073741824].")] = None,
    master_name: Annotated[str | None, typer.Option(envvar=_env("master_name"), metavar="NAME", help="Master playlist written under a KEY_PREFIX shared by several streams; '' for none [master.m3u8].")] = None,
    idle_timeout: Annotated[float | None, typer.Option(envvar=_env("idle_timeout"), metavar="SECONDS", help="Close a connection that sends nothing for this long, seconds [300].")] = None,
    config: Annotated[Path | None, typer.Option(envvar=_env("config"), metavar="FILE", help=f"TOML file with a [{SECTION}] table of these settings.")] = None,
) -> None:
    """Run the upload daemon in the foreground."""
    given = {
        "listen": listen,
        "spool_dir": spool_dir,
        "allow_dir": [str(path) for path in allow_dir] if allow_dir else None,
        "bucket": list(bucket) if bucket else None,
        "window": window,
        "playlist_type": playlist_type,
        "store": store,
        "endpoint_url": endpoint_url,
        "region": region,
        "acl": acl,
        "cache_control_playlist": cache_control_playlist,
        "cache_control_segment": cache_control_segment,
        "max_inflight": max_inflight,
        "retry_max_delay": retry_max_delay,
        "drain_timeout": drain_timeout,
        "log_level": log_level,
        "port_file": port_file,
        "player_page": player_page,
        "secret_file": str(secret_file) if secret_file else None,
        "insecure_no_auth": insecure_no_auth,
        "max_payload_size": max_payload_size,
        "max_payload_inflight": max_payload_inflight,
        "master_name": master_name,
        "idle_timeout": idle_timeout,
    }
    try:
        settings = load_settings(given, config)
        uploader_config = UploaderConfig.from_settings(settings)
        _setup_logging(uploader_config.log_level)
        chosen_store = build_store(uploader_config)
    except ConfigError as error:
        _fail(f"configuration error: {error}", EXIT_CONFIG)
    try:
        outcome = asyncio.run(run_daemon(uploader_config, chosen_store, announce=_announce))
    except StartupError as error:
        _fail(f"cannot start: {error}", EXIT_STARTUP)
    if outcome.puts_abandoned:
        # Threads blocked in a PUT would hold the interpreter's exit for their whole timeout;
        # the spool already has everything, so leave at once.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def load_settings(given: dict[str, Any], config_file: Path | None) -> dict[str, Any]:
    """CLI/env > the config file's [uploadd] table > defaults."""
    from_file: dict[str, Any] = {}
    source = "defaults"
    if config_file is not None:
        source = str(config_file)
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config file {config_file}: {error}") from None
        from_file = parse_toml(text, source=source, section=SECTION)
    return merge_settings(given, from_file, DEFAULTS, source=source)


def build_store(config: UploaderConfig) -> Store:
    root = config.store_root
    if root is not None:
        return FileStore(root)
    import boto3
    import botocore.config

    client_config = botocore.config.Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        # Room for every in-flight PUT plus the playlist PUT that follows it.
        max_pool_connections=config.max_inflight + 2,
        # The publisher retries with its own backoff and logs; no hidden second layer.
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    try:
        session = boto3.session.Session(region_name=config.region)
        client = session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
    except Exception as error:  # botocore raises several unrelated types for a bad endpoint/region
        raise ConfigError(f"cannot set up the S3 client: {error}") from None
    endpoint = client.meta.endpoint_url
    return S3Store(client, acl=config.acl, description=f"s3 ({endpoint})")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # boto's own chatter (retries, credential lookups) is not the operator's concern at INFO.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _announce(line: str) -> None:
    print(line, flush=True)


def _fail(message: str, code: int) -> None:
    print(f"hls-uploadd: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def main() -> None:
    app()
