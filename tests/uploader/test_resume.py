"""A stream's state read back from its playlist and metadata (uploader/resume.py): what a daemon
writes, another reads back as the same state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from uploader.playlist import PlaylistOptions, PlaylistType, media_playlist
from uploader.resume import (
    STATE_METADATA,
    UnreadablePlaylist,
    follows,
    new_run,
    segment_name,
    state_metadata,
    stored_state,
)
from uploader.stream import RenditionInfo, StreamState, with_failure, with_segment

PREFIX = "https://cdn.example/live/"


def grown(count: int, *, keep: int | None = 3, gap_at: frozenset[int] = frozenset(), end: bool = False) -> StreamState:
    """A stream after ``count`` segments of 2 to 2.5 s, a failed one before each of ``gap_at``."""
    state = StreamState()
    for number in range(1, count + 1):
        if number in gap_at:
            state = with_failure(state, promised_s=2, end=False)
        state = with_segment(
            state, uri=f"{PREFIX}seg-{number:05d}.ts", duration_s=2.0 + (number % 3) * 0.25, promised_s=3,
            discontinuity=False, end=end and number == count, keep=keep, size_bytes=100_000 + number,
            independent=True, info=RenditionInfo("avc1.64001f,mp4a.40.2", "1280x720", 25.0, 2_000_000),
            key=f"live/seg-{number:05d}.ts",
        ).state
    return state


def read_back(state: StreamState, options: PlaylistOptions, metadata: dict[str, str] | None = None) -> StreamState:
    return stored_state(media_playlist(state, options), state_metadata(state) if metadata is None else metadata,
                        uri_of=str, key_of=lambda name: f"live/{name}", version='"v2"')


def without_sizes(state: StreamState) -> StreamState:
    """The state as a playlist can carry it: segment sizes are not written anywhere."""
    return replace(state, segments=tuple(replace(s, size_bytes=None) for s in state.segments), version='"v2"')


@pytest.mark.parametrize("count, gaps, end", [(1, (), False), (7, (3, 6), False), (12, (2,), True), (5, (), True)])
def test_a_live_playlist_reads_back_as_the_state_it_was_made_from(count: int, gaps: tuple[int, ...], end: bool) -> None:
    state = grown(count, gap_at=frozenset(gaps), end=end)
    assert read_back(state, PlaylistOptions(window=3)) == without_sizes(state)


def test_an_event_playlist_reads_back_whole() -> None:
    state = grown(9, keep=None, gap_at=frozenset({4}))
    assert read_back(state, PlaylistOptions(window=3, playlist_type=PlaylistType.EVENT)) == without_sizes(state)


def test_a_pending_gap_and_the_measured_rates_come_from_the_metadata() -> None:
    state = with_failure(grown(4), promised_s=3, end=False)
    back = read_back(state, PlaylistOptions(window=3))
    assert back.pending_discontinuity and back.peak_bps == state.peak_bps and back.total_bits == state.total_bits
    # Without metadata (a local directory), the playlist alone: the figures are measured afresh.
    bare = read_back(state, PlaylistOptions(window=3), metadata={})
    assert not bare.pending_discontinuity and bare.peak_bps == 0 and bare.info == RenditionInfo()
    assert [replace(s, key=None) for s in back.segments] == list(bare.segments)
    assert bare.next_media_sequence == state.next_media_sequence
    assert bare.longest_playlist_s == pytest.approx(sum(s.duration_s for s in state.segments))
    # Unreadable fields are the same as none (the playlist is still this program's).
    for garbage in ("{", "[1]", '{"peak_bps": "many", "pending": 1}', '{"peak_bps": 1e999}', '{"peak_bps": NaN}',
                    '{"peak_bps": -5}', '{"peak_bps": ' + "9" * 400 + "}", '{"frame_rate": NaN, "bandwidth": Infinity}'):
        read = read_back(state, PlaylistOptions(window=3), metadata={STATE_METADATA: garbage})
        assert read.peak_bps == 0 and read.info.frame_rate is None and read.info.declared_bandwidth is None


def test_a_playlist_another_tool_wrote_is_read_with_its_uris_and_none_of_its_objects_to_delete() -> None:
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:500\n"
            "#EXTINF:4.0,\nhttps://other.example/x/chunk_500.ts\n#EXTINF:4.0,\nchunk_501.ts\n")
    read = stored_state(text, {}, uri_of=str, key_of=lambda name: f"live/{name}", version='"f"')
    assert [(s.media_sequence, s.uri, s.key) for s in read.segments] == [
        (500, "https://other.example/x/chunk_500.ts", None), (501, "chunk_501.ts", None)]
    assert read.next_media_sequence == 502 and read.target_duration_s == 4


def test_the_metadata_is_short_ascii() -> None:
    (value,) = state_metadata(grown(3)).values()
    assert value.isascii() and len(value) < 400


def test_signed_uris_are_read_back_as_their_file_names() -> None:
    assert segment_name("https://b.s3.amazonaws.com/live/seg-00001.ts?X-Amz-Signature=ab%2Fc&X-Amz-Expires=60") \
        == "seg-00001.ts"
    assert segment_name("seg-00002.ts") == "seg-00002.ts"


@pytest.mark.parametrize("text, reason", [
    ("", "#EXTM3U"),
    ("<html>gone</html>", "#EXTM3U"),
    ("#EXTM3U\n#EXTINF:2,\na.ts\n", "TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "no EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:two\n", "not an integer"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:x\n", "not an integer"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "not a decimal"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:nan,\na.ts\n", "not a decimal"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:inf,\na.ts\n", "not a decimal"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:0\n", "at least 1"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:-3\n", "at least 1"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-7\n", "at least 0"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1_0\n", "not an integer"),
])
def test_an_object_that_is_no_playlist_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(UnreadablePlaylist, match=reason):
        stored_state(text, {}, uri_of=str, key_of=str, version='"x"')


def test_a_huge_value_is_not_quoted_whole() -> None:
    with pytest.raises(UnreadablePlaylist) as caught:
        stored_state("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1" + "x" * 10_000_000 + ",\na.ts\n", {}, uri_of=str,
                     key_of=str, version='"x"')
    assert len(str(caught.value)) < 200


def test_a_version_follows_its_own_earlier_ones_and_never_another_writers() -> None:
    four, five = grown(4), grown(5)
    assert follows(five, four) and follows(four, four) and not follows(four, five)
    signed_again = replace(four, segments=tuple(replace(s, uri=s.uri + "?X-Amz-Signature=f") for s in four.segments))
    assert follows(four, signed_again) and follows(five, signed_again)
    theirs = with_segment(four, uri=f"{PREFIX}other-00005.ts", duration_s=2.0, promised_s=3, discontinuity=False,
                          end=False, keep=3).state
    assert not follows(five, theirs)  # another segment under media sequence 5
    ended = replace(four, ended=True)
    assert follows(ended, ended) and not follows(five, ended) and not follows(four, ended)
    assert not follows(replace(five, target_duration_s=9), four)
    assert not follows(replace(five, discontinuity_sequence=four.discontinuity_sequence - 1), four)


def test_a_new_run_continues_the_numbering_of_an_ended_stream() -> None:
    ended = grown(6, gap_at=frozenset({5}), end=True)
    fresh = new_run(replace(ended, version='"e"'))
    assert fresh.next_media_sequence == 7 and fresh.pending_discontinuity and not fresh.ended
    assert fresh.discontinuity_sequence == ended.discontinuity_sequence + 1  # seg 5's tag left with it
    assert fresh.segments == () and fresh.target_duration_s is None and fresh.version == '"e"'
    after = with_segment(fresh, uri="x.ts", duration_s=2.0, promised_s=2, discontinuity=False, end=False, keep=3).state
    assert after.segments[0].media_sequence == 7 and after.segments[0].discontinuity
