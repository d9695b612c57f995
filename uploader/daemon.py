"""Wiring and lifetime: spool, publisher and server up; signals; a bounded drain on the way down."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.durable import write_file
from common.endpoint import HEALTH_PATH, READY_PATH, OperatorEndpoint
from common.settings import is_loopback

from .config import UploaderConfig
from .errors import UploaderError
from .files import IDLE_DIRECTORY_S, AllowedDirs
from .health import Readiness, on_loop, spool_health
from .housekeeping import Housekeeper
from .metrics import DaemonMetrics, LiveSources, MeteredStore
from .intake import Intake, Replica
from .ownership import OwnershipRule
from .payloads import PayloadStore
from .publisher import Publisher
from .server import ServerLimits, UploadServer
from .sdnotify import SystemdNotifier
from .spool import Spool, SpoolBroken, SpoolBusy, SpoolError, SpoolThread
from .stream import StreamKey, StreamSummary
from .stores import Store
from .urls import UrlSigner

log = logging.getLogger(__name__)

# Under the spool directory: one spool per destination but its own (``destination_spool_dir``),
# and the file naming the destination its own spool is of (``spool_owner``).
DESTINATIONS_DIR_NAME = "destinations"
DESTINATION_FILE_NAME = "destination"


class StartupError(UploaderError):
    """The daemon cannot start (port taken, spool unreadable...): a one-line reason for the operator."""


class SpoolInUse(StartupError):
    """Another daemon holds the spool directory's lock."""


class SpoolOfAnotherStore(StartupError):
    """The spool directory holds the queue of a --store no option gives now (``spool_owner``)."""


class SpoolDamaged(StartupError):
    """The spool's integrity check failed: the operator must move it aside or restore it."""


@dataclass(frozen=True, slots=True)
class DaemonExit:
    """How the daemon stopped, for the command's exit."""

    puts_abandoned: int  # PUTs still running in threads at exit (the next start redoes them)
    spool_failure: str | None = None  # why the spool stopped the daemon (damaged, removed), if it did


def startup_line(config: UploaderConfig, host: str, port: int, destinations: Sequence[Destination]) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    allowed = ", ".join(str(path) for path in config.allow_dirs) or "none (add --allow-dir)"
    buckets = "any (--any-bucket)" if config.any_bucket else ", ".join(sorted(config.buckets)) or "none unsigned"
    auth = " and ".join(name for name, used in (("HMAC secret", config.secret is not None),
                                                (f"HMAC peers file ({len(config.peers)} peers)", bool(config.peers)),
                                                ("TLS client certificate", config.tls_client_ca is not None)) if used)
    transport = "TLS" if config.tls_context is not None else "plaintext"
    stores = "; ".join(f"store {d.store.description}" for d in destinations)
    return (
        f"hls-uploadd listening on {shown_host}:{port}; {stores}; spool {destinations[0].spool.path};"
        f" allowed dirs: {allowed}; buckets: {buckets}; peer authentication: {auth or 'none'}; transport: {transport}"
    )


@dataclass(slots=True)
class Destination:
    """One --store and what publishes to it: its own spool (queue, state, retention), payloads,
    publisher and readiness. ``name``: the store's URL without its password."""

    name: str
    spool: Spool
    spool_thread: SpoolThread
    payloads: PayloadStore
    store: MeteredStore
    publisher: Publisher
    readiness: Readiness


def destination_spool_dir(spool_dir: Path, identity: str) -> Path:
    """The spool directory of a destination other than the spool directory's own: named by its
    place (``StoreUrl.identity``), so that it stays its own whatever the other --store options,
    their order, and its credentials and parameters."""
    readable = re.sub(r"[^A-Za-z0-9.@-]+", "_", identity).strip("_")[:48]
    return spool_dir / DESTINATIONS_DIR_NAME / f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def spool_owner(config: UploaderConfig) -> int:
    """Which --store (its index) the spool directory's own spool is of: the one its
    ``DESTINATION_FILE_NAME`` names, else (a new spool, or one of a daemon with a single store
    from before the file) the first, recorded now. That destination takes the messages (peers'
    ownership of streams, the ends and forgetting of streams) and the others follow it. Raises
    SpoolOfAnotherStore when the file names a store no --store gives: its queue would go
    unpublished. The spool directory's spool is open (and the directory there) when it is called."""
    path = config.spool_dir / DESTINATION_FILE_NAME
    try:
        recorded = path.read_text().strip()
    except FileNotFoundError:
        recorded = None
    except OSError as error:
        raise StartupError(f"cannot read {path}: {error.strerror or error}") from None
    places = [url.identity for url in config.stores]
    if recorded is None:
        try:
            write_file(path, f"{places[0]}\n".encode(), mode=0o600)
        except OSError as error:
            raise StartupError(f"cannot write {path}: {error.strerror or error}") from None
        return 0
    if recorded not in places:
        raise SpoolOfAnotherStore(f"spool {config.spool_dir} holds the queue and streams of --store {recorded}, which no"
                           f" --store gives now: give it again (anywhere among the --store options), or move"
                           f" {config.spool_dir} aside to start afresh")
    return places.index(recorded)


def _open_spool(directory: Path, config: UploaderConfig) -> tuple[Spool, PayloadStore]:
    """Open the spool in ``directory`` and its payload directory (payloads no queued message
    names removed). Raises SpoolInUse, SpoolDamaged, StartupError."""
    try:
        spool = Spool.open(directory)
    except SpoolBusy as error:
        raise SpoolInUse(str(error)) from None
    except SpoolBroken as error:
        raise SpoolDamaged(str(error)) from None
    except SpoolError as error:
        raise StartupError(str(error)) from None
    payloads = PayloadStore(directory, max_inflight_bytes=config.max_payload_inflight_bytes)
    try:
        payloads.open()
        for name in payloads.sweep(spool.queued_payloads()):
            log.info("removed payload %s, left by an earlier run without a queued message", name)
    except OSError as error:
        spool.close()
        raise StartupError(f"payload directory {payloads.directory}: {error.strerror or error}") from None
    return spool, payloads


async def run_daemon(config: UploaderConfig, stores: Sequence[Store], *, announce: Callable[[str], None],
                     signer: UrlSigner | None = None) -> DaemonExit:
    """Serve until SIGTERM/SIGINT/SIGQUIT or a spool fails for good, then drain for at most
    ``config.drain_timeout_s``. ``stores``: one per --store, in its order (``config.stores``).
    The spool directory's own spool is one destination's (``spool_owner``), which takes the
    messages; each other one has its own spool under its ``destinations/``: its own queue,
    retries and retention, so one that is slow or down delays no other.
    ``signer``: what signs the URIs of private streams' playlists (--url-mode; None: public).
    Signals: see ``_install_signal_handlers``. Under systemd ($NOTIFY_SOCKET) it sends READY=1
    once serving, WATCHDOG=1 while the event loop and the spools answer, and STOPPING=1.

    Raises SpoolInUse when another daemon holds the spool, SpoolDamaged when an integrity check
    fails, StartupError when a spool, its payload directory or the listener cannot be set up.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[str] = []

    def on_broken(error: SpoolBroken) -> None:  # on a spool thread or the event loop
        def stop_accepting() -> None:
            log.error("%s; nothing more is acknowledged, the daemon stops", error)
            failure.append(str(error))
            stop.set()

        loop.call_soon_threadsafe(stop_accepting)

    allowed = AllowedDirs(config.allow_dirs)
    insecure = not config.authenticated and not is_loopback(config.listen_host)
    metrics = DaemonMetrics()
    several = len(stores) > 1
    own_spool = _open_spool(config.spool_dir, config)  # locked and checked before anything in it is read
    try:
        owner = spool_owner(config)
    except StartupError:
        own_spool[0].close()
        raise
    order = [owner, *(index for index in range(len(stores)) if index != owner)]
    destinations: list[Destination] = []
    try:
        for index in order:
            url, raw_store = config.stores[index], stores[index]
            name = url.identity  # in labels and log lines: the same when a key file moves
            if index == owner:
                spool, payloads = own_spool
            else:
                spool, payloads = _open_spool(destination_spool_dir(config.spool_dir, url.identity), config)
            spool_thread = SpoolThread(spool, on_broken=on_broken)
            store = MeteredStore(raw_store, metrics.destination(name))
            publisher = Publisher(config=config, spool=spool_thread, store=store, allowed=allowed, payloads=payloads,
                                  metrics=metrics.destination(name), signer=signer,
                                  destination=name if several else None, removes_segment_files=not several)
            readiness = Readiness(store, config.scopes.buckets, publisher.held, grace_s=config.not_ready_after_s)
            destinations.append(Destination(name, spool, spool_thread, payloads, store, publisher, readiness))
        return await _serve(config, destinations, metrics, allowed, insecure, stop, failure, announce)
    finally:
        for destination in destinations:
            destination.publisher.close()
            destination.spool_thread.close()
            destination.store.close()


async def _serve(config: UploaderConfig, destinations: list[Destination], metrics: DaemonMetrics,
                 allowed: AllowedDirs, insecure: bool, stop: asyncio.Event, failure: list[str],
                 announce: Callable[[str], None]) -> DaemonExit:
    first = destinations[0]
    intake = Intake(
        spool=first.spool_thread,
        publisher=first.publisher,
        allowed=allowed,
        peers=config.scopes,
        payloads=first.payloads,
        master_name=config.master_name,
        ownership=OwnershipRule(config.takeover_after_s),
        metrics=metrics,
        replicas=[Replica(d.name, d.spool_thread, d.payloads, d.publisher) for d in destinations[1:]],
        keep_segment_files=config.keep_segment_files,
    )
    server = UploadServer(
        intake,
        insecure=insecure,
        tls=config.tls_context,
        limits=ServerLimits(max_payload_bytes=config.max_payload_bytes, idle_timeout_s=config.idle_timeout_s),
        metrics=metrics,
    )
    endpoint = _endpoint(config, metrics, destinations, server)
    try:
        # Read before listening: the streams a previous run left work for, not one a message is
        # queued for now.
        resumed: list[list[StreamKey]] = []
        for destination in destinations:
            try:
                resumed.append(await destination.publisher.left_queued())
            except SpoolBroken:
                resumed.append([])  # on_broken is stopping the daemon
        try:
            host, port = await server.start(config.listen_host, config.listen_port)
        except OSError as error:
            raise StartupError(f"cannot listen on {config.listen_host}:{config.listen_port}: {error.strerror}") from None
        status = _Status(config, f"{host}:{port}", server, destinations)
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
        # Written once every address is bound: whoever waits for the file finds a daemon that started.
        if config.port_file is not None:
            try:
                write_file(config.port_file, f"{port}\n".encode())
            except OSError as error:
                raise StartupError(f"cannot write --port-file {config.port_file}: {error.strerror or error}") from None
        announce(startup_line(config, host, port, destinations))
        if insecure:
            # Chosen with --insecure-no-auth: anyone who reaches the port can queue messages
            # (still only for allowed directories and buckets).
            log.warning("listening on non-loopback address %s WITHOUT peer authentication (--insecure-no-auth)", host)
        _warn_of_left_destinations(config, destinations)
        tasks: list[asyncio.Task[None]] = []
        for destination, keys in zip(destinations, resumed, strict=True):
            if keys:
                log.info("resuming %d stream(s) with messages queued before the last stop%s", len(keys),
                         f" for destination {destination.name}" if len(destinations) > 1 else "")
                destination.publisher.resume(keys)
            # Reported, not fatal: messages are still accepted and queued, and held streams go on
            # once the operator corrects the store (docs/uploader.md, "Errors the operator corrects").
            readiness = destination.readiness
            checking = asyncio.create_task(destination.publisher.check_buckets(config.scopes.buckets,
                                                                               readiness.bucket_checked))
            checking.add_done_callback(lambda _, readiness=readiness: setattr(readiness, "checked", True))
            followers = ([(d.spool_thread, d.publisher) for d in destinations[1:]]
                         if destination is destinations[0] else None)
            housekeeper = Housekeeper(config=config, spool=destination.spool_thread, store=destination.store,
                                      publisher=destination.publisher, metrics=metrics.destination(destination.name),
                                      destination=destination.name if len(destinations) > 1 else None,
                                      followers=followers)
            tasks += [checking, asyncio.create_task(housekeeper.run(), name=f"housekeeping {destination.name}")]
        tasks.append(asyncio.create_task(_close_idle_directories(allowed), name="idle directories"))
        systemd = SystemdNotifier()
        systemd.notify("READY=1")
        spool_threads = [d.spool_thread for d in destinations]
        watchdog = asyncio.create_task(_watchdog(systemd, spool_threads)) if systemd.watchdog_interval_s else None
        await stop.wait()
        systemd.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        log.info("shutting down: no new connections; draining uploads for up to %g s", config.drain_timeout_s)
        for task in tasks:
            task.cancel()  # what housekeeping had not done stays queued in the spool
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        cut = sum(await asyncio.gather(*(d.publisher.drain(config.drain_timeout_s) for d in destinations)))
        if cut:
            log.warning("drain timeout: %d stream(s) stopped mid-upload; the next start redoes them", cut)
        if all(d.spool_thread.broken is None for d in destinations):
            left = sum([await d.spool_thread.call(Spool.queued_count, d.spool) for d in destinations])
            log.info("stopped; %d message(s) left queued for the next start", left)
        return DaemonExit(puts_abandoned=sum(d.publisher.puts_running for d in destinations),
                          spool_failure=failure[0] if failure else None)
    finally:
        if endpoint is not None:
            endpoint.stop()


def _warn_of_left_destinations(config: UploaderConfig, destinations: Sequence[Destination]) -> None:
    """A WARNING for each spool of a destination no --store names any more (its queue waits there)."""
    used = {d.spool.path.parent for d in destinations}
    with contextlib.suppress(OSError):
        for directory in sorted((config.spool_dir / DESTINATIONS_DIR_NAME).iterdir()):
            if directory not in used:
                log.warning("spool %s is of a destination no --store names now: what it has queued is not"
                            " published (give that --store again, or remove the directory)", directory)


async def _close_idle_directories(allowed: AllowedDirs) -> None:
    """Close the segment directories no message named for a while (``files.IDLE_DIRECTORY_S``)."""
    while True:
        await asyncio.sleep(IDLE_DIRECTORY_S)
        allowed.opened.close_idle()


async def _watchdog(systemd: SystemdNotifier, spool_threads: Sequence[SpoolThread]) -> None:
    """WATCHDOG=1 every ``systemd.watchdog_interval_s`` while the daemon is healthy as
    ``/healthz`` says (``health.spool_health``: the event loop runs, every spool thread answers
    and its spool takes a write): a hung loop or spool sends none, and systemd restarts the daemon."""
    assert systemd.watchdog_interval_s is not None
    while True:
        if any(spool_thread.broken is not None for spool_thread in spool_threads):
            return  # a spool failed for good: the daemon is stopping
        if (reason := await _spools_health(spool_threads)) is None:
            systemd.notify("WATCHDOG=1")
        else:
            log.error("not healthy, no watchdog ping: %s", reason)
        await asyncio.sleep(systemd.watchdog_interval_s)


async def _spools_health(spool_threads: Sequence[SpoolThread]) -> str | None:
    """The first spool's reason to be unhealthy (``health.spool_health``), None when none has one."""
    for spool_thread in spool_threads:
        if (reason := await spool_health(spool_thread)) is not None:
            return reason
    return None


def _endpoint(config: UploaderConfig, metrics: DaemonMetrics, destinations: Sequence[Destination],
              server: UploadServer) -> OperatorEndpoint | None:
    """The --metrics-listen endpoint (not started yet), or None without the option. Ready when
    every destination is (``health.Readiness``); the reason names the destination when there are
    several."""
    if config.metrics_address is None:
        return None
    loop = asyncio.get_running_loop()
    spool_threads = [d.spool_thread for d in destinations]

    def healthy() -> str | None:
        return on_loop(loop, _spools_health(spool_threads))

    def ready() -> str | None:
        if (reason := healthy()) is not None:
            return reason
        for destination in destinations:
            if (reason := destination.readiness()) is not None:
                return f"destination {destination.name}: {reason}" if len(destinations) > 1 else reason
        return None

    async def summaries() -> dict[str, list[StreamSummary]]:
        return {d.name: await d.spool_thread.call(Spool.summaries, d.spool) for d in destinations}

    metrics.watch(LiveSources(summaries=lambda: on_loop(loop, summaries()),
                              connections=lambda: server.connection_count,
                              payload_bytes=lambda: destinations[0].payloads.budget.used,
                              spool_paths=tuple(d.spool.path for d in destinations)))
    return OperatorEndpoint(metrics.registry, {HEALTH_PATH: healthy, READY_PATH: ready})


class _Status:
    """What SIGUSR1 and SIGHUP log: one paragraph on the daemon's state."""

    def __init__(self, config: UploaderConfig, address: str, server: UploadServer,
                 destinations: Sequence[Destination]) -> None:
        self._config = config
        self._address = address
        self._server = server
        self._destinations = destinations

    async def log(self, reason: str) -> None:
        """Log the summary, prefixed by ``reason`` (the signal's name)."""
        parts = []
        for destination in self._destinations:
            spool_thread = destination.spool_thread
            try:
                queued = await spool_thread.call(Spool.queued_count, spool_thread.spool)
                streams = len(await spool_thread.call(Spool.streams_with_work, spool_thread.spool))
                parts.append(f"{queued} message(s) queued for {streams} stream(s) in {spool_thread.spool.path}")
            except SpoolError as error:
                parts.append(f"spool unusable: {error}")
        spool = "; ".join(parts)
        log.info(
            "%s: status: listening on %s; %d connection(s); %s; %d PUT(s) running; log level %s",
            reason, self._address, self._server.connection_count, spool,
            sum(d.publisher.puts_running for d in self._destinations),
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
