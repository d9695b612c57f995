"""Publishing queued messages: per stream strictly in order, streams concurrently.

For each queued message of a stream: PUT the segment, then PUT the playlist that names it, then
record both in the spool. A stream has at most one worker, so its playlists go out in order and
a newer one is never overwritten by an older one. A global semaphore bounds PUTs in flight.
Transient and correctable store errors are retried without limit (exponential backoff, full
jitter, capped): the stream's queue waits, and a correctable one is an ERROR naming the stream,
the key and the fix, at most once per ``HELD_LOG_INTERVAL_S``. A segment fails (is never listed)
only when its own PUT can never succeed: its file is gone or refused, the store refuses that
request for good, or its name is taken by other bytes (segment PUTs are create-only: a published
segment is never replaced). A playlist PUT never fails a segment: it is held until it goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import BinaryIO, TypeVar

from common.logs import DESTINATION, SEGMENT, STREAM, Throttle
from protocol import IndexMessage, ProtocolError, segment_number

from .config import UploaderConfig
from .files import AllowedDirs, DirectoryRefused, SegmentFileError
from .player import (
    PAGE_CONTENT_TYPE,
    PAGE_NAME,
    SCRIPT_CACHE_CONTROL,
    SCRIPT_CONTENT_TYPE,
    SCRIPT_NAME,
    player_script,
    render_player_page,
)
from .leases import HEARTBEAT_THREADS, LEASE_THREADS, Leases
from .master import MIN_RENDITIONS, Program, master_playlist, variant
from .metrics import DaemonMetrics, DestinationMetrics, store_error_kind
from .payloads import PayloadStore
from .resume import UnreadablePlaylist, follows, new_run, segment_name, state_metadata, stored_state
from .playlist import PlaylistOptions, PlaylistType, listed_segments, media_playlist, should_publish
from .cost import Usage
from .retention import deletions, left_behind
from .spool import QueuedItem, Spool, SpoolBroken, SpoolError, SpoolThread
from .stores import (
    PLAYLIST_CONTENT_TYPE,
    SEGMENT_CONTENT_TYPE,
    WRITE_CHECK_KEY,
    Body,
    CorrectableStoreError,
    DigestMismatchError,
    ObjectTakenError,
    PermanentStoreError,
    ReadRefused,
    Store,
    StoreError,
    TakenUnreadableError,
    TransientStoreError,
    Version,
    VersionConflict,
    check_writable,
)
from .stream import (
    MIN_TARGET_DURATIONS_LISTED,
    PublishedSegment,
    RenditionInfo,
    StreamKey,
    StreamState,
    Transition,
    segment_name_of,
    stream_label,
    with_end,
    with_failure,
    with_segment,
    without_lost,
)
from .urls import LEFT_FRACTION, REUSE_FRACTION, SIGV4_MAX_TTL_S, SignedUrls, UrlSigner, required_ttl_s, shortest_ttl_s

log = logging.getLogger(__name__)

T = TypeVar("T")

# First retry delay; doubles each attempt up to --retry-max-delay.
RETRY_BASE_DELAY_S = 0.2

# Internal errors (bugs) in a row on one message before it is marked failed, so it cannot block
# its stream forever.
MAX_UNEXPECTED_ERRORS = 5

# During a long outage, one warning per this many failed attempts of one PUT (plus the first).
RETRY_LOG_EVERY = 10

# A playlist PUT refused (412) over a version it may replace (``resume.follows``) is tried again
# over the version found at most this many times in all; then the stream is taken as overtaken.
MAX_VERSION_RETRIES = 3

# A store request's operation (its metrics label) as log lines name it.
_REQUESTS = {"put": "upload", "get": "read"}

# A stream whose segments come out longer than its target duration logs one ERROR per this many
# seconds at most: a segmenter that breaks its promise usually does so on every segment.
OVER_TARGET_LOG_INTERVAL_S = 60.0

# A stream held by an error the operator must correct logs one ERROR per this many seconds at
# most (plus the first): loud enough to be seen, not one line per retry.
HELD_LOG_INTERVAL_S = 30.0


def _due(signed_at: float | None, ttl_s: float) -> bool:
    """Whether URLs signed at ``signed_at`` (wall clock; None: not in this run) for ``ttl_s`` are
    to be signed again: ``urls.REUSE_FRACTION`` of it has passed, or the clock went back."""
    if signed_at is None:
        return True
    age_s = time.time() - signed_at
    return age_s >= ttl_s * REUSE_FRACTION or age_s < 0


def _unless_taken_unreadable(put: Callable[[], None]) -> None:
    """``put``, a TakenUnreadableError counted as done."""
    with contextlib.suppress(TakenUnreadableError):
        put()


def _measured(body: Body, sizes: list[int]) -> Body:
    """``body`` as a store takes it, noting its size in bytes in ``sizes`` each time it is read."""
    if isinstance(body, bytes):
        sizes.append(len(body))
        return body

    def opened() -> BinaryIO:
        file = body()
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sizes.append(os.fstat(file.fileno()).st_size)
        return file
    return opened


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** min(attempt - 1, 30)))


class Publisher:
    def __init__(
        self,
        *,
        config: UploaderConfig,
        spool: SpoolThread,
        store: Store,
        allowed: AllowedDirs,
        payloads: PayloadStore,
        metrics: DestinationMetrics | None = None,
        rng: random.Random | None = None,
        signer: UrlSigner | None = None,
        destination: str | None = None,
        removes_segment_files: bool = True,
    ) -> None:
        """Publishes what ``spool`` queues to ``store``. ``destination``: the store's name in log
        lines (``common.logs.DESTINATION``), when the daemon has several. ``removes_segment_files``:
        a segment file read from --allow-dir is removed once stored (unless --keep-segment-files);
        False with several destinations, where each has its own link to the bytes and the intake
        removes the file (``intake.Intake``). With --lease-ttl (several daemons), a program is
        published only while this daemon holds its lease in ``store`` (``leases.Leases``)."""
        self._config = config
        self._destination = destination
        self._removes_segment_files = removes_segment_files and not config.keep_segment_files
        # Private streams (--url-mode): what signs the URIs playlists list, the URLs signed per
        # stream (segments) and per program (media playlists), when each stream's playlist and
        # each program's master were last uploaded (wall clock, as URLs expire by it), the
        # streams housekeeping asked to sign again (-> their last message), and those whose URLs
        # were found to outlive --url-ttl (warned once).
        self._signer = signer
        self._segment_urls: dict[StreamKey, SignedUrls] = {}
        self._playlist_urls: dict[tuple[str, str], SignedUrls] = {}
        self._signed_at: dict[StreamKey, float] = {}
        self._master_signed_at: dict[tuple[str, str], float] = {}
        self._resign: dict[StreamKey, IndexMessage] = {}
        # Streams forgotten (``forget``) while their worker runs: a sign-again in flight must not
        # put them back in a master.
        self._forgotten: set[StreamKey] = set()
        self._ttl_warned: set[StreamKey] = set()
        self._metrics = metrics or DaemonMetrics().destination(store.description)
        self._options = PlaylistOptions(window=config.window, playlist_type=config.playlist_type)
        self._keep = config.window if config.playlist_type is PlaylistType.LIVE else None
        self._spool = spool
        self._store = store
        self._allowed = allowed
        self._payloads = payloads
        self._rng = rng or random.Random()
        self._inflight = asyncio.Semaphore(config.max_inflight)
        # One thread per possible in-flight PUT: the semaphore never lets work queue here.
        self._io = ThreadPoolExecutor(max_workers=config.max_inflight, thread_name_prefix="put")
        self._workers: dict[StreamKey, asyncio.Task[None]] = {}
        self._pages: dict[tuple[str, str], str] = {}  # (bucket, key_prefix) -> playlist its page plays
        # Per program (bucket, key_prefix): its renditions and its master as last uploaded this
        # run (read from the spool once, then kept up to date), and a lock so its PUTs go out in order.
        self._programs: dict[tuple[str, str], Program] = {}
        # Per program, the lease's fencing number (0 without leases) under which its master in the
        # store was last read this run (``_add_stored_renditions``); the version of each program's
        # master this daemon last read or wrote, which its next master PUT replaces (None: none
        # there), absent for a master this daemon may not read (then replaced as is).
        self._masters_read: dict[tuple[str, str], int] = {}
        self._master_versions: dict[tuple[str, str], str | None] = {}
        self._master_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # One player page PUT at a time per (bucket, key_prefix): the last to finish is the newest.
        self._page_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._woken: set[StreamKey] = set()
        self._over_target = Throttle(OVER_TARGET_LOG_INTERVAL_S)  # per stream
        self._held = Throttle(HELD_LOG_INTERVAL_S)  # per stream label
        # Streams held by a refusal the operator must correct: -> (monotonic since, reason).
        self.held: dict[StreamKey, tuple[float, str]] = {}
        # Per stream, the messages whose segment no stored playlist lists yet: queue id -> when it
        # arrived (wall clock). By id, so that a message published again (a redo) counts once.
        self._unlisted: dict[StreamKey, dict[int, float]] = {}
        # Per stream, what its requests cost the store and the spool does not know yet (uploader/cost.py).
        self._usage: dict[StreamKey, Usage] = {}
        # A store that keeps versions (stores.Store.versions): each stream's playlist is written as
        # a chain, and read back once per run before its first publish (``_sync``). The streams
        # read this run; those whose state came from the store (their re-sent segments are not
        # listed twice), and of them those whose whole window the spool is still to record; and
        # those another writer took (``_fence``): left alone until a restart.
        self._versions = store.versions
        self._synced: set[StreamKey] = set()
        self._adopted: set[StreamKey] = set()
        self._unrecorded_window: set[StreamKey] = set()
        self._fenced: set[StreamKey] = set()
        # Lease requests have threads of their own: a renewal must not wait behind the uploads.
        self._lease_io = ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="lease")
        self._beat_io = ThreadPoolExecutor(max_workers=HEARTBEAT_THREADS, thread_name_prefix="heartbeat")
        self._leases = Leases(store, self._lease_call, ttl_s=config.lease_ttl_s, count=self._metrics.lease,
                              beat_call=self._beat_call) \
            if config.lease_ttl_s and store.versions else None
        if self._leases is not None:
            log.info("programs are published under leases of %g s in %s, as holder %s", config.lease_ttl_s,
                     store.description, self._leases.me)
        # With leases: the fencing number of the program's lease each stream was last read back
        # from the store under (``_sync``); a new one means another daemon may have written it.
        self._fences: dict[StreamKey, int] = {}
        self._unreadable: set[str] = set()  # buckets whose playlists this daemon may not read (logged once)
        self._stopping = False
        self._running_lock = threading.Lock()
        self._running = 0  # store calls in threads right now: a cancelled await does not stop them

    # Control.

    async def left_queued(self) -> list[StreamKey]:
        """At start, before any message is taken: the streams a previous run left messages queued
        for (``resume`` them), and the holds it recorded forgotten (a refusal that lasts is found
        again)."""
        await self._spool.call(Spool.clear_held, self._spool.spool)
        return await self._spool.call(Spool.streams_with_work, self._spool.spool)

    def resume(self, keys: list[StreamKey]) -> None:
        """Start a worker for each of ``keys`` (``left_queued``)."""
        for key in keys:
            self.notify(key)

    async def check_buckets(self, buckets: frozenset[str],
                            report: Callable[[str, str | None], None] = lambda bucket, refusal: None) -> None:
        """PUT ``stores.WRITE_CHECK_KEY`` into each bucket once, and log an ERROR with the fix for
        each that refuses (its streams will be held), a WARNING when the store cannot be reached
        or ignores create-only PUTs, else an INFO line. ``report(bucket, refusal)`` is told each
        answer (refusal None: writable; a bucket the store did not answer for is not reported).
        Nothing else changes: a held stream finds out by itself."""
        DESTINATION.set(self._destination)  # run as its own task
        for bucket in sorted(buckets):
            try:
                create_only = await self._store_call(partial(check_writable, self._store, bucket))
            except CorrectableStoreError as error:
                log.error("bucket %s cannot be written: %s; fix: %s. Its streams are held (messages are still"
                          " accepted and queued) until it can", bucket, error, error.fix)
                report(bucket, str(error))
            except DigestMismatchError as error:
                log.warning("bucket %s could not be checked: the store found the body unlike its checksum: %s; if"
                            " every upload gets this answer, %s", bucket, error, error.fix)
            except TransientStoreError as error:
                log.warning("bucket %s could not be checked (the store did not answer): %s", bucket, error)
            except StoreError as error:
                log.error("bucket %s cannot be written: %s", bucket, error)
                report(bucket, str(error))
            except Exception:  # a defect: said, and the other buckets still checked
                log.exception("bucket %s could not be checked: internal error", bucket)
            else:
                report(bucket, None)
                log.info("bucket %s can be written (checked with %s)", bucket, WRITE_CHECK_KEY)
                if not create_only:
                    log.warning("bucket %s: the store does not refuse a create-only write over a taken name (S3's"
                                " If-None-Match ignored, or none in its protocol; checked with %s): each segment is"
                                " looked for before it is written, which two writers racing for one name can both"
                                " pass, and playlists are not fenced against another daemon (docs/architecture.md); use a"
                                " store that enforces conditional writes", bucket, WRITE_CHECK_KEY)

    def notify(self, key: StreamKey) -> None:
        """A message for ``key`` was queued."""
        if self._stopping or key in self._fenced:
            return
        if key in self._workers:
            self._woken.add(key)
        else:
            self._workers[key] = asyncio.create_task(self._run_stream(key), name=f"stream {stream_label(key)}")

    async def elsewhere(self, message: IndexMessage) -> str | None:
        """Why ``message``'s stream is to be sent to another daemon, or None: another writer
        overtook this daemon on it this run (``_fence``), or (``Leases.elsewhere``) another daemon
        holds its program's lease and renews it, or this daemon cannot read the lease."""
        key = message.stream_id
        if key in self._fenced:
            return f"another daemon writes stream {stream_label(key)} now (its playlist was replaced over this" \
                   " daemon's version)"
        if self._leases is not None:
            return await self._leases.elsewhere(message.bucket, message.key_prefix)
        return None

    async def drain(self, timeout_s: float) -> int:
        """Finish the messages being published, for at most ``timeout_s``; the rest stays queued.

        Returns how many streams were cut off at the deadline.
        """
        self._stopping = True
        tasks = list(self._workers.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        else:
            pending = set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._leases is not None:  # bounded too: a lease not given up lapses by itself
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leases.release_all(), timeout=max(1.0, timeout_s))
        for stream in list(self._usage):  # the master's and player page's PUTs after the last message
            try:
                await self._spool.call(Spool.add_usage, self._spool.spool, stream, self._usage_of(stream))
            except SpoolError as error:
                log.error("stream %s: its last requests are not counted: %s", stream_label(stream), error)
        return len(pending)

    @property
    def puts_running(self) -> int:
        with self._running_lock:
            return self._running

    async def _store_call(self, call: Callable[[], T]) -> T:
        """``call`` (one store request) on the I/O threads, within the in-flight bound, counted
        in ``puts_running`` while its thread runs (a cancelled await does not stop it)."""
        async with self._inflight:
            return await asyncio.get_running_loop().run_in_executor(self._io, self._counted, call)

    def _counted(self, call: Callable[[], T]) -> T:
        with self._running_lock:
            self._running += 1
        try:
            return call()
        finally:
            with self._running_lock:
                self._running -= 1

    async def _lease_call(self, call: Callable[[], T]) -> T:
        """``call`` (one request on a lease) on the lease threads, outside the in-flight bound."""
        return await asyncio.get_running_loop().run_in_executor(self._lease_io, self._counted, call)

    async def _beat_call(self, call: Callable[[], T]) -> T:
        """``call`` (one request on a heartbeat) on threads of its own: it never waits behind another."""
        return await asyncio.get_running_loop().run_in_executor(self._beat_io, self._counted, call)

    def close(self) -> None:
        # A PUT still running in a thread cannot be interrupted; do not wait for it.
        self._io.shutdown(wait=False, cancel_futures=True)
        self._lease_io.shutdown(wait=False, cancel_futures=True)
        self._beat_io.shutdown(wait=False, cancel_futures=True)

    # One stream.

    async def _run_stream(self, key: StreamKey) -> None:
        label = stream_label(key)
        STREAM.set(label)  # this task's log lines are about this stream (common/logs.py)
        DESTINATION.set(self._destination)
        state: StreamState | None = None
        errors = 0  # consecutive failed attempts at the stream's next message
        try:
            while not self._stopping:
                self._woken.discard(key)
                item: QueuedItem | None = None
                try:
                    if state is None:
                        state = self._spool.read(Spool.load_state, key)
                    item = self._spool.read(Spool.next_queued, key)
                    if item is None:
                        if (last := self._resign.pop(key, None)) is not None and (
                                self._leases is None or self._leases.holds(key[0], key[1])):
                            state = await self._sign_again(label, last, state)
                        if key in self._woken:
                            continue
                        return
                    if self._leases is not None and not await self._hold_lease(item.message):
                        return  # the daemon stops while another daemon holds the lease: stays queued
                    state = await self._publish(label, item, state)
                    errors = 0
                    continue
                except VersionConflict as error:
                    if self._leases is None:
                        await self._fence(label, key, error)
                        return
                    # Written over since this daemon read it: read its lease and playlist again.
                    log.warning("stream %s: %s; its lease and playlist are read again", label, error)
                    self._leases.lost(key[0], key[1])
                    self._synced.discard(key)
                except SpoolBroken:
                    return  # the daemon logs it once and stops
                except SpoolError as error:
                    # The spool is the source of truth: reload it, read the store again (it may
                    # hold this daemon's unrecorded PUT) and redo (PUTs are idempotent).
                    log.error("stream %s: %s", label, error)
                    self._synced.discard(key)
                except Exception:
                    # A bug, not a peer's or the store's doing: keep the stream alive, and do not
                    # let one message block it forever.
                    log.exception("stream %s: unexpected error publishing the next message", label)
                    self._synced.discard(key)
                    if item is not None and errors + 1 >= MAX_UNEXPECTED_ERRORS:
                        await self._give_up(label, item)
                        errors = 0
                        state = None
                        continue
                errors += 1
                state = None
                delay = backoff_delay(errors, base_s=RETRY_BASE_DELAY_S, cap_s=self._config.retry_max_delay_s,
                                      rng=self._rng)
                log.info("stream %s: retrying in %.1f s", label, delay)
                await asyncio.sleep(delay)
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                self._forgotten.discard(key)  # no sign-again of it is in flight any more

    async def _give_up(self, label: str, item: QueuedItem) -> None:
        with contextlib.suppress(Exception):
            state = await self._spool.call(Spool.load_state, self._spool.spool, item.message.stream_id)
            failed = with_failure(state, promised_s=item.message.segment_duration, end=False)
            await self._spool.call(partial(Spool.complete, self._spool.spool, item, failed, failure="internal error",
                                           usage=self._usage_of(item.message.stream_id)))
            self._drop_payload(item)
            log.error("stream %s segment %s: given up after %d internal errors; it will not be listed",
                      label, item.message.segment_name, MAX_UNEXPECTED_ERRORS)

    # Several daemons, one store (docs/architecture.md, "Several daemons").

    async def _sync(self, label: str, message: IndexMessage, state: StreamState) -> StreamState:
        """Before a stream's first publish of this run: read its playlist from the store and go on
        from whichever of it and ``state`` (the spool's) is further on, so that a daemon with a
        fresh spool, a spool restored from a backup, or one that another daemon overtook never
        makes the playlist go back. An ended live playlist of a stream this spool has no state of
        (a fresh spool, or the stream forgotten after --forget-ended-after) gets a new run that
        continues its numbering (``resume.new_run``), unless ``message`` is a segment it lists (a
        re-send); an ended EVENT or VOD playlist, a recording, stays as it is. An object there
        that is no playlist is replaced, with a WARNING. Returns the state to go on from."""
        key = message.stream_id
        try:
            found = await self._read_version(key, message.bucket, message.playlist_key)
        except ReadRefused as error:
            self._synced.add(key)
            if message.bucket not in self._unreadable:
                self._unreadable.add(message.bucket)
                log.error("bucket %s: this daemon may not read its playlists back (%s): its streams go on from the spool"
                          " alone, and a daemon with a fresh spool would start their numbering again; fix: %s",
                          message.bucket, error, error.fix, extra={"error_kind": "correctable"})
            return state
        self._synced.add(key)
        if found is None:
            return replace(state, version=None)  # none yet, or gone with its bucket: the next PUT creates it
        if found.etag == state.version:
            return state
        stored = await self._stored_state(label, message, found)
        if stored is None:
            return replace(state, version=found.etag)
        if (stored.next_media_sequence, stored.ended) <= (state.next_media_sequence, state.ended):
            if stored.next_media_sequence < state.next_media_sequence:
                log.warning("stream %s: the playlist in the store ends before this spool's (media sequence %d, not %d):"
                            " it is replaced by this spool's", label, stored.next_media_sequence - 1,
                            state.next_media_sequence - 1)
            return replace(state, version=found.etag)
        self._adopted.add(key)
        self._unrecorded_window.add(key)
        if stored.ended and not state.published_any and self._keep is not None \
                and self._listed_already(message, stored) is None:
            fresh = new_run(stored)
            log.warning("stream %s: its playlist in the store has ended, and this spool has no state of it: a new run"
                        " continues its numbering at media sequence %d", label, fresh.next_media_sequence)
            return fresh
        log.warning("stream %s: goes on from its playlist in the store, at media sequence %d%s (this spool was at %d:"
                    " a fresh or older spool, or another daemon wrote it)", label, stored.next_media_sequence - 1,
                    ", ended" if stored.ended else "", state.next_media_sequence - 1)
        return stored

    async def _stored_state(self, label: str, message: IndexMessage, found: Version) -> StreamState | None:
        """The state ``found`` (the stream's playlist in the store) was made from, parsed on a thread
        (an EVENT playlist may list a day of segments); None, with a WARNING, for an object that
        is no media playlist. A private stream records its segments unsigned (they are signed
        by key); a public one as listed."""
        uri_of = (lambda uri: message.http_prefix + segment_name(uri)) if self._signer is not None else str
        try:
            return await asyncio.to_thread(stored_state, found.body.decode("ascii"), found.metadata, uri_of=uri_of,
                                           key_of=message.key_for, version=found.etag)
        except (UnicodeDecodeError, UnreadablePlaylist) as error:
            reason = "not ASCII" if isinstance(error, UnicodeDecodeError) else str(error)
            log.warning("stream %s: the object at its playlist key %s is no media playlist this daemon can go on"
                        " from (%s): it is replaced", label, message.playlist_key, reason)
            return None

    def _listed_already(self, message: IndexMessage, state: StreamState) -> str | None:
        """How a stream whose state came from the store (``_sync``) lists ``message``'s segment
        already: "as media sequence N" (a segmenter re-sending what the daemon before this one
        published), or "before its window" when the playlist lists a later segment of the same
        output prefix (a message queued here while another daemon held the lease, which
        published it since); None when it does not."""
        if message.stream_id not in self._adopted:
            return None
        uri = message.http_prefix + message.segment_name
        if (number := next((s.media_sequence for s in state.segments if s.uri == uri), None)) is not None:
            return f"as media sequence {number}"
        later = any((n := segment_number(segment_name(s.uri), message.output_prefix)) is not None
                    and n > message.last_segment for s in state.segments)
        return "before its window" if later else None

    async def _read_version(self, stream: StreamKey, bucket: str, key: str) -> Version | None:
        """``Store.get_version``, retried for as long as the store fails transiently or for a
        reason the operator corrects (the stream held meanwhile, as ``_put`` holds), but for
        ReadRefused, raised: the caller can go on without it."""
        attempt = 0
        held = False
        while True:
            try:
                found = await self._store_call(partial(self._store.get_version, bucket, key))
            except ReadRefused:
                raise
            except TransientStoreError as error:
                attempt += 1
                held = await self._wait_to_retry(stream, "get", key, key, error, attempt) or held
                continue
            await self._went_on(stream, "get", key, attempt, held)
            return found

    def _window_to_record(self, item: QueuedItem) -> bool:
        """Whether ``Spool.complete`` of ``item`` records its stream's whole window rather than the
        newest segment: once after ``_sync`` took the state from the store, whose segments the
        spool has none of (a worker started later loads its state from the spool)."""
        key = item.message.stream_id
        whole = key in self._unrecorded_window
        self._unrecorded_window.discard(key)
        return whole

    async def _hold_lease(self, message: IndexMessage) -> bool:
        """Return True once this daemon holds the lease of ``message``'s program (``Leases.hold``),
        False when the daemon stops meanwhile; when the lease's fencing number is not the one the
        stream was last read back under, read it again."""
        assert self._leases is not None
        key = message.stream_id
        fence = await self._leases.hold(message.bucket, message.key_prefix, stopping=lambda: self._stopping)
        if fence is None:
            return False
        if self._fences.get(key) != fence:
            self._fences[key] = fence
            self._synced.discard(key)
        return True

    async def _fence(self, label: str, key: StreamKey, error: VersionConflict) -> None:
        """Another writer replaced the playlist version this daemon last wrote: stop writing the
        stream for the rest of this run. Its queued messages stay queued; it is held (``hls-uploadd
        status``, /readyz)."""
        self._fenced.add(key)
        log.error("stream %s: another writer replaced its playlist since this daemon last wrote it (%s); this daemon"
                  " stops writing the stream until it is restarted, and its queued messages stay in the spool",
                  label, error, extra={"error_kind": "conflict"})
        await self._hold(key, f"another writer writes its playlist: {error}")

    async def _publish(self, label: str, item: QueuedItem, state: StreamState) -> StreamState:
        message = item.message
        self._forgotten.discard(message.stream_id)  # a new message starts a forgotten stream afresh
        segment = message.segment_name
        SEGMENT.set(segment)
        began = time.monotonic()
        removed: tuple[PublishedSegment, ...] = ()  # segments that left the live window
        if self._versions and message.stream_id not in self._synced:
            state = await self._sync(label, message, state)
        listed_as = self._listed_already(message, state) if not item.end_only else None
        if item.end_only:
            new_state = with_end(state, promised_s=message.segment_duration)
        elif listed_as is not None:
            log.info("stream %s segment %s: listed already %s, by the playlist this daemon went on from; not listed"
                     " again", label, segment, listed_as)
            new_state = with_end(state, promised_s=message.segment_duration) if message.end and not state.ended else state
        elif state.ended:
            # Queued before the end was (a spool from an older daemon): the playlist is final.
            return await self._fail(label, item, state, "the stream has ended: its playlist is final"
                                    " (RFC 8216 6.2.1)", kind="ended")
        else:
            sizes: list[int] = []
            opener = partial(self._open_segment, item, sizes)
            try:
                held = await self._put(message.stream_id, segment, message.bucket, message.segment_key, opener,
                                       SEGMENT_CONTENT_TYPE, self._config.cache_control_segment, create_only=True)
            except ObjectTakenError as error:
                return await self._fail(label, item, state, "segment name reused: another writer or run published"
                                        f" different bytes under this name; {error}", kind="taken")
            except PermanentStoreError as error:
                return await self._fail(label, item, state, str(error), kind="permanent")
            except (SegmentFileError, DirectoryRefused) as error:
                return await self._fail(label, item, state, str(error), kind="segment_file")
            if held:
                state = await self._restore(label, item, state)
            transition = with_segment(
                state,
                uri=message.http_prefix + segment,
                duration_s=message.duration if message.duration is not None else float(message.segment_duration),
                promised_s=message.segment_duration,
                discontinuity=item.starts_epoch or message.discontinuity,
                end=message.end,
                keep=self._keep,
                size_bytes=sizes[-1] if sizes else None,
                independent=message.independent,
                info=RenditionInfo(message.codecs, message.resolution, message.frame_rate, message.bandwidth),
                key=message.segment_key,
            )
            self._log_over_target(label, message.stream_id, segment, transition)
            new_state = transition.state
            removed = transition.removed
        # Behind (a backlog after an outage, or more streams than the store keeps up with): when a
        # newer message of this stream is already queued, its playlist names this segment too, so
        # this one is not PUT. Half the PUTs while catching up; at live pace nothing changes.
        superseded = key_woken = message.stream_id in self._woken
        if key_woken:
            superseded = self._spool.read(Spool.has_newer_queued, item)
        waiting = self._unlisted.setdefault(message.stream_id, {})
        if not item.end_only:
            waiting[item.id] = item.received_at
        listed = should_publish(new_state, self._options) and not superseded and new_state is not state
        if listed:
            new_state, listed = await self._put_playlist(label, item, new_state)
            if self._config.player_page and (message.bucket, message.key_prefix) not in self._pages:
                await self._put_player_page(label, message, message.index)
        in_store = listed or listed_as is not None  # a playlist in the store lists this segment
        window = self._window_to_record(item)
        now = time.time()
        due = [] if self._config.keep_segment_objects else [
            *deletions(removed, longest_playlist_s=new_state.longest_playlist_s, removed_at=now,
                       allowance_s=self._config.cdn_allowance_s),
            # Gone on from another daemon's playlist: what it had queued for deletion went with it.
            *(left_behind(state.segments, output_prefix=message.output_prefix, now=now,
                          longest_playlist_s=new_state.longest_playlist_s, allowance_s=self._config.cdn_allowance_s)
              if window else ()),
        ]
        await self._spool.call(partial(Spool.complete, self._spool.spool, item, new_state, deletions=due,
                                       usage=self._usage_of(message.stream_id), window=window,
                                       listed=in_store))
        if in_store:  # once the spool has it: a redo after a SpoolError would count it again
            self._metrics.published_segment(message.stream_id, waiting.values(), time.time())
            waiting.clear()
        self._drop_payload(item)
        if not item.end_only:
            self._remove_file(label, item)
        await self._master_follows(label, message, new_state, listed=in_store)
        listed_now = new_state.segments and not item.end_only and listed_as is None
        number = new_state.segments[-1].media_sequence if listed_now else None
        log.info(
            "stream %s segment %s published%s%s%s in %.3f s",
            label,
            segment,
            f" as media sequence {number}" if number is not None else "",
            " (stream ended)" if new_state.ended else "",
            " (listed by the next playlist)" if superseded else "",
            time.monotonic() - began,
        )
        return new_state

    # Private streams (--url-mode, uploader/urls.py).

    def _segment_uri(self, message: IndexMessage) -> Callable[[PublishedSegment], str] | None:
        """How the playlist of ``message``'s stream lists a segment: a URL of its object signed for
        --url-ttl (``urls.SignedUrls``), or (public) None, its recorded URI."""
        if self._signer is None:
            return None
        urls = self._segment_urls.get(message.stream_id)
        if urls is None:
            urls = self._segment_urls[message.stream_id] = SignedUrls(self._signer, self._config.url_ttl_s)
        # A segment recorded without its key is named like the others, under the playlist's prefix.
        return lambda segment: urls(message.bucket, segment.key or message.key_for(posixpath.basename(segment.uri)))

    def _playlist_uri(self, message: IndexMessage) -> Callable[[str], str] | None:
        """How the master of ``message``'s program lists a rendition's playlist (by name): a URL
        signed for --playlist-url-ttl, or (public) None, its name."""
        if self._signer is None:
            return None
        group = (message.bucket, message.key_prefix)
        urls = self._playlist_urls.get(group)
        if urls is None:
            urls = self._playlist_urls[group] = SignedUrls(self._signer, self._config.playlist_url_ttl_s)
        return lambda name: urls(message.bucket, message.key_for(name))

    def _check_url_ttl(self, label: str, key: StreamKey, state: StreamState) -> None:
        """Warn once per stream when its signed URLs could expire while a viewer may still use
        them: ``urls.required_ttl_s`` of its window (at least ``--window`` segments and three target
        durations, as a live playlist lists and a reloading player holds) must fit in the
        ``urls.LEFT_FRACTION`` of --url-ttl every listed URL has left."""
        if self._signer is None or key in self._ttl_warned or state.target_duration_s is None:
            return
        window_s = max(self._options.window, MIN_TARGET_DURATIONS_LISTED) * state.target_duration_s
        if self._options.playlist_type is PlaylistType.LIVE:
            window_s = max(window_s, sum(segment.duration_s for segment in listed_segments(state, self._options)))
        needed_s = required_ttl_s(state.target_duration_s, window_s)
        if needed_s <= self._config.url_ttl_s * LEFT_FRACTION:
            return
        self._ttl_warned.add(key)
        shortest_s = shortest_ttl_s(needed_s)
        advice = (f"raise --url-ttl to {shortest_s} s or more" if shortest_s <= SIGV4_MAX_TTL_S
                  else "that is beyond what a signed URL may live (7 days): shorten --window")
        log.warning("stream %s: its segment URLs must stay valid %.0f s (twice its window of %.0f s and twice its"
                    " target duration, RFC 8216 6.2.2), and a URL listed may have only %g of --url-ttl %.0f s left:"
                    " viewers will be refused segments; %s", label, needed_s, window_s, LEFT_FRACTION,
                    self._config.url_ttl_s, advice)

    def sign_again(self, key: StreamKey, last_message: IndexMessage | None) -> None:
        """Housekeeping's call, for each stream of the spool: when the stream's playlist was last
        uploaded ``urls.REUSE_FRACTION`` of --url-ttl ago or more (or not in this run), or its
        program's master that fraction of --playlist-url-ttl ago, have the stream's worker upload
        them again with fresh URLs. A stream that gets segments is signed as it goes; this keeps
        an idle or ended stream, and its master, playable."""
        if self._signer is None or last_message is None:
            return
        group = (last_message.bucket, last_message.key_prefix)
        master_due = bool(self._config.master_name) and _due(self._master_signed_at.get(group),
                                                              self._config.playlist_url_ttl_s)
        if master_due or _due(self._signed_at.get(key), self._config.url_ttl_s):
            self._resign[key] = last_message
            self.notify(key)

    async def _sign_again(self, label: str, message: IndexMessage, state: StreamState) -> StreamState:
        """Upload the stream's playlist (``state``) again with fresh URLs if due, on its worker (so
        it never goes out of order with a publish), then its master if due. A stream forgotten
        meanwhile is left alone, and leaves the master. Returns ``state`` as its playlist now
        stands (its new version)."""
        key = message.stream_id
        if key in self._forgotten:
            return state
        if _due(self._signed_at.get(key), self._config.url_ttl_s) and state.target_duration_s is not None \
                and should_publish(state, self._options):
            held, state = await self._put_media_playlist(message, state)
            if held:
                return state  # the stream is held; housekeeping asks again
            if self._versions:  # no message's completion records this version: record it now
                await self._spool.call(Spool.set_version, self._spool.spool, key, state.version)
            log.info("stream %s: playlist uploaded again with its URLs signed afresh (--url-ttl %.0f s)",
                     label, self._config.url_ttl_s)
        await self._update_master(label, message, state)
        return state

    def _log_over_target(self, label: str, key: StreamKey, segment: str, transition: Transition) -> None:
        """An ERROR for a segment longer than the stream's target, at most one per stream per
        ``OVER_TARGET_LOG_INTERVAL_S``; the next one counts those left out."""
        if transition.over_target is None:
            return
        unlogged = self._over_target.due(key, time.monotonic())
        if unlogged is None:
            return
        log.error("stream %s segment %s: %s%s", label, segment, transition.over_target,
                  f" ({unlogged} more such segment(s) since the last report)" if unlogged else "")

    async def _fail(self, label: str, item: QueuedItem, state: StreamState, reason: str, *, kind: str) -> StreamState:
        """Mark ``item`` failed for ``reason`` (of ``kind``, for JSON logs: taken, permanent,
        segment_file, ended): never listed; the next segment marks the gap.

        The playlist is still PUT (unless the stream had ended before, or a newer message of the
        stream is queued, whose playlist will do): it carries the ENDLIST of a failed end message,
        and it lists the segments whose own playlist was skipped because this message was queued
        behind them."""
        message = item.message
        log.error(
            "stream %s segment %s failed permanently and will not be listed: %s",
            label,
            message.segment_name,
            reason,
            extra={"error_kind": kind},
        )
        self._metrics.failed_segment(message.stream_id)
        new_state = with_failure(state, promised_s=message.segment_duration, end=message.end)
        newer = self._spool.read(Spool.has_newer_queued, item)
        listed = not state.ended and not newer and should_publish(new_state, self._options)
        if listed:
            new_state, listed = await self._put_playlist(label, item, new_state)
        await self._spool.call(partial(Spool.complete, self._spool.spool, item, new_state, failure=reason,
                                       usage=self._usage_of(message.stream_id), window=self._window_to_record(item),
                                       listed=listed))
        if listed:
            waiting = self._unlisted.pop(message.stream_id, {})
            self._metrics.published_segment(message.stream_id, waiting.values(), time.time())
        self._drop_payload(item)
        await self._master_follows(label, message, new_state, listed=listed)
        return new_state

    def _open_segment(self, item: QueuedItem, sizes: list[int]) -> BinaryIO:
        """The segment's bytes: the inline payload in the spool, else the file under an allowed dir."""
        message = item.message
        if item.payload is not None:
            try:
                file: BinaryIO = open(self._payloads.path(item.payload), "rb")
            except OSError as error:
                raise SegmentFileError(f"inline payload of {message.segment_name} is gone: {error.strerror}") from None
        else:
            file = self._allowed.open_segment(message.output_directory, message.segment_name)
        sizes.append(os.fstat(file.fileno()).st_size)
        return file

    def _drop_payload(self, item: QueuedItem) -> None:
        if item.payload is not None:
            with contextlib.suppress(OSError):
                self._payloads.remove(item.payload)

    def _remove_file(self, label: str, item: QueuedItem) -> None:
        """The segment file read from --allow-dir, once stored and recorded (unless
        --keep-segment-files): a crash before this leaves the file, never a segment unread."""
        if not self._removes_segment_files or item.payload is not None:
            return
        message = item.message
        try:
            self._allowed.remove_segment(message.output_directory, message.segment_name)
        except (DirectoryRefused, SegmentFileError) as error:
            log.warning("stream %s: segment %s stored, but its file stays: %s", label, message.segment_name, error)

    async def _master_follows(self, label: str, message: IndexMessage, state: StreamState, *, listed: bool) -> None:
        """After a message is done: the master judges its rendition by ``state`` once the playlist
        of ``state`` is in the store (``listed``), or when ``state`` has no playlist to list. A
        playlist left to the next message (superseded, or one newer already queued) leaves the
        master as it is until then, so that the master never names a playlist the store has not
        got yet (a viewer would get 404 for it, and keep getting it if the daemon died between)."""
        if listed or not should_publish(state, self._options):
            await self._update_master(label, message, state)

    async def _update_master(self, label: str, message: IndexMessage, state: StreamState | None) -> None:
        """Re-upload the program's master when a rendition appeared, ended, changed or (``state``
        None: its stream was forgotten) went. Only this rendition is judged; the others are as
        the program last saw them (``master.Program``)."""
        name = self._config.master_name
        if not name or message.index == name:
            return  # a stream named like the master is not one of its renditions
        group = (message.bucket, message.key_prefix)
        lock = self._master_locks.setdefault(group, asyncio.Lock())
        async with lock:
            if self._leases is not None and not self._leases.holds(message.bucket, message.key_prefix):
                return  # the program's master is its lease holder's to write (asked again after the wait)
            program = self._programs.get(group)
            if program is None:
                program = self._programs[group] = await self._spool.call(self._load_program, group)
            # Read the master in the store once per run and after each take of the lease; then
            # write it even if this rendition did not change it: what a late writer put there goes.
            fence = self._fences.get(message.stream_id, 0)
            read_now = self._versions and self._masters_read.get(group) != fence
            if read_now:
                self._masters_read[group] = fence
                await self._add_stored_renditions(label, message, program)
            listed = state is not None and message.stream_id not in self._forgotten and should_publish(state, self._options)
            found = variant(message.index, state) if listed else None
            changed = program.update(message.index, found) or (read_now and len(program.variants()) >= MIN_RENDITIONS)
            # Private streams: a master uploaded before goes again, its URLs signed afresh (with
            # the renditions it has now, even one: its old URLs must not outlive their TTL).
            resign = (self._signer is not None and program.ever_uploaded and bool(program.variants())
                      and _due(self._master_signed_at.get(group), self._config.playlist_url_ttl_s))
            if not changed and not resign:
                return
            for attempt in range(1, MAX_VERSION_RETRIES + 1):
                current = program.variants()
                text = master_playlist(current, self._playlist_uri(message))
                request = partial(self._put_master_version, message.bucket, message.key_for(name), group) \
                    if group in self._master_versions else None
                try:
                    await self._put(message.stream_id, name, message.bucket, message.key_for(name),
                                    text.encode("ascii"), PLAYLIST_CONTENT_TYPE, self._config.cache_control_playlist,
                                    request=request)
                    break
                except PermanentStoreError as error:
                    log.error("program %s: master playlist failed permanently: %s", stream_label((*group, name)), error)
                    return
                except VersionConflict as error:
                    # Another writer replaced the master since this daemon read or wrote it (a
                    # holder whose lease lapsed, or a daemon without leases): read it again and
                    # keep what it lists that this program lacks.
                    if attempt == MAX_VERSION_RETRIES:
                        log.warning("program %s: its master was replaced by another writer %d times running; left as"
                                    " the store has it: %s", stream_label((*group, name)), attempt, error)
                        return
                    await self._add_stored_renditions(label, message, program)
            first = not program.ever_uploaded
            program.uploaded(current)
            self._master_signed_at[group] = time.time()
            log.info(
                "program %s: master playlist uploaded with %d rendition(s): %s",
                stream_label((*group, name)), len(current),
                ", ".join(f"{v.uri} {v.bandwidth} bit/s" for v in current),
            )
            if first and self._config.player_page:
                await self._put_player_page(label, message, name)

    async def _add_stored_renditions(self, label: str, message: IndexMessage, program: Program) -> None:
        """Add to ``program`` (``message``'s) each rendition its master in the store lists that it
        has no variant of, as that rendition's playlist in the store says it is: renditions
        another daemon published, or a fresh spool's, so that the next master lists them rather
        than only those that reached this daemon so far (each rendition's segmenter moves to it
        in its own time). Nothing when the store has no master or may not be read."""
        name = self._config.master_name
        group = (message.bucket, message.key_prefix)
        try:
            found = await self._read_version(message.stream_id, message.bucket, message.key_for(name))
        except ReadRefused:
            self._master_versions.pop(group, None)
            return
        self._master_versions[group] = found.etag if found is not None else None
        if found is None:
            return
        known = {variant.uri for variant in program.variants()} | {message.index, name}
        for line in found.body.decode("ascii", "replace").splitlines():
            uri = line.strip()
            if not uri or uri.startswith("#") or (rendition := segment_name(uri)) in known:
                continue
            known.add(rendition)
            try:
                other = replace(message, index=rendition)
            except ProtocolError:
                continue  # not a name a stream may have
            stored = await self._read_version(other.stream_id, message.bucket, other.playlist_key)
            state = await self._stored_state(label, other, stored) if stored is not None else None
            if state is not None and should_publish(state, self._options) \
                    and (found_variant := variant(rendition, state)) is not None:
                program.update(rendition, found_variant)
                log.info("program %s: rendition %s, listed by the master in the store, kept in it",
                         stream_label((*message.stream_id[:2], name)), rendition)

    def _put_master_version(self, bucket: str, key: str, group: tuple[str, str], body: Body, *, content_type: str,
                            cache_control: str) -> None:
        """A master PUT that replaces only the version of it this daemon last read or wrote (on an
        I/O thread); the new entity tag recorded. Raises VersionConflict."""
        assert isinstance(body, bytes)
        self._master_versions[group] = self._store.put_version(
            bucket, key, body, content_type=content_type, cache_control=cache_control, metadata={},
            replaces=self._master_versions[group])

    def _load_program(self, group: tuple[str, str]) -> Program:
        """The renditions of a program as the spool holds them (on the spool's thread), read once
        per run; from then on each publish updates its own."""
        spool = self._spool.spool
        variants = []
        for key in spool.group_streams(*group):
            state = spool.load_state(key)
            if key[2] != self._config.master_name and should_publish(state, self._options):
                if (found := variant(key[2], state)) is not None:
                    variants.append(found)
        return Program(variants)

    async def forget(self, key: StreamKey, last_message: IndexMessage | None) -> None:
        """A stream's state was removed from the spool: its metrics go, and its rendition leaves
        the master (that of ``last_message``'s program; None: none was recorded)."""
        self._unlisted.pop(key, None)
        self._usage.pop(key, None)
        self._segment_urls.pop(key, None)
        self._signed_at.pop(key, None)
        self._resign.pop(key, None)
        self._ttl_warned.discard(key)
        self._synced.discard(key)  # a new run of it goes on from what the store has then
        self._adopted.discard(key)
        self._unrecorded_window.discard(key)
        if key in self._workers:  # its worker may be signing it again (``_run_stream`` forgets this)
            self._forgotten.add(key)
        self._metrics.forget(key)
        if last_message is not None:
            await self._update_master(stream_label(key), last_message, None)

    async def _put_playlist(self, label: str, item: QueuedItem, state: StreamState) -> tuple[StreamState, bool]:
        """PUT the playlist of ``state``, held until it goes out. After each refusal the operator
        must correct (the bucket may have been deleted and made again meanwhile), the segments it
        names are checked and restored (``_restore``) and the playlist made again from what is
        left, so it never names an object the store lost. Returns the state the playlist that went
        out (or is held back while refilling) was made from, and whether it went out."""
        message = item.message
        while True:
            self._check_url_ttl(label, message.stream_id, state)
            held, state = await self._put_media_playlist(message, state)
            if not held:
                return state, True
            state = await self._restore(label, item, state)
            if not should_publish(state, self._options):
                return state, False

    async def _restore(self, label: str, item: QueuedItem, state: StreamState) -> StreamState:
        """After the store refused the stream's uploads for a reason the operator corrects (its
        bucket may have been deleted and made again, some S3 stores saying AccessDenied for a
        missing bucket): HEAD each object the kept segments name; PUT again what is gone, or what
        the HEAD cannot tell (no s3:GetObject), from its source (``item``'s own segment from its
        file or payload, the others from their files in ``item``'s directory, under --allow-dir; an
        inline stream keeps no payload once published); drop from the window what is gone and
        cannot be restored (``stream.without_lost``: from the front only, RFC 8216 6.2.1), and keep
        what cannot be told nor restored, with a WARNING. EVENT and VOD playlists only grow, so
        they keep naming what is lost, with an ERROR. The master playlist and the player page are
        uploaded again at the next chance."""
        message = item.message
        bucket = message.bucket
        for group, program in self._programs.items():
            if group[0] == bucket:
                program.lost()
        self._pages = {group: p for group, p in self._pages.items() if group[0] != bucket}
        restored = 0
        lost: list[int] = []
        untold: list[int] = []
        for segment in state.segments:
            name = segment_name_of(segment.uri, message.http_prefix)
            gone = True
            if name is not None:
                key = message.key_for(name)
                try:
                    if await self._store_call(partial(self._store.exists, bucket, key)):
                        continue
                except StoreError:
                    gone = False  # cannot tell: upload it again if its file is there
                opener: Body | None = None
                if name == message.segment_name:
                    opener = partial(self._open_segment, item, [])
                elif item.payload is None:
                    opener = partial(self._allowed.open_segment, message.output_directory, name)
                if opener is not None:
                    try:
                        await self._put(message.stream_id, key, bucket, key, opener, SEGMENT_CONTENT_TYPE,
                                        self._config.cache_control_segment, create_only=True, taken_is_there=True)
                        restored += 1
                        continue
                    except (PermanentStoreError, SegmentFileError, DirectoryRefused):
                        pass
            (lost if gone else untold).append(segment.media_sequence)
        if untold:
            log.warning("stream %s: %d listed segment(s) could not be checked in bucket %s (HEAD refused: grant"
                        " s3:GetObject) and have no file to upload again: still listed", label, len(untold), bucket)
        if restored and not lost:
            log.warning("stream %s: %d segment(s) of the window were gone from bucket %s and are uploaded again",
                        label, restored, bucket)
        if not lost:
            return state
        if self._keep is None:
            log.error("stream %s: bucket %s lost objects; %d segment(s) uploaded again, %d gone for good (media"
                      " sequence %s) and still listed: a %s playlist only grows (RFC 8216 6.2.1)", label, bucket,
                      restored, len(lost), ", ".join(map(str, lost)), self._options.playlist_type.value.upper())
            return state
        new_state = without_lost(state, lost)
        log.error("stream %s: bucket %s lost objects; %d segment(s) of the window uploaded again, %d gone for good"
                  " (no file left) and dropped from the front of the playlist with those before them%s",
                  label, bucket, restored, len(lost),
                  "; the playlist waits until its window lasts 3 target durations again" if not new_state.segments
                  or not should_publish(new_state, self._options) else "")
        return new_state

    async def _put_player_page(self, label: str, message: IndexMessage, playlist: str) -> None:
        """index.html and hls.js beside the first stream that publishes under a key prefix; the
        page plays that stream, or the program's master once there is one. A private stream's
        page holds hls.js and plays the signed URL its own URL gives (uploader/player.py).

        One page PUT at a time per key prefix, and what it plays is decided once the PUT before
        has finished: a page of the first stream still on its way when the master is first
        uploaded cannot land after the master's page and leave viewers on one rendition."""
        group = (message.bucket, message.key_prefix)
        async with self._page_locks.setdefault(group, asyncio.Lock()):
            program = self._programs.get(group)
            if program is not None and program.ever_uploaded and self._config.master_name:
                playlist = self._config.master_name
            if self._pages.get(group) == playlist:
                return  # put (or given up on) already
            self._pages[group] = playlist
            title = label if playlist == message.index else stream_label((*group, playlist))
            private = self._signer is not None  # one object, hls.js inside: reached by one signed URL
            page = render_player_page(playlist, title=title, private=private).encode("utf-8")
            try:
                if not private:
                    await self._put(message.stream_id, SCRIPT_NAME, message.bucket, message.key_for(SCRIPT_NAME),
                                    player_script(), SCRIPT_CONTENT_TYPE, SCRIPT_CACHE_CONTROL)
                await self._put(message.stream_id, PAGE_NAME, message.bucket, message.key_for(PAGE_NAME), page,
                                PAGE_CONTENT_TYPE, self._config.cache_control_playlist)
            except PermanentStoreError as error:
                log.error("stream %s: player page failed permanently: %s", label, error)
                return
        log.info("stream %s: player page %s uploaded", label, message.key_for(PAGE_NAME))

    async def _put_media_playlist(self, message: IndexMessage, state: StreamState) -> tuple[bool, StreamState]:
        """PUT the playlist of ``state`` for ``message``'s stream, its URIs signed if private (and
        when, noted); held as ``_put`` holds (``stop_if_held``). In a store that keeps versions,
        the PUT replaces only ``state.version`` (none: only where there is none), with
        ``resume.state_metadata`` beside it; a 412 to a PUT whose first attempt the store took
        (its reply lost) finds the same bytes there and counts as done. Returns whether it was
        held, and ``state`` with the version it went out as. Raises VersionConflict: another
        writer replaced that version."""
        body = media_playlist(state, self._options, self._segment_uri(message)).encode("ascii")
        request = None
        versions: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            if self._versions:
                request = partial(self._put_version, message.bucket, message.playlist_key, state, versions)
            try:
                held = await self._put(message.stream_id, message.index, message.bucket, message.playlist_key, body,
                                       PLAYLIST_CONTENT_TYPE, self._config.cache_control_playlist, hold_permanent=True,
                                       stop_if_held=True, request=request)
                break
            except VersionConflict as conflict:
                label = stream_label(message.stream_id)
                try:
                    there = await self._read_version(message.stream_id, message.bucket, message.playlist_key)
                except ReadRefused:
                    raise conflict from None  # gone or another's cannot be told: another's
                if there is not None and there.body == body:
                    # This daemon's own PUT, whose reply was lost: the store took it, and the retry
                    # named the version before it.
                    versions.append(there.etag)
                    held = False
                    break
                if attempt == MAX_VERSION_RETRIES:
                    raise
                if there is None:
                    # Nobody's version is there (deleted, or its bucket made again): create it anew.
                    log.warning("stream %s: its playlist %s was gone from the store; it is written anew", label,
                                message.playlist_key)
                elif (stored := await self._stored_state(label, message, there)) is None or follows(state, stored):
                    # A version this one follows: this daemon's own, signed afresh or written before
                    # a restart whose record was lost, or no playlist at all. Replace that one.
                    log.info("stream %s: its playlist in the store is a version this one follows; it is replaced", label)
                else:
                    raise
                state = replace(state, version=there.etag if there is not None else None)
        if not held:
            self._signed_at[message.stream_id] = time.time()
        return held, replace(state, version=versions[-1]) if versions else state

    def _put_version(self, bucket: str, key: str, state: StreamState, versions: list[str], body: Body,
                     *, content_type: str, cache_control: str) -> None:
        """The playlist PUT of ``_put_media_playlist`` in a store that keeps versions (on an I/O
        thread); the new entity tag appended to ``versions``."""
        assert isinstance(body, bytes)
        versions.append(self._store.put_version(bucket, key, body, content_type=content_type,
                                                cache_control=cache_control, metadata=state_metadata(state),
                                                replaces=state.version))

    async def _put(
        self, stream: StreamKey, what: str, bucket: str, key: str, body: Body, content_type: str, cache_control: str,
        *, hold_permanent: bool = False, stop_if_held: bool = False, create_only: bool = False,
        taken_is_there: bool = False, request: Callable[..., None] | None = None,
    ) -> bool:
        """One PUT, retried for as long as the store fails transiently or for a reason the operator
        can correct (the stream's queue waits meanwhile). ``hold_permanent``: a PermanentStoreError
        is held too, loudly, instead of raised. ``stop_if_held``: after such a refusal, wait one
        backoff delay and return instead of sending the same body again. ``create_only``: never
        replace an object (``Store.put``; ObjectTakenError for other bytes there).
        ``taken_is_there``: a taken name that cannot be read to compare it (TakenUnreadableError)
        is done: the caller only needs the object to be there (a HEAD would not compare it either).
        ``request``: what sends the PUT, called as ``request(body, content_type=, cache_control=)``
        (by default ``Store.put`` of ``bucket`` and ``key``).

        Returns True when the store refused at some attempt for a reason the operator corrects
        (what it held before may be gone: a bucket deleted and made again). Raises
        PermanentStoreError (unless ``hold_permanent``), and what ``body`` raises
        (SegmentFileError, DirectoryRefused).
        """
        sizes: list[int] = []
        if request is None:
            request = partial(self._store.put, bucket, key, create_only=create_only)
        call: Callable[[], None] = partial(request, _measured(body, sizes), content_type=content_type,
                                           cache_control=cache_control)
        if taken_is_there:
            call = partial(_unless_taken_unreadable, call)
        attempt = 0
        held = False
        while True:
            try:
                await self._store_call(call)
            except (TransientStoreError, PermanentStoreError) as error:
                self._charge(stream, Usage(puts=1))
                if isinstance(error, PermanentStoreError) and not hold_permanent:
                    raise
                attempt += 1
                if isinstance(error, DigestMismatchError) and attempt >= error.held_after:
                    error = error.held()
                held = await self._wait_to_retry(stream, "put", what, key, error, attempt) or held
                if held and stop_if_held:
                    return True
                continue
            size = sizes[-1] if sizes else 0
            self._charge(stream, Usage(puts=1, bytes_in=size, stored_bytes=size if create_only else 0))
            self._metrics.uploaded(stream, size)
            await self._went_on(stream, "put", what, attempt, held)
            return held

    async def _wait_to_retry(self, stream: StreamKey, operation: str, what: str, key: str, error: StoreError,
                             attempt: int) -> bool:
        """After failed attempt ``attempt`` of a store request (``operation``: put, get) of ``what``
        (object ``key``) for ``stream``: count the retry; log a transient error at its first and
        every ``RETRY_LOG_EVERY``-th attempt, or hold the stream for any other (the operator's to
        correct: ``_hold``, ``_log_held``); then wait the backoff delay. Returns whether the stream
        was held."""
        label, request = stream_label(stream), _REQUESTS[operation]
        self._metrics.store_retry(operation)
        delay = backoff_delay(attempt, base_s=RETRY_BASE_DELAY_S, cap_s=self._config.retry_max_delay_s, rng=self._rng)
        held = not isinstance(error, TransientStoreError) or isinstance(error, CorrectableStoreError)
        if held:
            if stream not in self.held:
                await self._hold(stream, f"{request} of {key} refused: {error}")
            self._log_held(label, key, error, attempt, request)
        elif attempt == 1 or attempt % RETRY_LOG_EVERY == 0:
            log.warning("stream %s: %s of %s failed (attempt %d), retrying in %.1f s: %s", label, request, what,
                        attempt, delay, error, extra={"error_kind": "transient"})
        await asyncio.sleep(delay)
        return held

    async def _went_on(self, stream: StreamKey, operation: str, what: str, attempt: int, held: bool) -> None:
        """A store request (``operation``: put, get) of ``what`` succeeded after ``attempt`` failed
        ones: the stream's hold, if ``held``, is lifted (WARNING), else the retries end at INFO."""
        label, request = stream_label(stream), _REQUESTS[operation]
        if held:
            self._held.forget(label)
            await self._hold(stream, None)
            log.warning("stream %s: %s of %s succeeded after %d failed attempts; the stream goes on", label, request,
                        what, attempt)
        elif attempt:
            log.info("stream %s: %s of %s succeeded after %d failed attempts", label, request, what, attempt)

    def _charge(self, stream: StreamKey, usage: Usage) -> None:
        """Count what a request cost the store; carried into the spool with the stream's next
        completed message (``Spool.complete``), or at the drain."""
        self._usage[stream] = self._usage.get(stream, Usage()) + usage

    def _usage_of(self, stream: StreamKey) -> Usage:
        """What the stream's requests cost since last carried into the spool (then forgotten here)."""
        return self._usage.pop(stream, Usage())

    async def _hold(self, stream: StreamKey, reason: str | None) -> None:
        """The stream is held for ``reason`` (None: it goes on), here and in the spool (``hls-uploadd
        status``). A spool that cannot take it is not the upload's business: logged only."""
        if reason is None:
            if self.held.pop(stream, None) is None:
                return
            since = None
        else:
            self.held[stream] = (time.monotonic(), reason)
            since = time.time()
        try:
            await self._spool.call(Spool.set_held, self._spool.spool, stream, since, reason)
        except SpoolError as error:
            log.error("stream %s: %s", stream_label(stream), error)

    def _log_held(self, label: str, key: str, error: StoreError, attempt: int, request: str = "upload") -> None:
        """The ERROR of a held ``request`` (upload, read): stream, key, reason and fix, once per
        ``HELD_LOG_INTERVAL_S`` per stream."""
        unlogged = self._held.due(label, time.monotonic())
        if unlogged is None:
            return
        fix = error.fix if isinstance(error, CorrectableStoreError) else (
            "this request cannot succeed as it is: correct the store's setup for it")
        log.error("stream %s held: %s of %s refused (attempt %d): %s; fix: %s. Its queue waits and is retried"
                  " every %g s at most; nothing is dropped%s", label, request, key, attempt, error, fix,
                  self._config.retry_max_delay_s,
                  f" ({unlogged} more refusal(s) since the last report)" if unlogged else "",
                  extra={"error_kind": store_error_kind(error)})
