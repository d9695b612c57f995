"""A stream's state read back from its playlist and metadata (uploader/resume.py): what a daemon
writes, another reads back as the same state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from uploader.playlist import PlaylistOptions, PlaylistType, media_playlist
from uploader.resume import STATE_METADATA, UnreadablePlaylist, new_run, segment_name, state_metadata, stored_state
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
                        uri_of=lambda name: PREFIX + name, key_of=lambda name: f"live/{name}", version='"v2"')


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
    assert bare.segments == back.segments and bare.next_media_sequence == state.next_media_sequence
    assert bare.longest_playlist_s == pytest.approx(sum(s.duration_s for s in state.segments))
    # Unreadable or foreign metadata is the same as none.
    for garbage in ("{", "[1]", '{"peak_bps": "many", "pending": 1}'):
        assert read_back(state, PlaylistOptions(window=3), metadata={STATE_METADATA: garbage}).peak_bps == 0


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
    ("#EXTM3U\n#EXT-X-TARGETDURATION:two\n", "not a number"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:x\n", "not a number"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "not a number"),
])
def test_an_object_that_is_no_playlist_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(UnreadablePlaylist, match=reason):
        stored_state(text, {}, uri_of=str, key_of=str, version='"x"')


def test_a_new_run_continues_the_numbering_of_an_ended_stream() -> None:
    ended = grown(6, gap_at=frozenset({5}), end=True)
    fresh, left = new_run(replace(ended, version='"e"'))
    assert left == ended.segments
    assert fresh.next_media_sequence == 7 and fresh.pending_discontinuity and not fresh.ended
    assert fresh.discontinuity_sequence == ended.discontinuity_sequence + 1  # seg 5's tag left with it
    assert fresh.segments == () and fresh.target_duration_s is None and fresh.version == '"e"'
    after = with_segment(fresh, uri="x.ts", duration_s=2.0, promised_s=2, discontinuity=False, end=False, keep=3).state
    assert after.segments[0].media_sequence == 7 and after.segments[0].discontinuity
