"""The master playlist (pure), the alignment check (pure) and measured bandwidth."""

from __future__ import annotations

import dataclasses

import m3u8

from tests.support.rfc8216 import master_playlist_problems
from uploader.alignment import AlignmentTracker
from uploader.master import Program, Variant, master_playlist, needs_upload, sorted_variants, variant
from uploader.stream import RenditionInfo, StreamState, segment_bps, with_segment


def published(sizes_and_durations: list[tuple[int, float]], info: RenditionInfo, *, independent: bool = True) -> StreamState:
    state = StreamState()
    for number, (size, duration) in enumerate(sizes_and_durations, start=1):
        state = with_segment(state, uri=f"s-{number}.ts", duration_s=duration, promised_s=2, discontinuity=False,
                             end=False, keep=5, size_bytes=size, independent=independent, info=info).state
    return state


LOW = RenditionInfo("avc1.42c00d,mp4a.40.2", "320x240", 25.0, None)
HIGH = RenditionInfo("avc1.64001f,mp4a.40.2", "1280x720", 29.97, 3_000_000)


def test_measured_peak_and_average() -> None:
    state = published([(25_000, 2.0), (40_000, 2.0), (10_000, 1.0)], LOW)
    assert state.peak_bps == 160_000  # 40000 B * 8 / 2 s
    assert state.average_bps == round(75_000 * 8 / 5.0)
    assert segment_bps(1, 3.0) == 3  # rounded up: BANDWIDTH is an upper bound


def test_the_peak_is_over_sets_of_half_to_one_and_a_half_target_durations() -> None:
    """RFC 8216 4.3.4.2: a short segment (the last of a stream, one cut short by an encoder that
    died) counts together with its neighbours, not alone: alone, its keyframe over a fraction of
    a second would make BANDWIDTH several times what any viewer needs."""
    state = published([(50_000, 2.0), (50_000, 2.0), (30_000, 0.3)], LOW)
    assert state.peak_bps == 278_261  # (50000 + 30000) B * 8 / 2.3 s, rounded up; alone: 800000
    state = published([(30_000, 0.3), (50_000, 2.0)], LOW)
    assert state.peak_bps == 800_000  # a first segment alone, before any set qualifies: an upper bound
    state = published([(50_000, 2.0), (90_000, 3.2)], LOW)  # longer than 1.5 x 2 s: measured alone
    assert state.peak_bps == 225_000


def test_master_text_sorted_with_every_attribute() -> None:
    high = variant("high.m3u8", published([(500_000, 2.0)] * 2, HIGH))  # two: evidence of independence
    low = variant("low.m3u8", published([(30_000, 2.0), (34_000, 2.0)], LOW))
    assert high is not None and low is not None
    text = master_playlist((high, low))
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=136000,AVERAGE-BANDWIDTH=128000,CODECS="avc1.42c00d,mp4a.40.2",'
        "RESOLUTION=320x240,FRAME-RATE=25.000\nlow.m3u8\n"
        # the declared 3 Mbit/s is above the measured 2 Mbit/s peak: BANDWIDTH stays an upper bound
        '#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2000000,CODECS="avc1.64001f,mp4a.40.2",'
        "RESOLUTION=1280x720,FRAME-RATE=29.970\nhigh.m3u8\n"
    )
    assert master_playlist_problems(text) == []
    parsed = m3u8.loads(text)
    assert parsed.is_variant and [p.stream_info.bandwidth for p in parsed.playlists] == [136_000, 3_000_000]


def test_independent_segments_only_when_every_rendition_says_so() -> None:
    # Three segments each: past the evidence the master waits for, so only what they said counts.
    one = variant("a.m3u8", published([(1000, 2.0)] * 3, LOW))
    other = variant("b.m3u8", published([(1000, 2.0)] * 3, LOW, independent=False))
    assert one is not None and other is not None
    assert "INDEPENDENT" not in master_playlist((one, other))
    assert variant("c.m3u8", StreamState()) is None  # no playlist yet: not named


def test_when_the_master_goes_out_again() -> None:
    a = Variant("a.m3u8", 100_000, 90_000, "avc1.42c00d", "320x240", 25.0, True, False)
    b = dataclasses.replace(a, uri="b.m3u8", bandwidth=300_000)
    assert not needs_upload(None, (a,))  # one rendition is its own playlist
    assert needs_upload(None, (a, b))
    assert not needs_upload((a, b), (dataclasses.replace(a, bandwidth=109_000), b))  # noise
    assert needs_upload((a, b), (dataclasses.replace(a, bandwidth=111_000), b))
    assert needs_upload((a, b), (a, dataclasses.replace(b, ended=True)))
    assert needs_upload((a, b), (a, dataclasses.replace(b, resolution="640x480")))
    c = dataclasses.replace(a, uri="c.m3u8")
    assert needs_upload((a, b), sorted_variants([a, b, c]))


def test_a_rendition_with_no_measured_segment_is_left_out_however_low_its_rate() -> None:
    unmeasured = with_segment(StreamState(), uri="s-1.ts", duration_s=2.0, promised_s=2, discontinuity=False,
                              end=False, keep=5, independent=True, info=LOW).state
    assert unmeasured.published_any and variant("a.m3u8", unmeasured) is None  # no size: no BANDWIDTH to give
    trickle = variant("b.m3u8", published([(1, 8.0)], LOW))  # 8 bits over 8 s
    assert trickle is not None and trickle.bandwidth == 1


def test_the_master_goes_out_again_when_a_rendition_ends() -> None:
    # Two segments each, so that the ending segment changes nothing else (independence included).
    low, high = published([(30_000, 2.0)] * 2, LOW), published([(500_000, 2.0)] * 2, HIGH)
    before = sorted_variants([v for v in (variant("low.m3u8", low), variant("high.m3u8", high)) if v])
    ended = with_segment(high, uri="s-3.ts", duration_s=2.0, promised_s=2, discontinuity=False, end=True,
                         keep=5, size_bytes=500_000, independent=True, info=HIGH).state
    after = sorted_variants([v for v in (variant("low.m3u8", low), variant("high.m3u8", ended)) if v])
    assert len(before) == len(after) == 2
    assert [dataclasses.replace(v, ended=False) for v in after] == list(before)
    assert needs_upload(before, after)


def test_an_average_bandwidth_appearing_or_moving_by_exactly_the_tolerance() -> None:
    a = Variant("a.m3u8", 100_000, None, "avc1.42c00d", "320x240", 25.0, True, False)
    b = dataclasses.replace(a, uri="b.m3u8", bandwidth=300_000)
    assert not needs_upload((a, b), (a, b))
    measured = dataclasses.replace(a, average_bandwidth=90_000)
    assert needs_upload((a, b), (measured, b))  # an average now known
    assert needs_upload((measured, b), (a, b))  # and gone again
    assert not needs_upload((a, b), (dataclasses.replace(a, bandwidth=110_000), b))  # 10% is still noise


def test_alignment_names_the_drifting_rendition() -> None:
    tracker = AlignmentTracker(memory=4)
    assert tracker.observe("low.m3u8", 7, 14.0, 25.0) == []  # the first heard of: the reference
    assert tracker.observe("mid.m3u8", 7, 14.04, 25.0) == []  # one frame: fine
    [warning] = tracker.observe("high.m3u8", 7, 14.5, 25.0)
    assert warning.startswith("rendition high.m3u8 drifts: its segment 7 starts at 14.500 s, +0.500 s from low.m3u8")
    assert tracker.observe("high.m3u8", 8, None, 25.0) == []  # no start: nothing to compare
    # The reference arriving after the others still names the other one.
    assert tracker.observe("high.m3u8", 9, 18.3, 25.0) == []
    [warning] = tracker.observe("low.m3u8", 9, 18.0, 25.0)
    assert warning.startswith("rendition high.m3u8 drifts: its segment 9")
    for number in range(10, 15):
        tracker.observe("low.m3u8", number, float(number), 25.0)
    assert tracker.observe("high.m3u8", 7, 99.0, 25.0) == []  # forgotten: bounded memory


def test_one_frame_of_drift_is_allowed_at_the_renditions_own_frame_rate() -> None:
    tracker = AlignmentTracker()
    assert tracker.observe("low.m3u8", 1, 10.0, 50.0) == []
    [warning] = tracker.observe("high.m3u8", 1, 10.03, 50.0)  # more than one frame (0.02 s) at 50 fps
    assert warning.startswith("rendition high.m3u8 drifts: its segment 1")
    assert tracker.observe("low.m3u8", 2, 12.0, 50.0) == []
    assert tracker.observe("high.m3u8", 2, 12.08, 10.0) == []  # one frame at 10 fps, the longer of the two
    assert tracker.observe("low.m3u8", 3, 14.0, None) == []
    assert tracker.observe("high.m3u8", 3, 14.03, None) == []  # no frame rate reported: one frame at 25 fps


def test_a_drifting_rendition_is_named_once_not_again_for_each_rendition_after_it() -> None:
    tracker = AlignmentTracker()
    assert tracker.observe("low.m3u8", 7, 14.0, 25.0) == []
    assert len(tracker.observe("high.m3u8", 7, 14.5, 25.0)) == 1
    assert tracker.observe("mid.m3u8", 7, 14.0, 25.0) == []


def test_the_last_memory_segment_numbers_are_all_still_compared() -> None:
    tracker = AlignmentTracker(memory=4)
    for number in range(1, 5):
        tracker.observe("low.m3u8", number, 2.0 * number, 25.0)
    [warning] = tracker.observe("high.m3u8", 1, 2.5, 25.0)  # the oldest of the four it remembers
    assert warning.startswith("rendition high.m3u8 drifts: its segment 1")


def test_a_rendition_changed_and_changed_back_needs_no_upload_and_a_lost_master_goes_out_again() -> None:
    low = Variant("low.m3u8", 300_000, None, None, None, None, False, False)
    high = Variant("high.m3u8", 900_000, None, None, None, None, False, False)
    program = Program([low, high])
    assert program.update("low.m3u8", low)  # never uploaded yet
    program.uploaded(program.variants())
    moved = dataclasses.replace(low, bandwidth=600_000)
    assert program.update("low.m3u8", moved)
    assert not program.update("low.m3u8", low)  # back as uploaded: nothing to upload
    assert program.update("high.m3u8", dataclasses.replace(high, ended=True))
    assert not program.update("high.m3u8", high)
    program.lost()  # the bucket was deleted and made again
    assert not program.ever_uploaded and program.update("low.m3u8", low)
