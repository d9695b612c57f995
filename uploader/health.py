"""The daemon's health (``/healthz``, the systemd watchdog) and readiness (``/readyz``).

Healthy: the event loop runs and the spool takes a committed write. Ready: healthy in what it
serves, too: every bucket it may write was found writable, the store has not failed every request
for ``--not-ready-after``, and no stream has been held by a refusal the operator must correct for
that long. An idle daemon probes the store itself (the start-up write check, at most once per
``PROBE_INTERVAL_S``) so that readiness follows the store whether or not streams run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .metrics import MeteredStore
from .spool import Spool, SpoolError, SpoolThread
from .stores import StoreError, TransientStoreError, check_writable
from .stream import StreamKey, stream_label

T = TypeVar("T")

# An idle daemon's own store check at most this often (one PUT of the write-check object), or
# once per --not-ready-after when that is shorter.
PROBE_INTERVAL_S = 30.0

# How long a health check waits for the event loop and the spool.
HEALTH_TIMEOUT_S = 5.0


async def spool_health(spool: SpoolThread) -> str | None:
    """None when the spool thread answers and the spool takes a write (``Spool.check_writable``),
    else why not, in one line."""
    if spool.broken is not None:
        return str(spool.broken)
    try:
        await spool.call(Spool.check_writable, spool.spool)
    except SpoolError as error:
        return f"spool: {error}"
    return None


def on_loop(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T], timeout_s: float = HEALTH_TIMEOUT_S) -> T:
    """Run ``work`` on ``loop`` from another thread and return its result; raise TimeoutError
    (with a one-line reason) when the loop does not finish it in ``timeout_s``."""
    future = asyncio.run_coroutine_threadsafe(work, loop)
    try:
        return future.result(timeout_s)
    except TimeoutError:
        future.cancel()
        raise TimeoutError(f"the event loop or the spool did not answer in {timeout_s:g} s") from None


class Readiness:
    """``/readyz``: call it for None (ready) or the first reason the daemon is not.

    ``held`` is the publisher's map of held streams (key -> (monotonic since, reason));
    ``buckets`` the buckets to probe when idle. ``checked`` is set once the start-up bucket check
    reported (``bucket_checked`` for each)."""

    def __init__(self, store: MeteredStore, buckets: frozenset[str], held: Mapping[StreamKey, tuple[float, str]], *,
                 grace_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._buckets = buckets
        self._held = held
        self._grace_s = grace_s
        self._probe_interval_s = min(PROBE_INTERVAL_S, grace_s)
        self._clock = clock
        self._lock = threading.Lock()  # one probe at a time
        self._refused: dict[str, str] = {}  # bucket -> why it cannot be written
        self._probed_at: float | None = None
        self.checked = False

    def bucket_checked(self, bucket: str, refusal: str | None) -> None:
        """The outcome of a write check of ``bucket``: None (writable) or the refusal."""
        if refusal is None:
            self._refused.pop(bucket, None)
        else:
            self._refused[bucket] = refusal

    def __call__(self) -> str | None:
        if not self.checked:
            return "checking that the store's buckets can be written"
        self._probe_if_idle()
        if (failing := self._store.health.failing_for()) is not None and failing[0] >= self._grace_s:
            return f"the store has failed every request for {failing[0]:.0f} s: {failing[1]}"
        for bucket, refusal in sorted(self._refused.items()):
            return f"bucket {bucket} cannot be written: {refusal}"
        now = self._clock()
        for stream, (since, reason) in sorted(self._held.items(), key=lambda item: item[1][0]):
            if now - since >= self._grace_s:
                return f"stream {stream_label(stream)} held for {now - since:.0f} s: {reason}"
        return None

    def _probe_if_idle(self) -> None:
        """The write check of every bucket, when the store last answered more than the probe
        interval ago, is failing, or refused a bucket; at most once per probe interval."""
        with self._lock:
            now = self._clock()
            health = self._store.health
            interval = self._probe_interval_s
            recent = health.answered_at is not None and now - health.answered_at < interval
            if (recent and health.failing_since is None and not self._refused) or (
                    self._probed_at is not None and now - self._probed_at < interval):
                return
            self._probed_at = now
            for bucket in sorted(self._buckets):
                try:
                    check_writable(self._store, bucket)
                except TransientStoreError:
                    pass  # no answer: the store's health says so
                except StoreError as error:
                    self.bucket_checked(bucket, str(error))
                else:
                    self.bucket_checked(bucket, None)
