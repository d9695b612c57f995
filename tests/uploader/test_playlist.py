"""The playlist writer and the stream state it renders, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.rfc8216 import History, media_playlist_problems
from uploader.master import Variant, master_playlist
from uploader.playlist import PlaylistOptions, PlaylistType, format_duration, media_playlist, should_publish
from uploader.stream import (
    PublishedSegment,
    StreamEnded,
    StreamState,
    first_kept,
    refilling,
    rounded_seconds,
    segment_bps,
    segment_name_of,
    stream_label,
    with_end,
    with_failure,
    with_segment,
    without_lost,
)

from .original_rule import comparable, ruby_index

PREFIX = "http://cdn.example.net/stream0001/"
LIVE = PlaylistOptions(window=5)


def publish(numbers: range | list[int], *, duration: float | None = None, promised: int = 10,
            keep: int | None = 5, state: StreamState | None = None, end_at: int | None = None) -> StreamState:
    state = state or StreamState()
    for number in numbers:
        state = with_segment(
            state,
            uri=f"{PREFIX}sample_128k-{number:05d}.ts",
            duration_s=duration if duration is not None else float(promised),
            promised_s=promised,
            discontinuity=False,
            end=number == end_at,
            keep=keep,
        ).state
    return state


@pytest.mark.parametrize("last", range(1, 13))
def test_window_matches_the_original_rule(last: int) -> None:
    text = media_playlist(publish(range(1, last + 1)), LIVE)
    assert comparable(text) == ruby_index(10, "sample_128k", PREFIX, 1, last)
    assert text.splitlines()[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"]
    assert all(line.endswith(",") for line in text.splitlines() if line.startswith("#EXTINF:"))
    assert "#EXT-X-ENDLIST" not in text


def test_exact_text_of_a_live_window() -> None:
    state = publish(range(1, 8), duration=2.002, promised=2, end_at=7)
    assert media_playlist(state, LIVE) == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        + "".join(f"#EXTINF:2.002,\n{PREFIX}sample_128k-{n:05d}.ts\n" for n in range(3, 8))
        + "#EXT-X-ENDLIST\n"
    )


def test_relative_uris_when_http_prefix_is_empty() -> None:
    state = with_segment(StreamState(), uri="a-00001.ts", duration_s=4, promised_s=4, discontinuity=False,
                         end=False, keep=5).state
    assert media_playlist(state, LIVE).splitlines()[-1] == "a-00001.ts"


def test_window_option_is_honoured() -> None:
    text = media_playlist(publish(range(1, 11), keep=3), PlaylistOptions(window=3))
    assert "#EXT-X-MEDIA-SEQUENCE:8" in text
    assert text.count("#EXTINF") == 3


@pytest.mark.parametrize("kind", [PlaylistType.EVENT, PlaylistType.VOD])
def test_event_and_vod_keep_every_segment(kind: PlaylistType) -> None:
    options = PlaylistOptions(window=5, playlist_type=kind)
    state = publish(range(1, 13), keep=None, end_at=12)
    text = media_playlist(state, options)
    assert f"#EXT-X-PLAYLIST-TYPE:{kind.value.upper()}" in text
    assert "#EXT-X-MEDIA-SEQUENCE:1" in text
    assert text.count("#EXTINF") == 12


def test_vod_goes_out_only_when_complete() -> None:
    vod = PlaylistOptions(window=5, playlist_type=PlaylistType.VOD)
    assert not should_publish(publish(range(1, 3), keep=None), vod)
    assert should_publish(publish(range(1, 3), keep=None, end_at=2), vod)
    assert should_publish(publish(range(1, 3)), LIVE)


def test_target_duration_is_fixed_by_the_first_segment_and_covers_rounding() -> None:
    state = publish([1], duration=10.6, promised=10)
    assert state.target_duration_s == 11  # round(10.6) > the promised 10
    state = publish([2, 3], duration=9.2, state=state)
    assert state.target_duration_s == 11  # never lowered
    assert "#EXT-X-TARGETDURATION:11" in media_playlist(state, LIVE)


def test_a_longer_segment_keeps_the_target_and_is_listed_with_an_error() -> None:
    # RFC 8216 6.2.1: EXT-X-TARGETDURATION never changes; the segment that breaks the segmenter's
    # promise is listed with its real duration (media is never dropped) and reported.
    state = publish([1, 2], duration=4.0, promised=4)
    transition = with_segment(state, uri="x-00003.ts", duration_s=6.4, promised_s=4, discontinuity=False,
                              end=False, keep=5)
    assert transition.state.target_duration_s == 4
    assert transition.over_target == (
        "EXTINF 6.4 s rounds to 6 s, over EXT-X-TARGETDURATION 4 s (RFC 8216 4.3.3.1); listed anyway, but"
        " players may stall: the segmenter must cut segments of at most 4 s")
    text = media_playlist(transition.state, LIVE)
    assert "#EXT-X-TARGETDURATION:4\n" in text and "#EXTINF:6.4,\nx-00003.ts" in text
    later = with_segment(transition.state, uri="x-00004.ts", duration_s=4.0, promised_s=6, discontinuity=False,
                         end=False, keep=5)
    assert later.over_target is None and later.state.target_duration_s == 4  # a new promise changes nothing


@pytest.mark.parametrize(("seconds", "rounded"), [(2.5, 3), (3.5, 4), (2.49, 2), (0.1, 0), (10.0, 10)])
def test_rounding_is_half_up(seconds: float, rounded: int) -> None:
    assert rounded_seconds(seconds) == rounded


def test_failed_segment_leaves_a_gap_free_sequence_and_a_discontinuity() -> None:
    state = publish([1, 2, 3])
    state = with_failure(state, promised_s=10, end=False)  # segment 4 never listed
    state = publish([5, 6], state=state)
    text = media_playlist(state, LIVE)
    assert "sample_128k-00004.ts" not in text
    assert "#EXT-X-MEDIA-SEQUENCE:1" in text
    assert [s.media_sequence for s in state.segments] == [1, 2, 3, 4, 5]
    lines = text.splitlines()
    assert lines[lines.index("#EXT-X-DISCONTINUITY") + 2].endswith("-00005.ts")
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:0" in text


def test_discontinuity_sequence_counts_tags_that_slid_out() -> None:
    state = publish([1, 2])
    state = with_segment(state, uri="r-00001.ts", duration_s=10, promised_s=10, discontinuity=True, end=False,
                         keep=5).state
    assert "#EXT-X-DISCONTINUITY\n#EXTINF:10,\nr-00001.ts" in media_playlist(state, LIVE)
    state = publish(range(3, 7), state=state)  # 3 + 4 = 7 segments: the tagged 3rd is still listed
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:0" in media_playlist(state, LIVE)
    state = publish([7], state=state)  # now it slides out
    text = media_playlist(state, LIVE)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text and "#EXT-X-DISCONTINUITY\n" not in text


def test_no_discontinuity_before_the_very_first_segment() -> None:
    state = with_failure(StreamState(), promised_s=10, end=False)
    state = publish([2], state=state)
    assert "#EXT-X-DISCONTINUITY\n" not in media_playlist(state, LIVE)


def test_no_segment_is_added_after_the_end() -> None:
    # RFC 8216 6.2.1: after EXT-X-ENDLIST a playlist never changes (the daemon refuses such
    # messages when they arrive; this is the pure core's own guard).
    state = publish([1, 2], end_at=2)
    with pytest.raises(StreamEnded, match="final"):
        publish([1], state=state)
    with pytest.raises(StreamEnded):
        publish([3], state=with_end(publish([1, 2]), promised_s=10))


def test_end_without_a_segment() -> None:
    state = with_end(publish([1, 2]), promised_s=10)
    assert media_playlist(state, LIVE).endswith("-00002.ts\n#EXT-X-ENDLIST\n")


@pytest.mark.parametrize(("seconds", "text"), [(10, "10"), (2.002, "2.002"), (3.5, "3.5"), (1 / 3, "0.333333")])
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_playlists_parse_with_the_m3u8_library() -> None:
    m3u8 = pytest.importorskip("m3u8")
    state = publish(range(1, 9), duration=3.96, promised=4, end_at=8)
    text = media_playlist(state, LIVE)
    assert media_playlist_problems(text) == []
    parsed = m3u8.loads(text)
    assert parsed.media_sequence == 4
    assert parsed.target_duration == 4
    assert parsed.is_endlist
    assert [segment.duration for segment in parsed.segments] == [3.96] * 5


def test_a_stream_whose_only_segment_failed_at_the_end_still_gets_a_complete_playlist() -> None:
    # The publisher PUTs this playlist so that players see the ENDLIST (RFC 8216 4.3.3.4).
    state = with_failure(StreamState(), promised_s=6, end=True)
    text = media_playlist(state, LIVE)
    assert text == ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1\n"
                    "#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-ENDLIST\n")
    assert media_playlist_problems(text) == []
    assert with_end(StreamState(), promised_s=4).target_duration_s == 4


def test_a_failure_or_an_end_never_changes_a_target_duration_already_published() -> None:
    # RFC 8216 6.2.1: EXT-X-TARGETDURATION must not change in a live playlist.
    state = publish([1], duration=10.6, promised=10)
    assert with_failure(state, promised_s=10, end=False).target_duration_s == 11
    assert with_end(state, promised_s=10).target_duration_s == 11
    ended = with_end(state, promised_s=10)
    assert with_failure(ended, promised_s=10, end=False).ended  # a failure does not reopen the stream


def test_a_segment_that_rounds_to_the_target_is_within_it() -> None:
    state = publish([1], duration=4.0, promised=4)
    transition = with_segment(state, uri="x-00002.ts", duration_s=4.4999, promised_s=4, discontinuity=False,
                              end=False, keep=5)
    assert transition.over_target is None and transition.state.target_duration_s == 4
    transition = with_segment(state, uri="x-00002.ts", duration_s=4.5, promised_s=4, discontinuity=False,
                              end=False, keep=5)
    assert transition.over_target is not None and "rounds to 5 s" in transition.over_target


def test_a_daemon_restarted_with_a_smaller_window_lists_only_the_new_window() -> None:
    # The spool kept 12 segments (an EVENT run, or a larger --window); a live playlist lists the
    # last 5 and counts the discontinuity tags that no longer show (RFC 8216 6.2.2).
    state = StreamState()
    for number in range(1, 13):
        state = with_segment(state, uri=f"{PREFIX}sample_128k-{number:05d}.ts", duration_s=10, promised_s=10,
                             discontinuity=number in (3, 7), end=False, keep=None).state
    text = media_playlist(state, LIVE)
    assert media_playlist_problems(text) == []
    lines = text.splitlines()
    assert "#EXT-X-MEDIA-SEQUENCE:8" in lines and "#EXT-X-DISCONTINUITY-SEQUENCE:2" in lines
    assert [line for line in lines if line.endswith(".ts")] == [f"{PREFIX}sample_128k-{n:05d}.ts" for n in range(8, 13)]


def test_only_measured_segments_count_towards_the_bit_rates() -> None:
    state = with_segment(StreamState(), uri="a-00001.ts", duration_s=4.0, promised_s=4, discontinuity=False,
                         end=False, keep=5).state  # no size: an old segmenter
    state = with_segment(state, uri="a-00002.ts", duration_s=0.0, promised_s=4, discontinuity=False,
                         end=False, keep=5, size_bytes=500).state
    state = with_segment(state, uri="a-00003.ts", duration_s=0.5, promised_s=4, discontinuity=False,
                         end=False, keep=5, size_bytes=1000).state
    assert (state.average_bps, state.peak_bps) == (16_000, 16_000)
    assert segment_bps(1000, 0.0) == 0


def test_a_segment_that_does_not_say_it_is_independent_clears_the_flag() -> None:
    state = with_segment(StreamState(), uri="a-00001.ts", duration_s=4.0, promised_s=4, discontinuity=False,
                         end=False, keep=5, independent=True).state
    assert state.independent
    state = with_segment(state, uri="a-00002.ts", duration_s=4.0, promised_s=4, discontinuity=False,
                         end=False, keep=5).state
    assert not state.independent


def test_streams_are_named_in_logs_by_bucket_prefix_and_index() -> None:
    assert stream_label(("b", "live/cam", "index.m3u8")) == "b/live/cam/index.m3u8"
    assert stream_label(("b", "", "index.m3u8")) == "b/index.m3u8"


def test_short_segments_keep_three_target_durations_listed() -> None:
    # SEGMENT_DURATION 0.5: the target is 1 and five segments last 2.5 s, under the 3 s that
    # RFC 8216 6.2.2 requires after a removal: the window grows to six.
    history = History()
    state = StreamState()
    for number in range(1, 21):
        state = publish([number], duration=0.5, promised=1, state=state)
        history.add(media_playlist(state, LIVE))
        assert len(state.segments) == min(number, 6)
        assert media_playlist(state, LIVE).count("#EXTINF") == len(state.segments)  # state and playlist agree
    assert history.problems == []
    assert history.last is not None and history.last.duration == 3 and history.last.media_sequence == 15


def test_the_window_grows_only_as_far_as_three_target_durations_need() -> None:
    segment = PublishedSegment
    six = [segment(n, f"s{n}", d, False) for n, d in enumerate([2, 2, 2, 0.5, 0.5, 2], start=1)]
    assert first_kept(six, 3, 2) == 1  # the last 3 last 3 s, 4 last 5 s, 5 last 7 s >= 3 x 2
    assert first_kept(six, 3, 1) == 3  # the last 3 last 3 s = 3 x 1: the window is enough
    assert first_kept(six, 1, 1) == 3  # 2 s, 2.5 s, then 3 s
    assert first_kept(six, 5, 1) == 1  # the count decides
    assert first_kept(six, 1, 3) == 0  # 9 s in all, just 3 x 3: nothing can go
    assert first_kept(six[:4], 1, 3) == 0  # 6.5 s in all, under 9 s: nothing can go
    assert first_kept(six[:1], 5, 2) == 0 and first_kept((), 5, 2) == 0
    # The sum is of the durations as written: 0.9999996 is written "1".
    assert first_kept([segment(n, f"s{n}", 0.9999996, False) for n in range(4)], 1, 1) == 1


@settings(max_examples=60)
@given(durations=st.lists(st.floats(min_value=0.04, max_value=2.49), min_size=1, max_size=40),
       window=st.integers(min_value=3, max_value=8))
def test_every_live_history_keeps_three_target_durations(durations: list[float], window: int) -> None:
    options = PlaylistOptions(window=window)
    history = History()
    state = StreamState()
    for number, duration in enumerate(durations, start=1):
        state = with_segment(state, uri=f"s-{number}.ts", duration_s=duration, promised_s=2,
                             discontinuity=number % 7 == 0, end=False, keep=window).state
        history.add(media_playlist(state, options))
        assert state.segments == state.segments[first_kept(state.segments, window, 2):]  # kept == listed
    assert history.problems == []


def test_an_event_playlist_with_a_discontinuity_is_only_appended_to() -> None:
    # RFC 8216 6.2.1: EXT-X-DISCONTINUITY-SEQUENCE would be a header line added mid-stream.
    event = PlaylistOptions(window=5, playlist_type=PlaylistType.EVENT)
    history = History("event")
    state = StreamState()
    for number in range(1, 9):
        state = with_segment(state, uri=f"e-{number}.ts", duration_s=2.0, promised_s=2, discontinuity=number == 4,
                             end=number == 8, keep=None).state
        history.add(media_playlist(state, event))
    assert history.problems == []
    text = media_playlist(state, event)
    assert "DISCONTINUITY-SEQUENCE" not in text and text.count("#EXT-X-DISCONTINUITY\n") == 1


# Lost objects (a bucket deleted and made again): dropped from the front only (issue 14 A).


def test_lost_segments_are_dropped_from_the_front_with_those_before_them() -> None:
    before = publish(range(1, 11), promised=1)  # lists 6..10 (5 x 1 s)
    history = History()
    history.add(media_playlist(before, LIVE))
    assert [s.media_sequence for s in without_lost(before, {7}).segments] == [8, 9, 10]  # 3 s: enough
    assert should_publish(without_lost(before, {7}), LIVE)
    after = without_lost(before, {6, 8})
    assert [s.media_sequence for s in after.segments] == [9, 10]
    assert not after.pending_discontinuity  # 9 and 10 still follow each other
    assert refilling(after) and not should_publish(after, LIVE)  # 2 s, under 3 x 1 s
    grown = publish([11], promised=1, state=after)
    assert should_publish(grown, LIVE)
    history.add(media_playlist(grown, LIVE))
    assert history.problems == []


def test_a_window_lost_whole_waits_for_three_target_durations_and_marks_the_gap() -> None:
    before = publish(range(1, 9), promised=2)
    history = History()
    history.add(media_playlist(before, LIVE))
    after = without_lost(before, {s.media_sequence for s in before.segments})
    assert after.segments == () and after.pending_discontinuity and refilling(after)
    state = after
    for number in (9, 10):
        state = publish([number], promised=2, state=state)
        assert not should_publish(state, LIVE), number  # 2 s, 4 s: under 3 x 2 s
    state = publish([11], promised=2, state=state)
    assert should_publish(state, LIVE)
    text = media_playlist(state, LIVE)
    assert [s.media_sequence for s in state.segments] == [9, 10, 11] and state.segments[0].discontinuity
    history.add(text)
    assert history.problems == []
    assert "#EXT-X-DISCONTINUITY\n" in text


def test_dropping_counts_the_discontinuity_tags_that_go() -> None:
    state = publish(range(1, 4), promised=1)
    state = with_failure(state, promised_s=1, end=False)
    state = publish(range(5, 10), promised=1, state=state)  # 5 is tagged
    tagged = [s.media_sequence for s in state.segments if s.discontinuity]
    assert tagged
    after = without_lost(state, {tagged[0]})
    assert after.discontinuity_sequence == state.discontinuity_sequence + 1
    assert without_lost(state, {999}) == state  # not listed: nothing to drop


def test_refilling_is_never_true_for_a_stream_that_lost_nothing() -> None:
    for count in range(1, 12):
        assert not refilling(publish(range(1, count + 1), promised=1, duration=0.4))
    assert not refilling(StreamState())
    ended = with_end(without_lost(publish(range(1, 9), promised=2), {8}), promised_s=2)
    assert not refilling(ended) and should_publish(ended, LIVE)  # an end goes out, short or not


def test_segment_name_of_a_listed_uri() -> None:
    assert segment_name_of(f"{PREFIX}sample-00001.ts", PREFIX) == "sample-00001.ts"
    assert segment_name_of("sample-00001.ts", "") == "sample-00001.ts"
    assert segment_name_of("http://other/sample-00001.ts", PREFIX) is None
    assert segment_name_of(PREFIX, PREFIX) is None


def test_the_discontinuity_sequence_counts_the_tags_of_exactly_the_segments_lost_with_the_window_front() -> None:
    before = StreamState()
    for number in range(1, 6):  # tags on 3 (dropped with the lost one) and 4 (kept)
        before = with_segment(before, uri=f"s-{number}.ts", duration_s=2.0, promised_s=2,
                              discontinuity=number in (3, 4), end=False, keep=5).state
    after = without_lost(before, {3})
    assert [s.media_sequence for s in after.segments] == [4, 5]
    assert after.discontinuity_sequence == before.discontinuity_sequence + 1


def test_a_stream_whose_first_segment_failed_is_not_refilling() -> None:
    # Nothing was ever listed, so nothing was lost from the window: its (empty) playlist may go out.
    failed = with_failure(StreamState(), promised_s=2, end=False)
    assert not failed.published_any and not refilling(failed) and should_publish(failed, LIVE)


def signed_state() -> StreamState:
    segments = tuple(PublishedSegment(n, f"live-{n:05d}.ts", 2.0, False, key=f"show/live-{n:05d}.ts")
                     for n in range(1, 4))
    return StreamState(target_duration_s=2, segments=segments, next_media_sequence=4)


def test_a_playlist_lists_each_segment_by_the_uri_given_for_it_and_the_master_each_rendition() -> None:
    text = media_playlist(signed_state(), PlaylistOptions(window=3), lambda s: f"https://signed/{s.key}?sig={s.media_sequence}")
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        f"https://signed/show/live-{n:05d}.ts?sig={n}" for n in range(1, 4)]
    assert "\nlive-00001.ts\n" in media_playlist(signed_state(), PlaylistOptions(window=3))  # public: as recorded
    variants = tuple(Variant(name, bandwidth, None, None, None, None, independent=False, ended=False)
                     for name, bandwidth in (("low.m3u8", 100_000), ("high.m3u8", 300_000)))
    master = master_playlist(variants, lambda name: f"https://signed/show/{name}?sig")
    assert [line for line in master.splitlines() if not line.startswith("#")] == [
        "https://signed/show/low.m3u8?sig", "https://signed/show/high.m3u8?sig"]
