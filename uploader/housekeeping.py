"""Bounded growth: the queued deletions of segments that left a live window, and the end and
the forgetting of streams whose segmenter went silent. The I/O shell of uploader/retention.py.
And, for private streams (--url-mode), the signing again of idle streams' playlists.

Deletions wait in the spool's ``deletions`` table, written in the same transaction that records
the removal, so a restart resumes them; each is tried when due, and one the store refuses is
retried later (never dropped: an operator can grant the permission).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from .config import UploaderConfig
from common.logs import DESTINATION, Throttle

from .metrics import DaemonMetrics, DestinationMetrics
from .publisher import Publisher
from .retention import Silence, retry_at, silence_verdict
from .spool import QueuedDeletion, Spool, SpoolError, SpoolThread
from .stores import CorrectableStoreError, PermanentStoreError, Store, StoreError, TlsRefusedError
from .stream import stream_label
from .urls import CHECK_FRACTION, UrlMode

log = logging.getLogger(__name__)

# How often due deletions and silent streams are looked for, seconds: the precision of both.
TICK_S = 0.5

# Deletions tried per tick at most: a long backlog (after a stop) drains without starving the loop.
DELETIONS_PER_TICK = 200

# Failed deletions are logged at most once per this many seconds, with a count of those not
# logged: without s3:DeleteObject every segment's deletion fails, and one line per segment is noise.
DELETION_ERROR_LOG_INTERVAL_S = 60.0

# Streams are judged for silence at most this often, seconds (and at least every quarter of the
# shorter silence option): a scan of every stream is not worth doing every tick.
SILENCE_CHECK_MAX_INTERVAL_S = 10.0

# Private streams: streams are looked at for URLs due to be signed again at least this often
# (and at least every ``urls.CHECK_FRACTION`` of --url-ttl), seconds.
SIGNING_CHECK_MAX_INTERVAL_S = 60.0


def deletion_fix(error: StoreError) -> str:
    """What a failed deletion's log line adds: a refusal (not a store that is down or slow) is most
    often a missing s3:DeleteObject; a TLS refusal has its own fix; "" for a transient failure."""
    if isinstance(error, TlsRefusedError):
        return f"; fix: {error.fix}"
    if isinstance(error, (PermanentStoreError, CorrectableStoreError)):
        return " (the daemon needs s3:DeleteObject on the bucket, docs/deploy.md; or run with --keep-segment-objects)"
    return ""


class Housekeeper:
    """Runs beside the publisher from start to shutdown (``run`` until cancelled)."""

    def __init__(self, *, config: UploaderConfig, spool: SpoolThread, store: Store, publisher: Publisher,
                 metrics: DestinationMetrics | None = None, destination: str | None = None,
                 followers: Sequence[tuple[SpoolThread, Publisher]] | None = ()) -> None:
        """Keeps one destination's spool and store: ``destination`` names it in log lines when the
        daemon has several (``common.logs.DESTINATION``). The destination that takes the messages
        also judges the streams' silence for all (``followers``: the others' spools and
        publishers), so that every destination ends a stream, and forgets it, with it: a stream is
        forgotten only once no destination has a message of it queued. A follower's own
        housekeeper is given ``followers=None``: it judges no silence."""
        self._config = config
        self._destination = destination
        self._followers = followers
        self._metrics = metrics or DaemonMetrics().destination(store.description)
        self._spool = spool
        self._store = store
        self._publisher = publisher
        self._started_at = time.time()  # what a stream recorded by an older daemon is quiet since
        limits = [s for s in (config.end_silent_after_s, config.forget_ended_after_s) if s > 0]
        self._silence_interval_s = min([SILENCE_CHECK_MAX_INTERVAL_S, *(s / 4 for s in limits)])
        self._judged_at = 0.0  # monotonic
        self._signing_interval_s = min(SIGNING_CHECK_MAX_INTERVAL_S,
                                       min(config.url_ttl_s, config.playlist_url_ttl_s) * CHECK_FRACTION)
        self._signing_checked_at = 0.0  # monotonic
        self._errors = Throttle(DELETION_ERROR_LOG_INTERVAL_S)  # all deletions share one report

    async def run(self) -> None:
        DESTINATION.set(self._destination)
        while True:
            try:
                await self._delete_due()
                await self._judge_silence()
                await self._sign_idle_streams()
            except SpoolError as error:
                log.error("housekeeping: %s", error)
            await asyncio.sleep(TICK_S)

    async def _delete_due(self) -> None:
        due = await self._spool.call(Spool.due_deletions, self._spool.spool, time.time(), DELETIONS_PER_TICK)
        deleted = 0
        for deletion in due:
            try:
                await asyncio.to_thread(self._store.delete, deletion.bucket, deletion.key)
            except StoreError as error:
                await self._failed(deletion, error)
                continue
            await self._spool.call(Spool.deletion_done, self._spool.spool, deletion.id)
            log.debug("deleted %s/%s: it left a live window", deletion.bucket, deletion.key)
            deleted += 1
        if deleted:
            left = await self._spool.call(Spool.pending_deletions, self._spool.spool)
            log.info("deleted %d segment object(s) that left a live window more than RFC 8216 6.2.2's time"
                     " + %g s ago; %d more queued", deleted, self._config.cdn_allowance_s, left)

    async def _failed(self, deletion: QueuedDeletion, error: StoreError) -> None:
        attempts = deletion.attempts + 1
        when = retry_at(time.time(), attempts)
        self._metrics.store_retry("delete")
        await self._spool.call(Spool.deletion_failed, self._spool.spool, deletion.id, when)
        unlogged = self._errors.due("deletions", time.monotonic())
        if unlogged is None:
            return
        more = f"; {unlogged} more failed deletion(s) since the last report" if unlogged else ""
        log.error("deleting %s/%s failed (attempt %d), retrying in %.0f s: %s%s%s",
                  deletion.bucket, deletion.key, attempts, when - time.time(), error, deletion_fix(error), more)

    async def _sign_idle_streams(self) -> None:
        """Private streams: offer each stream of the spool to ``Publisher.sign_again``."""
        if self._config.url_mode is UrlMode.PUBLIC:
            return
        if time.monotonic() - self._signing_checked_at < self._signing_interval_s:
            return
        self._signing_checked_at = time.monotonic()
        for stream in await self._spool.call(Spool.stream_activity, self._spool.spool):
            self._publisher.sign_again(stream.key, stream.last_message)

    async def _judge_silence(self) -> None:
        config = self._config
        if self._followers is None or (not config.end_silent_after_s and not config.forget_ended_after_s):
            return
        if time.monotonic() - self._judged_at < self._silence_interval_s:
            return
        self._judged_at = time.monotonic()
        now = time.time()
        for stream in await self._spool.call(Spool.stream_activity, self._spool.spool):
            quiet_s = now - (stream.active_at if stream.active_at is not None else self._started_at)
            verdict = silence_verdict(end_queued=stream.end_queued, ended=stream.ended, queued=stream.queued,
                                      quiet_s=quiet_s, end_after_s=config.end_silent_after_s,
                                      forget_after_s=config.forget_ended_after_s)
            label = stream_label(stream.key)
            if verdict is Silence.END:
                if await self._spool.call(Spool.end_silent, self._spool.spool, stream.key,
                                          now - config.end_silent_after_s):
                    log.warning("stream %s: no message for %.0f s (--end-silent-after): ending it with"
                                " EXT-X-ENDLIST; later segments of it are refused until it is forgotten",
                                label, quiet_s)
                    self._publisher.notify(stream.key)
                    for spool, publisher in self._followers:
                        # Its last message is this one's: end it there too, however recent.
                        if await spool.call(Spool.end_silent, spool.spool, stream.key, now):
                            publisher.notify(stream.key)
            elif verdict is Silence.FORGET:
                # The followers first: one still publishing the stream's backlog keeps it, and
                # this destination with it (a new run would find them disagreeing otherwise).
                for spool, _ in self._followers:
                    if not await spool.call(Spool.forget, spool.spool, stream.key):
                        break
                else:
                    if await self._spool.call(Spool.forget, self._spool.spool, stream.key):
                        log.info("stream %s: ended and quiet for %.0f s (--forget-ended-after): its state is"
                                 " removed from the spool; a new segment starts it afresh", label, quiet_s)
                        for publisher in (self._publisher, *(publisher for _, publisher in self._followers)):
                            await publisher.forget(stream.key, stream.last_message)
