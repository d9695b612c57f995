"""The daemon's Prometheus metrics and its health and readiness (docs/operations.md lists them).

Counts of what happened (segments published, bytes, store requests, refusals) are kept as they
happen; what the spool knows (queues, media sequences, when each stream last published) is read
from it at each scrape, so a metric never disagrees with ``hls-uploadd status``. A stream's
series go away when the daemon forgets it (``--forget-ended-after``).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .stream import StreamSummary
from .stores import (
    Body,
    CorrectableStoreError,
    ObjectTakenError,
    PermanentStoreError,
    Store,
    StoreError,
    Version,
    VersionConflict,
)
from .stream import StreamKey

STREAM_LABELS = ("bucket", "key_prefix", "index")
DESTINATION_LABEL = "destination"  # a --store, as its URL without a password
_LABELS = (DESTINATION_LABEL, *STREAM_LABELS)

# Message received -> the playlist naming its segment stored: from a fast local store's tens of
# milliseconds to a backlog of minutes.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


class Refusal(enum.Enum):
    """Why a peer's message or connection was refused: the ``reason`` label of
    ``hls_uploadd_refusals_total`` (a closed set, so the series stay bounded)."""

    AUTHENTICATION = "authentication"  # no or a bad signature, a bad HELLO
    SCOPE = "scope"  # a bucket, key prefix or directory the peer may not write
    NOT_WRITER = "not_writer"  # another writer owns the stream
    ENDED = "ended"  # the stream has ended
    BAD_MESSAGE = "bad_message"  # not a message this daemon reads
    PAYLOAD = "payload"  # an inline payload that is not MPEG-TS or not its sha256
    DAEMON = "daemon"  # the daemon could not take it: the payload budget spent, its disk or spool failing


def store_error_kind(error: StoreError) -> str:
    """The ``kind`` label of a store error: taken (the name holds other bytes), conflict (a
    playlist version another writer replaced), permanent, correctable (the operator's to fix:
    credentials, a missing bucket) or transient."""
    if isinstance(error, VersionConflict):
        return "conflict"
    if isinstance(error, ObjectTakenError):
        return "taken"
    if isinstance(error, PermanentStoreError):
        return "permanent"
    if isinstance(error, CorrectableStoreError):
        return "correctable"
    return "transient"


@dataclass(frozen=True, slots=True)
class LiveSources:
    """Where a scrape reads what is not counted as it happens. Each callable runs on the
    endpoint's thread; ``summaries`` raises when the spool does not answer."""

    summaries: Callable[[], Mapping[str, list[StreamSummary]]]  # by destination
    connections: Callable[[], int]
    payload_bytes: Callable[[], int]  # inline payload bytes reserved by connections receiving them
    spool_paths: tuple[Path, ...]  # the SQLite files, the destinations'; each -wal file is counted with it


class DaemonMetrics:
    """Every metric of the daemon, in its own registry (``registry``, served by
    ``common.endpoint.OperatorEndpoint``). The counters are always kept, whether or not
    ``--metrics-listen`` serves them. What concerns one destination (``--store``) is counted
    through its ``destination(name)``, under the label ``destination``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        labels = (DESTINATION_LABEL, *STREAM_LABELS)
        self.published = Counter("hls_uploadd_segments_published", "Segments listed in their playlist.",
                                 labels, registry=registry)
        self.failed = Counter("hls_uploadd_segments_failed", "Segments that failed for good (never listed).",
                              labels, registry=registry)
        self.uploaded = Counter("hls_uploadd_uploaded_bytes",
                                "Bytes stored: segments, media and master playlists, the player page.", labels,
                                registry=registry)
        self.latency = Histogram("hls_uploadd_publish_latency_seconds",
                                 "Message received -> the playlist naming its segment stored.",
                                 labels, buckets=LATENCY_BUCKETS_S, registry=registry)
        self.store_requests = Counter("hls_uploadd_store_requests", "Store requests by operation.",
                                      (DESTINATION_LABEL, "operation"), registry=registry)
        self.store_errors = Counter("hls_uploadd_store_errors", "Store requests that failed, by operation and kind.",
                                    (DESTINATION_LABEL, "operation", "kind"), registry=registry)
        self.store_retries = Counter("hls_uploadd_store_retries", "Failed store requests that are tried again.",
                                     (DESTINATION_LABEL, "operation"), registry=registry)
        self.leases = Counter("hls_uploadd_leases", "Program leases (--lease-ttl) taken, renewed and lost or given"
                              " up, by event: taken (free), taken_over (lapsed), lost (taken by another daemon),"
                              " released.", (DESTINATION_LABEL, "event"), registry=registry)
        self.refusals = Counter("hls_uploadd_refusals", "Messages and connections refused, by reason.",
                                ("reason",), registry=registry)
        for reason in Refusal:
            self.refusals.labels(reason.value)  # every reason shows, at 0, from the start
        self._per_stream = (self.published, self.failed, self.uploaded, self.latency)

    def destination(self, name: str) -> DestinationMetrics:
        """What one destination counts, its series labelled ``destination=name``."""
        return DestinationMetrics(self, name)

    def watch(self, sources: LiveSources) -> None:
        """Serve the spool's and the process's figures (``LiveSources``) from now on."""
        self.registry.register(_LiveCollector(sources))

    def refused(self, reason: Refusal) -> None:
        self.refusals.labels(reason.value).inc()


@dataclass(frozen=True, slots=True)
class DestinationMetrics:
    """The counters of one destination (``DaemonMetrics.destination``)."""

    metrics: DaemonMetrics
    name: str

    def published_segment(self, key: StreamKey, received_at: Iterable[float], now: float) -> None:
        """The playlist naming the segments of the messages received at ``received_at`` (wall
        clock) is stored: one listed segment per time."""
        for at in received_at:
            self.metrics.published.labels(self.name, *key).inc()
            self.metrics.latency.labels(self.name, *key).observe(max(0.0, now - at))

    def failed_segment(self, key: StreamKey) -> None:
        self.metrics.failed.labels(self.name, *key).inc()

    def uploaded(self, key: StreamKey, size: int) -> None:
        """``size`` bytes of the stream ``key`` stored."""
        self.metrics.uploaded.labels(self.name, *key).inc(size)

    def store_request(self, operation: str) -> None:
        self.metrics.store_requests.labels(self.name, operation).inc()

    def store_error(self, operation: str, kind: str) -> None:
        """A failed store request, ``kind`` as ``store_error_kind`` says it."""
        self.metrics.store_errors.labels(self.name, operation, kind).inc()

    def store_retry(self, operation: str) -> None:
        self.metrics.store_retries.labels(self.name, operation).inc()

    def lease(self, event: str) -> None:
        """A program's lease was taken, ``taken_over``, ``lost`` or ``released``."""
        self.metrics.leases.labels(self.name, event).inc()

    def forget(self, key: StreamKey) -> None:
        """The destination forgot the stream: its series go."""
        for metric in self.metrics._per_stream:
            try:
                metric.remove(self.name, *key)
            except KeyError:
                pass  # never counted


class _LiveCollector(Collector):
    """The figures read at each scrape: per stream from the spool, per process from the daemon."""

    def __init__(self, sources: LiveSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Any]:
        sources = self._sources
        now = time.time()
        queued = GaugeMetricFamily("hls_uploadd_stream_queued_messages", "Messages waiting to be published.",
                                   labels=_LABELS)
        behind = GaugeMetricFamily(
            "hls_uploadd_stream_behind_seconds",
            "Age of the oldest message waiting to be published (0: none waits): how far the published"
            " live edge trails the segmenter's.", labels=_LABELS)
        age = GaugeMetricFamily("hls_uploadd_stream_last_publish_age_seconds",
                                "Seconds since the stream's playlist last changed.", labels=_LABELS)
        sequence = GaugeMetricFamily("hls_uploadd_stream_media_sequence",
                                     "Media sequence number of the newest listed segment (0: none).",
                                     labels=_LABELS)
        target = GaugeMetricFamily("hls_uploadd_stream_target_duration_seconds",
                                   "EXT-X-TARGETDURATION of the stream's playlist.", labels=_LABELS)
        ended = GaugeMetricFamily("hls_uploadd_stream_ended", "1 once the playlist has EXT-X-ENDLIST.",
                                  labels=_LABELS)
        held = GaugeMetricFamily("hls_uploadd_stream_held_seconds",
                                 "Seconds the stream has been held by a refusal the operator must correct (0: not"
                                 " held).", labels=_LABELS)
        failed = GaugeMetricFamily("hls_uploadd_stream_failed_messages",
                                   "Failed messages kept in the spool (hls-uploadd requeue).", labels=_LABELS)
        for destination, summaries in sources.summaries().items():
            for summary in summaries:
                labels = [destination, *summary.key]
                queued.add_metric(labels, summary.queued)
                behind.add_metric(labels, max(0.0, now - summary.oldest_queued_at)
                                  if summary.oldest_queued_at is not None else 0.0)
                if summary.published_at is not None:
                    age.add_metric(labels, max(0.0, now - summary.published_at))
                sequence.add_metric(labels, summary.last_media_sequence)
                if summary.target_duration_s is not None:
                    target.add_metric(labels, summary.target_duration_s)
                ended.add_metric(labels, int(summary.ended))
                held.add_metric(labels, max(0.0, now - summary.held_since) if summary.held_since is not None
                                else 0.0)
                failed.add_metric(labels, summary.failed)
        yield from (queued, behind, age, sequence, target, ended, held, failed)
        spool_bytes = sum(_size(path) + _size(Path(f"{path}-wal")) for path in sources.spool_paths)
        yield GaugeMetricFamily("hls_uploadd_spool_bytes", "Size of the spool's databases (with their WALs).",
                                value=spool_bytes)
        yield GaugeMetricFamily("hls_uploadd_payload_inflight_bytes",
                                "Inline payload bytes being received (--max-payload-inflight bounds it).",
                                value=sources.payload_bytes())
        yield GaugeMetricFamily("hls_uploadd_connections", "Peer connections open.", value=sources.connections())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class MeteredStore:
    """A Store that counts its requests and their errors (``DestinationMetrics``) and remembers
    the store's last answers, for readiness (``StoreHealth``). Same interface and errors as the
    store it wraps."""

    def __init__(self, store: Store, metrics: DestinationMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self.description = store.description
        self.versions = store.versions
        self.health = StoreHealth()

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        self._call("put", lambda: self._store.put(bucket, key, body, content_type=content_type,
                                                  cache_control=cache_control, create_only=create_only))

    def check_create_only(self, bucket: str) -> bool:
        return self._call("check_create_only", lambda: self._store.check_create_only(bucket))

    def exists(self, bucket: str, key: str) -> bool:
        return self._call("exists", lambda: self._store.exists(bucket, key))

    def delete(self, bucket: str, key: str) -> None:
        self._call("delete", lambda: self._store.delete(bucket, key))

    def close(self) -> None:
        self._store.close()

    def get_version(self, bucket: str, key: str) -> Version | None:
        return self._call("get", lambda: self._store.get_version(bucket, key))

    def put_version(self, bucket: str, key: str, body: bytes, *, content_type: str, cache_control: str,
                    metadata: Mapping[str, str], replaces: str | None) -> str:
        return self._call("put", lambda: self._store.put_version(
            bucket, key, body, content_type=content_type, cache_control=cache_control, metadata=metadata,
            replaces=replaces))

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        self._metrics.store_request(operation)
        try:
            result = call()
        except StoreError as error:
            kind = store_error_kind(error)
            self._metrics.store_error(operation, kind)
            # A refusal (a name taken, a missing bucket, bad credentials) is an answer: the store
            # is up. Readiness judges refusals by the stream or bucket they hold.
            self.health.answered(f"{operation}: {error}" if kind == "transient" else None)
            raise
        self.health.answered(None)
        return result


class StoreHealth:
    """The store's last answers: since when it has been failing (None: it answered the last
    request). Thread-safe: store requests run on the publisher's threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.failing_since: float | None = None  # clock() of the first failure of the current run
        self.last_error = ""
        self.answered_at: float | None = None  # clock() of the last successful answer

    def answered(self, error: str | None) -> None:
        """The store answered a request (``error`` None) or failed it (its one-line reason)."""
        with self._lock:
            now = self._clock()
            if error is None:
                self.failing_since = None
                self.answered_at = now
            else:
                if self.failing_since is None:
                    self.failing_since = now
                self.last_error = error

    def failing_for(self) -> tuple[float, str] | None:
        """(seconds the store has been failing every request, the last error), or None."""
        with self._lock:
            if self.failing_since is None:
                return None
            return self._clock() - self.failing_since, self.last_error
