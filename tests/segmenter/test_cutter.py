"""The cut rule without media: synthetic packet sequences through the pure Cutter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from segmenter.cutter import (
    BACKWARD_JITTER_S,
    CUT_TOLERANCE_S,
    DISCONTINUITY_GAP_S,
    INTERLEAVE_S,
    MAX_HELD_PACKETS,
    TS_WRAP_TICKS,
    Action,
    Cutter,
    SegmentTiming,
    StreamInfo,
    StreamKind,
)

TB = Fraction(1, 90000)
VIDEO = StreamInfo(0, StreamKind.VIDEO, TB, wraps=True)
AUDIO = StreamInfo(1, StreamKind.AUDIO, TB, wraps=True)
SECOND_AUDIO = StreamInfo(2, StreamKind.AUDIO, TB, wraps=True)
HALF_WRAP = TS_WRAP_TICKS // 2


@dataclass(frozen=True, slots=True)
class Packet:
    index: int
    key: bool
    pts: int | None
    dts: int | None
    duration: int | None


def av_packets(
    seconds: float,
    *,
    fps: int = 30,
    gop_frames: int = 60,
    start: int = 0,
    audio: bool = True,
    video: bool = True,
    wrap: bool = False,
) -> list[Packet]:
    """Video frames and 1024-sample AAC frames at 48 kHz, interleaved by time like a muxer would."""
    frame = 90000 // fps
    audio_frame = Fraction(1024 * 90000, 48000)
    packets: list[tuple[int, Packet]] = []
    if video:
        for n in range(int(seconds * fps)):
            ts = start + n * frame
            packets.append((ts, Packet(0, n % gop_frames == 0, ts, ts, frame)))
    if audio:
        n = 0
        while n * audio_frame < seconds * 90000:
            ts = start + int(n * audio_frame)
            packets.append((ts, Packet(1, True, ts, ts, int(audio_frame))))
            n += 1
    packets.sort(key=lambda item: item[0])
    result = [p for _, p in packets]
    if wrap:
        result = [
            Packet(p.index, p.key, p.pts % TS_WRAP_TICKS, p.dts % TS_WRAP_TICKS, p.duration) for p in result
        ]
    return result


@dataclass
class Run:
    segments: list[list[tuple[int, int | None]]] = field(default_factory=list)  # (index, pts) written
    timings: list[SegmentTiming] = field(default_factory=list)
    dropped: list[Packet] = field(default_factory=list)
    released: int = 0
    cuts: list[tuple[int | None, bool, bool]] = field(default_factory=list)  # (pts, on_keyframe, forced)


def run(streams: list[StreamInfo], packets: list[Packet], segment_seconds: Fraction | str = "6", **kw) -> Run:
    """Feed packets like the shell does; record what lands in which segment."""
    cutter = Cutter(streams, Fraction(segment_seconds), **kw)
    result = Run()
    held: dict[int, tuple[int, int | None]] = {}
    for p in packets:
        action = cutter.feed(p.index, p.key, p.pts, p.dts, p.duration)
        item = (p.index, cutter.pts)
        if action is Action.CUT:
            if cutter.finished is not None:
                result.timings.append(cutter.finished)
            result.segments.append([])
            result.cuts.append((cutter.pts, cutter.on_keyframe, cutter.forced))
        for held_id, reason in cutter.settled:
            if reason is None:
                result.segments[-1].append(held.pop(held_id))
            else:
                held.pop(held_id)
                result.released += 1
        if action is Action.CUT or action is Action.WRITE:
            result.segments[-1].append(item)
        elif action is Action.HOLD:
            held[cutter.held_id] = item
        else:
            result.dropped.append(p)
    last = cutter.finish()
    for held_id, reason in cutter.settled:
        item = held.pop(held_id)
        if reason is None:
            result.segments[-1].append(item)
        else:
            result.released += 1
    if last is not None:
        result.timings.append(last)
    return result


def written(result: Run, index: int) -> int:
    """How many packets of stream ``index`` went into a segment."""
    return sum(1 for segment in result.segments for i, _ in segment if i == index)


def first_video_pts(segment: list[tuple[int, int | None]]) -> int | None:
    return next((pts for index, pts in segment if index == 0), None)


def test_cuts_on_the_first_keyframe_at_or_after_each_boundary() -> None:
    result = run([VIDEO, AUDIO], av_packets(60), "6")
    starts = [first_video_pts(s) for s in result.segments]
    assert starts == [k * 6 * 90000 for k in range(10)]
    assert [t.duration_s for t in result.timings] == [6.0] * 10
    assert not result.dropped


def test_a_keyframe_one_frame_before_a_grid_point_does_not_cut_there() -> None:
    # 25 fps, GOPs of 49 frames: keyframes fall 40 ms before 2-s grid points, never on them. With
    # a target of 4 s there is room to wait: the cut is at the first keyframe at or after each
    # point, one frame early is not yet the point.
    frame = 90000 // 25
    packets = [Packet(0, n % 49 == 0, n * frame, n * frame, frame) for n in range(25 * 12)]
    result = run([VIDEO], packets, "2", target_s=4)
    starts = [first_video_pts(segment) for segment in result.segments]
    keyframes = [n * frame for n in range(0, 25 * 12, 49)]
    expected = [0]
    for k in range(1, 6):
        point = k * 2 * 90000
        cut = next((ts for ts in keyframes if ts >= point), None)
        if cut is not None and cut > expected[-1]:
            expected.append(cut)
    assert starts == expected
    assert all(start % (2 * 90000) != 2 * 90000 - frame for start in starts[1:])


def test_gop_longer_than_segment_cuts_at_next_keyframe_and_skips_passed_boundaries() -> None:
    # GOP 4 s, segments 3 s, target 4 s declared: boundaries 3, 6, 9, 12 -> keyframes 0, 4, 8, 12
    result = run([VIDEO], av_packets(16, audio=False, gop_frames=120), "3", target_s=4)
    starts = [first_video_pts(s) // 90000 for s in result.segments]  # type: ignore[operator]
    assert starts == [0, 4, 8, 12]
    assert [t.duration_s for t in result.timings] == [4.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize("gop_s, segment_s", [(4, "3"), (5, "2"), (10, "2"), (3, "2"), (2.5, "6"), (1.5, "4"), (2.5, "4")])
def test_no_segment_outgrows_the_target_whatever_the_gop(gop_s: float, segment_s: str) -> None:
    # RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer <= EXT-X-TARGETDURATION, which is
    # ceil(SEGMENT_DURATION). A GOP that does not fit is cut early at a keyframe when the next one
    # would come too late, or without a keyframe when none comes in time.
    packets = av_packets(40, gop_frames=int(gop_s * 30))
    result = run([VIDEO, AUDIO], packets, segment_s)
    target = math.ceil(Fraction(segment_s))
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and math.floor(d + 0.5) <= target for d in durations), durations
    assert sum(durations) == pytest.approx(40.0, abs=0.05)  # type: ignore[arg-type]
    assert first_video_pts(result.segments[0]) == 0 and not result.dropped and not result.released
    written = sorted(item for segment in result.segments for item in segment)
    assert written == sorted((p.index, p.pts) for p in packets)
    # A GOP no longer than the target never needs a cut without a keyframe.
    assert all(on_keyframe for _, on_keyframe, _ in result.cuts) is (gop_s <= target)


def test_segments_are_cut_without_a_keyframe_only_when_none_comes_in_time() -> None:
    # GOP 2 s at SEGMENT_DURATION 2, but one keyframe (at 10 s) is lost: the segment from 8 s
    # cannot wait for the one at 12 s.
    packets = [Packet(p.index, p.key and p.pts != 10 * 90000, p.pts, p.dts, p.duration) for p in av_packets(20)]
    cutter = Cutter([VIDEO, AUDIO], Fraction(2))
    cuts = []
    for p in packets:
        if cutter.feed(p.index, p.key, p.pts, p.dts, p.duration) is Action.CUT:
            cuts.append((cutter.pts / 90000, cutter.on_keyframe, cutter.forced))  # type: ignore[operator]
    forced = [cut for cut in cuts if cut[2]]
    assert len(forced) == 1 and 10 < forced[0][0] < 10.5 and not forced[0][1]
    assert [cut[0] for cut in cuts if cut[1]] == [0, 2, 4, 6, 8, 12, 14, 16, 18]


def test_video_pausing_while_audio_goes_on_is_a_gap_not_a_new_timeline() -> None:
    # A still source: no video from 5 s to 11 s, audio throughout (RFC 8216: a discontinuity is
    # a change of timeline, and the timeline, the audio's, goes on).
    packets = [p for p in av_packets(20) if not (p.index == 0 and 5 * 90000 <= p.pts < 11 * 90000)]  # type: ignore[operator]
    packets = [Packet(0, True, p.pts, p.dts, p.duration) if p.index == 0 and p.pts == 11 * 90000 else p for p in packets]
    cut_on_the_audio_while_the_video_pauses(packets)


def cut_on_the_audio_while_the_video_pauses(packets: list[Packet]) -> Run:
    """``packets`` (20 s, a video pause in them) cut at 2 s: every packet written, no discontinuity,
    every segment within the limit, and segments holding only audio while the video pauses."""
    result = run([VIDEO, AUDIO], packets, "2")
    assert not any(t.discontinuity for t in result.timings)
    assert not result.dropped and not result.released
    written = sorted(item for segment in result.segments for item in segment)
    assert written == sorted((p.index, p.pts) for p in packets)
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and d < 2.5 for d in durations), durations
    assert sum(durations) == pytest.approx(20.0, abs=0.05)  # type: ignore[arg-type]
    assert any(segment and all(index == 1 for index, _ in segment) for segment in result.segments)
    return result


@pytest.mark.parametrize("first_shown_is_key", [False, True])
def test_pictures_an_encoder_dates_from_before_a_video_pause_decide_no_cut(first_shown_is_key: bool) -> None:
    # A B-frame encoder after a video pause from 5 s to 11 s: the first two pictures shown after
    # it are decoded (and muxed) right after the last one before it, at DTS 5 s and 5 s + 1
    # frame, ahead of the audio of the pause. They go into the open segment and decide no cut;
    # the pause is cut on the audio, every segment within the limit, no discontinuity.
    frame = 3000
    packets = [p for p in av_packets(20) if not (p.index == 0 and 5 * 90000 <= p.pts < 11 * 90000)]  # type: ignore[operator]
    early = [Packet(0, first_shown_is_key, 11 * 90000, 5 * 90000, frame),
             Packet(0, False, 11 * 90000 + frame, 5 * 90000 + frame, frame)]
    later = [p for p in packets if not (p.index == 0 and p.pts in (11 * 90000, 11 * 90000 + frame))]
    cut_at = next(i for i, p in enumerate(later) if p.pts >= 5 * 90000)  # type: ignore[operator]
    result = cut_on_the_audio_while_the_video_pauses(later[:cut_at] + early + later[cut_at:])
    # They went where they are decoded: the segment before the pause.
    holding = next(segment for segment in result.segments if (0, 11 * 90000) in segment)
    assert (0, 5 * 90000 - frame) in holding


def test_an_overdue_picture_without_a_dts_is_cut_before_as_overdue() -> None:
    # Pictures timed by PTS alone (no DTS): one coming past the limit after lost frames cannot
    # be told "decoded in time, shown late"; the segment is cut before it, within the limit.
    packets = [Packet(0, n % 60 == 0, n * 3000, None, 3000) for n in range(300) if not 60 <= n < 80]
    result = run([VIDEO], packets, "2")
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and d < 2.5 for d in durations), durations
    assert sum(len(segment) for segment in result.segments) == len(packets)


def test_audio_pausing_while_video_goes_on_keeps_every_packet() -> None:
    packets = [p for p in av_packets(20) if not (p.index == 1 and 5 * 90000 <= p.pts < 11 * 90000)]  # type: ignore[operator]
    result = run([VIDEO, AUDIO], packets, "2")
    assert not any(t.discontinuity for t in result.timings)
    assert not result.dropped and not result.released
    written = sorted(item for segment in result.segments for item in segment)
    assert written == sorted((p.index, p.pts) for p in packets)
    assert [t.duration_s for t in result.timings] == [2.0] * 10


def test_audio_stepping_back_a_little_is_jitter_not_a_jump() -> None:
    packets = av_packets(12)
    jittered = [Packet(1, True, p.pts - 900, p.dts - 900, p.duration) if p.index == 1 and p.pts % 7 == 0 and p.pts else p  # type: ignore[operator]
                for p in packets]
    result = run([VIDEO, AUDIO], jittered, "2")
    assert not any(t.discontinuity for t in result.timings)
    assert not result.dropped and not result.released
    assert sum(len(segment) for segment in result.segments) == len(jittered)


def test_fractional_segment_duration_follows_the_grid_without_drift() -> None:
    # 1-s GOP at 2.5 s: boundaries 2.5, 5, 7.5, 10 -> cuts at 3, 5, 8, 10, ...
    result = run([VIDEO], av_packets(20, audio=False, gop_frames=30), "2.5")
    starts = [first_video_pts(s) / 90000 for s in result.segments]  # type: ignore[operator]
    assert starts == [0, 3, 5, 8, 10, 13, 15, 18]
    assert sum(t.duration_s or 0 for t in result.timings) == pytest.approx(20.0)


def test_durations_sum_to_the_input_and_last_one_ends_at_its_last_packet() -> None:
    result = run([VIDEO, AUDIO], av_packets(65, gop_frames=60), "6")
    assert result.timings[-1].duration_s == pytest.approx(5.0)
    assert sum(t.duration_s or 0 for t in result.timings) == pytest.approx(65.0)


def test_audio_only_cuts_on_any_packet_at_the_grid() -> None:
    result = run([AUDIO], av_packets(20, video=False), "4")
    assert len(result.segments) == 5
    assert all(on_keyframe and not forced for _, on_keyframe, forced in result.cuts)  # every audio packet is a keyframe
    for k, timing in enumerate(result.timings):
        assert 4.0 * k <= timing.start_s < 4.0 * k + 1024 / 48000  # type: ignore[operator]
    assert sum(t.duration_s or 0 for t in result.timings) == pytest.approx(20.0, abs=0.03)


def test_segment_one_starts_at_the_first_video_keyframe_when_joining_mid_gop() -> None:
    packets = av_packets(14)
    # Start in the middle of the first GOP, as when joining a live stream.
    packets = [p for p in packets if not (p.index == 0 and p.pts < 30 * 3000)]  # type: ignore[operator]
    packets = [p for p in packets if p.index == 1 or p.pts >= 0]  # type: ignore[operator]
    joined = [p for p in packets if not (p.index == 0 and p.pts < 45 * 3000)]  # type: ignore[operator]
    result = run([VIDEO, AUDIO], joined, "6")
    assert all(p.index == 0 and not p.key for p in result.dropped)
    assert len(result.dropped) == 15  # frames 45..59
    assert first_video_pts(result.segments[0]) == 60 * 3000
    # Segment 1 starts at the first keyframe (RFC 8216 players start there): audio that ends
    # before it is left out, audio muxed ahead of it but playing past it is kept.
    audio = [pts for index, pts in result.segments[0] if index == 1]
    assert audio and min(audio) + 1920 > 60 * 3000  # type: ignore[operator]
    assert result.released == sum(1 for p in joined if p.index == 1 and p.pts + p.duration <= 60 * 3000)  # type: ignore[operator]
    # The grid starts at the first keyframe: 2 s, then 8 s, 14 s.
    assert [first_video_pts(s) for s in result.segments] == [2 * 90000, 8 * 90000]


@pytest.mark.parametrize("libav_corrected", [False, True])
def test_unwraps_33_bit_timestamps(libav_corrected: bool) -> None:
    start = TS_WRAP_TICKS - 10 * 90000  # 10 s before the wrap
    packets = av_packets(30, start=start, wrap=not libav_corrected)
    result = run([VIDEO, AUDIO], packets, "6")
    assert not any(t.discontinuity for t in result.timings)
    assert [t.duration_s for t in result.timings] == [6.0] * 5
    starts = [first_video_pts(s) for s in result.segments]
    assert starts == [start + k * 6 * 90000 for k in range(5)]
    assert not result.dropped


def test_libav_negative_start_below_the_wrap_is_restored() -> None:
    # libavformat subtracts 2^33 when a stream starts just below the wrap point.
    packets = [
        Packet(p.index, p.key, p.pts - TS_WRAP_TICKS, p.dts - TS_WRAP_TICKS, p.duration)  # type: ignore[operator]
        for p in av_packets(12, start=TS_WRAP_TICKS - 5 * 90000)
    ]
    result = run([VIDEO, AUDIO], packets, "6")
    assert result.timings[0].start_s == pytest.approx((TS_WRAP_TICKS - 5 * 90000) / 90000)
    assert [t.duration_s for t in result.timings] == [6.0, 6.0]


def test_wraps_twice() -> None:
    # 53 h of video: keyframes every 2 s from 30 s before the first wrap of the 33-bit clock to
    # 30 s after the second (values raw modulo 2^33, as a demuxer reads them). Every timestamp
    # is unwrapped, so the timeline never jumps and no discontinuity is ever cut.
    step = 2 * 90000
    start = TS_WRAP_TICKS - 30 * 90000
    count = (2 * TS_WRAP_TICKS + 30 * 90000 - start) // step
    cutter = Cutter([VIDEO], Fraction(2))
    discontinuities = 0
    for n in range(count):
        ts = (start + n * step) % TS_WRAP_TICKS
        if cutter.feed(0, True, ts, ts, step) is Action.CUT and n:
            discontinuities += cutter.discontinuity
        assert cutter.dts == start + n * step, f"packet {n} ({(start + n * step) / 90000 / 3600:.2f} h in)"
    assert start + (count - 1) * step > 2 * TS_WRAP_TICKS  # the second wrap was fed
    assert discontinuities == 0


@pytest.mark.parametrize("start", [1000, 600 * 90000], ids=["backward", "forward"])
def test_a_jump_starts_a_discontinuity_with_audio_that_jumped_first(start: int) -> None:
    first = av_packets(20)
    second = av_packets(20, start=start)
    # The next file's first audio packets come before its first video packet.
    audio_first = [p for p in second[:8] if p.index == 1]
    rest = [p for p in second if p not in audio_first]
    result = run([VIDEO, AUDIO], first + audio_first + rest, "6")
    flags = [t.discontinuity for t in result.timings]
    assert flags.count(True) == 1
    jump_segment = flags.index(True)
    assert first_video_pts(result.segments[jump_segment]) == start
    # The held audio went into the new segment, nothing of it was lost.
    assert [pts for index, pts in result.segments[jump_segment] if index == 1][: len(audio_first)] == [
        p.pts for p in audio_first
    ]
    assert not result.dropped and not result.released
    assert written(result, 1) == sum(1 for p in first + second if p.index == 1)
    # The segment before the jump ends at its own last packet.
    assert result.timings[jump_segment - 1].duration_s == pytest.approx(2.0)
    # The grid restarts at the jump: next cuts 6 s after it.
    assert first_video_pts(result.segments[jump_segment + 1]) == start + 6 * 90000


def straggling(old: list[Packet], new: list[Packet]) -> tuple[list[Packet], list[Packet]]:
    """``old`` then ``new``, with the last two audio packets of ``old`` arriving after the first
    packet of ``new``, as when a muxer flushes its audio late; and those two packets."""
    tail = [p for p in old[-6:] if p.index == 1][-2:]
    return [p for p in old if p not in tail] + [new[0]] + tail + new[1:], tail


@pytest.mark.parametrize(
    "starts",
    [[0, 1000], [0, 600 * 90000], [0, 600 * 90000, 1000]],
    ids=["backward", "forward", "forward-then-backward"],
)
def test_old_audio_arriving_after_a_jump_is_dropped_not_mixed_in(starts: list[int]) -> None:
    timelines = [av_packets(12, start=start) for start in starts]
    packets, dropped = timelines[0], []
    for new in timelines[1:]:
        packets, tail = straggling(packets, new)
        dropped += tail
    result = run([VIDEO, AUDIO], packets, "6")
    assert [t.discontinuity for t in result.timings] == [False, False] + [True, False] * (len(starts) - 1)
    # The old timeline's straggling audio belongs to a closed segment: dropped, not mixed in.
    assert result.dropped == dropped
    assert not any((p.index, p.pts) in segment for p in dropped for segment in result.segments)


def test_forward_gap_is_a_discontinuity_but_a_small_one_is_not() -> None:
    small = av_packets(6) + av_packets(6, start=8 * 90000)  # 2-s gap: just missing frames
    assert not any(t.discontinuity for t in run([VIDEO, AUDIO], small, "6").timings)
    large = av_packets(6) + av_packets(12, start=60 * 90000)
    result = run([VIDEO, AUDIO], large, "6")
    assert [t.discontinuity for t in result.timings] == [False, True, False]
    assert result.timings[1].start_s == 60.0


def test_jump_on_a_non_keyframe_waits_for_the_next_keyframe() -> None:
    first = av_packets(6, audio=False)
    second = [p for p in av_packets(8, audio=False, start=5000) if p.pts >= 5000 + 30 * 3000]  # type: ignore[operator]
    result = run([VIDEO], first + second, "6")
    assert len(result.dropped) == 30  # second half of the new timeline's first GOP
    assert first_video_pts(result.segments[1]) == 5000 + 60 * 3000
    assert result.timings[1].discontinuity


@pytest.mark.parametrize("restart", [False, True])
def test_audio_jumping_alone_is_released_not_held_forever(restart: bool) -> None:
    packets = av_packets(20)
    glitched = [
        Packet(p.index, p.key, p.pts + 7 * 90000, p.dts + 7 * 90000, p.duration)  # type: ignore[operator]
        if p.index == 1 and p.pts >= 4 * 90000  # type: ignore[operator]
        else p
        for p in packets
    ]
    result = run([VIDEO, AUDIO], glitched, "6", discontinuity=restart)
    assert [t.discontinuity for t in result.timings] == [restart, False, False, False]
    # Held for DISCONTINUITY_GAP_S of the audio's own time at most, then forgotten; every later
    # audio packet is written on the audio's new timeline.
    assert 0 < result.released <= DISCONTINUITY_GAP_S * 48000 // 1024 + 1
    assert result.released + written(result, 1) == sum(1 for p in packets if p.index == 1)
    assert not result.dropped


@pytest.mark.parametrize(
    ("step", "held"),
    [
        # Packets every millisecond: MAX_HELD_PACKETS of them span far less than DISCONTINUITY_GAP_S.
        (90, MAX_HELD_PACKETS),
        # Packets every 20 ms: one lies exactly DISCONTINUITY_GAP_S after the first held.
        (1800, DISCONTINUITY_GAP_S * 90000 // 1800 + 1),
    ],
    ids=["count", "time"],
)
def test_audio_jumping_alone_is_held_up_to_max_held_packets_and_discontinuity_gap_s(step: int, held: int) -> None:
    video = [(p.dts, p) for p in av_packets(12, audio=False)]
    audio = [(n * step, Packet(1, True, n * step, n * step, step)) for n in range(12 * 90000 // step)]
    shifted = [
        (ts, Packet(1, True, p.pts + 7 * 90000, p.dts + 7 * 90000, step) if ts >= 4 * 90000 else p)  # type: ignore[operator]
        for ts, p in audio
    ]
    packets = [p for _, p in sorted(video + shifted, key=lambda item: item[0])]  # type: ignore[arg-type, return-value]
    result = run([VIDEO, AUDIO], packets, "6")
    assert result.released == held
    assert result.released + written(result, 1) == len(audio)


def test_an_untimed_packet_releasing_a_stream_that_jumped_alone_puts_it_on_the_program_s_clock() -> None:
    # Audio every millisecond jumps 7 s ahead at 4 s; the packet after MAX_HELD_PACKETS held has
    # no timestamps. The audio after it is on the program's clock as after a timed release: the
    # segments are cut on the video's keyframes at 0 s and 6 s, none on the audio 7 s ahead.
    step = 90
    video = [(p.dts, p) for p in av_packets(12, audio=False)]
    audio = [(n * step, Packet(1, True, n * step + (7 * 90000 if n * step >= 4 * 90000 else 0),
                               n * step + (7 * 90000 if n * step >= 4 * 90000 else 0), step))
             for n in range(12 * 90000 // step)]
    release = 4 * 90000 // step + MAX_HELD_PACKETS
    audio[release] = (audio[release][0], Packet(1, True, None, None, None))
    result = run([VIDEO, AUDIO], [p for _, p in sorted(video + audio, key=lambda item: item[0])], "6")
    assert result.cuts == [(0, True, False), (6 * 90000, True, False)]
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(0.0, 6.0), (6.0, 6.0)]
    assert result.released == MAX_HELD_PACKETS
    assert result.released + written(result, 1) == len(audio) and not result.dropped


def test_packets_without_timestamps_do_not_crash_or_cut() -> None:
    packets = av_packets(13)
    packets = [Packet(p.index, p.key, None, None, None) if i % 7 == 3 else p for i, p in enumerate(packets)]
    result = run([VIDEO, AUDIO], [Packet(1, True, None, None, None)] + packets, "6")
    assert [t.duration_s for t in result.timings][:2] == [6.0, 6.0]
    assert not result.dropped
    only_pts = [Packet(p.index, p.key, p.pts, None, p.duration) for p in av_packets(13)]
    assert len(run([VIDEO, AUDIO], only_pts, "6").segments) == 3
    # A reference packet without timestamps has no segment to go into before the first cut.
    untimed = Packet(1, True, None, None, None)
    assert run([AUDIO], [untimed] + av_packets(6, video=False), "6").dropped == [untimed]
    # After a restart whose first keyframe had no dts, the audio still follows the video.
    packets = av_packets(13)
    first_key = Packet(0, True, 0, None, 3000)
    video, audio = [p for p in packets[1:] if p.index == 0], [p for p in packets if p.index == 1]
    result = run([VIDEO, AUDIO], [first_key] + video[:2] + audio + video[2:], "6", discontinuity=True)
    assert not result.dropped and written(result, 1) == len(audio)


def test_packets_with_only_a_dts_are_cut_on_it() -> None:
    only_dts = [Packet(p.index, p.key, None, p.dts, p.duration) for p in av_packets(13)]
    result = run([VIDEO, AUDIO], only_dts, "6")
    assert [t.start_s for t in result.timings] == [0.0, 6.0, 12.0]
    assert not result.dropped


def test_audio_without_timestamps_around_a_jump_stays_with_its_stream() -> None:
    untimed = Packet(1, True, None, None, None)
    first, second = av_packets(12), av_packets(12, start=60 * 90000)
    # While the audio that jumped first is held, and after the video followed.
    audio_first = [p for p in second[:8] if p.index == 1]
    rest = [p for p in second if p not in audio_first]
    held = run([VIDEO, AUDIO], first + audio_first + [untimed] + rest, "6")
    video_first = [p for p in second if p.index == 0][:1]
    followed = run([VIDEO, AUDIO], first + video_first + [untimed] + second[1:], "6")
    for result in (held, followed):
        assert [t.discontinuity for t in result.timings] == [False, False, True, False]
        assert not result.dropped and not result.released
        assert written(result, 1) == sum(1 for p in first + second if p.index == 1) + 1


def test_input_ending_before_the_first_keyframe_gives_no_segment() -> None:
    # Audio waits for the video's first keyframe (segment 1 starts there); none comes.
    packets = [p for p in av_packets(1) if p.index == 1 or not p.key]
    result = run([VIDEO, AUDIO], packets, "6")
    assert result.timings == [] and result.segments == []
    assert all(p.index == 0 for p in result.dropped)
    assert result.released == sum(1 for p in packets if p.index == 1)


@pytest.mark.parametrize(
    ("streams", "packets", "restart"),
    [
        ([VIDEO, AUDIO], av_packets(13), True),
        # Joined in the middle of a GOP: audio opens the first segment.
        ([VIDEO, AUDIO], [p for p in av_packets(13) if p.index == 1 or p.pts >= 45 * 3000], True),  # type: ignore[operator]
        ([AUDIO], av_packets(13, video=False), True),
        ([VIDEO, AUDIO], av_packets(13), False),
    ],
    ids=["video-first", "audio-first", "audio-only", "no-restart"],
)
def test_restart_flags_the_first_segment(streams: list[StreamInfo], packets: list[Packet], restart: bool) -> None:
    flags = [t.discontinuity for t in run(streams, packets, "6", discontinuity=restart).timings]
    assert flags[0] is restart
    assert flags[1:] == [False] * (len(flags) - 1)


def test_other_time_bases_are_honoured() -> None:
    video = StreamInfo(0, StreamKind.VIDEO, Fraction(1, 15360), wraps=False)
    packets = [Packet(0, n % 25 == 0, n * 512, n * 512, 512) for n in range(30 * 20)]
    result = run([video], packets, "2.5")
    # 30 fps, keyframe every 25 frames (0.8333 s): cuts at frames 75 (2.5 s), 150, 225, ...
    assert [first_video_pts(s) // 512 for s in result.segments][:3] == [0, 75, 150]  # type: ignore[operator]


def test_renditions_with_same_gop_cut_at_the_same_points() -> None:
    a = run([VIDEO, AUDIO], av_packets(60, start=126000), "6")
    b = run([VIDEO], av_packets(60, start=126000, audio=False), "6")
    assert [first_video_pts(s) for s in a.segments] == [first_video_pts(s) for s in b.segments]


def test_rejects_useless_configurations() -> None:
    with pytest.raises(ValueError):
        Cutter([VIDEO], Fraction(0))
    with pytest.raises(ValueError):
        Cutter([], Fraction(6))


W = TS_WRAP_TICKS


@pytest.mark.parametrize(
    ("packets", "expected"),
    [
        # (stream, pts, dts) as read -> (pts, dts) unwrapped
        ([(0, W - 3000, W - 3000), (0, 3000, 3000)], [(W - 3000, W - 3000), (W + 3000, W + 3000)]),
        ([(0, 3000, 3000), (0, W - 3000, W - 3000)], [(3000, 3000), (-3000, -3000)]),
        # A step of half the range or more forward is the shorter step back.
        ([(0, 0, 0), (0, HALF_WRAP, HALF_WRAP)], [(0, 0), (-HALF_WRAP, -HALF_WRAP)]),
        ([(0, 0, 0), (0, W * 11 // 20, W * 11 // 20)], [(0, 0), (-W * 9 // 20, -W * 9 // 20)]),
        ([(0, HALF_WRAP, HALF_WRAP), (0, 0, 0)], [(HALF_WRAP, HALF_WRAP), (0, 0)]),
        # From a timeline read below zero, a step more than half the range forward.
        (
            [(0, 1000, 1000), (0, W * 7 // 10, W * 7 // 10), (0, W * 3 // 10, W * 3 // 10)],
            [(1000, 1000), (W * 7 // 10 - W, W * 7 // 10 - W), (W * 3 // 10 - W, W * 3 // 10 - W)],
        ),
        # The pts of a B-frame-delayed picture wrapped before its dts.
        ([(0, 4000, W - 2000)], [(W + 4000, W - 2000)]),
        ([(0, HALF_WRAP, 0)], [(-HALF_WRAP, 0)]),
        (
            [(0, 1000, 1000), (0, W * 7 // 10, W * 7 // 10), (0, W * 3 // 10, W * 7 // 10 + 3000)],
            [(1000, 1000), (W * 7 // 10 - W, W * 7 // 10 - W), (W * 3 // 10 - W, W * 7 // 10 + 3000 - W)],
        ),
        # A packet with only a pts steps from its stream's last dts.
        ([(0, W - 3000, W - 3000), (0, 3000, None)], [(W - 3000, W - 3000), (W + 3000, None)]),
        ([(0, 0, 0), (0, HALF_WRAP, None)], [(0, 0), (-HALF_WRAP, None)]),
        (
            [(0, 1000, 1000), (0, W * 7 // 10, W * 7 // 10), (0, W * 3 // 10, None)],
            [(1000, 1000), (W * 7 // 10 - W, W * 7 // 10 - W), (W * 3 // 10 - W, None)],
        ),
        # With nothing before it, a negative value is libavformat's correction of a start just
        # below the wrap; any other is taken as it is.
        ([(0, -3000, None)], [(W - 3000, None)]),
        ([(0, 3000, None)], [(3000, None)]),
        ([(0, None, 5000)], [(None, 5000)]),
        # A stream's first packet steps from the last packet of any stream ...
        ([(0, W - 1500, W - 1500), (1, 500, 500)], [(W - 1500, W - 1500), (W + 500, W + 500)]),
        # ... and every later one from its own stream's last packet.
        (
            [(0, 10000, 10000), (1, 8000, 8000), (0, 9000 + HALF_WRAP, 9000 + HALF_WRAP), (1, 8500, 8500)],
            [(10000, 10000), (8000, 8000), (9000 + HALF_WRAP, 9000 + HALF_WRAP), (8500, 8500)],
        ),
    ],
)
def test_each_timestamp_is_read_as_the_shorter_step_modulo_2_33(
    packets: list[tuple[int, int | None, int | None]], expected: list[tuple[int | None, int | None]]
) -> None:
    """Every 33-bit timestamp is taken modulo 2^33 as the step in [-2^32, 2^32) from its
    stream's last dts (a pts from its own dts), so a wrap never reads as a jump of a day."""
    cutter = Cutter([VIDEO, AUDIO], Fraction(6))
    unwrapped = []
    for index, pts, dts in packets:
        cutter.feed(index, True, pts, dts, 3000)
        unwrapped.append((cutter.pts, cutter.dts))
        # Written as they are into PES headers and PyAV packets: integer ticks.
        assert all(value is None or type(value) is int for value in unwrapped[-1])
    assert unwrapped == expected


def test_an_input_that_does_not_wrap_keeps_its_negative_timestamps() -> None:
    # MP4 and Matroska with B-frames start their dts below zero; nothing wraps there.
    video = StreamInfo(0, StreamKind.VIDEO, Fraction(1, 15360), wraps=False)
    cutter = Cutter([video], Fraction(6))
    for n in range(4):
        cutter.feed(0, n == 0, n * 512, (n - 2) * 512, 512)
        assert (cutter.pts, cutter.dts) == (n * 512, (n - 2) * 512)


@pytest.mark.parametrize(("below", "cut"), [(0, True), (1, True), ("tolerance", True), ("past", False)])
def test_a_keyframe_within_the_cut_tolerance_below_a_boundary_cuts_there(below: int | str, cut: bool) -> None:
    """A keyframe whose timestamp was rounded a little low still starts the segment at its grid
    point instead of a whole GOP later; one further below does not."""
    tolerance = int(CUT_TOLERANCE_S / TB)
    offset = {"tolerance": tolerance, "past": tolerance + 1}.get(below, below)  # type: ignore[call-overload]
    keyframe = 2 * 90000 - offset
    times = sorted({*range(0, 4 * 90000 + 1, 3000), keyframe})
    packets = [Packet(0, ts in (0, keyframe, 4 * 90000), ts, ts, 3000) for ts in times]
    # A target of 4 s leaves room to wait for the keyframe at 4 s (cut rule 2 does not apply).
    starts = [first_video_pts(s) for s in run([VIDEO], packets, "2", target_s=4).segments]
    assert starts == ([0, keyframe, 4 * 90000] if cut else [0, 4 * 90000])


AUDIO_FRAME = 1920  # 1024 samples at 48 kHz in 90-kHz ticks


@pytest.mark.parametrize(
    ("streams", "packets", "last"),
    [
        # Keyframes only, one per segment.
        ([VIDEO], [Packet(0, True, k * 180000, k * 180000, 180000) for k in range(3)], 180000),
        ([VIDEO], [Packet(0, True, 0, 0, 3000)], 3000),
        ([AUDIO], [Packet(1, True, 0, 0, AUDIO_FRAME)], AUDIO_FRAME),
        # The only packet after a jump.
        ([VIDEO], [Packet(0, True, 0, 0, 3000), Packet(0, True, 60 * 90000, 60 * 90000, 3000)], 3000),
        # Audio opened the segment before the video's first keyframe.
        ([VIDEO, AUDIO], [Packet(1, True, 0, 0, AUDIO_FRAME), Packet(0, True, 0, 0, 3000)], 3000),
        # The second audio stream opened the segment before the first, which is the reference.
        ([AUDIO, SECOND_AUDIO], [Packet(2, True, 0, 0, AUDIO_FRAME), Packet(1, True, 0, 0, AUDIO_FRAME)], AUDIO_FRAME),
    ],
    ids=["keyframes-only", "one-video-packet", "one-audio-packet", "after-a-jump", "after-audio", "two-audio-streams"],
)
def test_a_segment_of_a_single_reference_packet_lasts_that_packet(
    streams: list[StreamInfo], packets: list[Packet], last: int
) -> None:
    timings = run(streams, packets, "2").timings
    assert timings[-1].duration_s == float(last * TB)
    assert all(t.duration_s == float(last * TB) for t in timings)


def test_without_packet_durations_the_last_segment_ends_at_its_last_packet() -> None:
    packets = [Packet(0, n % 60 == 0, n * 3000, n * 3000, None) for n in range(200)]
    timings = run([VIDEO], packets, "6").timings
    assert [t.start_s for t in timings] == [0.0, 6.0]
    assert timings[-1].duration_s == float((199 - 180) * 3000 * TB)
    # A segment of one packet without a duration lasts an unknown time.
    assert run([VIDEO], [Packet(0, True, 0, 0, None)], "6").timings == [SegmentTiming(0.0, None, False)]


def test_a_repeated_timestamp_is_not_a_jump() -> None:
    packets = av_packets(12)
    repeated = [p for p in packets if p.index == 0 and not p.key][10:11] + [p for p in packets if p.index == 1][10:11]
    packets = sorted(packets + repeated, key=lambda p: p.dts)  # type: ignore[arg-type, return-value]
    result = run([VIDEO, AUDIO], packets, "6")
    assert [t.discontinuity for t in result.timings] == [False, False]
    assert not result.dropped and not result.released
    assert sum(len(s) for s in result.segments) == len(packets)


@pytest.mark.parametrize(("extra", "jump"), [(0, False), (1, True)])
def test_a_gap_of_discontinuity_gap_s_is_missing_frames_and_a_longer_one_a_jump(extra: int, jump: bool) -> None:
    first = av_packets(6, audio=False)
    resume = first[-1].dts + DISCONTINUITY_GAP_S * 90000 + extra  # type: ignore[operator]
    result = run([VIDEO], first + av_packets(6, audio=False, start=resume), "6")
    assert [t.discontinuity for t in result.timings].count(True) == jump
    assert result.timings[-1].discontinuity is jump


def test_a_gap_in_the_video_alone_keeps_the_audio() -> None:
    # The video stops for 8 s while the audio goes on: a gap on the program's clock, not a jump.
    packets = [p for p in av_packets(30) if not (p.index == 0 and 10 * 90000 <= p.pts < 18 * 90000)]  # type: ignore[operator]
    result = run([VIDEO, AUDIO], packets, "6")
    assert [t.discontinuity for t in result.timings].count(True) == 0
    assert not result.dropped and not result.released
    assert written(result, 1) == sum(1 for p in packets if p.index == 1)


@pytest.mark.parametrize(
    ("shift", "stragglers"),
    [
        (8 * 90000, True),
        # The first audio packet after the cut (at 10 s + 480 ticks) lies exactly DISCONTINUITY_GAP_S
        # from the video: close enough to be on its timeline.
        (DISCONTINUITY_GAP_S * 90000 + 480, False),
    ],
    ids=["8s", "exactly-the-gap"],
)
def test_video_jumping_alone_takes_the_audio_along_after_discontinuity_gap_s(shift: int, stragglers: bool) -> None:
    # The video's timestamps move on at 10 s; the audio's do not. Audio more than
    # DISCONTINUITY_GAP_S from the video may be old stragglers, so it is dropped until the video
    # has run DISCONTINUITY_GAP_S on its new timeline; then the jump was the video's alone.
    packets = [
        Packet(0, p.key, p.pts + shift, p.dts + shift, p.duration)  # type: ignore[operator]
        if p.index == 0 and p.pts >= 10 * 90000  # type: ignore[operator]
        else p
        for p in av_packets(30)
    ]
    result = run([VIDEO, AUDIO], packets, "6")
    assert [t.discontinuity for t in result.timings].count(True) == 1
    audio = [p for p in packets if p.index == 1]
    # Dropped: what arrived until the video frame after the one DISCONTINUITY_GAP_S into its new timeline.
    end = (10 + DISCONTINUITY_GAP_S) * 90000 + 3000
    expected = [p for p in audio if 10 * 90000 <= p.pts < end] if stragglers else []  # type: ignore[operator]
    assert result.dropped == expected
    assert written(result, 1) + len(result.dropped) == len(audio)


def test_segments_may_be_shorter_than_a_second() -> None:
    result = run([VIDEO], av_packets(3, audio=False, gop_frames=15), Fraction(1, 2))
    assert [first_video_pts(s) for s in result.segments] == [k * 45000 for k in range(6)]


def test_finish_reports_the_open_segment_once() -> None:
    cutter = Cutter([VIDEO], Fraction(6))
    cutter.feed(0, True, 0, 0, 3000)
    assert cutter.finish() == SegmentTiming(0.0, 3000 / 90000, False)
    assert cutter.finish() is None


@pytest.mark.parametrize("keyframes_s, cuts", [
    # One 5-s GOP: two cuts without a keyframe inside it, no sliver before the keyframe at 9 s.
    ((0, 2, 4, 9, 11, 13), [(0, True), (2, True), (4, True), (6.48, False), (8.96, False), (11, True), (13, True)]),
    # The keyframe at 8 s lost.
    ((0, 2, 4, 6, 10, 12, 14), [(0, True), (2, True), (4, True), (6, True), (8.48, False), (10, True), (12, True), (14, True)]),
    # Keyframes every 1.96 s: each one a frame or more before the grid, every one cut on.
    (tuple(round(k * 1.96, 2) for k in range(8)), [(round(k * 1.96, 2), True) for k in range(8)]),
])
def test_where_segments_are_cut_at_segment_duration_2(keyframes_s: tuple[float, ...], cuts: list) -> None:
    # The examples of docs/segmenter.md, "Cut rule and timing model".
    assert cuts_at_25_fps(keyframes_s) == cuts


def cuts_at_25_fps(keyframes_s: tuple[float, ...]) -> list[tuple[float, bool]]:
    """(time in s, on a keyframe) of each cut of 15 s of 25-fps video without B frames at
    SEGMENT_DURATION 2, with keyframes at the frames nearest ``keyframes_s``."""
    frame = 90000 // 25
    cutter = Cutter([VIDEO], Fraction(2))
    got = []
    for n in range(25 * 15):
        ts = n * frame
        key = any(abs(ts - k * 90000) < frame / 2 for k in keyframes_s)
        if cutter.feed(0, key, ts, ts, frame) is Action.CUT:
            got.append((round(ts / 90000, 2), cutter.on_keyframe))
    return got


@pytest.mark.parametrize("keyframe_s, cut", [(3.48, True), (3.28, False)], ids=["half", "less"])
def test_after_a_cut_without_a_keyframe_one_half_a_segment_later_is_cut_on_not_a_sliver(
    keyframe_s: float, cut: bool
) -> None:
    # The 8-s GOP from 0 s is cut without a keyframe at 2.48 s; the next keyframe comes 1 s
    # (half SEGMENT_DURATION) or 0.8 s later, the ones after it every 2 s.
    got = cuts_at_25_fps((0, keyframe_s, keyframe_s + 2, keyframe_s + 4, keyframe_s + 6))
    assert got[:2] == [(0, True), (2.48, False)]
    assert ((keyframe_s, True) in got) is cut


def test_audio_muxed_after_the_first_keyframe_but_timed_before_it_is_left_out() -> None:
    # Joining mid-GOP: the muxer sent an audio packet timed 0.3 s before the first keyframe after it.
    packets = [p for p in av_packets(8) if not (p.index == 0 and p.pts < 60 * 3000)]  # type: ignore[operator]
    keyframe = next(i for i, p in enumerate(packets) if p.index == 0)
    late = Packet(1, True, 60 * 3000 - 27000, 60 * 3000 - 27000, 1920)
    early_audio = [p for p in packets[:keyframe] if p.pts != late.pts]
    result = run([VIDEO, AUDIO], [*early_audio, packets[keyframe], late, *packets[keyframe + 1:]], "2")
    assert late in result.dropped
    assert min(pts for index, pts in result.segments[0] if index == 1) + 1920 > 60 * 3000  # type: ignore[operator]


def test_audio_of_unknown_duration_is_kept_up_to_half_a_second_before_the_first_keyframe() -> None:
    # The fast path sees audio PES packets without a duration; one may hold 0.3 s of frames.
    packets = [p for p in av_packets(8) if not (p.index == 0 and p.pts < 60 * 3000)]  # type: ignore[operator]
    packets = [Packet(p.index, p.key, p.pts, p.dts, None) if p.index == 1 else p for p in packets]
    result = run([VIDEO, AUDIO], packets, "2")
    audio = [pts for index, pts in result.segments[0] if index == 1]
    assert 60 * 3000 - 45000 <= min(audio) < 60 * 3000 - 45000 + 1920  # type: ignore[operator]


def test_audio_muxed_ahead_of_the_first_keyframe_of_a_restarted_run_is_kept() -> None:
    # Every run's first segment starts a new timeline; audio held for its keyframe is its own.
    packets = av_packets(4)
    early = [p for p in packets if p.index == 1][:3]
    rest = [p for p in packets if p not in early]
    result = run([VIDEO, AUDIO], early + rest, "2", discontinuity=True)
    assert not result.dropped and not result.released
    assert sorted(pts for index, pts in result.segments[0] if index == 1)[:3] == [p.pts for p in early]


AUDIO_20MS = 1800  # a 20-ms audio frame in 90-kHz ticks: whole seconds fall on frame starts


def timed(packets: list[tuple[int, Packet]]) -> list[Packet]:
    """Packets given as (arrival time, packet), in the order a muxer interleaves them."""
    return [p for _, p in sorted(packets, key=lambda item: (item[0], item[1].index))]


def video_at(start: int, end: int, *, frame: int = 3000, gop_frames: int = 60) -> list[tuple[int, Packet]]:
    """Video frames from ``start`` (a keyframe) to ``end`` (90-kHz ticks), no B frames."""
    return [(ts, Packet(0, (ts - start) % (gop_frames * frame) == 0, ts, ts, frame)) for ts in range(start, end, frame)]


def audio_at(start: int, end: int, *, step: int = AUDIO_20MS, durations: bool = True, index: int = 1
             ) -> list[tuple[int, Packet]]:
    """Audio frames of ``step`` ticks from ``start`` to ``end`` (90-kHz ticks)."""
    return [(ts, Packet(index, True, ts, ts, step if durations else None)) for ts in range(start, end, step)]


@pytest.mark.parametrize("restart", [False, True])
def test_while_the_video_pauses_segments_cut_on_audio_start_at_their_first_packet(restart: bool) -> None:
    # Video to 5.5 s, then nothing until a keyframe at 11 s; audio throughout. The audio past the
    # full segment at 6 s is held while the video may still come (it lags up to INTERLEAVE_S),
    # then opens the next segment from the first packet held.
    packets = timed(video_at(0, 165 * 3000) + video_at(11 * 90000, 16 * 90000) + audio_at(0, 16 * 90000))
    result = run([VIDEO, AUDIO], packets, "2", discontinuity=restart)
    assert [(t.start_s, t.duration_s, t.discontinuity) for t in result.timings] == [
        (0.0, 2.0, restart), (2.0, 2.0, False), (4.0, 2.0, False),
        # Cut on audio, each as long as the target.
        (6.0, 2.0, False), (8.0, 2.0, False), (10.0, 1.0, False),
        # The video's keyframe at 11 s, then the grid from there.
        (11.0, 2.0, False), (13.0, 2.0, False), (15.0, 1.0, False),
    ]
    for timing, segment in zip(result.timings, result.segments):
        assert min(pts for _, pts in segment) == timing.start_s * 90000  # type: ignore[operator, type-var]
    # A cut on audio is neither on a video keyframe nor a forced cut of the video.
    assert [(on_keyframe, forced) for _, on_keyframe, forced in result.cuts] == [(True, False)] * 3 + [
        (False, False)] * 3 + [(True, False)] * 3
    assert not result.dropped and not result.released
    assert sum(len(segment) for segment in result.segments) == len(packets)


@pytest.mark.parametrize(
    ("audio_end", "durations", "last"),
    [
        (13 * 90000, True, (12.0, 1.0)),
        # Without durations the segment ends where its last packet starts.
        (13 * 90000, False, (12.0, 1.0 - 0.02)),
        # The input ends on the packet that opened the segment.
        (12 * 90000 + 1, True, (12.0, 0.02)),
    ],
    ids=["durations", "no-durations", "one-packet"],
)
def test_a_segment_of_audio_alone_ends_at_its_last_audio_packet(
    audio_end: int, durations: bool, last: tuple[float, float]
) -> None:
    packets = timed(video_at(0, 10 * 90000) + audio_at(0, audio_end, durations=durations))
    timings = run([VIDEO, AUDIO], packets, "2").timings
    assert [t.start_s for t in timings] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert (timings[-1].start_s, timings[-1].duration_s) == pytest.approx(last)


def test_audio_muxed_exactly_interleave_s_ahead_of_the_video_waits_for_its_keyframes() -> None:
    # 50-fps video with 2-s GOPs, audio muxed INTERLEAVE_S ahead of it: past each full segment
    # the audio is held, not cut on, while the video keeps that close; the video's keyframes cut.
    video = video_at(0, 10 * 90000, frame=1800, gop_frames=100)
    audio = [(ts - INTERLEAVE_S * 90000, p) for ts, p in audio_at(0, 10 * 90000)]
    result = run([VIDEO, AUDIO], timed(video + audio), "2")
    assert result.cuts == [(k * 2 * 90000, True, False) for k in range(5)]
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(2.0 * k, 2.0) for k in range(5)]
    assert not result.dropped and not result.released


def test_audio_running_ahead_of_a_full_segment_is_held_up_to_max_held_packets() -> None:
    # Audio frames of half a millisecond muxed 0.6 s ahead of 25-fps video: past each full
    # segment more audio comes before the video's keyframe than may be held; the packet after
    # MAX_HELD_PACKETS held opens the next segment.
    video = video_at(0, 6 * 90000, frame=3600, gop_frames=25)
    audio = [(ts - 54000, p) for ts, p in audio_at(0, 6 * 90000, step=45)]
    cutter = Cutter([VIDEO, AUDIO], Fraction(2))
    held: set[int] = set()
    most = 0
    for p in [video[0][1]] + timed(video[1:] + audio):
        action = cutter.feed(p.index, p.key, p.pts, p.dts, p.duration)
        held -= {held_id for held_id, _ in cutter.settled}
        if action is Action.HOLD:
            held.add(cutter.held_id)
        most = max(most, len(held))
    assert most == MAX_HELD_PACKETS


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize(
    ("step", "opener"),
    [
        # 20-ms frames: the first packet more than DISCONTINUITY_GAP_S after the first one held.
        (AUDIO_20MS, DISCONTINUITY_GAP_S * 90000 // AUDIO_20MS + 1),
        # 1-ms frames: the packet after MAX_HELD_PACKETS held, long before that.
        (90, MAX_HELD_PACKETS),
    ],
    ids=["time", "count"],
)
def test_audio_starts_without_the_video_when_no_keyframe_comes_in_time(step: int, opener: int, restart: bool) -> None:
    # A video stream that sends nothing: audio waits for its first keyframe (segment 1 starts
    # there) only so long; then the audio held opens the first segment. The input ends on the
    # packet that opens it.
    start = 10 * 90000
    packets = timed(audio_at(start, start + (opener + 1) * step, step=step))
    result = run([VIDEO, AUDIO], packets, "6", discontinuity=restart)
    assert result.cuts == [(start + opener * step, False, False)]
    # Said so: the video had not started when it was closed.
    assert result.timings == [SegmentTiming(10.0, (opener + 1) * step / 90000, restart, without_reference=True)]
    assert written(result, 1) == len(packets) and not result.released


def test_an_untimed_packet_ending_the_wait_for_the_first_keyframe_opens_segment_one_at_the_first_held() -> None:
    # A video stream that sends nothing, 1-ms audio frames: the packet after MAX_HELD_PACKETS held
    # ends the wait, and it has no timestamps. Segment 1 starts at the first packet held, and
    # the segments are cut every SEGMENT_DURATION on the audio's clock.
    held = timed(audio_at(0, MAX_HELD_PACKETS * 90, step=90))
    rest = timed(audio_at(MAX_HELD_PACKETS * 90, 10 * 90000, step=90))
    packets = held + [Packet(1, True, None, None, None)] + rest
    result = run([VIDEO, AUDIO], packets, "6")
    assert result.cuts == [(None, False, False), (6 * 90000, False, False)]
    assert result.timings == [SegmentTiming(0.0, 6.0, False, without_reference=True),
                              SegmentTiming(6.0, 4.0, False, without_reference=True)]
    assert written(result, 1) == len(packets) and not result.released


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize(
    ("packets", "start_s", "duration_s", "without_reference"),
    [
        # The reference (the first audio stream) never sends.
        ([Packet(2, True, 0, 0, AUDIO_FRAME)], 0.0, AUDIO_FRAME / 90000, True),
        # The reference comes later.
        ([Packet(2, True, 0, 0, AUDIO_FRAME), Packet(1, True, 960, 960, AUDIO_FRAME)], 0.0, (960 + AUDIO_FRAME) / 90000,
         False),
        # A packet without timestamps opens the segment; the reference's first packet times it.
        ([Packet(2, True, None, None, None), Packet(1, True, 0, 0, AUDIO_FRAME)], 0.0, AUDIO_FRAME / 90000, False),
        # Without any timestamp the segment's timing is unknown.
        ([Packet(2, True, None, None, None)], None, None, True),
    ],
    ids=["reference-silent", "reference-later", "untimed-first", "untimed-only"],
)
def test_a_segment_opened_by_another_stream_starts_at_its_first_packet(
    packets: list[Packet], start_s: float | None, duration_s: float | None, without_reference: bool, restart: bool
) -> None:
    result = run([AUDIO, SECOND_AUDIO], packets, "2", discontinuity=restart)
    assert result.timings == [SegmentTiming(start_s, duration_s, restart, without_reference)]
    assert sum(len(segment) for segment in result.segments) == len(packets)


@pytest.mark.parametrize(
    ("audio", "first_kept"),
    [
        # Of known duration: one ending exactly at the keyframe is left out.
        ([Packet(1, True, ts, ts, AUDIO_FRAME) for ts in range(180000 - 5 * AUDIO_FRAME, 180000, AUDIO_FRAME)], None),
        # Of unknown duration: one starting exactly JOIN_SLACK_S before the keyframe is kept.
        ([Packet(1, True, ts, ts, None) for ts in range(135000 - 2 * AUDIO_FRAME, 180000, AUDIO_FRAME)], 135000),
    ],
    ids=["ends-at-the-keyframe", "join-slack"],
)
@pytest.mark.parametrize("restart", [False, True])
def test_audio_before_the_first_keyframe_is_kept_only_if_it_may_play_after_it(
    audio: list[Packet], first_kept: int | None, restart: bool
) -> None:
    keyframe = Packet(0, True, 180000, 180000, 3000)
    result = run([VIDEO, AUDIO], [*audio, keyframe], "2", discontinuity=restart)
    kept = sorted(pts for index, pts in result.segments[0] if index == 1)  # type: ignore[type-var]
    assert kept == [p.pts for p in audio if first_kept is not None and p.pts >= first_kept]  # type: ignore[operator]
    assert result.released == len(audio) - len(kept)


@pytest.mark.parametrize("rate", [48000, 45000])
def test_audio_in_its_own_time_base_is_cut_as_in_the_video_s(rate: int) -> None:
    # AAC in 1/48000 ticks (or 1/45000, half the video's rate) beside 90-kHz video that pauses
    # from 5 s to 11 s (segments are cut on the audio meanwhile): the same cuts as the same audio
    # in 90-kHz ticks.
    aac_48k = StreamInfo(1, StreamKind.AUDIO, Fraction(1, rate), wraps=False)
    video = [(p.pts, p) for p in av_packets(20, audio=False)
             if not 5 * 90000 <= p.pts < 11 * 90000]  # type: ignore[operator]
    frames = range(20 * 48000 // 1024)
    tick = 1920 * rate // 90000  # one frame in the audio's ticks
    in_48k = run([VIDEO, aac_48k], timed(video + [(n * 1920, Packet(1, True, n * tick, n * tick, tick)) for n in frames]), "2")
    in_90k = run([VIDEO, AUDIO], timed(video + [(n * 1920, Packet(1, True, n * 1920, n * 1920, 1920)) for n in frames]), "2")
    assert in_48k.timings == in_90k.timings
    assert not any(t.discontinuity for t in in_48k.timings)
    assert any(not on_keyframe for _, on_keyframe, _ in in_48k.cuts)  # some cut on the audio
    assert [len(segment) for segment in in_48k.segments] == [len(segment) for segment in in_90k.segments]
    assert not in_48k.dropped and not in_48k.released and written(in_48k, 1) == len(frames)


def test_packets_held_for_a_stream_that_jumped_alone_are_decided_when_it_is_released() -> None:
    packets = [
        Packet(1, True, p.pts + 7 * 90000, p.dts + 7 * 90000, p.duration)  # type: ignore[operator]
        if p.index == 1 and p.pts >= 4 * 90000  # type: ignore[operator]
        else p
        for p in av_packets(12)
    ]
    cutter = Cutter([VIDEO, AUDIO], Fraction(6))
    held: set[int] = set()
    for p in packets:
        if cutter.feed(p.index, p.key, p.pts, p.dts, p.duration) is Action.HOLD:
            held.add(cutter.held_id)
        released = {held_id for held_id, reason in cutter.settled if reason is not None}
        if released:
            assert released == held  # every packet held since the jump, at once
            break
    else:
        pytest.fail("the audio was never released")


def test_a_stream_jumping_alone_again_right_after_its_release_is_held_again() -> None:
    # The audio jumps 7 s ahead at 4 s, is held for DISCONTINUITY_GAP_S and released; the packet
    # after the release steps 2 s back: a second jump, held and released the same way.
    audio = [p for p in av_packets(20) if p.index == 1]
    jump = next(i for i, p in enumerate(audio) if p.pts >= 4 * 90000)  # type: ignore[operator]
    release = next(i for i, p in enumerate(audio)
                   if p.pts - audio[jump].pts > DISCONTINUITY_GAP_S * 90000)  # type: ignore[operator]
    shifted = [
        (p.pts, Packet(1, True, p.pts + shift, p.dts + shift, p.duration))  # type: ignore[operator]
        for i, p in enumerate(audio)
        for shift in [0 if i < jump else 7 * 90000 if i <= release else 5 * 90000]
    ]
    video = [(p.pts, p) for p in av_packets(20, audio=False)]
    result = run([VIDEO, AUDIO], timed(video + shifted), "6")  # type: ignore[arg-type]
    assert result.released == 2 * (release - jump)
    assert result.released + written(result, 1) == len(audio)
    assert not any(t.discontinuity for t in result.timings)


def test_a_stream_held_after_jumping_back_alone_does_not_move_segments_cut_on_another_stream() -> None:
    # The video stops at 3 s; the first audio stream steps 3 s back at 4 s (held: a jump of its
    # own), the second goes on and cuts the segments while the video is silent. Their starts
    # follow the second stream's clock, not the held packets' old times.
    back = 3 * 90000
    audio = [(ts, Packet(1, True, ts - back, ts - back, p.duration) if ts >= 4 * 90000 else p)
             for ts, p in audio_at(0, 12 * 90000)]
    packets = timed(video_at(0, 3 * 90000) + audio + audio_at(0, 12 * 90000, index=2))
    result = run([VIDEO, AUDIO, SECOND_AUDIO], packets, "2")
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(2.0 * k, 2.0) for k in range(6)]


def test_a_keyframe_whose_next_one_would_end_the_segment_at_the_limit_is_cut_on() -> None:
    # 24 fps, a keyframe every 1.25 s at SEGMENT_DURATION 2: waiting for the next keyframe would
    # make the segment exactly TARGET + 0.5 s, which EXTINF rounds up past the target. The input
    # ends on a keyframe cut early for that reason: the last segment is that one frame.
    frame = 90000 // 24
    cutter = Cutter([VIDEO], Fraction(2))
    cuts, timings = [], []
    for n in range(3 * 30 + 1):
        if cutter.feed(0, n % 30 == 0, n * frame, n * frame, frame) is Action.CUT:
            cuts.append(n * frame)
            if cutter.finished is not None:
                timings.append(cutter.finished)
    timings.append(cutter.finish())
    assert cuts == [0, 112500, 225000, 337500]
    assert timings == [SegmentTiming(s, 1.25, False) for s in (0, 1.25, 2.5)] + [SegmentTiming(3.75, 1 / 24, False)]


@pytest.mark.parametrize(
    ("time_base", "frame", "count"),
    # Cuts every 62 frames (2.48 s), every 2 frames (2 s).
    [(Fraction(1, 25), 1, 4 * 62 + 1), (TB, 90000, 2 * 2 + 1)],
    ids=["frames-one-tick-apart", "frames-interleave-s-apart"],
)
def test_a_gop_too_long_is_cut_without_a_keyframe_before_the_limit_whatever_the_frame_step(
    time_base: Fraction, frame: int, count: int
) -> None:
    # A 10-s GOP at SEGMENT_DURATION 2 with frames one tick apart (a time base of 1/fps) or
    # INTERLEAVE_S apart (1 fps): each segment is cut before the frame that would reach
    # TARGET + 0.5 s. The input ends on such a frame: the last segment is that one frame.
    video = StreamInfo(0, StreamKind.VIDEO, time_base, wraps=False)
    gop = round(10 / (frame * time_base))
    result = run([video], [Packet(0, n % gop == 0, n * frame, n * frame, frame) for n in range(count)], "2")
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and d < 2.5 for d in durations[:-1]), durations
    assert durations[-1] == float(frame * time_base)
    assert sum(durations) == pytest.approx(float(count * frame * time_base))  # type: ignore[arg-type]
    assert [forced for _, _, forced in result.cuts] == [False] + [True] * (len(result.cuts) - 1)


@pytest.mark.parametrize(
    ("segment_s", "cuts", "durations"),
    [
        ("2", [(0, False), (60, True), (120, False), (180, True), (240, False)], [2.4, 2.4, 2.4, 2.4, 0.4]),
        ("3", [(0, False), (87, True), (174, True), (240, False)], [3.48, 3.48, 2.64, 0.4]),
    ],
)
def test_with_b_frames_cuts_without_a_keyframe_fall_on_p_frames_and_timings_cover_every_frame(
    segment_s: str, cuts: list[tuple[int, bool]], durations: list[float]
) -> None:
    # 25 fps, decoded I0 P3 B1 B2 P6 B4 B5 ..., shown one frame after their decoding starts; a
    # keyframe every 4.8 s. A B frame is shown before a frame already in the segment: no cut
    # before it, it does not count as a step of the frame rate (P frames come 3 frames apart:
    # the cut is before the first P frame 3 frames or less short of TARGET + 0.5 s) and it
    # does not move the segment's end back.
    frame = 3600
    order = [0] + [d for k in range(83) for d in (3 * k + 3, 3 * k + 1, 3 * k + 2)]
    packets = [Packet(0, d % 120 == 0, (d + 1) * frame, i * frame, frame) for i, d in enumerate(order)]
    result = run([VIDEO], packets, segment_s)
    assert [(pts // frame - 1, forced) for pts, _, forced in result.cuts] == cuts  # type: ignore[operator]
    assert [t.duration_s for t in result.timings] == pytest.approx(durations)
    assert sum(t.duration_s for t in result.timings) == pytest.approx(len(packets) * frame / 90000)  # type: ignore[misc]


def test_a_b_frame_lasting_past_the_pictures_shown_after_it_extends_its_segment() -> None:
    # Decoded I P B B, shown I B B P; the last B frame is held for three frames (an MP4 sample
    # duration, the time to the next decode): the segment ends where it ends, not where the
    # P frame shown before it ends.
    frame = 3600
    packets = [Packet(0, True, frame, 0, frame), Packet(0, False, 4 * frame, frame, frame),
               Packet(0, False, 2 * frame, 2 * frame, frame), Packet(0, False, 3 * frame, 3 * frame, 3 * frame)]
    assert run([VIDEO], packets, "2").timings == [SegmentTiming(frame / 90000, 5 * frame / 90000, False)]


@pytest.mark.parametrize(("extra", "jump"), [(0, False), (1, True)])
def test_audio_stepping_back_backward_jitter_s_is_jitter_and_further_a_jump(extra: int, jump: bool) -> None:
    # From 4 s on, each audio packet is BACKWARD_JITTER_S (plus ``extra`` ticks) before where
    # it belonged: its first one steps back that far from the packet before it.
    back = int(BACKWARD_JITTER_S * 90000) + AUDIO_FRAME + extra
    packets = [
        Packet(1, True, p.pts - back, p.dts - back, p.duration)  # type: ignore[operator]
        if p.index == 1 and p.pts >= 4 * 90000  # type: ignore[operator]
        else p
        for p in av_packets(12)
    ]
    result = run([VIDEO, AUDIO], packets, "6")
    assert bool(result.released) is jump  # a stream that jumped alone: held, then released
    assert not any(t.discontinuity for t in result.timings)


@pytest.mark.parametrize(("extra", "jump"), [(0, False), (1, True)])
def test_after_a_pause_of_every_track_audio_resuming_discontinuity_gap_s_past_the_clock_is_no_jump(
    extra: int, jump: bool
) -> None:
    # The audio stops at 9 s, the video at 10 s; the audio comes back DISCONTINUITY_GAP_S (plus
    # ``extra`` ticks) after the video's last frame, the video just after it.
    video = video_at(0, 10 * 90000)
    clock = video[-1][0]
    resume = clock + DISCONTINUITY_GAP_S * 90000 + extra
    packets = timed(video + audio_at(0, 9 * 90000) + audio_at(resume, resume + 6 * 90000)
                    + video_at(resume + 1200, resume + 6 * 90000))
    flags = [t.discontinuity for t in run([VIDEO, AUDIO], packets, "2").timings]
    assert any(flags) is jump


@pytest.mark.parametrize("only", ["pts", "dts"])
def test_audio_with_only_a_pts_or_only_a_dts_is_placed_by_it(only: str) -> None:
    # Joining mid-GOP with audio PES packets that carry one timestamp: what ends before the first
    # keyframe is left out, as with both.
    packets = [p for p in av_packets(8) if not (p.index == 0 and p.pts < 60 * 3000)]  # type: ignore[operator]
    one = [Packet(p.index, p.key, p.pts if only == "pts" else None, p.dts if only == "dts" else None, p.duration)
           if p.index == 1 else p for p in packets]
    both, result = run([VIDEO, AUDIO], packets, "2"), run([VIDEO, AUDIO], one, "2")
    assert result.released == both.released > 0
    assert result.timings == both.timings


def test_the_grid_starts_at_the_first_keyframe_wherever_it_falls() -> None:
    # SEGMENT_DURATION 2 with a declared target of 4 s and a keyframe every 0.5 s from 1.2 s:
    # the grid points are 1.2 s + k * 2 s (the keyframes there are cut on; the rule that cuts
    # early for the target never applies).
    packets = [p for p in av_packets(10, audio=False, gop_frames=15, start=108000) if p.pts < 10 * 90000]  # type: ignore[operator]
    result = run([VIDEO], packets, "2", target_s=4)
    assert [first_video_pts(s) for s in result.segments] == [108000 + k * 180000 for k in range(5)]


def test_a_segment_of_audio_alone_closed_by_a_jump_ends_at_its_last_audio_packet() -> None:
    # The video pauses at 10 s, the audio goes on to 11 s; then both jump to 600 s.
    jump = 600 * 90000
    packets = [p for _, p in sorted(
        video_at(0, 10 * 90000) + audio_at(0, 11 * 90000)
        + [(11 * 90000 + ts - jump, p) for ts, p in video_at(jump, jump + 4 * 90000) + audio_at(jump, jump + 4 * 90000)],
        key=lambda item: (item[0], item[1].index))]
    result = run([VIDEO, AUDIO], packets, "2")
    assert [(t.start_s, t.duration_s, t.discontinuity) for t in result.timings[-3:]] == [
        (10.0, 1.0, False), (600.0, 2.0, True), (602.0, 2.0, False)]
    # The jump is cut on the video's keyframe, the segments while it paused on the audio.
    assert result.cuts[-3:] == [(988200, False, False), (600 * 90000, True, False), (602 * 90000, True, False)]


@pytest.mark.parametrize("duration", [None, 3600], ids=["no-durations", "durations-shorter-than-the-step"])
def test_frames_far_apart_are_cut_before_the_limit_from_the_first_step_whatever_their_durations_say(duration: int | None) -> None:
    # 0.8-s frames without durations (or with durations of a 25-fps frame, as a camera sending
    # pictures sparsely may give), one keyframe, SEGMENT_DURATION 1: the step after the first
    # frame of each segment already tells that the next frame would reach TARGET + 0.5 s.
    result = run([VIDEO], [Packet(0, n == 0, n * 72000, n * 72000, duration) for n in range(8)], "1")
    assert [pts for pts, _, _ in result.cuts] == [n * 72000 for n in range(8)]


def test_a_first_keyframe_after_the_audio_started_without_it_starts_the_grid() -> None:
    # Video from 0 s whose first keyframe comes at 8 s (GOPs of 2 s from there), audio from 0 s:
    # the audio opens segment 1 once DISCONTINUITY_GAP_S passed and is cut on its own while the
    # video waits; the keyframe at 8 s starts the grid (boundaries at 14 s, 20 s).
    packets = timed([(ts, Packet(0, ts >= 8 * 90000 and ts % (2 * 90000) == 0, ts, ts, 3000))
                     for ts in range(0, 22 * 90000, 3000)] + audio_at(0, 22 * 90000))
    result = run([VIDEO, AUDIO], packets, "6")
    assert result.cuts == [(451800, False, False), (6 * 90000, False, False), (12 * 90000, True, False),
                           (14 * 90000, True, False), (20 * 90000, True, False)]
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(0, 6), (6, 6), (12, 2), (14, 6), (20, 2)]
    assert result.dropped == [p for p in packets if p.index == 0 and p.pts < 8 * 90000]  # type: ignore[operator]
    assert written(result, 1) == sum(1 for p in packets if p.index == 1) and not result.released


def test_a_first_keyframe_reached_in_a_segment_cut_on_audio_is_its_last_keyframe_and_picture() -> None:
    # Video from 0 s whose first keyframe comes at 7.6 s (1-s GOPs from there), audio from 0 s:
    # segments are cut on the audio until then (the one open from 7.04 s). The keyframe at 8.6 s
    # is cut on, since the next one, a GOP after it, would reach 7.04 + 2.5 s; an input ending
    # on the keyframe at 7.6 s ends the segment where that picture ends.
    video = [(n * FRAME_25, Packet(0, n >= 190 and (n - 190) % 25 == 0, n * FRAME_25, n * FRAME_25, FRAME_25))
             for n in range(25 * 12)]
    result = run([VIDEO, AUDIO], timed(video + audio_at(0, 12 * 90000)), "2")
    assert [(pts / 90000, on_keyframe) for pts, on_keyframe, _ in result.cuts][2:5] == [  # type: ignore[operator]
        (7.04, False), (8.6, True), (9.6, True)]
    ending = run([VIDEO, AUDIO], timed(video[:191] + audio_at(0, 190 * FRAME_25)), "2")
    assert (ending.timings[-1].start_s, ending.timings[-1].duration_s) == pytest.approx((7.04, 0.6))


@pytest.mark.parametrize("segment_seconds", ["1", "2", "6"])
def test_audio_starting_without_a_late_first_keyframe_keeps_segment_one_within_the_target(
    segment_seconds: str,
) -> None:
    # As above, with targets shorter than DISCONTINUITY_GAP_S: the audio held while waiting for
    # the keyframe spans more than a segment; segment 1 reaches back one target from the packet
    # that gives up waiting, and the audio before it is dropped (and counted) as before a keyframe.
    packets = timed([(ts, Packet(0, ts >= 8 * 90000 and ts % (2 * 90000) == 0, ts, ts, 3000))
                     for ts in range(0, 22 * 90000, 3000)] + audio_at(0, 22 * 90000))
    result = run([VIDEO, AUDIO], packets, segment_seconds)
    target = int(segment_seconds)
    assert all(round(t.duration_s) <= target for t in result.timings), result.timings  # type: ignore[arg-type]
    audio = sum(1 for p in packets if p.index == 1)
    assert written(result, 1) + result.released == audio
    first = result.timings[0]
    assert first.start_s == pytest.approx(max(0.0, DISCONTINUITY_GAP_S - target), abs=0.05)
    assert (result.released > 0) == (target < DISCONTINUITY_GAP_S)


def test_the_reference_is_the_first_video_stream_else_the_first_audio_stream() -> None:
    # The shells watch the reference's keyframes for parameter changes (cut_here).
    second_video = StreamInfo(3, StreamKind.VIDEO, TB, wraps=True)
    assert Cutter([AUDIO, VIDEO, second_video], Fraction(6)).reference is VIDEO
    assert Cutter([SECOND_AUDIO, AUDIO], Fraction(6)).reference is SECOND_AUDIO


def test_audio_jumping_after_the_video_but_before_its_keyframe_goes_into_the_new_segment() -> None:
    # Both jump to 600 s; the video's first frames there are not keyframes (dropped until the
    # one at 602 s), and the audio's first packet there comes after them, at 601.5 s.
    jump = 600 * 90000
    second = [p for p in av_packets(8, start=jump)
              if p.pts >= jump + (90000 if p.index == 0 else 135000)]  # type: ignore[operator]
    result = run([VIDEO, AUDIO], av_packets(6) + second, "6")
    assert [t.discontinuity for t in result.timings] == [False, True]
    assert result.dropped == [p for p in second if p.index == 0 and p.pts < jump + 2 * 90000]  # type: ignore[operator]
    assert not result.released
    assert [pts for index, pts in result.segments[1] if index == 1][:1] == [
        next(p.pts for p in second if p.index == 1)]


def test_stills_further_apart_than_interleave_s_are_segmented() -> None:
    # A video of still pictures 1.5 s apart, one keyframe every 6 s: no frame rate to go by.
    packets = [Packet(0, n % 4 == 0, n * 135000, n * 135000, 135000) for n in range(12)]
    result = run([VIDEO], packets, "2")
    assert sum(len(segment) for segment in result.segments) == len(packets)
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and d < 2.5 for d in durations), durations
    # The last picture is shown for 1.5 s from 16.5 s; its segment stops one tick under the limit.
    assert durations[-1] == pytest.approx(2.5 - 1 / 90000, abs=1e-7)
    assert sum(durations) == pytest.approx(result.timings[-1].start_s + 2.5, abs=1e-4)  # type: ignore[arg-type, operator]


FRAME_25 = 90000 // 25  # a frame at 25 fps, 90-kHz ticks


def frames_25(seconds: int, lost: range, *, gop_s: int = 10, durations: bool = True) -> list[tuple[int, Packet]]:
    """Video at 25 fps, a keyframe every ``gop_s``, without the frames numbered in ``lost``."""
    return [(n * FRAME_25, Packet(0, n % (25 * gop_s) == 0, n * FRAME_25, n * FRAME_25, FRAME_25 if durations else None))
            for n in range(25 * seconds) if n not in lost]


@pytest.mark.parametrize(
    ("streams", "packets"),
    [
        # One frame lost: the one a cut without a keyframe would be made on (2.48 s).
        ([VIDEO], frames_25(10, range(62, 63))),
        # The example: frames 60-62 lost, the next comes at 2.52 s.
        ([VIDEO], frames_25(10, range(60, 63))),
        # The same without packet durations (the fast path's video): the last picture's end is
        # judged from the frame step.
        ([VIDEO], frames_25(10, range(60, 63), durations=False)),
        # A gap straddling the limit (2.32 s to 2.64 s).
        ([VIDEO], frames_25(10, range(58, 66))),
        # With audio going on (held once the segment is full by its clock).
        ([VIDEO, AUDIO], frames_25(10, range(60, 63)) + audio_at(0, 10 * 90000)),
        # The video pausing for less than INTERLEAVE_S (2.2 s to 2.92 s) while the audio is held.
        ([VIDEO, AUDIO], frames_25(10, range(55, 73)) + audio_at(0, 10 * 90000)),
        # 2-s GOPs, the keyframe at 2 s lost with the frames around it (1.96 s to 2.56 s).
        ([VIDEO], frames_25(10, range(49, 64), gop_s=2)),
        # Audio only (the reference is the audio): a gap from 1.9 s to 2.6 s.
        ([AUDIO], [item for item in audio_at(0, 10 * 90000) if not 171000 <= item[0] < 234000]),
        # 20 fps: the next frame after the frames lost comes exactly at the limit (2.5 s).
        ([VIDEO], [(n * 4500, Packet(0, n == 0, n * 4500, n * 4500, 4500)) for n in range(200) if n not in (48, 49)]),
        # A hole longer than the limit in a video-only input (1 s to 4 s), with and without durations.
        ([VIDEO], frames_25(10, range(25, 100))),
        ([VIDEO], frames_25(10, range(25, 100), durations=False)),
    ],
    ids=["one-frame", "three-frames", "three-frames-no-durations", "straddling", "with-audio",
         "video-pause-audio-held", "keyframe-lost", "audio-only", "at-the-limit", "hole-over-the-limit",
         "hole-over-the-limit-no-durations"],
)
def test_frames_missing_right_before_the_limit_never_make_a_segment_too_long(
    streams: list[StreamInfo], packets: list[tuple[int, Packet]]
) -> None:
    # The next reference packet comes past TARGET + 0.5 s: the segment is cut before it and ends
    # where its last picture (or packet) ends; the hole goes to the next segment, which starts
    # there. EXTINF rounded halves up stays within the target (RFC 8216 4.3.3.1).
    result = run(streams, timed(packets), "2")
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and math.floor(d + 0.5) <= 2 for d in durations), durations
    assert sum(durations) == pytest.approx(10.0, abs=0.05)  # type: ignore[arg-type]
    assert sum(len(segment) for segment in result.segments) == len(packets)
    assert not result.dropped and not result.released
    starts = [t.start_s for t in result.timings]
    assert all(a + d == pytest.approx(b) for a, d, b in zip(starts, durations, starts[1:])), result.timings  # type: ignore[operator]


@pytest.mark.parametrize("durations", [True, False])
def test_a_segment_cut_before_a_late_frame_ends_where_its_last_picture_ends(durations: bool) -> None:
    # Frames 60-62 lost: the segment from 0 s ends at frame 59's end (2.4 s; its pts + the frame
    # step when no duration says), and the next one, opened by frame 63 at 2.52 s, starts there,
    # holding the hole; it is cut without a keyframe before the frame that would reach 2.4 + 2.5 s.
    result = run([VIDEO], timed(frames_25(10, range(60, 63), durations=durations)), "2")
    assert result.cuts[:2] == [(0, True, False), (63 * FRAME_25, False, True)]
    assert result.timings[:2] == [SegmentTiming(0.0, 2.4, False), SegmentTiming(2.4, 2.48, False)]


JUST_UNDER_THE_LIMIT = 224999  # ticks: TARGET + 0.5 s at target 2, less one


@pytest.mark.parametrize(
    "packets",
    [
        # Nothing says when the first still ends (no durations, no step between pictures yet).
        [Packet(0, True, 0, 0, None), Packet(0, False, 234000, 234000, None)],
        # The second still's duration reaches past the limit (1.5 s + 1.5 s).
        [Packet(0, n == 0, n * 135000, n * 135000, 135000) for n in range(3)],
    ],
    ids=["unknown-end", "end-past-the-limit"],
)
def test_a_segment_not_known_to_end_before_the_limit_ends_just_under_it(packets: list[Packet]) -> None:
    result = run([VIDEO], packets, "2")
    assert result.timings[0] == SegmentTiming(0.0, JUST_UNDER_THE_LIMIT / 90000, False)
    assert result.timings[1].start_s == JUST_UNDER_THE_LIMIT / 90000


def test_a_hole_longer_than_the_limit_is_split_between_two_segments() -> None:
    # A segment of one picture without duration (opened by a cut without a keyframe at 2.48 s),
    # then nothing for 3 s: the segment ends just under TARGET + 0.5 s before the next picture
    # (at 5.48 s), which opens the next one; both hold part of the hole. That one, holding the
    # one picture, ends just under the limit after its start: at that picture's pts.
    frames = [(n * FRAME_25, Packet(0, n == 0, n * FRAME_25, n * FRAME_25, None)) for n in [*range(63), 137, 138]]
    result = run([VIDEO], timed(frames), "2")
    assert [cut for cut, _, _ in result.cuts] == [0, 62 * FRAME_25, 137 * FRAME_25, 138 * FRAME_25]
    assert [t.start_s for t in result.timings] == pytest.approx([0, 2.48, (137 * FRAME_25 - JUST_UNDER_THE_LIMIT) / 90000,
                                                                137 * FRAME_25 / 90000])
    assert all(t.duration_s is not None and t.duration_s < 2.5 for t in result.timings)


@pytest.mark.parametrize(
    ("streams", "packets"),
    [
        # Two audio streams; the reference (the first) never sends, the other's first packet has
        # no timestamps.
        ([AUDIO, SECOND_AUDIO], [Packet(2, True, None, None, None)] + timed(audio_at(0, 20 * 90000, index=2))),
        # Audio and video whose video never comes; the audio's first packet has no timestamps.
        ([VIDEO, AUDIO], [Packet(1, True, None, None, None)] + timed(audio_at(0, 20 * 90000))),
        # The same with MAX_HELD_PACKETS untimed audio packets first: they open segment 1.
        ([VIDEO, AUDIO], [Packet(1, True, None, None, None)] * MAX_HELD_PACKETS + timed(audio_at(0, 20 * 90000))),
    ],
    ids=["second-audio", "video-never-comes", "untimed-held"],
)
def test_a_reference_that_never_sends_leaves_segments_cut_on_the_other_streams_clock(
    streams: list[StreamInfo], packets: list[Packet]
) -> None:
    # A segment opened by a packet without timestamps starts at the first timestamp in it; the
    # reference never starting, segments are cut every target on the other stream's clock, and
    # each says it was (the run warns).
    result = run(streams, packets, "2")
    durations = [t.duration_s for t in result.timings]
    assert len(durations) >= 8 and all(d is not None and math.floor(d + 0.5) <= 2 for d in durations), durations
    assert all(t.without_reference for t in result.timings)
    assert written(result, packets[0].index) + result.released == len(packets)


@pytest.mark.parametrize(
    ("streams", "packets", "last"),
    [
        # The video's first keyframe at 9.6 s, past the limit of the segment the audio opened at
        # 7.04 s (as in the test below), ends the input: the last segment is 9.0 s to its end.
        ([VIDEO, AUDIO], timed([(864000 - 54000, Packet(0, True, 864000, 864000, 3000))] + audio_at(0, 810000)),
         (9.0, (864000 + 3000) / 90000 - 9.0)),
        # The reference's first packet at 2.6 s, past the limit of the segment the second audio
        # stream opened at 0 s, whose audio ends at 1 s.
        ([AUDIO, SECOND_AUDIO], timed(audio_at(0, 90000, index=2)) + [Packet(1, True, 234000, 234000, AUDIO_FRAME)],
         (1.0, (234000 + AUDIO_FRAME) / 90000 - 1.0)),
    ],
    ids=["first-video-keyframe", "first-reference-packet"],
)
def test_an_input_ending_on_a_reference_packet_past_the_limit_ends_where_that_packet_ends(
    streams: list[StreamInfo], packets: list[Packet], last: tuple[float, float]
) -> None:
    result = run(streams, packets, "2")
    assert result.cuts[-1] == (packets[-1].pts, True, False)
    assert (result.timings[-1].start_s, result.timings[-1].duration_s) == pytest.approx(last)


def test_a_first_keyframe_past_the_limit_of_a_segment_opened_on_audio_is_cut_on() -> None:
    # Audio from 0 s, the video's first keyframe at 9.6 s muxed 0.6 s ahead of the audio: the
    # audio gave up waiting for it and cuts segments on its own clock; the keyframe comes 2.56 s
    # after the start of the segment open then (7.04 s). That segment ends where its audio ends
    # (9.0 s), and the keyframe opens the next one, which starts there.
    first = 864000
    video = [(ts - 54000, Packet(0, ts == first, ts, ts, 3000)) for ts in range(first, 14 * 90000, 3000)]
    result = run([VIDEO, AUDIO], timed(video + audio_at(0, 14 * 90000)), "2")
    assert result.cuts[3] == (first, True, False)
    assert (result.timings[2].start_s, result.timings[2].duration_s) == pytest.approx((7.04, 1.96))
    assert result.timings[3].start_s == pytest.approx(9.0)
    assert all(t.duration_s is not None and t.duration_s < 2.5 for t in result.timings), result.timings
