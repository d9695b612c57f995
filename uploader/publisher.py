"""Publishing queued messages: per stream strictly in order, streams concurrently.

For each queued message of a stream: PUT the segment, then PUT the playlist that names it, then
record both in the spool. A stream has at most one worker, so its playlists go out in order and
a newer one is never overwritten by an older one. A global semaphore bounds PUTs in flight.
Transient store errors are retried without limit (exponential backoff, full jitter, capped);
permanent ones fail the segment, which is then never listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import BinaryIO

from protocol import IndexMessage

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
from .master import Variant, master_playlist, needs_upload, sorted_variants, variant
from .payloads import PayloadStore
from .playlist import PlaylistOptions, PlaylistType, media_playlist, should_publish
from .spool import QueuedItem, Spool, SpoolBroken, SpoolError, SpoolThread
from .stores import (
    PLAYLIST_CONTENT_TYPE,
    SEGMENT_CONTENT_TYPE,
    Body,
    PermanentStoreError,
    Store,
    TransientStoreError,
)
from .stream import (
    RenditionInfo,
    StreamKey,
    StreamState,
    Transition,
    stream_label,
    with_end,
    with_failure,
    with_segment,
)

log = logging.getLogger(__name__)

# First retry delay; doubles each attempt up to --retry-max-delay.
RETRY_BASE_DELAY_S = 0.2

# Internal errors (bugs) in a row on one message before it is marked failed, so it cannot block
# its stream forever.
MAX_UNEXPECTED_ERRORS = 5

# During a long outage, one warning per this many failed attempts of one PUT (plus the first).
RETRY_LOG_EVERY = 10

# A stream whose segments come out longer than its target duration logs one ERROR per this many
# seconds at most: a segmenter that breaks its promise usually does so on every segment.
OVER_TARGET_LOG_INTERVAL_S = 60.0


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
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
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
        # Per program (bucket, key_prefix): the master as last uploaded this run, and a lock so
        # its PUTs go out in order.
        self._masters: dict[tuple[str, str], tuple[Variant, ...]] = {}
        self._master_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._woken: set[StreamKey] = set()
        # Per stream: when its last over-target ERROR was logged (monotonic s), and the
        # over-target segments not logged since.
        self._over_target: dict[StreamKey, tuple[float, int]] = {}
        self._stopping = False
        self._running_lock = threading.Lock()
        self._running = 0  # store calls in threads right now: a cancelled await does not stop them

    # Control.

    async def start(self) -> int:
        """Start a worker for every stream with queued messages (left from a previous run)."""
        keys = await self._spool.call(Spool.streams_with_work, self._spool.spool)
        for key in keys:
            self.notify(key)
        return len(keys)

    def notify(self, key: StreamKey) -> None:
        """A message for ``key`` was queued."""
        if self._stopping:
            return
        if key in self._workers:
            self._woken.add(key)
        else:
            self._workers[key] = asyncio.create_task(self._run_stream(key), name=f"stream {stream_label(key)}")

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
        return len(pending)

    @property
    def puts_running(self) -> int:
        with self._running_lock:
            return self._running

    def _counted(self, call: Callable[[], None]) -> None:
        with self._running_lock:
            self._running += 1
        try:
            call()
        finally:
            with self._running_lock:
                self._running -= 1

    def close(self) -> None:
        # A PUT still running in a thread cannot be interrupted; do not wait for it.
        self._io.shutdown(wait=False, cancel_futures=True)

    # One stream.

    async def _run_stream(self, key: StreamKey) -> None:
        label = stream_label(key)
        state: StreamState | None = None
        errors = 0  # consecutive failed attempts at the stream's next message
        try:
            while not self._stopping:
                self._woken.discard(key)
                item: QueuedItem | None = None
                try:
                    if state is None:
                        state = await self._spool.call(Spool.load_state, self._spool.spool, key)
                    item = await self._spool.call(Spool.next_queued, self._spool.spool, key)
                    if item is None:
                        if key in self._woken:
                            continue
                        return
                    state = await self._publish(label, item, state)
                    errors = 0
                    continue
                except SpoolBroken:
                    return  # the daemon logs it once and stops
                except SpoolError as error:
                    # The spool is the source of truth: reload it and redo (PUTs are idempotent).
                    log.error("stream %s: %s", label, error)
                except Exception:
                    # A bug, not a peer's or the store's doing: keep the stream alive, and do not
                    # let one message block it forever.
                    log.exception("stream %s: unexpected error publishing the next message", label)
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

    async def _give_up(self, label: str, item: QueuedItem) -> None:
        with contextlib.suppress(Exception):
            state = await self._spool.call(Spool.load_state, self._spool.spool, item.message.stream_id)
            failed = with_failure(state, promised_s=item.message.segment_duration, end=False)
            await self._spool.call(partial(Spool.complete, self._spool.spool, item, failed, failure="internal error"))
            self._drop_payload(item)
            log.error("stream %s segment %s: given up after %d internal errors; it will not be listed",
                      label, item.message.segment_name, MAX_UNEXPECTED_ERRORS)

    async def _publish(self, label: str, item: QueuedItem, state: StreamState) -> StreamState:
        message = item.message
        segment = message.segment_name
        began = time.monotonic()
        if item.end_only:
            new_state = with_end(state, promised_s=message.segment_duration)
        elif state.ended:
            # Queued before the end was (a spool from an older daemon): the playlist is final.
            return await self._fail(label, item, state, "the stream has ended: its playlist is final"
                                    " (RFC 8216 6.2.1)")
        else:
            sizes: list[int] = []
            opener = partial(self._open_segment, item, sizes)
            try:
                await self._put(label, segment, message.bucket, message.segment_key, opener, SEGMENT_CONTENT_TYPE,
                                self._config.cache_control_segment)
            except (PermanentStoreError, SegmentFileError, DirectoryRefused) as error:
                return await self._fail(label, item, state, str(error))
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
            )
            self._log_over_target(label, message.stream_id, segment, transition)
            new_state = transition.state
        # Behind (a backlog after an outage, or more streams than the store keeps up with): when a
        # newer message of this stream is already queued, its playlist names this segment too, so
        # this one is not PUT. Half the PUTs while catching up; at live pace nothing changes.
        superseded = key_woken = message.stream_id in self._woken
        if key_woken:
            superseded = await self._spool.call(Spool.has_newer_queued, self._spool.spool, item)
        if should_publish(new_state, self._options) and not superseded:
            try:
                await self._put_playlist(label, item, new_state)
            except PermanentStoreError as error:
                return await self._fail(label, item, state, f"playlist: {error}")
            if self._config.player_page and (message.bucket, message.key_prefix) not in self._pages:
                await self._put_player_page(label, message, message.index)
        await self._spool.call(Spool.complete, self._spool.spool, item, new_state)
        self._drop_payload(item)
        await self._update_master(label, message)
        listed = new_state.segments[-1].media_sequence if new_state.segments and not item.end_only else None
        log.info(
            "stream %s segment %s published%s%s%s in %.3f s",
            label,
            segment,
            f" as media sequence {listed}" if listed is not None else "",
            " (stream ended)" if new_state.ended else "",
            " (listed by the next playlist)" if superseded else "",
            time.monotonic() - began,
        )
        return new_state

    def _log_over_target(self, label: str, key: StreamKey, segment: str, transition: Transition) -> None:
        """An ERROR for a segment longer than the stream's target, at most one per stream per
        ``OVER_TARGET_LOG_INTERVAL_S``; the next one counts those left out."""
        if transition.over_target is None:
            return
        now = time.monotonic()
        logged_at, unlogged = self._over_target.get(key, (None, 0))
        if logged_at is not None and now - logged_at < OVER_TARGET_LOG_INTERVAL_S:
            self._over_target[key] = (logged_at, unlogged + 1)
            return
        self._over_target[key] = (now, 0)
        log.error("stream %s segment %s: %s%s", label, segment, transition.over_target,
                  f" ({unlogged} more such segment(s) since the last report)" if unlogged else "")

    async def _fail(self, label: str, item: QueuedItem, state: StreamState, reason: str) -> StreamState:
        """Mark ``item`` failed for ``reason``: never listed; the next segment marks the gap. The
        ENDLIST of a failed end message is still published, unless the stream had ended before."""
        message = item.message
        log.error(
            "stream %s segment %s failed permanently and will not be listed: %s",
            label,
            message.segment_name,
            reason,
        )
        new_state = with_failure(state, promised_s=message.segment_duration, end=message.end)
        if message.end and not state.ended and should_publish(new_state, self._options):
            try:
                await self._put_playlist(label, item, new_state)  # the ENDLIST must still go out
            except PermanentStoreError as error:
                log.error("stream %s: playlist failed permanently: %s", label, error)
        await self._spool.call(partial(Spool.complete, self._spool.spool, item, new_state, failure=reason))
        self._drop_payload(item)
        await self._update_master(label, message)
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

    async def _update_master(self, label: str, message: IndexMessage) -> None:
        """Re-upload the program's master when a rendition appeared, ended or changed."""
        name = self._config.master_name
        if not name:
            return
        group = (message.bucket, message.key_prefix)
        lock = self._master_locks.setdefault(group, asyncio.Lock())
        async with lock:
            variants: list[Variant] = []
            for key in await self._spool.call(Spool.group_streams, self._spool.spool, *group):
                if key[2] == name:
                    continue  # a stream named like the master is not one of its renditions
                state = await self._spool.call(Spool.load_state, self._spool.spool, key)
                found = variant(key[2], state) if should_publish(state, self._options) else None
                if found is not None:
                    variants.append(found)
            current = sorted_variants(variants)
            if not needs_upload(self._masters.get(group), current):
                return
            text = master_playlist(current)
            try:
                await self._put(label, name, message.bucket, message.key_for(name), text.encode("ascii"),
                                PLAYLIST_CONTENT_TYPE, self._config.cache_control_playlist)
            except PermanentStoreError as error:
                log.error("program %s: master playlist failed permanently: %s", stream_label((*group, name)), error)
                return
            first = group not in self._masters
            self._masters[group] = current
            log.info(
                "program %s: master playlist uploaded with %d rendition(s): %s",
                stream_label((*group, name)), len(current),
                ", ".join(f"{v.uri} {v.bandwidth} bit/s" for v in current),
            )
            if first and self._config.player_page and self._pages.get(group) != name:
                await self._put_player_page(label, message, name)

    async def _put_playlist(self, label: str, item: QueuedItem, state: StreamState) -> None:
        text = media_playlist(state, self._options)
        message = item.message
        await self._put(label, message.index, message.bucket, message.playlist_key, text.encode("ascii"),
                        PLAYLIST_CONTENT_TYPE, self._config.cache_control_playlist)

    async def _put_player_page(self, label: str, message: IndexMessage, playlist: str) -> None:
        """index.html and hls.js beside the first stream that publishes under a key prefix; the
        page plays that stream, or the program's master once there is one."""
        group = (message.bucket, message.key_prefix)
        if group in self._masters and self._config.master_name:
            playlist = self._config.master_name
        self._pages[group] = playlist
        page = render_player_page(playlist, title=label if playlist == message.index else stream_label((*group, playlist))).encode("utf-8")
        try:
            await self._put(label, SCRIPT_NAME, message.bucket, message.key_for(SCRIPT_NAME), player_script(),
                            SCRIPT_CONTENT_TYPE, SCRIPT_CACHE_CONTROL)
            await self._put(label, PAGE_NAME, message.bucket, message.key_for(PAGE_NAME), page,
                            PAGE_CONTENT_TYPE, self._config.cache_control_playlist)
        except PermanentStoreError as error:
            log.error("stream %s: player page failed permanently: %s", label, error)
            return
        log.info("stream %s: player page %s uploaded", label, message.key_for(PAGE_NAME))

    async def _put(
        self, label: str, what: str, bucket: str, key: str, body: Body, content_type: str, cache_control: str
    ) -> None:
        """One PUT, retried for as long as the store fails transiently."""
        call: Callable[[], None] = partial(
            self._store.put, bucket, key, body, content_type=content_type, cache_control=cache_control
        )
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                async with self._inflight:
                    await loop.run_in_executor(self._io, self._counted, call)
            except TransientStoreError as error:
                attempt += 1
                delay = backoff_delay(attempt, base_s=RETRY_BASE_DELAY_S, cap_s=self._config.retry_max_delay_s, rng=self._rng)
                if attempt == 1 or attempt % RETRY_LOG_EVERY == 0:
                    log.warning("stream %s: upload of %s failed (attempt %d), retrying in %.1f s: %s",
                                label, what, attempt, delay, error)
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info("stream %s: upload of %s succeeded after %d failed attempts", label, what, attempt)
            return
