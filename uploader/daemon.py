"""Wiring and lifetime: spool, publisher and server up; signals; a bounded drain on the way down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from common.durable import write_file
from common.settings import is_loopback
from protocol import ReplayGuard

from .config import UploaderConfig
from .errors import UploaderError
from .files import AllowedDirs
from .housekeeping import Housekeeper
from .intake import Intake
from .payloads import PayloadStore
from .publisher import Publisher
from .server import ServerLimits, UploadServer
from .spool import Spool, SpoolError, SpoolThread
from .stores import Store

log = logging.getLogger(__name__)


class StartupError(UploaderError):
    """The daemon cannot start (port taken, spool unreadable...): a one-line reason for the operator."""


@dataclass(frozen=True, slots=True)
class DaemonExit:
    """How the daemon stopped, for the command's exit."""

    puts_abandoned: int  # PUTs still running in threads at exit (the next start redoes them)


def startup_line(config: UploaderConfig, host: str, port: int, store: Store, spool: Spool) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    allowed = ", ".join(str(path) for path in config.allow_dirs) or "none (add --allow-dir)"
    buckets = ", ".join(sorted(config.buckets)) or "any"
    auth = " and ".join(name for name, used in (("HMAC secret", config.secret is not None),
                                                ("TLS client certificate", config.tls_client_ca is not None)) if used)
    transport = "TLS" if config.tls_context is not None else "plaintext"
    return (
        f"hls-uploadd listening on {shown_host}:{port}; store {store.description}; spool {spool.path};"
        f" allowed dirs: {allowed}; buckets: {buckets}; peer authentication: {auth or 'none'}; transport: {transport}"
    )


async def run_daemon(config: UploaderConfig, store: Store, *, announce: Callable[[str], None]) -> DaemonExit:
    """Serve until SIGTERM/SIGINT, then drain for at most ``config.drain_timeout_s``.

    Raises StartupError when the spool, its payload directory or the listener cannot be set up.
    """
    try:
        spool = Spool.open(config.spool_dir)
    except SpoolError as error:
        raise StartupError(str(error)) from None
    payloads = PayloadStore(config.spool_dir, max_inflight_bytes=config.max_payload_inflight_bytes)
    try:
        payloads.open()
        for name in payloads.sweep(spool.queued_payloads()):
            log.info("removed payload %s, left by an earlier run without a queued message", name)
    except OSError as error:
        spool.close()
        raise StartupError(f"payload directory {payloads.directory}: {error.strerror or error}") from None
    spool_thread = SpoolThread(spool)
    allowed = AllowedDirs(config.allow_dirs)
    insecure = not config.authenticated and not is_loopback(config.listen_host)
    publisher = Publisher(config=config, spool=spool_thread, store=store, allowed=allowed, payloads=payloads)
    intake = Intake(
        spool=spool_thread,
        publisher=publisher,
        allowed=allowed,
        buckets=config.buckets,
        payloads=payloads,
        guard=ReplayGuard(config.secret) if config.secret is not None else None,
        master_name=config.master_name,
    )
    server = UploadServer(
        intake,
        insecure=insecure,
        tls=config.tls_context,
        limits=ServerLimits(max_payload_bytes=config.max_payload_bytes, idle_timeout_s=config.idle_timeout_s),
    )
    try:
        try:
            host, port = await server.start(config.listen_host, config.listen_port)
        except OSError as error:
            raise StartupError(f"cannot listen on {config.listen_host}:{config.listen_port}: {error.strerror}") from None
        if config.port_file is not None:
            write_file(config.port_file, f"{port}\n".encode())
        stop = asyncio.Event()
        _install_signal_handlers(stop)
        announce(startup_line(config, host, port, store, spool))
        if insecure:
            # Chosen with --insecure-no-auth: anyone who reaches the port can queue messages
            # (still only for allowed directories and buckets).
            log.warning("listening on non-loopback address %s WITHOUT peer authentication (--insecure-no-auth)", host)
        resumed = await publisher.start()
        if resumed:
            log.info("resuming %d stream(s) with messages queued before the last stop", resumed)
        # Reported, not fatal: messages are still accepted and queued, and held streams go on
        # once the operator corrects the store (docs/uploader.md, "Errors the operator corrects").
        checking = asyncio.create_task(publisher.check_buckets(config.buckets))
        housekeeper = asyncio.create_task(
            Housekeeper(config=config, spool=spool_thread, store=store, publisher=publisher).run(), name="housekeeping"
        )
        await stop.wait()
        log.info("shutting down: no new connections; draining uploads for up to %g s", config.drain_timeout_s)
        checking.cancel()
        housekeeper.cancel()  # what it had not done stays queued in the spool
        await asyncio.gather(checking, housekeeper, return_exceptions=True)
        await server.stop()
        cut = await publisher.drain(config.drain_timeout_s)
        if cut:
            log.warning("drain timeout: %d stream(s) stopped mid-upload; the next start redoes them", cut)
        left = await spool_thread.call(Spool.queued_count, spool)
        log.info("stopped; %d message(s) left queued for the next start", left)
        return DaemonExit(puts_abandoned=publisher.puts_running)
    finally:
        publisher.close()
        spool_thread.close()


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        if not stop.is_set():
            log.info("%s received: stopping (send it again to exit at once)", signal.Signals(number).name)
            stop.set()
            return
        # Everything acknowledged is already in the spool: exiting now loses nothing.
        log.warning("%s received again: exiting at once", signal.Signals(number).name)
        logging.shutdown()
        os._exit(1)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)

