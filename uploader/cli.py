"""Command line of hls-uploadd: options -> one UploaderConfig -> the daemon; errors -> exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, NoReturn

import typer

from common.options import with_options
from common.settings import ConfigError

from .config import ENV_PREFIX, OPTIONS, SECTION, UploaderConfig
from .daemon import SpoolDamaged, SpoolInUse, StartupError, run_daemon
from .stores import FileStore, S3Store, Store

# Exit codes: the operator's configuration is wrong (or another daemon holds the spool) / the
# daemon could not start / the spool is damaged or was removed: the operator must act first.
EXIT_CONFIG = 2
EXIT_STARTUP = 1
EXIT_SPOOL = 3

# S3 client limits. Connect fails fast so the publisher's own backoff takes over; a read may take
# long for a large segment on a slow link, but not forever.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 30.0

app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Upload daemon: index messages in, segments and playlists out.")


def _fail(message: str, code: int) -> NoReturn:
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
        _setup_logging(uploader_config.log_level)
        chosen_store = build_store(uploader_config)
    except ConfigError as error:
        _config_error(error)
    try:
        outcome = asyncio.run(run_daemon(uploader_config, chosen_store, announce=_announce))
    except SpoolInUse as error:
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


def main() -> None:
    app()
