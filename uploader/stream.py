"""A stream: its key, and its published state and how each outcome changes it. Pure: no I/O.

The publisher loads a ``StreamState`` from the spool, applies the outcome of one queued message
(a segment published, a segment failed, an end) and stores the result together with the
message's completion, so the playlist can always be rebuilt from the spool alone.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

StreamKey = tuple[str, str, str]  # (bucket, key_prefix, index), as IndexMessage.stream_id


def stream_label(key: StreamKey) -> str:
    """A stream as logs name it: "BUCKET/KEY_PREFIX/INDEX", or "BUCKET/INDEX" at the bucket's root."""
    bucket, key_prefix, index = key
    return f"{bucket}/{key_prefix}/{index}" if key_prefix else f"{bucket}/{index}"


def rounded_seconds(duration_s: float) -> int:
    """RFC 8216 4.3.3.1 rounds an EXTINF to the nearest integer (halves up, not to even)."""
    return math.floor(duration_s + 0.5)


def format_duration(duration_s: float) -> str:
    """An EXTINF duration as the playlist writes it: microsecond precision without trailing
    zeros, 10 -> "10", 2.0020 -> "2.002"."""
    return f"{duration_s:.6f}".rstrip("0").rstrip(".")


# RFC 8216 6.2.2: a live playlist never removes a segment if what remains would last less than
# this many target durations.
MIN_TARGET_DURATIONS_LISTED = 3


@dataclass(frozen=True, slots=True)
class PublishedSegment:
    media_sequence: int
    uri: str
    duration_s: float
    discontinuity: bool  # an EXT-X-DISCONTINUITY tag precedes it
    # The object this daemon PUT for it (bucket-relative key); None for a segment recorded by a
    # daemon that did not note it, which is then never deleted (uploader/retention.py).
    key: str | None = None
    size_bytes: int | None = None  # of its object; None when not measured


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
    # EXT-X-TARGETDURATION, seconds: fixed by the first published segment (or the first end or
    # failure), never changed afterwards (RFC 8216 6.2.1).
    target_duration_s: int | None = None
    ended: bool = False
    # A segment failed or the numbering restarted: the next published segment gets a tag.
    pending_discontinuity: bool = False
    # Measured over every published segment of the stream (for the master playlist).
    peak_bps: int = 0  # the peak segment bit rate (RFC 8216 4.3.4.2; peak_segment_bps)
    total_bits: int = 0
    total_seconds: float = 0.0
    independent: bool = True  # every published segment said it starts with a keyframe
    info: RenditionInfo = RenditionInfo()
    # The longest any playlist of the stream lasted (sum of its EXTINF durations, seconds): the
    # "longest Playlist file ... containing that segment" bound of RFC 8216 6.2.2.
    longest_playlist_s: float = 0.0
    # The entity tag of the playlist version this state was last written as or read from, in a
    # store that keeps versions (stores.Store.versions): the next PUT replaces only that version.
    # None: none written yet, or a store without versions.
    version: str | None = None

    @property
    def published_any(self) -> bool:
        return self.next_media_sequence > 1

    @property
    def average_bps(self) -> int:
        return round(self.total_bits / self.total_seconds) if self.total_seconds > 0 else 0


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One stream as ``Spool.summaries`` reads it. Times are wall clock, Unix seconds."""

    key: StreamKey
    ended: bool  # its playlist has EXT-X-ENDLIST
    end_queued: bool  # its end is queued (or published)
    last_media_sequence: int  # of its newest listed segment; 0: none yet
    target_duration_s: int | None  # EXT-X-TARGETDURATION, once its first publish fixed it
    published_at: float | None  # its last publish; None: none recorded
    held_since: float | None  # held by a refusal the operator must correct, since; None: not held
    held_reason: str | None
    queued: int  # messages waiting to be published
    oldest_queued_at: float | None  # when the oldest of them was received
    failed: int  # failed messages, never listed (``hls-uploadd requeue`` queues them again)
    listed: int  # segments its live playlist lists now (the window)
    last_uri: str | None  # the newest of them, as the playlist names it

    @property
    def state(self) -> str:
        """``blocked`` (held now), ``ended``, ``failed`` (segments failed, not ended: requeue
        them once corrected) or ``live``."""
        if self.held_since is not None:
            return "blocked"
        if self.ended:
            return "ended"
        return "failed" if self.failed else "live"


def segment_bps(size_bytes: int, duration_s: float) -> int:
    """A segment's bit rate: its bits over its duration, rounded up (BANDWIDTH is an upper bound)."""
    return math.ceil(size_bytes * 8 / duration_s) if duration_s > 0 else 0


def peak_segment_bps(segments: Sequence[PublishedSegment], target_duration_s: int) -> int | None:
    """The highest bit rate (bits / seconds, rounded up) of a contiguous set of ``segments`` that
    ends with the last one and lasts 0.5 to 1.5 times ``target_duration_s`` (RFC 8216 4.3.4.2,
    the "peak segment bit rate"); None when no such set ends there (the stream's first short
    segments, one segment longer than that, a segment not measured)."""
    low, high = 0.5 * target_duration_s, 1.5 * target_duration_s
    bits, seconds = 0, 0.0
    best = None
    for segment in reversed(segments):
        if segment.size_bytes is None or segment.duration_s <= 0:
            break
        bits += segment.size_bytes * 8
        seconds += segment.duration_s
        if seconds > high:
            break
        if seconds >= low:
            best = max(best or 0, math.ceil(bits / seconds))
    return best


def first_kept(segments: Sequence[PublishedSegment], window: int, target_duration_s: int) -> int:
    """The index in ``segments`` (oldest first) of the first one a live playlist lists.

    The listed tail is the shortest one that holds at least ``window`` segments (--window) and
    lasts at least ``MIN_TARGET_DURATIONS_LISTED`` x ``target_duration_s`` seconds, summing the
    EXTINF durations as the playlist writes them; when no tail does, every segment is listed
    (index 0). RFC 8216 6.2.2: "the server MUST NOT remove a Media Segment from a Playlist file
    without an EXT-X-ENDLIST tag if that would produce a Playlist whose duration is less than
    three times the target duration". As segments are only ever appended, the index never moves
    back. The stream's kept state (``with_segment``) and the playlist (playlist.py) both use this.
    """
    needed = Decimal(MIN_TARGET_DURATIONS_LISTED * target_duration_s)
    listed = Decimal(0)
    for index in range(len(segments) - 1, -1, -1):
        listed += Decimal(format_duration(segments[index].duration_s))
        if len(segments) - index >= window and listed >= needed:
            return index
    return 0


@dataclass(frozen=True, slots=True)
class Transition:
    """A stream's new state, and what its segment broke, if anything, for the log."""

    state: StreamState
    # Segments that left the live window with this transition, oldest first: what must stay
    # downloadable for RFC 8216 6.2.2's time, then may be deleted (uploader/retention.py).
    removed: tuple[PublishedSegment, ...] = ()
    # The segment's rounded duration is over EXT-X-TARGETDURATION (RFC 8216 4.3.3.1): one line
    # naming its duration and the target; None when it is within.
    over_target: str | None = None


class StreamEnded(ValueError):
    """A segment for a stream whose playlist already carries EXT-X-ENDLIST (RFC 8216 6.2.1)."""


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
    key: str | None = None,
) -> Transition:
    """``state`` after a segment of ``duration_s`` seconds was uploaded under ``uri``.

    ``promised_s``: the message's SEGMENT_DURATION, the segmenter's promise that no rounded
    EXTINF of the stream exceeds it. The first published segment fixes EXT-X-TARGETDURATION as
    max(``promised_s``, its rounded duration); it never changes afterwards (RFC 8216 6.2.1). A
    later segment longer than the target is still listed, with its real duration, and
    ``Transition.over_target`` says so. ``keep``: None keeps every segment (EVENT, VOD), else the
    --window minimum of a live playlist, extended by ``first_kept``'s rule; the segments it
    drops are ``Transition.removed``. ``key``: the object the segment was PUT as.

    Raises StreamEnded when ``state`` has ended: its playlist is final.
    """
    if state.ended:
        raise StreamEnded("the stream has ended: its playlist is final (RFC 8216 6.2.1)")
    # A tag before the very first segment of a stream would mark nothing: drop it.
    tagged = (discontinuity or state.pending_discontinuity) and state.published_any
    rounded = rounded_seconds(duration_s)
    target = state.target_duration_s
    if target is None:
        target = max(promised_s, rounded)
    over_target = None
    if rounded > target:
        over_target = (
            f"EXTINF {format_duration(duration_s)} s rounds to {rounded} s, over EXT-X-TARGETDURATION {target} s"
            f" (RFC 8216 4.3.3.1); listed anyway, but players may stall: the segmenter must cut segments of at"
            f" most {target} s"
        )
    segment = PublishedSegment(state.next_media_sequence, uri, duration_s, tagged, key, size_bytes)
    segments = segments_before_removal = state.segments + (segment,)
    removed: tuple[PublishedSegment, ...] = ()
    if keep is not None:
        first = first_kept(segments, keep, target)
        removed, segments = segments[:first], segments[first:]
    removed_tags = sum(1 for old in removed if old.discontinuity)
    measured = size_bytes is not None and duration_s > 0
    new_state = StreamState(
        segments=segments,
        next_media_sequence=state.next_media_sequence + 1,
        discontinuity_sequence=state.discontinuity_sequence + removed_tags,
        target_duration_s=target,
        ended=end,
        pending_discontinuity=False,
        peak_bps=_peak(state, segments_before_removal, target, size_bytes, duration_s) if measured else state.peak_bps,
        total_bits=state.total_bits + (size_bytes * 8 if measured else 0),
        total_seconds=state.total_seconds + (duration_s if measured else 0.0),
        independent=state.independent and independent,
        info=info if info is not None else state.info,
        longest_playlist_s=max(state.longest_playlist_s, sum(s.duration_s for s in segments)),
        version=state.version,
    )
    return Transition(new_state, removed, over_target)


def _peak(state: StreamState, segments: Sequence[PublishedSegment], target_duration_s: int, size_bytes: int,
          duration_s: float) -> int:
    """``state``'s peak bit rate with the last of ``segments`` published: RFC 8216 4.3.4.2's sets;
    the segment's own rate when none qualifies and it is the first measure, or longer than any
    set may be (an upper bound is what BANDWIDTH must be)."""
    peak = peak_segment_bps(segments, target_duration_s)
    if peak is None and (state.peak_bps == 0 or duration_s > 1.5 * target_duration_s):
        peak = segment_bps(size_bytes, duration_s)
    return max(state.peak_bps, peak or 0)


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


def without_lost(state: StreamState, lost: Collection[int]) -> StreamState:
    """``state`` once the objects of its kept segments numbered ``lost`` (media sequence numbers)
    are gone from the store for good: their bucket was deleted and created again, and no source
    was left to upload them from.

    A live playlist only ever loses segments from its front (RFC 8216 6.2.1), so every kept segment
    up to the last lost one is dropped: EXT-X-MEDIA-SEQUENCE moves past them, and
    EXT-X-DISCONTINUITY-SEQUENCE counts the tags that went with them (6.2.2). When none is left,
    the next segment published is marked EXT-X-DISCONTINUITY, as after a failed segment: the new
    window starts where the old one cannot be followed. While what is left lasts under three
    target durations, ``refilling`` is True and the playlist waits (6.2.2).
    """
    positions = [index for index, segment in enumerate(state.segments) if segment.media_sequence in lost]
    if not positions:
        return state
    dropped, kept = state.segments[: positions[-1] + 1], state.segments[positions[-1] + 1 :]
    return replace(
        state,
        segments=kept,
        discontinuity_sequence=state.discontinuity_sequence + sum(1 for s in dropped if s.discontinuity),
        pending_discontinuity=state.pending_discontinuity or not kept,
    )


def refilling(state: StreamState) -> bool:
    """A live window that lost segments from its front other than by sliding (``without_lost``)
    and now lasts under ``MIN_TARGET_DURATIONS_LISTED`` target durations: RFC 8216 6.2.2 forbids
    publishing it ("MUST NOT remove a Media Segment ... if that would produce a Playlist whose
    duration is less than three times the target duration") until new segments make it long
    enough, or the stream ends. Sliding never removes a segment unless the rest lasts that long
    (``first_kept``), so a stream that lost nothing is never refilling."""
    if state.ended or state.target_duration_s is None or not state.published_any:
        return False
    if state.segments and state.segments[0].media_sequence == 1:
        return False  # nothing was ever removed
    listed = sum((Decimal(format_duration(s.duration_s)) for s in state.segments), Decimal(0))
    return listed < MIN_TARGET_DURATIONS_LISTED * state.target_duration_s


def segment_name_of(uri: str, http_prefix: str) -> str | None:
    """The segment file name a listed ``uri`` was made from (``http_prefix`` + name), or None
    when ``uri`` does not start with ``http_prefix`` (the stream's prefix changed since)."""
    if not uri.startswith(http_prefix) or len(uri) == len(http_prefix):
        return None
    return uri[len(http_prefix) :]
