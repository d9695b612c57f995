"""Where to cut: timestamp unwrapping, the grid cut rule and discontinuities. Pure, no PyAV.

The shell feeds every demuxed packet as (stream index, keyframe flag, pts, dts, duration) in
ticks of that stream's time base, and gets back an ``Action``. After ``feed`` returns, the
unwrapped timestamps to write are in ``cutter.pts`` / ``cutter.dts``; after a ``CUT``, the timing
of the segment that just ended is in ``cutter.finished`` (None when the cut opens the first one)
and ``cutter.discontinuity`` tells whether the new segment starts a new timeline.

The cut rule: segments are cut before the first keyframe of the reference stream (the first video
stream, else the first audio stream) whose pts is at or after the next boundary of a fixed grid,
boundary k = origin + k * SEGMENT_DURATION, in integer ticks of the reference stream's time base.
The origin is the reference stream's first timestamp (re-anchored at each discontinuity), so
errors never accumulate and renditions of one source with the same GOP cut at the same points.
Audio has no dependent frames: with an audio reference every packet is a keyframe.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction

# MPEG-TS carries 33-bit PTS/DTS (90 kHz): they wrap every 2^33 ticks, about 26.5 hours.
TS_WRAP_TICKS = 2**33

# A forward jump between two packets of one stream larger than this is a discontinuity (the
# encoder restarted or the source paused), not a long frame: real streams send a packet at least
# every frame or audio frame, and the MPEG-TS standard wants timestamps at least every 0.7 s.
DISCONTINUITY_GAP_S = 5

# A keyframe this close below a grid boundary still counts as "at" it: a timestamp rounded one
# tick low must not push the cut a whole GOP later. Far below any frame interval, so it never
# selects an earlier frame than the rule means.
CUT_TOLERANCE_S = Fraction(1, 1000)

# Packets of a stream whose timestamps jumped before the reference stream's did are held back
# (they belong to the next segment); at most this many, so memory stays bounded, and no longer
# than DISCONTINUITY_GAP_S of that stream's own time: past that the jump was the stream's alone.
MAX_HELD_PACKETS = 1000


class StreamKind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"


class Action(enum.Enum):
    WRITE = "write"  # write the packet into the current segment
    CUT = "cut"  # finish the current segment (if any), open the next, then write the packet
    DROP = "drop"  # leave the packet out (video before its first keyframe after a start or jump)
    HOLD = "hold"  # keep the packet back: it belongs to the segment after the coming cut
    RELEASE = "release"  # forget this stream's held packets (logged), then write the packet


@dataclass(frozen=True, slots=True)
class StreamInfo:
    index: int
    kind: StreamKind
    time_base: Fraction
    wraps: bool  # timestamps are 33-bit MPEG-TS values that wrap at TS_WRAP_TICKS


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """When a finished segment starts and how long it is, from the reference stream's timestamps."""

    start_s: float | None  # unwrapped presentation time of its first reference packet
    duration_s: float | None  # to the next segment's start, or to its last packet's end
    discontinuity: bool  # it starts a new timeline (a jump, or a restart of the segmenter)


def _signed_mod(delta: int, wrap: int) -> int:
    """``delta`` reduced modulo ``wrap`` into [-wrap/2, wrap/2)."""
    half = wrap // 2
    return (delta + half) % wrap - half


class _Track:
    """What the cutter remembers about one stream."""

    __slots__ = ("info", "wrap", "last_dts", "gap_ticks", "awaiting_key", "held", "held_from", "epoch")

    def __init__(self, info: StreamInfo) -> None:
        self.info = info
        self.wrap = TS_WRAP_TICKS if info.wraps else 0
        self.last_dts: int | None = None  # unwrapped
        self.gap_ticks = math.ceil(DISCONTINUITY_GAP_S / info.time_base)
        self.awaiting_key = info.kind is StreamKind.VIDEO  # drop video until its first keyframe
        self.held = 0  # packets held back by the shell for this stream
        self.held_from: int | None = None  # unwrapped dts of the first held packet
        self.epoch = 0  # the timeline (counted in discontinuities) this stream is on


class Cutter:
    """The cut rule as a state machine over packets. See the module docstring."""

    def __init__(self, streams: list[StreamInfo], segment_seconds: Fraction, *, discontinuity: bool = False) -> None:
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        reference = next((s for s in streams if s.kind is StreamKind.VIDEO), None) or next(
            (s for s in streams if s.kind is StreamKind.AUDIO), None
        )
        if reference is None:
            raise ValueError("no audio or video stream to cut on")
        self.reference = reference
        self._tracks = {s.index: _Track(s) for s in streams}
        self._ref = self._tracks[reference.index]
        self._ref_is_video = reference.kind is StreamKind.VIDEO
        self._time_base = reference.time_base
        self._segment_ticks = Fraction(segment_seconds) / reference.time_base
        self._tolerance_ticks = int(CUT_TOLERANCE_S / reference.time_base)
        self._clock: int | None = None  # last unwrapped dts of any wrapping stream
        self._open = False
        self._origin: int | None = None
        self._next_boundary: int | None = None  # minus the tolerance, ready to compare
        self._start: int | None = None  # current segment's first reference pts
        self._end: int | None = None  # current segment's latest reference pts + duration
        self._start_discontinuity = discontinuity  # the segment being opened starts a new timeline
        self._pending_discontinuity = False  # the reference jumped; cut at its next keyframe
        self._segment_discontinuity = False  # the open segment starts a new timeline
        self._epoch = 0  # discontinuities so far
        self._epoch_origin: int | None = None  # reference dts where the current timeline began
        # Results of the last feed():
        self.pts: int | None = None
        self.dts: int | None = None
        self.finished: SegmentTiming | None = None
        self.discontinuity = False
        self.dropped_reason = ""

    @property
    def time_base(self) -> Fraction:
        return self._time_base

    # -- timestamps ---------------------------------------------------------------------------

    def _unwrap(self, track: _Track, pts: int | None, dts: int | None) -> None:
        """Sets self.pts/self.dts to continuous values across 33-bit wraps.

        libavformat already corrects the first wrap of an MPEG-TS stream (values go on past 2^33,
        or start negative when the stream began just below it); the values then wrap again a day
        later. Taking each step modulo 2^33 from the last value handles both.
        """
        wrap = track.wrap
        if not wrap:
            self.pts, self.dts = pts, dts
            return
        anchor = track.last_dts if track.last_dts is not None else self._clock
        half = wrap >> 1
        if dts is not None:
            if anchor is None:
                dts = dts + wrap if dts < 0 else dts
            elif not -half <= dts - anchor < half:
                dts = anchor + _signed_mod(dts - anchor, wrap)
            if pts is not None and not -half <= pts - dts < half:
                pts = dts + _signed_mod(pts - dts, wrap)
            self._clock = dts
        elif pts is not None:
            if anchor is None:
                pts = pts + wrap if pts < 0 else pts
            elif not -half <= pts - anchor < half:
                pts = anchor + _signed_mod(pts - anchor, wrap)
        self.pts, self.dts = pts, dts

    def _jumped(self, track: _Track, dts: int | None) -> bool:
        last = track.last_dts
        if dts is None or last is None:
            return False
        return dts < last or dts - last > track.gap_ticks

    # -- the rule -----------------------------------------------------------------------------

    def feed(self, index: int, is_keyframe: bool, pts: int | None, dts: int | None, duration: int | None) -> Action:
        track = self._tracks[index]
        self._unwrap(track, pts, dts)
        if track is self._ref:
            return self._feed_reference(track, is_keyframe, duration)
        return self._feed_other(track, is_keyframe)

    def _feed_reference(self, track: _Track, is_keyframe: bool, duration: int | None) -> Action:
        pts, dts = self.pts, self.dts
        when = pts if pts is not None else dts
        if self._jumped(track, dts):
            self._pending_discontinuity = True
        if dts is not None:
            track.last_dts = dts
        key = is_keyframe or not self._ref_is_video
        if self._pending_discontinuity or track.awaiting_key:
            if not key or when is None:
                self.dropped_reason = "waiting for a keyframe" + ("" if track.awaiting_key else " after a jump")
                return Action.DROP
            track.awaiting_key = False
            if self._pending_discontinuity:
                self._pending_discontinuity = False
                return self._cut(when, duration, discontinuity=True)
            # The stream's first keyframe: the grid starts here.
            if not self._open:
                return self._cut(when, duration, discontinuity=self._start_discontinuity)
            self._anchor(when, duration)
            return Action.WRITE
        if when is None:
            return Action.WRITE if self._open else Action.DROP
        if not self._open:
            return self._cut(when, duration, discontinuity=self._start_discontinuity)
        if self._origin is None:
            # First timestamp of the reference after other streams opened the segment.
            self._anchor(when, duration)
            return Action.WRITE
        if key and when >= self._next_boundary:  # type: ignore[operator]
            return self._cut(when, duration, discontinuity=False)
        self._extend(when, duration)
        return Action.WRITE

    def _feed_other(self, track: _Track, is_keyframe: bool) -> Action:
        dts = self.dts
        if track.held:
            span = (dts - track.held_from) if (dts is not None and track.held_from is not None) else 0
            if dts is not None:
                track.last_dts = dts
            if track.held >= MAX_HELD_PACKETS or not 0 <= span <= track.gap_ticks:
                # The reference never followed: this stream jumped alone. Take its new timeline.
                track.held, track.held_from = 0, None
                return Action.RELEASE
            track.held += 1
            return Action.HOLD
        jumped = self._jumped(track, dts)
        if dts is not None:
            track.last_dts = dts
        if track.epoch != self._epoch:
            # The reference started a new timeline and this stream has not followed yet: what it
            # sends until then is the tail of the old one, whose segment is closed.
            if not (jumped or self._joins(track, dts)):
                self.dropped_reason = "from before the timestamp jump"
                return Action.DROP
            if dts is not None:  # a packet without timestamps cannot tell which timeline it is on
                track.epoch = self._epoch
        elif jumped and self._open:
            track.held, track.held_from = 1, dts
            return Action.HOLD
        if not self._open:
            if self._ref.awaiting_key and track.info.kind is StreamKind.VIDEO:
                self.dropped_reason = "waiting for the first keyframe"
                return Action.DROP
            self._open = True
            self.finished = None
            self.discontinuity = self._segment_discontinuity = self._start_discontinuity
            self._start_discontinuity = False
            return Action.CUT
        return Action.WRITE

    def _joins(self, track: _Track, dts: int | None) -> bool:
        """Whether a stream that did not jump is on the reference's new timeline anyway."""
        ref_dts = self._ref.last_dts
        if dts is None or ref_dts is None or self._epoch_origin is None:
            return True
        if ref_dts - self._epoch_origin > self._ref.gap_ticks:
            return True  # long enough: the jump was the reference's alone
        ours = dts * track.info.time_base / self._time_base
        return abs(ours - ref_dts) <= self._ref.gap_ticks

    def _anchor(self, when: int, duration: int | None) -> None:
        """Start the grid (and the current segment's timing) at the reference time ``when``."""
        self._origin = self._start = when
        self._end = None
        self._next_boundary = self._boundary_after(when)
        self._extend(when, duration)

    def _boundary_after(self, when: int) -> int:
        assert self._origin is not None
        k = math.floor((when - self._origin) / self._segment_ticks) + 1
        return self._origin + math.ceil(k * self._segment_ticks) - self._tolerance_ticks

    def _extend(self, when: int, duration: int | None) -> None:
        end = when + (duration or 0)
        if self._end is None or end > self._end:
            self._end = end

    def _cut(self, when: int, duration: int | None, *, discontinuity: bool) -> Action:
        if self._open:
            end = self._end if discontinuity else when
            self.finished = self._timing(end)
        else:
            self.finished = None
        self.discontinuity = self._segment_discontinuity = discontinuity
        if discontinuity:
            self._epoch += 1
            self._epoch_origin = self._ref.last_dts
            self._ref.epoch = self._epoch
            for track in self._tracks.values():
                if track.held:  # the shell writes its held packets into the new segment
                    track.held, track.held_from, track.epoch = 0, None, self._epoch
        if discontinuity or self._origin is None:
            self._anchor(when, duration)
        else:
            self._start = when
            self._end = None
            self._next_boundary = self._boundary_after(when)
            self._extend(when, duration)
        self._open = True
        self._start_discontinuity = False
        return Action.CUT

    def _timing(self, end: int | None) -> SegmentTiming:
        start = self._start
        seconds = self._time_base
        start_s = float(start * seconds) if start is not None else None
        duration_s = float((end - start) * seconds) if start is not None and end is not None and end > start else None
        return SegmentTiming(start_s, duration_s, self._segment_discontinuity)

    def finish(self) -> SegmentTiming | None:
        """Timing of the segment still open at the end of input (to its last packet's end)."""
        if not self._open:
            return None
        self._open = False
        return self._timing(self._end)
