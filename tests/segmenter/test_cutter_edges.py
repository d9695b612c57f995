"""The cut rule at its edges: the program's clock around a jump, stragglers of tracks that were
silent before it, tracks that jumped alone and are released, and segment 1 opened without the
first keyframe. Synthetic packet sequences through the pure Cutter, as in test_cutter.py."""

from __future__ import annotations

import pytest

from segmenter.cutter import DISCONTINUITY_GAP_S, MAX_HELD_PACKETS, SegmentTiming
from tests.segmenter.test_cutter import (
    AUDIO,
    AUDIO_20MS,
    SECOND_AUDIO,
    VIDEO,
    Packet,
    audio_at,
    av_packets,
    run,
    timed,
    video_at,
    written,
)

GAP = DISCONTINUITY_GAP_S * 90000
AAC_FRAME = 1920  # 1024 samples at 48 kHz, in 90-kHz ticks: a frame a little longer than AUDIO_20MS


# -- stragglers after a jump --------------------------------------------------------------------


def silent_track_straggling(case: str) -> tuple[list, list[Packet], list[Packet]]:
    """Video and audio on one timeline for 12 s, then a new timeline whose first keyframe comes
    before two packets of the old one from a track that was silent before the jump: the audio,
    paused from 3 s, resuming on the old timeline (just before the jump, or DISCONTINUITY_GAP_S
    and more after its last packet), or a second audio track starting just before the jump.
    Returns the streams, the packets and those two stragglers."""
    old_base = 600 * 90000 if case.endswith("backward") else 0
    new_base = 0 if case.endswith("backward") else 600 * 90000
    old_end = old_base + 12 * 90000
    streams = [VIDEO, AUDIO]
    old = video_at(old_base, old_end)
    if case == "starting-late":
        streams = [VIDEO, AUDIO, SECOND_AUDIO]
        old += audio_at(old_base, old_end)
        straggler_index, resume = 2, old_end - 2 * AUDIO_20MS
        new_second = audio_at(new_base, new_base + 6 * 90000, index=2)
    else:
        paused = audio_at(old_base, old_base + 3 * 90000)
        old += paused
        straggler_index, new_second = 1, []
        last = paused[-1][0]
        resume = {
            "paused-forward": old_end - 2 * AUDIO_20MS,
            "paused-backward": last + GAP + AUDIO_20MS,
            "paused-exactly-the-gap-backward": last + GAP,
        }[case]
    stragglers = [Packet(straggler_index, True, ts, ts, AUDIO_20MS) for ts in (resume, resume + AUDIO_20MS)]
    new = timed(video_at(new_base, new_base + 6 * 90000) + audio_at(new_base, new_base + 6 * 90000) + new_second)
    return streams, timed(old) + new[:1] + stragglers + new[1:], stragglers


@pytest.mark.parametrize(
    "case",
    [
        # The encoder restarts further on; the audio had paused longer than DISCONTINUITY_GAP_S.
        "paused-forward",
        # The encoder restarts at a lower time: the old timeline's packet is far ahead of the
        # program's clock, which went back with the video, and more than DISCONTINUITY_GAP_S past
        # the audio's own last packet: still the old timeline, not a jump of the audio.
        "paused-backward",
        # A pause of exactly DISCONTINUITY_GAP_S is a pause, whatever the clock.
        "paused-exactly-the-gap-backward",
        # A track whose first packets come after the jump, from the old timeline.
        "starting-late",
    ],
)
def test_old_timeline_packets_of_a_track_silent_before_a_jump_are_dropped_as_stragglers(case: str) -> None:
    streams, packets, stragglers = silent_track_straggling(case)
    result = run(streams, packets, "6")
    new_start = 0.0 if case.endswith("backward") else 600.0
    old_start = 600.0 if case.endswith("backward") else 0.0
    assert [(t.start_s, t.duration_s, t.discontinuity) for t in result.timings] == [
        (old_start, 6.0, False), (old_start + 6, 6.0, False), (new_start, 6.0, True)]
    # Their segment is closed: dropped, not written into the new timeline's.
    assert result.dropped == stragglers
    # Nothing of the new timeline is lost: the track follows the jump with its next packet.
    assert not result.released
    for index in {p.index for p in stragglers}:
        assert written(result, index) == sum(1 for p in packets if p.index == index) - len(stragglers)


# -- the program's clock at a jump ----------------------------------------------------------------


@pytest.mark.parametrize(("extra", "jump"), [(0, False), (1, True)], ids=["the-gap", "one-tick-more"])
@pytest.mark.parametrize("keyframe", ["decoded-before-shown", "pts-only"])
def test_a_gap_after_a_new_timeline_s_first_keyframe_counts_from_its_decoding_time(
    keyframe: str, extra: int, jump: bool
) -> None:
    # Video alone (nothing else keeps the clock) jumps to 600 s, and pauses right after the new
    # timeline's first keyframe: a gap of DISCONTINUITY_GAP_S is missing frames, a longer one a
    # jump (as anywhere, test_cutter.py), counted from the time the keyframe puts the program's
    # clock at: its DTS, two frames before its PTS for an encoder with B-frames; its PTS when it
    # has no DTS (then the jump is seen at the picture before it, which is not a keyframe).
    frame, new = 3000, 600 * 90000
    if keyframe == "decoded-before-shown":
        jump_packets, clock = [Packet(0, True, new + 2 * frame, new, frame)], new
    else:
        jump_packets, clock = [Packet(0, False, new, new, frame), Packet(0, True, new + frame, None, frame)], new + frame
    key_pts = jump_packets[-1].pts
    resume = clock + GAP + extra
    after = [Packet(0, n % 60 == 0, resume + (n + 2) * frame, resume + n * frame, frame) for n in range(90)]
    result = run([VIDEO], av_packets(6, audio=False) + jump_packets + after, "6")
    assert [t.discontinuity for t in result.timings] == [False, True] + ([True] if jump else [False, False])
    # Missing frames stay in the keyframe's segment; a jump closes it after its one picture.
    shown_after_the_gap = resume + 2 * frame
    assert result.timings[1].start_s == key_pts / 90000  # type: ignore[operator]
    assert result.timings[1].duration_s == pytest.approx(
        frame / 90000 if jump else (shown_after_the_gap - key_pts) / 90000)  # type: ignore[operator]


def test_every_track_pausing_exactly_discontinuity_gap_s_right_after_a_jump_is_no_new_jump() -> None:
    # The encoder restarts at a lower time; the new timeline's audio up to 0.3 s comes before its
    # first picture (held, then written into the new segment). Then every track pauses: the audio
    # resumes exactly DISCONTINUITY_GAP_S after its last packet, before the video. A pause, as
    # anywhere (the audio's last packet lies past the clock, which the keyframe put at 0): no
    # new timeline, and none of the audio is lost.
    base = 600 * 90000
    old = timed(video_at(base, base + 12 * 90000) + audio_at(base, base + 12 * 90000))
    ahead = timed(audio_at(0, 27000))
    resume = ahead[-1].dts + GAP  # type: ignore[operator]
    rest = timed(audio_at(resume, resume + 6 * 90000) + video_at(resume + 3000, resume + 6 * 90000))
    packets = old + ahead + [Packet(0, True, 0, 0, 3000)] + rest
    result = run([VIDEO, AUDIO], packets, "6")
    assert [t.discontinuity for t in result.timings] == [False, False, True, False, False]
    assert not result.dropped and not result.released
    assert written(result, 1) == sum(1 for p in packets if p.index == 1)
    # One tick more is a jump of the audio: the video following it makes a new timeline.
    later = [Packet(p.index, p.key, p.pts + 1, p.dts + 1, p.duration) for p in rest]  # type: ignore[operator]
    assert [t.discontinuity for t in run([VIDEO, AUDIO], old + ahead + [Packet(0, True, 0, 0, 3000)] + later,
                                         "6").timings].count(True) == 2


# -- a track that jumped alone, released --------------------------------------------------------


def test_the_packet_releasing_a_track_that_jumped_alone_waits_for_the_segment_its_time_falls_in() -> None:
    # 25-fps video with 2-s GOPs, audio muxed 0.6 s ahead of it, and a second audio track that
    # jumps 7 s ahead alone at 0.4 s. Held for DISCONTINUITY_GAP_S of its own time, it is released
    # when the first audio has filled the segment from 4 s (its packets past 6 s are held for the
    # video's keyframe at 6 s): the releasing packet lands on the program's clock past 6 s, so it
    # is held with them and goes into the segment from 6 s, not into the full one.
    video = video_at(0, 10 * 90000, frame=3600, gop_frames=50)
    audio = [(ts - 54000, p) for ts, p in audio_at(0, 10 * 90000)]
    shift, jump = 7 * 90000, 36000
    second = [(ts, Packet(2, True, ts + shift, ts + shift, p.duration) if ts >= jump else p)
              for ts, p in audio_at(0, 10 * 90000, index=2)]
    result = run([VIDEO, AUDIO, SECOND_AUDIO], timed(video + audio + second), "2")
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(2.0 * k, 2.0) for k in range(5)]
    after_jump = [[pts for index, pts in segment if index == 2 and pts >= jump + shift] for segment in result.segments]
    release = next(ts + shift for ts, _ in second if ts - jump > GAP)
    assert [len(packets) > 0 for packets in after_jump] == [False, False, False, True, True]
    assert after_jump[3][0] == release
    assert result.released == (release - shift - jump) // AUDIO_20MS and not result.dropped


def test_a_last_segment_ends_where_the_packet_releasing_a_track_that_jumped_alone_ends() -> None:
    # The video stops at 3 s; segments are cut on the audio from 4 s. A second audio track, of
    # longer frames, jumps 7 s ahead alone at 4 s, and the input ends on the packet that releases
    # it. That packet lands on the program's clock (the first audio's latest packet) and is the
    # segment's last to end: the segment ends where it ends.
    video = video_at(0, 3 * 90000)
    audio = audio_at(0, 12 * 90000)
    shift, jump = 7 * 90000, 4 * 90000
    second = [(ts, Packet(2, True, ts + (shift if ts >= jump else 0), ts + (shift if ts >= jump else 0), AAC_FRAME))
              for ts in range(0, 12 * 90000, AAC_FRAME)]
    packets = timed(video + audio + second)
    first_held = next(p.dts for p in packets if p.index == 2 and p.dts >= jump + shift)  # type: ignore[operator]
    release = next(i for i, p in enumerate(packets) if p.index == 2 and p.dts - first_held > GAP)  # type: ignore[operator]
    clock = max(p.dts for p in packets[:release] if p.index == 1)  # type: ignore[type-var]
    result = run([VIDEO, AUDIO, SECOND_AUDIO], packets[:release + 1], "2")
    assert [t.start_s for t in result.timings] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert result.timings[-1].duration_s == pytest.approx((clock + AAC_FRAME) / 90000 - 8.0, abs=1e-9)


# -- segment 1 opened without the first keyframe ------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        # 2-ms packets: the MAX_HELD_PACKETS held span exactly one target (2 s) when the packet
        # after them ends the wait.
        180,
        # 1-ms packets: they span half of it.
        90,
    ],
    ids=["exactly-one-target", "less"],
)
def test_segment_one_opened_without_a_keyframe_leaves_out_audio_muxed_later_that_ends_before_it(step: int) -> None:
    # A video stream that sends nothing; audio from 10 s waits for its first keyframe until
    # MAX_HELD_PACKETS are held, then opens segment 1 at the first packet held. A second audio
    # track's packets muxed after that but timed before 10 s: one that ends before segment 1
    # starts is dropped, as audio before a first keyframe is; one that plays into it is kept.
    start = 10 * 90000
    held = timed(audio_at(start, start + (MAX_HELD_PACKETS + 1) * step, step=step))
    before = Packet(2, True, start - 2 * AUDIO_20MS, start - 2 * AUDIO_20MS, AUDIO_20MS)
    into = Packet(2, True, start - AUDIO_20MS // 2, start - AUDIO_20MS // 2, AUDIO_20MS)
    rest = timed(audio_at(start + (MAX_HELD_PACKETS + 1) * step, 14 * 90000, step=step)
                 + audio_at(start, 14 * 90000, index=2))
    result = run([VIDEO, AUDIO, SECOND_AUDIO], held + [before, into] + rest, "2")
    assert [(t.start_s, t.duration_s) for t in result.timings] == [(10.0, 2.0), (12.0, 2.0)]
    assert result.dropped == [before] and not result.released
    assert (2, into.pts) in result.segments[0]
    packets = held + [before, into] + rest
    assert written(result, 1) == sum(1 for p in packets if p.index == 1)
    assert written(result, 2) == sum(1 for p in packets if p.index == 2) - 1


def test_an_input_ending_on_the_untimed_packet_that_opened_segment_one_times_it_by_its_held_packets() -> None:
    # A video stream that sends nothing, 1-ms audio frames: the packet after MAX_HELD_PACKETS held
    # ends the wait for the first keyframe, has no timestamps, and is the input's last. Segment 1
    # holds the held packets: it starts at the first and ends where the last ends.
    held = timed(audio_at(0, MAX_HELD_PACKETS * 90, step=90))
    result = run([VIDEO, AUDIO], held + [Packet(1, True, None, None, None)], "6")
    assert result.cuts == [(None, False, False)]
    assert result.timings == [SegmentTiming(0.0, MAX_HELD_PACKETS * 90 / 90000, False, without_reference=True)]
    assert written(result, 1) == len(held) + 1 and not result.released
