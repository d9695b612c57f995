"""hls-segment's Prometheus metrics (docs/operations.md lists them), served by
``--metrics-listen`` with ``/healthz``.

One process segments one stream, so the metrics are the module's, in its own ``REGISTRY``:
counts are kept as things happen (``segment_written``, ``continuity_errors``); the input's
bytes, its silence and the messages owed are read at each scrape from what ``watch`` was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()

SEGMENTS = Counter("hls_segment_segments", "Segments cut, written and queued for hls-uploadd.", registry=REGISTRY)
SEGMENT_BYTES = Counter("hls_segment_segment_bytes", "Bytes of the segments written.", registry=REGISTRY)
MEDIA_SECONDS = Counter("hls_segment_media_seconds", "Media seconds in the segments written (their durations).",
                        registry=REGISTRY)
DISCONTINUITIES = Counter("hls_segment_discontinuities", "Segments that start a new timeline (a discontinuity).",
                          registry=REGISTRY)
PACKETS_DROPPED = Counter("hls_segment_packets_dropped",
                          "Input packets left out of every segment (before the first keyframe, stragglers of"
                          " an old timeline, over a bound).", registry=REGISTRY)
CONTINUITY_ERRORS = Counter("hls_segment_continuity_errors",
                            "Continuity errors in the input (lost TS packets), by PID.", ("pid",), registry=REGISTRY)


def segment_written(size_bytes: int, duration_s: float | None, discontinuity: bool, dropped: int) -> None:
    """Count one segment written: its size, duration, whether it starts a new timeline, and the
    input packets dropped while it was open."""
    SEGMENTS.inc()
    SEGMENT_BYTES.inc(size_bytes)
    MEDIA_SECONDS.inc(duration_s or 0.0)
    if discontinuity:
        DISCONTINUITIES.inc()
    PACKETS_DROPPED.inc(dropped)


def continuity_errors(counts: dict[int, int]) -> None:
    """Count continuity errors: PID -> how many (the PID as ``0x1e1``, as logs name it)."""
    for pid, count in counts.items():
        CONTINUITY_ERRORS.labels(f"0x{pid:x}").inc(count)


class _Live(Collector):
    """What a scrape reads: set by ``watch`` (None: not known yet, not shown)."""

    def __init__(self) -> None:
        self.input_bytes: Callable[[], int] | None = None
        self.silent_s: Callable[[], float] | None = None
        self.owed: Callable[[], int] | None = None

    def collect(self) -> Iterator[Any]:
        if self.input_bytes is not None:
            yield CounterMetricFamily("hls_segment_input_bytes", "Bytes read from the input (for an input FFmpeg"
                                      " reads itself, a URL: the bytes of its packets).", value=self.input_bytes())
        if self.silent_s is not None:
            yield GaugeMetricFamily("hls_segment_input_stall_seconds",
                                    "Seconds since the input last delivered anything.", value=self.silent_s())
        if self.owed is not None:
            yield GaugeMetricFamily("hls_segment_messages_owed",
                                    "Index messages written to the outbox and not yet confirmed published by hls-uploadd.",
                                    value=self.owed())


_LIVE = _Live()
REGISTRY.register(_LIVE)


def input_silent_s() -> float | None:
    """Seconds since the input last delivered anything; None before it is opened."""
    return _LIVE.silent_s() if _LIVE.silent_s is not None else None


def watch(*, input_bytes: Callable[[], int] | None = None, silent_s: Callable[[], float] | None = None,
          owed: Callable[[], int] | None = None) -> None:
    """Read these at each scrape from now on (each one given replaces the one before)."""
    if input_bytes is not None:
        _LIVE.input_bytes = input_bytes
    if silent_s is not None:
        _LIVE.silent_s = silent_s
    if owed is not None:
        _LIVE.owed = owed
