"""Wiring and lifetime: spool, publisher and server up; signals; a bounded drain on the way down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from common.durable import write_file
from common.endpoint import HEALTH_PATH, READY_PATH, OperatorEndpoint
from common.settings import is_loopback

from .config import UploaderConfig
from .errors import UploaderError
from .files import AllowedDirs
from .health import Readiness, on_loop, spool_health
from .housekeeping import Housekeeper
from .metrics import DaemonMetrics, LiveSources, MeteredStore
from .intake import Intake
from .ownership import OwnershipRule
from .payloads import PayloadStore
from .publisher import Publisher
from .server import ServerLimits, UploadServer
from .sdnotify import SystemdNotifier
from .spool import Spool, SpoolBroken, SpoolBusy, SpoolError, SpoolThread
from .stream import StreamSummary
from .stores import Store
from .urls import UrlSigner

log = logging.getLogger(__name__)


class StartupError(UploaderError):
    """The daemon cannot start (port taken, spool unreadable...): a one-line reason for the operator."""


class SpoolInUse(StartupError):
    """Another daemon holds the spool directory's lock."""


class SpoolDamaged(StartupError):
    """The spool's integrity check failed: the operator must move it aside or restore it."""


@dataclass(frozen=True, slots=True)
class DaemonExit:
    """How the daemon stopped, for the command's exit."""

    puts_abandoned: int  # PUTs still running in threads at exit (the next start redoes them)
    spool_failure: str | None = None  # why the spool stopped the daemon (damaged, removed), if it did


def startup_line(config: UploaderConfig, host: str, port: int, store: Store, spool: Spool) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    allowed = ", ".join(str(path) for path in config.allow_dirs) or "none (add --allow-dir)"
    buckets = "any (--any-bucket)" if config.any_bucket else ", ".join(sorted(config.buckets)) or "none unsigned"
    auth = " and ".join(name for name, used in (("HMAC secret", config.secret is not None),
                                                (f"HMAC peers file ({len(config.peers)} peers)", bool(config.peers)),
                                                ("TLS client certificate", config.tls_client_ca is not None)) if used)
    transport = "TLS" if config.tls_context is not None else "plaintext"
    return (
        f"hls-uploadd listening on {shown_host}:{port}; store {store.description}; spool {spool.path};"
        f" allowed dirs: {allowed}; buckets: {buckets}; peer authentication: {auth or 'none'}; transport: {transport}"
    )


async def run_daemon(config: UploaderConfig, store: Store, *, announce: Callable[[str], None],
                     signer: UrlSigner | None = None) -> DaemonExit:
    """Serve until SIGTERM/SIGINT/SIGQUIT or the spool fails for good, then drain for at most
    ``config.drain_timeout_s``. ``signer``: what signs the URIs of private streams' playlists
    (--url-mode; None: public). Signals: see ``_install_signal_handlers``. Under systemd
    ($NOTIFY_SOCKET) it sends READY=1 once serving, WATCHDOG=1 while the event loop and the
    spool thread answer, and STOPPING=1.

    Raises SpoolInUse when another daemon holds the spool, SpoolDamaged when its integrity check
    fails, StartupError when the spool, its payload directory or the listener cannot be set up.
    """
    try:
        spool = Spool.open(config.spool_dir)
    except SpoolBusy as error:
        raise SpoolInUse(str(error)) from None
    except SpoolBroken as error:
        raise SpoolDamaged(str(error)) from None
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
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[str] = []

    def on_broken(error: SpoolBroken) -> None:  # on the spool thread
        def stop_accepting() -> None:
            log.error("%s; nothing more is acknowledged, the daemon stops", error)
            failure.append(str(error))
            stop.set()

        loop.call_soon_threadsafe(stop_accepting)

    spool_thread = SpoolThread(spool, on_broken=on_broken)
    allowed = AllowedDirs(config.allow_dirs)
    insecure = not config.authenticated and not is_loopback(config.listen_host)
    metrics = DaemonMetrics()
    store = MeteredStore(store, metrics)
    publisher = Publisher(config=config, spool=spool_thread, store=store, allowed=allowed, payloads=payloads,
                          metrics=metrics, signer=signer)
    intake = Intake(
        spool=spool_thread,
        publisher=publisher,
        allowed=allowed,
        peers=config.scopes,
        payloads=payloads,
        master_name=config.master_name,
        ownership=OwnershipRule(config.takeover_after_s),
        metrics=metrics,
    )
    server = UploadServer(
        intake,
        insecure=insecure,
        tls=config.tls_context,
        limits=ServerLimits(max_payload_bytes=config.max_payload_bytes, idle_timeout_s=config.idle_timeout_s),
        metrics=metrics,
    )
    readiness = Readiness(store, config.scopes.buckets, publisher.held, grace_s=config.not_ready_after_s)
    endpoint = _endpoint(config, metrics, readiness, spool_thread, server, payloads)
    try:
        # Read before listening: the streams a previous run left work for, not one a message is
        # queued for now.
        try:
            resumed = await publisher.left_queued()
        except SpoolBroken:
            resumed = []  # on_broken is stopping the daemon
        try:
            host, port = await server.start(config.listen_host, config.listen_port)
        except OSError as error:
            raise StartupError(f"cannot listen on {config.listen_host}:{config.listen_port}: {error.strerror}") from None
        if config.port_file is not None:
            try:
                write_file(config.port_file, f"{port}\n".encode())
            except OSError as error:
                raise StartupError(f"cannot write --port-file {config.port_file}: {error.strerror or error}") from None
        status = _Status(config, f"{host}:{port}", server, publisher, spool_thread)
        _install_signal_handlers(stop, status)
        if endpoint is not None:
            assert config.metrics_address is not None
            try:
                metrics_host, metrics_port = endpoint.start(*config.metrics_address)
            except OSError as error:
                raise StartupError(f"cannot serve --metrics-listen {config.metrics_address[0]}:"
                                   f"{config.metrics_address[1]}: {error.strerror}") from None
            log.info("metrics on http://%s/metrics, health on /healthz and /readyz",
                     f"[{metrics_host}]:{metrics_port}" if ":" in metrics_host else f"{metrics_host}:{metrics_port}")
        announce(startup_line(config, host, port, store, spool))
        if insecure:
            # Chosen with --insecure-no-auth: anyone who reaches the port can queue messages
            # (still only for allowed directories and buckets).
            log.warning("listening on non-loopback address %s WITHOUT peer authentication (--insecure-no-auth)", host)
        if resumed:
            log.info("resuming %d stream(s) with messages queued before the last stop", len(resumed))
            publisher.resume(resumed)
        # Reported, not fatal: messages are still accepted and queued, and held streams go on
        # once the operator corrects the store (docs/uploader.md, "Errors the operator corrects").
        checking = asyncio.create_task(publisher.check_buckets(config.scopes.buckets, readiness.bucket_checked))
        checking.add_done_callback(lambda _: setattr(readiness, "checked", True))
        housekeeper = asyncio.create_task(
            Housekeeper(config=config, spool=spool_thread, store=store, publisher=publisher, metrics=metrics).run(),
            name="housekeeping",
        )
        systemd = SystemdNotifier()
        systemd.notify("READY=1")
        watchdog = asyncio.create_task(_watchdog(systemd, spool_thread)) if systemd.watchdog_interval_s else None
        await stop.wait()
        systemd.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        log.info("shutting down: no new connections; draining uploads for up to %g s", config.drain_timeout_s)
        checking.cancel()
        housekeeper.cancel()  # what it had not done stays queued in the spool
        await asyncio.gather(checking, housekeeper, return_exceptions=True)
        await server.stop()
        cut = await publisher.drain(config.drain_timeout_s)
        if cut:
            log.warning("drain timeout: %d stream(s) stopped mid-upload; the next start redoes them", cut)
        if spool_thread.broken is None:
            left = await spool_thread.call(Spool.queued_count, spool)
            log.info("stopped; %d message(s) left queued for the next start", left)
        return DaemonExit(puts_abandoned=publisher.puts_running, spool_failure=failure[0] if failure else None)
    finally:
        if endpoint is not None:
            endpoint.stop()
        publisher.close()
        spool_thread.close()


async def _watchdog(systemd: SystemdNotifier, spool_thread: SpoolThread) -> None:
    """WATCHDOG=1 every ``systemd.watchdog_interval_s`` while the daemon is healthy as
    ``/healthz`` says (``health.spool_health``: the event loop runs, the spool thread answers and
    the spool takes a write): a hung loop or spool sends none, and systemd restarts the daemon."""
    assert systemd.watchdog_interval_s is not None
    while True:
        if spool_thread.broken is not None:
            return  # the spool failed for good: the daemon is stopping
        if (reason := await spool_health(spool_thread)) is None:
            systemd.notify("WATCHDOG=1")
        else:
            log.error("not healthy, no watchdog ping: %s", reason)
        await asyncio.sleep(systemd.watchdog_interval_s)


def _endpoint(config: UploaderConfig, metrics: DaemonMetrics, readiness: Readiness, spool_thread: SpoolThread,
              server: UploadServer, payloads: PayloadStore) -> OperatorEndpoint | None:
    """The --metrics-listen endpoint (not started yet), or None without the option."""
    if config.metrics_address is None:
        return None
    loop = asyncio.get_running_loop()

    def healthy() -> str | None:
        return on_loop(loop, spool_health(spool_thread))

    def summaries() -> list[StreamSummary]:
        return on_loop(loop, spool_thread.call(Spool.summaries, spool_thread.spool))

    metrics.watch(LiveSources(summaries=summaries, connections=lambda: server.connection_count,
                              payload_bytes=lambda: payloads.budget.used, spool_path=spool_thread.spool.path))
    return OperatorEndpoint(metrics.registry, {HEALTH_PATH: healthy, READY_PATH: lambda: healthy() or readiness()})


class _Status:
    """What SIGUSR1 and SIGHUP log: one paragraph on the daemon's state."""

    def __init__(self, config: UploaderConfig, address: str, server: UploadServer, publisher: Publisher,
                 spool_thread: SpoolThread) -> None:
        self._config = config
        self._address = address
        self._server = server
        self._publisher = publisher
        self._spool_thread = spool_thread

    async def log(self, reason: str) -> None:
        """Log the summary, prefixed by ``reason`` (the signal's name)."""
        try:
            queued = await self._spool_thread.call(Spool.queued_count, self._spool_thread.spool)
            streams = len(await self._spool_thread.call(Spool.streams_with_work, self._spool_thread.spool))
            spool = f"{queued} message(s) queued for {streams} stream(s) in {self._spool_thread.spool.path}"
        except SpoolError as error:
            spool = f"spool unusable: {error}"
        log.info(
            "%s: status: listening on %s; %d connection(s); %s; %d PUT(s) running; log level %s",
            reason, self._address, self._server.connection_count, spool, self._publisher.puts_running,
            logging.getLevelName(logging.getLogger().level),
        )


def _install_signal_handlers(stop: asyncio.Event, status: _Status) -> None:
    """SIGTERM, SIGINT, SIGQUIT: stop (drain, everything else stays queued); a second one exits
    at once. SIGHUP: nothing is reloaded (settings are read at start), the status is logged and
    the daemon goes on, so a closed terminal or a log-rotation HUP does not stop it. SIGUSR1: log
    the status. SIGUSR2: switch DEBUG logging on, or back to the configured level."""
    loop = asyncio.get_running_loop()
    configured_level = logging.getLogger().level
    tasks: set[asyncio.Task[None]] = set()

    def on_stop(number: int) -> None:
        if not stop.is_set():
            log.info("%s received: stopping (send it again to exit at once)", signal.Signals(number).name)
            stop.set()
            return
        # Everything acknowledged is already in the spool: exiting now loses nothing.
        log.warning("%s received again: exiting at once", signal.Signals(number).name)
        logging.shutdown()
        os._exit(1)

    def log_status(reason: str) -> None:
        task = loop.create_task(status.log(reason))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_hup() -> None:
        log.info("SIGHUP received: nothing to reload (settings are read at start; restart to change them)")
        log_status("SIGHUP")

    def on_usr2() -> None:
        root = logging.getLogger()
        root.setLevel(configured_level if root.level == logging.DEBUG else logging.DEBUG)
        log.warning("SIGUSR2 received: log level now %s (SIGUSR2 again switches back)",
                    logging.getLevelName(root.level))

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(number, on_stop, number)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGUSR1, log_status, "SIGUSR1")
    loop.add_signal_handler(signal.SIGUSR2, on_usr2)
