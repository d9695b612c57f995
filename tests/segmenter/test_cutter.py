"""The cut rule without media: synthetic packet sequences through the pure Cutter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from segmenter.cutter import (
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


@pytest.mark.parametrize("gop_s, segment_s", [(4, "3"), (5, "2"), (10, "2"), (3, "2"), (2.5, "6")])
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
    result = run([VIDEO, AUDIO], packets, "2")
    assert not any(t.discontinuity for t in result.timings)
    assert not result.dropped and not result.released
    written = sorted(item for segment in result.segments for item in segment)
    assert written == sorted((p.index, p.pts) for p in packets)
    durations = [t.duration_s for t in result.timings]
    assert all(d is not None and d < 2.5 for d in durations), durations
    assert sum(durations) == pytest.approx(20.0, abs=0.05)  # type: ignore[arg-type]
    # While the video pauses, segments are cut on audio and hold only audio.
    assert any(segment and all(index == 1 for index, _ in segment) for segment in result.segments)


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


def test_backward_jump_starts_a_discontinuity_with_audio_that_jumped_first() -> None:
    first = av_packets(20)
    second = av_packets(20, start=1000)
    # The next file's first audio packets come before its first video packet.
    audio_first = [p for p in second[:8] if p.index == 1]
    rest = [p for p in second if p not in audio_first]
    result = run([VIDEO, AUDIO], first + audio_first + rest, "6")
    flags = [t.discontinuity for t in result.timings]
    assert flags.count(True) == 1
    jump_segment = flags.index(True)
    assert first_video_pts(result.segments[jump_segment]) == 1000
    # The held audio went into the new segment, nothing of it was lost.
    assert [pts for index, pts in result.segments[jump_segment] if index == 1][: len(audio_first)] == [
        p.pts for p in audio_first
    ]
    assert not result.dropped and not result.released
    # The segment before the jump ends at its own last packet.
    assert result.timings[jump_segment - 1].duration_s == pytest.approx(2.0)
    # The grid restarts at the jump: next cuts 6 s after it.
    assert first_video_pts(result.segments[jump_segment + 1]) == 1000 + 6 * 90000


def test_backward_jump_with_old_audio_arriving_after_the_cut() -> None:
    first = av_packets(12)
    second = av_packets(12, start=1000)
    tail = [p for p in first[-6:] if p.index == 1][-2:]
    head = [p for p in first if p not in tail]
    result = run([VIDEO, AUDIO], head + [second[0]] + tail + second[1:], "6")
    assert [t.discontinuity for t in result.timings] == [False, False, True, False]
    # The old timeline's straggling audio belongs to a closed segment: dropped, not mixed in.
    assert result.dropped == tail
    new = result.segments[2]
    assert all(pts is not None and pts < 12 * 90000 for _, pts in new)


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


def test_audio_jumping_alone_is_released_not_held_forever() -> None:
    packets = av_packets(20)
    glitched = [
        Packet(p.index, p.key, p.pts + 7 * 90000, p.dts + 7 * 90000, p.duration)  # type: ignore[operator]
        if p.index == 1 and p.pts >= 4 * 90000  # type: ignore[operator]
        else p
        for p in packets
    ]
    result = run([VIDEO, AUDIO], glitched, "6")
    assert not any(t.discontinuity for t in result.timings)
    assert 0 < result.released <= MAX_HELD_PACKETS
    assert len(result.segments) == 4


def test_packets_without_timestamps_do_not_crash_or_cut() -> None:
    packets = av_packets(13)
    packets = [Packet(p.index, p.key, None, None, None) if i % 7 == 3 else p for i, p in enumerate(packets)]
    result = run([VIDEO, AUDIO], [Packet(1, True, None, None, None)] + packets, "6")
    assert [t.duration_s for t in result.timings][:2] == [6.0, 6.0]
    only_pts = [Packet(p.index, p.key, p.pts, None, p.duration) for p in av_packets(13)]
    assert len(run([VIDEO, AUDIO], only_pts, "6").segments) == 3


def test_restart_flags_the_first_segment() -> None:
    result = run([VIDEO, AUDIO], av_packets(13), "6", discontinuity=True)
    assert [t.discontinuity for t in result.timings] == [True, False, False]


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


@pytest.mark.parametrize("keyframes_s, cuts", [
    # One 5-s GOP: two cuts without a keyframe inside it, no sliver before the keyframe at 9 s.
    ((0, 2, 4, 9, 11, 13), [(0, True), (2, True), (4, True), (6.48, False), (8.96, False), (11, True), (13, True)]),
    # The keyframe at 8 s lost.
    ((0, 2, 4, 6, 10, 12, 14), [(0, True), (2, True), (4, True), (6, True), (8.48, False), (10, True), (12, True), (14, True)]),
    # Keyframes every 1.96 s: each one a frame or more before the grid, every one cut on.
    (tuple(round(k * 1.96, 2) for k in range(8)), [(round(k * 1.96, 2), True) for k in range(8)]),
])
def test_where_segments_are_cut_at_segment_duration_2(keyframes_s: tuple[float, ...], cuts: list) -> None:
    # The examples of docs/segmenter.md, "Cut rule and timing model": 25 fps, no B frames.
    frame = 90000 // 25
    cutter = Cutter([VIDEO], Fraction(2))
    got = []
    for n in range(25 * 15):
        ts = n * frame
        key = any(abs(ts - k * 90000) < frame / 2 for k in keyframes_s)
        if cutter.feed(0, key, ts, ts, frame) is Action.CUT:
            got.append((round(ts / 90000, 2), cutter.on_keyframe))
    assert got == cuts


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
