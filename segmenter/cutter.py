"""Where to cut: timestamp unwrapping, the cut rule, gaps and discontinuities. Pure, no PyAV.

The shell feeds every demuxed packet as (stream index, keyframe flag, pts, dts, duration) in
ticks of that stream's time base, and gets back an ``Action``. After ``feed`` returns, the
unwrapped timestamps to write are in ``cutter.pts`` / ``cutter.dts``; ``cutter.settled`` names
packets held back earlier that are now decided (written before this packet, or dropped); after a
``CUT``, the timing of the segment that just ended is in ``cutter.finished`` (None when the cut
opens the first one) and ``cutter.discontinuity`` tells whether the new segment starts a new
timeline.

The timing model (docs/segmenter.md, "Cut rule" and "Timing model"):

- **Target.** Every segment is shorter than TARGET + 0.5 s, so that its EXTINF rounded to the
  nearest integer never exceeds EXT-X-TARGETDURATION (RFC 8216 4.3.3.1). TARGET is
  ceil(SEGMENT_DURATION) unless the operator declares more headroom.
- **Grid.** Boundary k is origin + k * SEGMENT_DURATION, in integer ticks of the reference stream
  (the first video stream, else the first audio stream); the origin is its first keyframe,
  re-anchored at each discontinuity, so errors never accumulate and renditions of one source
  with the same keyframes cut at the same points.
- **Keyframe cuts.** A segment is cut before the first reference keyframe at or after the next
  boundary, or before an earlier keyframe when the next one, expected one GOP later, would make
  the segment too long (a GOP that does not divide SEGMENT_DURATION, a keyframe a frame early).
- **Cuts without a keyframe.** When no keyframe comes in time (a long GOP, a lost keyframe), the
  segment is cut before the last reference frame that keeps it under the limit; the next segment
  then does not start with a keyframe (the run reports it as not independent).
- **Late packets.** A reference packet that comes at or past the limit anyway (frames lost right
  before it, the reference pausing while the other streams are held) is cut before, and the
  segment ends where what it holds ends: the hole up to that packet opens the next segment
  (a hole longer than the limit is split between the two). One decoded within the limit but
  shown past it (a B-frame encoder's first pictures after a video pause) decides no cut.
- **No reference yet.** A segment opened by another stream's packet without timestamps starts at
  the first timestamp in it; until the reference sends, segments are cut on the other streams'
  clock, and their timings say so (``SegmentTiming.without_reference``).
- **Gaps are not discontinuities.** A track that pauses while the program's clock (its other
  tracks) goes on keeps its packets and adds no discontinuity; while the video pauses, segments
  are cut on the other tracks' packets. Only a real break of the timeline is a discontinuity: a
  track going backward, or jumping forward past the program's clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

# MPEG-TS carries 33-bit PTS/DTS (90 kHz): they wrap every 2^33 ticks, about 26.5 hours.
TS_WRAP_TICKS = 2**33

# A forward jump of a stream past the program's clock larger than this is a new timeline (the
# encoder restarted), not a long frame: real streams send a packet at least every frame or audio
# frame, and the MPEG-TS standard wants timestamps at least every 0.7 s.
DISCONTINUITY_GAP_S = 5

# A stream stepping back by more than this is on a new timeline; smaller steps are jitter.
BACKWARD_JITTER_S = Fraction(1, 2)

# Muxers send one stream up to this far ahead of another (FFmpeg's default max_delay is 0.7 s):
# a reference stream further behind the program's clock than this has paused.
INTERLEAVE_S = 1

# A keyframe this close below a grid boundary still counts as "at" it: a timestamp rounded one
# tick low must not push the cut later.
CUT_TOLERANCE_S = Fraction(1, 1000)

# RFC 8216 4.3.3.1 rounds EXTINF to the nearest integer: a segment stays under TARGET + this.
ROUNDING_S = Fraction(1, 2)

# Joining mid-GOP, a packet of another stream (audio) whose duration is unknown is kept if it
# starts at most this long before the first keyframe: what one audio PES packet holds. One of
# known duration is kept if it ends after the keyframe.
JOIN_SLACK_S = Fraction(1, 2)

# Packets held back (the tail of a jumped stream, audio ahead of a late cut, audio before the
# first video keyframe): at most this many, so memory stays bounded.
MAX_HELD_PACKETS = 1000


class StreamKind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"


class Action(enum.Enum):
    WRITE = "write"  # write the packet into the current segment
    CUT = "cut"  # finish the current segment (if any), open the next, then write the packet
    DROP = "drop"  # leave the packet out (video before its first keyframe after a start or jump)
    HOLD = "hold"  # keep the packet back (as ``cutter.held_id``) until ``settled`` decides it


@dataclass(frozen=True, slots=True)
class StreamInfo:
    index: int
    kind: StreamKind
    time_base: Fraction
    wraps: bool  # timestamps are 33-bit MPEG-TS values that wrap at TS_WRAP_TICKS


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """When a finished segment starts and how long it is, in seconds on the unwrapped timeline."""

    start_s: float | None  # presentation time of the packet that opened it, or where the one before ended
    duration_s: float | None  # to the next segment's start, or to its last packet's end
    discontinuity: bool  # it starts a new timeline (a jump, or a restart of the segmenter)
    # The reference stream had not started when it was closed (no timestamp; video: no keyframe),
    # so it was cut on the other streams' clock.
    without_reference: bool = False


class _Held(NamedTuple):
    """A packet the shell keeps back until ``Cutter.settled`` decides it."""

    id: int
    index: int  # its stream
    time: int | None  # on the program's clock, reference ticks
    at_jump: bool  # its stream jumped alone (else: before the first keyframe, or past a full segment)
    end: int | None = None  # time + its duration, when the demuxer gave one


def _signed_mod(delta: int, wrap: int) -> int:
    """``delta`` reduced modulo ``wrap`` into [-wrap/2, wrap/2)."""
    half = wrap // 2
    return (delta + half) % wrap - half


class _Track:
    """What the cutter remembers about one stream."""

    __slots__ = ("info", "wrap", "last_dts", "to_reference", "offset", "gap_ticks", "jitter_ticks",
                 "awaiting_key", "jump_holds", "held_from", "epoch")

    def __init__(self, info: StreamInfo, reference_time_base: Fraction) -> None:
        self.info = info
        self.wrap = TS_WRAP_TICKS if info.wraps else 0
        self.last_dts: int | None = None  # unwrapped, in this stream's ticks
        ratio = info.time_base / reference_time_base
        self.to_reference: Fraction | None = None if ratio == 1 else ratio  # None: same ticks
        self.offset = 0  # reference ticks its timeline runs ahead of the program's (it jumped alone)
        self.gap_ticks = math.ceil(DISCONTINUITY_GAP_S / info.time_base)
        self.jitter_ticks = math.ceil(BACKWARD_JITTER_S / info.time_base)
        self.awaiting_key = info.kind is StreamKind.VIDEO  # drop video until its first keyframe
        self.jump_holds = 0  # packets held since this stream jumped alone
        self.held_from: int | None = None  # unwrapped dts of its first packet held at a jump
        self.epoch = 0  # the timeline (counted in discontinuities) this stream is on

    def reference_ticks(self, ticks: int) -> int:
        """``ticks`` of this stream in ticks of the reference stream's time base."""
        return ticks if self.to_reference is None else round(ticks * self.to_reference)

    def program_ticks(self, ticks: int) -> int:
        """A timestamp of this stream on the program's clock, in reference ticks."""
        return self.reference_ticks(ticks) - self.offset


class Cutter:
    """The cut rule as a state machine over packets. See the module docstring.

    ``segment_seconds`` is SEGMENT_DURATION (> 0); ``target_s`` the integer target duration the
    segments must respect, at least ceil(SEGMENT_DURATION) (the default). ``discontinuity`` flags
    the first segment as starting a new timeline. Raises ValueError for a non-positive duration,
    a target below it, or no audio or video stream.
    """

    def __init__(self, streams: list[StreamInfo], segment_seconds: Fraction, *, target_s: int | None = None,
                 discontinuity: bool = False) -> None:
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        target_s = math.ceil(segment_seconds) if target_s is None else target_s
        if target_s < segment_seconds:
            raise ValueError(f"target duration {target_s} s is below the segment duration {segment_seconds} s")
        reference = next((s for s in streams if s.kind is StreamKind.VIDEO), None) or next(
            (s for s in streams if s.kind is StreamKind.AUDIO), None
        )
        if reference is None:
            raise ValueError("no audio or video stream to cut on")
        self.reference = reference
        self.target_s = target_s
        tb = self._time_base = reference.time_base
        self._tracks = {s.index: _Track(s, tb) for s in streams}
        self._ref = self._tracks[reference.index]
        self._ref_is_video = reference.kind is StreamKind.VIDEO
        self._segment_ticks = Fraction(segment_seconds) / tb
        self._tolerance_ticks = int(CUT_TOLERANCE_S / tb)
        self._target_ticks = math.ceil(target_s / tb)  # a segment this full holds later audio back
        self._limit_ticks = math.ceil((target_s + ROUNDING_S) / tb)  # a segment stays below this
        self._interleave_ticks = math.ceil(INTERLEAVE_S / tb)
        self._join_slack_ticks = math.ceil(JOIN_SLACK_S / tb)
        self._clock: int | None = None  # last unwrapped dts of any wrapping stream (for unwrapping)
        self._program_time: int | None = None  # the program's clock: latest time on its timeline
        self._open = False
        self._origin: int | None = None
        self._next_boundary: int | None = None  # minus the tolerance, ready to compare
        self._start: int | None = None  # current segment's start, reference ticks
        self._end: int | None = None  # current segment's latest reference pts + duration
        self._other_end: int | None = None  # the same over the other streams
        self._anchor: int | None = None  # latest reference pts of the segment (I/P frames raise it)
        self._anchor_step: int = 0  # last regular step between two such frames
        self._last_key: int | None = None  # reference pts of the last keyframe
        self._start_discontinuity = discontinuity  # the segment being opened starts a new timeline
        self._pending_discontinuity = False  # the reference jumped; cut at its next keyframe
        self._segment_discontinuity = False  # the open segment starts a new timeline
        self._epoch = 0  # discontinuities so far
        self._epoch_origin: int | None = None  # reference dts where the current timeline began
        self._held: list[_Held] = []
        self._joined_at: int | None = None  # first keyframe of the open segment 1: nothing before it
        self._next_held_id = 0
        self._reference_started = False  # the reference has timed a segment (anchored the grid)
        # Results of the last feed():
        self.pts: int | None = None
        self.dts: int | None = None
        self.finished: SegmentTiming | None = None
        self.discontinuity = False
        self.on_keyframe = False  # the last CUT opened its segment on a reference keyframe
        self.forced = False  # the last CUT was made without a keyframe to respect the target
        self.held_id = -1  # after a HOLD: the packet's id in ``settled`` later
        self.settled: list[tuple[int, str | None]] = []  # (held id, None to write it or why dropped)
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
        """Whether ``dts`` leaves the stream's timeline: back by more than jitter, or forward by
        more than DISCONTINUITY_GAP_S past both its own last packet and the program's clock (a
        track that paused while the others went on rejoins the clock: no jump)."""
        last = track.last_dts
        if dts is None or last is None:
            return False
        if dts < last - track.jitter_ticks:
            return True
        if dts - last <= track.gap_ticks:
            return False
        clock = self._program_time
        return clock is None or track.program_ticks(dts) - clock > self._ref.gap_ticks

    def _tick(self, track: _Track, dts: int | None) -> None:
        """The program's clock follows every packet on the current timeline."""
        if dts is not None:
            time = track.program_ticks(dts)
            if self._program_time is None or time > self._program_time:
                self._program_time = time

    # -- the rule -----------------------------------------------------------------------------

    def feed(self, index: int, is_keyframe: bool, pts: int | None, dts: int | None, duration: int | None, *,
             cut_here: bool = False) -> Action:
        """One packet of stream ``index`` (timestamps and duration in its time base's ticks).

        ``cut_here``: a reference keyframe that must start a segment whatever the grid says (the
        encoding parameters change at it, RFC 8216 4.3.2.3): the open segment is cut before it,
        with ``discontinuity`` False (the timeline and the grid go on; marking the change is the
        caller's). Ignored for any other packet, and when the open segment started at this time.
        """
        track = self._tracks[index]
        self._unwrap(track, pts, dts)
        if self.settled:
            self.settled = []
        if track is self._ref:
            return self._feed_reference(track, is_keyframe, duration, cut_here)
        return self._feed_other(track, duration)

    def _feed_reference(self, track: _Track, is_keyframe: bool, duration: int | None, cut_here: bool) -> Action:
        pts, dts = self.pts, self.dts
        when = pts if pts is not None else dts
        if dts is not None:
            last = track.last_dts
            # (The usual step, within jitter back and the gap forward, is no jump: no need to ask.)
            if last is not None and not last - track.jitter_ticks <= dts <= last + track.gap_ticks \
                    and self._jumped(track, dts):
                self._pending_discontinuity = True
            track.last_dts = dts
            # The reference's ticks are the clock's (_tick).
            if not self._pending_discontinuity and (self._program_time is None or dts > self._program_time):
                self._program_time = dts
        key = is_keyframe or not self._ref_is_video
        if self._pending_discontinuity or track.awaiting_key:
            if not key or when is None:
                self.dropped_reason = "waiting for a keyframe" + ("" if track.awaiting_key else " after a jump")
                return Action.DROP
            if self._pending_discontinuity:
                track.awaiting_key = False
                self._pending_discontinuity = False
                self._program_time = dts if dts is not None else when
                return self._cut(when, duration, discontinuity=True, on_keyframe=True)
            track.awaiting_key = False
            if not self._open:
                # The stream's first keyframe: the grid starts here; what came before it is not
                # played by anyone joining here.
                return self._cut(when, duration, discontinuity=self._start_discontinuity, on_keyframe=True,
                                 keep_from=when)
            if self._overdue(when):
                return self._cut_overdue(when, duration, key)
            self._anchor_grid(when, duration, key=True)
            return Action.WRITE
        if when is None:
            return Action.WRITE if self._open else Action.DROP
        if not self._open:
            return self._cut(when, duration, discontinuity=self._start_discontinuity, on_keyframe=key)
        if self._origin is None:
            # First timestamp of the reference after other streams opened the segment.
            if self._overdue(when):
                return Action.WRITE if self._shown_late(when) else self._cut_overdue(when, duration, key)
            self._anchor_grid(when, duration, key=key)
            return Action.WRITE
        return self._decide(when, duration, key, cut_here and is_keyframe)

    def _decide(self, when: int, duration: int | None, key: bool, cut_here: bool = False) -> Action:
        """Cut or not before reference packet ``when`` (see the module docstring)."""
        anchor = self._anchor
        end = when + (duration or 0)
        if anchor is not None and when <= anchor:
            # A B frame: shown before a frame already in the segment (_extend, inlined).
            if self._end is None or end > self._end:
                self._end = end
            return Action.WRITE
        if self._overdue(when):
            return Action.WRITE if self._shown_late(when) else self._cut_overdue(when, duration, key)
        step = when - anchor if anchor is not None else (duration or 0)
        if 0 < step <= self._interleave_ticks:
            self._anchor_step = step
        start = self._start
        assert start is not None
        limit = start + self._limit_ticks
        if key:
            if when >= self._next_boundary or (cut_here and when > start):  # type: ignore[operator]
                return self._cut(when, duration, discontinuity=False, on_keyframe=True)
            # The next keyframe is expected one GOP (as the last one was long) from this one.
            gop = when - self._last_key if self._last_key is not None else 0
            # Not for a sliver: a segment under half SEGMENT_DURATION waits (rule 3 still holds).
            if when - start >= self._segment_ticks / 2 and when + max(gop, self._anchor_step) >= limit:
                return self._cut(when, duration, discontinuity=False, on_keyframe=True)
        elif when > start and when + self._anchor_step >= limit:
            return self._cut(when, duration, discontinuity=False, on_keyframe=False)
        if key:
            self._last_key = when
        self._anchor = when
        if self._end is None or end > self._end:
            self._end = end
        return Action.WRITE

    def _overdue(self, when: int) -> bool:
        """Whether reference packet ``when`` comes too late to end the open segment: frames were
        missing right before the limit, or the reference paused while the other streams were held."""
        return self._start is not None and when - self._start >= self._limit_ticks

    def _shown_late(self, when: int) -> bool:
        """Whether overdue reference packet ``when`` is a picture decoded within the open
        segment's limit but shown past it. An encoder with B-frames dates the first pictures after
        a pause in the video (a still source, variable frame rate) with decoding times from before
        the pause: their DTS lags their PTS by the pause, and the muxer sends them that early.
        Such a picture is written where it is decoded, in the open segment, and decides no cut:
        the segments up to the time it is shown are cut on the other streams' packets, as while
        the video pauses."""
        dts = self.dts
        return dts is not None and dts < when and not self._overdue(dts)

    def _cut_overdue(self, when: int, duration: int | None, key: bool) -> Action:
        """Cut before an overdue reference packet ``when``. The open segment ends where what it
        holds ends (its last picture's end, or the other streams' written packets'), below the
        limit; the hole up to ``when`` is the next segment's, which starts there, or, for a hole
        longer than the limit, just under the limit before ``when`` (the hole is split)."""
        assert self._start is not None
        room = self._limit_ticks - 1  # the longest a segment may be, in ticks
        ends = [self._end, self._other_end]
        if self._anchor is not None and self._anchor >= self._start:
            ends.append(self._anchor + self._anchor_step)  # the last picture shown, when no duration says
        end = min(max((e for e in ends if e is not None and e > self._start), default=when), self._start + room)
        return self._cut(when, duration, discontinuity=False, on_keyframe=key, start=max(end, when - room))

    def _feed_other(self, track: _Track, duration: int | None) -> Action:
        dts = self.dts
        when = self.pts if self.pts is not None else dts
        if track.jump_holds:
            span = (dts - track.held_from) if (dts is not None and track.held_from is not None) else 0
            if dts is not None:
                track.last_dts = dts
            if track.jump_holds >= MAX_HELD_PACKETS or not 0 <= span <= track.gap_ticks:
                # The reference never followed: this stream jumped alone. Take its new timeline.
                self._settle(lambda held: held.index == track.info.index, "timestamps jumped without the video")
                track.jump_holds, track.held_from = 0, None
                # Its latest timestamp (this packet's, else the last one held) goes on the clock.
                if track.last_dts is not None and self._program_time is not None:
                    track.offset = track.reference_ticks(track.last_dts) - self._program_time
                self._tick(track, dts)
                return self._write_other(track, when, duration)
            track.jump_holds += 1
            return self._hold(track, when, at_jump=True)
        jumped = self._jumped(track, dts)
        if dts is not None:
            track.last_dts = dts
        if track.epoch != self._epoch:
            # The reference started a new timeline and this stream has not followed yet: what it
            # sends until then is the tail of the old one, whose segment is closed. A packet that
            # left the stream's own timeline is not on the new one for that: after a pause of more
            # than DISCONTINUITY_GAP_S the old timeline's next packet is as far from the stream's
            # last, and ahead of the clock when the reference went back.
            if not self._joins(track, dts):
                self.dropped_reason = "from before the timestamp jump"
                return Action.DROP
            if dts is not None:  # a packet without timestamps cannot tell which timeline it is on
                track.epoch = self._epoch
        elif jumped and self._open:
            track.jump_holds, track.held_from = 1, dts
            return self._hold(track, when, at_jump=True)
        if not jumped:
            self._tick(track, dts)
        if not self._open:
            if self._ref.awaiting_key and self._ref_is_video:
                if self._waited_too_long(track, when):
                    # No video keyframe in sight: start with what there is, reaching back at most
                    # one target, so that segment 1 too ends within it (RFC 8216 4.3.3.1).
                    return self._cut_on_other(track, when, duration, reach_back=self._target_ticks)
                return self._hold(track, when, at_jump=False, duration=duration)
            return self._cut_on_other(track, when, duration)
        return self._write_other(track, when, duration)

    def _write_other(self, track: _Track, when: int | None, duration: int | None) -> Action:
        """A packet of another stream in an open segment: written, held back past the target, or
        opening the next segment while the reference pauses."""
        if when is None:
            return Action.WRITE
        time = track.program_ticks(when)
        if self._start is None:
            # A packet without timestamps opened the segment: it starts at the first one timed.
            self._start = time
        if self._joined_at is not None and self._before_join(time, track, duration):
            # Muxed after the first keyframe but timed before it (segment 1 starts at the keyframe).
            self.dropped_reason = "before the first video keyframe"
            return Action.DROP
        if time - self._start < self._target_ticks:
            self._extend_other(time, track, duration)
            return Action.WRITE
        # The segment is full by this stream's clock. The reference cuts soon (its packets lag
        # behind by the muxer's interleave) unless it paused: then cut here.
        ref_last = self._ref.last_dts
        paused = ref_last is None or time - ref_last > self._interleave_ticks or self._ref.awaiting_key
        if paused or len(self._held) >= MAX_HELD_PACKETS:
            return self._cut_on_other(track, when, duration)
        return self._hold(track, when, at_jump=False)

    def _cut_on_other(self, track: _Track, when: int | None, duration: int | None,
                      reach_back: int | None = None) -> Action:
        """Open the next segment on a packet of another stream; it starts at the earliest packet
        held for it, if any. With ``reach_back`` (segment 1, opened without the first keyframe) it
        starts that many ticks before this one at most, and what ends before it starts, held or
        muxed later, is dropped (as before a first keyframe)."""
        times = [held.time for held in self._held if not held.at_jump and held.time is not None]
        keep_from = None
        if when is None:
            time, start = None, min(times, default=None)
        else:
            time = track.program_ticks(when)
            start = min(times + [time])
            if reach_back is not None:
                start = keep_from = max(start, time - reach_back)
        # What the held packets going into it hold counts towards its end (they were timed).
        ends = [held.end if held.end is not None else held.time
                for held in self._held if not held.at_jump and held.time is not None]
        action = self._cut(start, None, discontinuity=self._start_discontinuity if not self._open else False,
                           on_keyframe=False, reference=False, keep_from=keep_from)
        if ends:
            self._other_end = max(ends)
        if time is not None:
            self._extend_other(time, track, duration)
        return action

    def _hold(self, track: _Track, when: int | None, *, at_jump: bool, duration: int | None = None) -> Action:
        self.held_id = held_id = self._next_held_id
        self._next_held_id += 1
        time = track.program_ticks(when) if when is not None else None
        end = time + track.reference_ticks(duration) if time is not None and duration else None
        self._held.append(_Held(held_id, track.info.index, time, at_jump, end))
        return Action.HOLD

    def _before_join(self, time: int, track: _Track | None, duration: int | None, end: int | None = None) -> bool:
        """Whether a packet of another stream at ``time`` belongs before the first keyframe
        (``_joined_at``): it ends by then, or, of unknown duration, starts over JOIN_SLACK_S before."""
        joined = self._joined_at
        assert joined is not None
        if end is None and duration and track is not None:
            end = time + track.reference_ticks(duration)
        return end <= joined if end is not None else time < joined - self._join_slack_ticks

    def _settle(self, which: Callable[[_Held], bool], reason_if_dropped: str | None,
                keep_from: int | None = None) -> None:
        """Decide the held packets ``which`` selects, in the order they were held: written, or
        dropped with the reason (also when before ``keep_from``)."""
        kept = []
        settled = self.settled
        for held in self._held:
            if not which(held):
                kept.append(held)
                continue
            reason = reason_if_dropped
            if reason is None and keep_from is not None and held.time is not None \
                    and self._before_join(held.time, None, None, held.end):
                reason = "before the first video keyframe"
            settled.append((held.id, reason))
        self._held = kept

    def _waited_too_long(self, track: _Track, when: int | None) -> bool:
        if len(self._held) >= MAX_HELD_PACKETS:
            return True
        times = [held.time for held in self._held if held.time is not None]
        return when is not None and bool(times) and track.program_ticks(when) - min(times) > self._ref.gap_ticks

    def _joins(self, track: _Track, dts: int | None) -> bool:
        """Whether a stream still on the timeline before the reference's jump is on the new one:
        within DISCONTINUITY_GAP_S of the reference, or the reference has been on it that long."""
        ref_dts = self._ref.last_dts
        if dts is None or ref_dts is None or self._epoch_origin is None:
            return True
        if ref_dts - self._epoch_origin > self._ref.gap_ticks:
            return True  # long enough: the jump was the reference's alone
        return abs(track.reference_ticks(dts) - ref_dts) <= self._ref.gap_ticks

    def _anchor_grid(self, when: int, duration: int | None, *, key: bool) -> None:
        """Start the grid (and the current segment's timing) at the reference time ``when``."""
        self._origin = when
        self._reference_started = True
        if self._start is None:
            self._start = when
        self._end = None
        self._next_boundary = self._boundary_after(when)
        self._anchor = when
        self._keyframe_seen(when, key)
        self._extend(when, duration)

    def _boundary_after(self, when: int) -> int:
        assert self._origin is not None
        k = math.floor((when - self._origin) / self._segment_ticks) + 1
        return self._origin + math.ceil(k * self._segment_ticks) - self._tolerance_ticks

    def _keyframe_seen(self, when: int, key: bool) -> None:
        if key:
            self._last_key = when

    def _extend(self, when: int, duration: int | None) -> None:
        end = when + (duration or 0)
        if self._end is None or end > self._end:
            self._end = end

    def _extend_other(self, time: int, track: _Track, duration: int | None) -> None:
        end = time + (track.reference_ticks(duration) if duration else 0)
        if self._other_end is None or end > self._other_end:
            self._other_end = end

    def _cut(self, when: int | None, duration: int | None, *, discontinuity: bool, on_keyframe: bool,
             reference: bool = True, keep_from: int | None = None, start: int | None = None) -> Action:
        """Close the open segment (if any) and open the next at ``when`` (its packet's time), or
        at ``start`` when given (a time before ``when``: the next segment starts with a hole);
        settle held packets."""
        start = when if start is None else start
        if self._open:
            end = (self._end if self._end is not None else self._other_end) if discontinuity else start
            self.finished = self._timing(end)
        else:
            self.finished = None
        self.discontinuity = self._segment_discontinuity = discontinuity
        self._joined_at = keep_from
        self.on_keyframe = on_keyframe
        self.forced = self._open and reference and not on_keyframe
        if discontinuity:
            self._epoch += 1
            self._epoch_origin = self._ref.last_dts
            self._ref.epoch = self._epoch
            for track in self._tracks.values():
                track.offset = 0
                if track.jump_holds:  # its held packets go into the new segment
                    track.jump_holds, track.held_from, track.epoch = 0, None, self._epoch
            if self._open:
                # Packets held past a full segment are the old timeline's tail; its segment closed.
                self._settle(lambda held: not held.at_jump, "from before the timestamp jump")
            self._settle(lambda held: True, None, keep_from)
        else:
            self._settle(lambda held: not held.at_jump, None, keep_from)
        self._start = start
        self._end = self._other_end = None
        if reference:
            if discontinuity or self._origin is None:
                self._anchor_grid(when, duration, key=on_keyframe)  # type: ignore[arg-type]
            else:
                self._next_boundary = self._boundary_after(when)  # type: ignore[arg-type]
                self._anchor = when
                self._keyframe_seen(when, on_keyframe)  # type: ignore[arg-type]
                self._extend(when, duration)  # type: ignore[arg-type]
        elif discontinuity:
            self._origin = None  # the reference's next timestamp anchors the grid
        self._open = True
        self._start_discontinuity = False
        return Action.CUT

    def _timing(self, end: int | None) -> SegmentTiming:
        start = self._start
        seconds = self._time_base
        start_s = float(start * seconds) if start is not None else None
        duration_s = float((end - start) * seconds) if start is not None and end is not None and end > start else None
        return SegmentTiming(start_s, duration_s, self._segment_discontinuity, not self._reference_started)

    def finish(self) -> SegmentTiming | None:
        """End of input: the timing of the segment still open (to its last packet's end), or
        None. ``settled`` then decides every packet still held: written into that segment, or
        dropped (a stream's jump the reference never followed; nothing open to write into)."""
        self.settled = [
            (held.id, "timestamps jumped without the video" if held.at_jump
             else None if self._open else "the input ended before the first video keyframe")
            for held in self._held
        ]
        self._held = []
        if not self._open:
            return None
        self._open = False
        end = self._end if self._end is not None else self._other_end
        if end is not None and self._start is not None:
            # Under the limit like every other segment (RFC 8216 4.3.3.1): what a last picture
            # shown for longer (a still, a picture after a gap) would last past it is cut off.
            end = min(end, self._start + self._limit_ticks - 1)
        return self._timing(end)
