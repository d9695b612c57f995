"""A stream: its key, and its published state and how each outcome changes it. Pure: no I/O.

The publisher loads a ``StreamState`` from the spool, applies the outcome of one queued message
(a segment published, a segment failed, an end) and stores the result together with the
message's completion, so the playlist can always be rebuilt from the spool alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

StreamKey = tuple[str, str, str]  # (bucket, key_prefix, index), as IndexMessage.stream_id


def stream_label(key: StreamKey) -> str:
    """A stream as logs name it: "BUCKET/KEY_PREFIX/INDEX", or "BUCKET/INDEX" at the bucket's root."""
    bucket, key_prefix, index = key
    return f"{bucket}/{key_prefix}/{index}" if key_prefix else f"{bucket}/{index}"


def rounded_seconds(duration_s: float) -> int:
    """RFC 8216 4.3.3.1 rounds an EXTINF to the nearest integer (halves up, not to even)."""
    return math.floor(duration_s + 0.5)


@dataclass(frozen=True, slots=True)
class PublishedSegment:
    media_sequence: int
    uri: str
    duration_s: float
    discontinuity: bool  # an EXT-X-DISCONTINUITY tag precedes it


@dataclass(frozen=True, slots=True)
class RenditionInfo:
    """What the segmenter says about the rendition (from its probe), as of the last segment."""

    codecs: str | None = None  # RFC 6381 list
    resolution: str | None = None  # WIDTHxHEIGHT
    frame_rate: float | None = None
    declared_bandwidth: int | None = None  # bit/s, from hls-segment --bandwidth


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the stream's playlist is made of. ``segments`` holds the kept tail, oldest first."""

    segments: tuple[PublishedSegment, ...] = ()
    # Media sequence number of the next published segment: the count of published ones, plus 1.
    next_media_sequence: int = 1
    # EXT-X-DISCONTINUITY tags that have slid out of the kept segments (RFC 8216 6.2.2).
    discontinuity_sequence: int = 0
    # Fixed at the first published segment; only raised, with a warning, by a longer segment.
    target_duration_s: int | None = None
    ended: bool = False
    # A segment failed or the numbering restarted: the next published segment gets a tag.
    pending_discontinuity: bool = False
    # Measured over every published segment of the stream (for the master playlist).
    peak_bps: int = 0  # max over segments of bits / duration
    total_bits: int = 0
    total_seconds: float = 0.0
    independent: bool = True  # every published segment said it starts with a keyframe
    info: RenditionInfo = RenditionInfo()

    @property
    def published_any(self) -> bool:
        return self.next_media_sequence > 1

    @property
    def average_bps(self) -> int:
        return round(self.total_bits / self.total_seconds) if self.total_seconds > 0 else 0


def segment_bps(size_bytes: int, duration_s: float) -> int:
    """A segment's bit rate: its bits over its duration, rounded up (BANDWIDTH is an upper bound)."""
    return math.ceil(size_bytes * 8 / duration_s) if duration_s > 0 else 0


@dataclass(frozen=True, slots=True)
class Transition:
    state: StreamState
    warnings: tuple[str, ...] = ()  # for the log, one line each


def with_segment(
    state: StreamState,
    *,
    uri: str,
    duration_s: float,
    promised_s: int,
    discontinuity: bool,
    end: bool,
    keep: int | None,
    size_bytes: int | None = None,
    independent: bool = False,
    info: RenditionInfo | None = None,
) -> Transition:
    """``state`` after a segment was uploaded. ``keep`` bounds the kept segments (None: all)."""
    warnings: list[str] = []
    # A tag before the very first segment of a stream would mark nothing: drop it.
    tagged = (discontinuity or state.pending_discontinuity or state.ended) and state.published_any
    rounded = rounded_seconds(duration_s)
    target = state.target_duration_s
    if target is None:
        target = max(promised_s, rounded)
    elif rounded > target:
        warnings.append(
            f"segment of {duration_s:g} s is longer than the target duration {target} s;"
            f" raising EXT-X-TARGETDURATION to {rounded} (players may reload the playlist)"
        )
        target = rounded
    segment = PublishedSegment(state.next_media_sequence, uri, duration_s, tagged)
    segments = state.segments + (segment,)
    removed_tags = 0
    if keep is not None and len(segments) > keep:
        removed_tags = sum(1 for old in segments[:-keep] if old.discontinuity)
        segments = segments[-keep:]
    measured = size_bytes is not None and duration_s > 0
    new_state = StreamState(
        segments=segments,
        next_media_sequence=state.next_media_sequence + 1,
        discontinuity_sequence=state.discontinuity_sequence + removed_tags,
        target_duration_s=target,
        ended=end,
        pending_discontinuity=False,
        peak_bps=max(state.peak_bps, segment_bps(size_bytes, duration_s)) if measured else state.peak_bps,
        total_bits=state.total_bits + (size_bytes * 8 if measured else 0),
        total_seconds=state.total_seconds + (duration_s if measured else 0.0),
        independent=state.independent and independent,
        info=info if info is not None else state.info,
    )
    return Transition(new_state, tuple(warnings))


def with_failure(state: StreamState, *, promised_s: int, end: bool) -> StreamState:
    """``state`` after a segment failed for good: never listed, the next one marks the gap."""
    return replace(
        state,
        pending_discontinuity=True,
        ended=state.ended or end,
        target_duration_s=state.target_duration_s if state.target_duration_s is not None else promised_s,
    )


def with_end(state: StreamState, *, promised_s: int) -> StreamState:
    """``state`` after an end message that names no new segment."""
    return replace(
        state,
        ended=True,
        target_duration_s=state.target_duration_s if state.target_duration_s is not None else promised_s,
    )
