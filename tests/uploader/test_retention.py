"""The pure rules of retention (uploader/retention.py), the segments a live window drops
(stream.with_segment) and the master judged one rendition at a time (master.Program)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from uploader.master import Program, Variant, needs_upload, sorted_variants
from uploader.retention import (
    MAX_DELETION_RETRY_DELAY_S,
    MAX_LEFT_BEHIND,
    Deletion,
    Silence,
    deletions,
    left_behind,
    retry_at,
    silence_verdict,
)
from uploader.stream import PublishedSegment, StreamState, with_segment


def publish(state: StreamState, number: int, duration_s: float = 2.0, keep: int | None = 3) -> tuple[StreamState, tuple[PublishedSegment, ...]]:
    transition = with_segment(state, uri=f"s-{number:05d}.ts", duration_s=duration_s, promised_s=2,
                              discontinuity=False, end=False, keep=keep, key=f"p/s-{number:05d}.ts")
    return transition.state, transition.removed


def test_a_live_window_names_what_it_drops_with_the_objects_written() -> None:
    state = StreamState()
    dropped: list[PublishedSegment] = []
    for number in range(1, 9):
        state, removed = publish(state, number)
        dropped += removed
    assert [s.key for s in dropped] == [f"p/s-{n:05d}.ts" for n in range(1, 6)]
    assert [s.key for s in state.segments] == [f"p/s-{n:05d}.ts" for n in range(6, 9)]
    # Three 2-s segments listed at most: the longest playlist lasted 6 s.
    assert state.longest_playlist_s == 6.0


def test_a_dropped_segment_and_its_deletion_carry_the_size_of_its_object() -> None:
    """The cost sheet's storage: what a deletion frees is the size the segment was PUT with."""
    state = StreamState()
    dropped: list[PublishedSegment] = []
    for number in range(1, 6):
        transition = with_segment(state, uri=f"s-{number}.ts", duration_s=2.0, promised_s=2, discontinuity=False,
                                  end=False, keep=3, key=f"p/s-{number}.ts", size_bytes=1000 + number)
        state = transition.state
        dropped += transition.removed
    assert [s.size_bytes for s in state.segments] == [1003, 1004, 1005]
    assert [(d.key, d.size_bytes) for d in deletions(dropped, longest_playlist_s=6.0, removed_at=0.0,
                                                      allowance_s=0.0)] == [("p/s-1.ts", 1001), ("p/s-2.ts", 1002)]


def test_event_and_vod_drop_nothing() -> None:
    state = StreamState()
    for number in range(1, 20):
        state, removed = publish(state, number, keep=None)
        assert removed == ()
    assert len(state.segments) == 19


def test_the_longest_playlist_is_remembered_when_the_window_shrinks() -> None:
    state = StreamState()
    state, _ = publish(state, 1, 2.0)
    state, _ = publish(state, 2, 2.0)
    state, _ = publish(state, 3, 2.0)
    state, _ = publish(state, 4, 0.5)  # 3 target durations still need the 2-s ones
    assert state.longest_playlist_s == 6.5
    for number in range(5, 12):
        state, _ = publish(state, number, 2.0)
    assert state.longest_playlist_s == 6.5


def test_a_deletion_is_due_after_rfc_8216_6_2_2s_time_plus_the_allowance() -> None:
    segments = [PublishedSegment(1, "a.ts", 2.0, False, "p/a.ts"), PublishedSegment(2, "b.ts", 1.5, False, "p/b.ts")]
    due = deletions(segments, longest_playlist_s=10.0, removed_at=1000.0, allowance_s=30.0)
    assert due == [Deletion("p/a.ts", 1042.0), Deletion("p/b.ts", 1041.5)]


def test_a_segment_whose_object_is_unknown_is_never_deleted() -> None:
    # Recorded by a daemon that did not note the keys it wrote: not provably ours.
    segments = [PublishedSegment(1, "a.ts", 2.0, False)]
    assert deletions(segments, longest_playlist_s=10.0, removed_at=0.0, allowance_s=0.0) == []


def test_a_refused_deletion_backs_off_up_to_a_cap() -> None:
    assert retry_at(100.0, 1) == 101.0
    assert retry_at(100.0, 3) == 104.0
    assert retry_at(100.0, 50) == 100.0 + MAX_DELETION_RETRY_DELAY_S


def test_silence_ends_then_forgets_a_stream() -> None:
    def verdict(**changes: object) -> Silence:
        args = dict(end_queued=False, ended=False, queued=False, quiet_s=100.0, end_after_s=60.0, forget_after_s=300.0)
        args.update(changes)
        return silence_verdict(**args)  # type: ignore[arg-type]

    assert verdict() is Silence.END
    assert verdict(quiet_s=59.0) is Silence.KEEP
    assert verdict(end_after_s=0.0) is Silence.KEEP  # 0: never
    assert verdict(queued=True, quiet_s=10_000.0) is Silence.KEEP  # a store outage is not silence
    assert verdict(end_queued=True) is Silence.KEEP  # its end is on the way
    assert verdict(end_queued=True, ended=True) is Silence.KEEP
    assert verdict(end_queued=True, ended=True, quiet_s=300.0) is Silence.FORGET
    assert verdict(end_queued=True, ended=False, quiet_s=10_000.0) is Silence.KEEP  # not published yet
    assert verdict(end_queued=True, ended=True, quiet_s=10_000.0, forget_after_s=0.0) is Silence.KEEP
    # Exactly at the limit, and limits under a second (the options take any non-negative seconds).
    assert verdict(quiet_s=60.0) is Silence.END
    assert verdict(quiet_s=0.5, end_after_s=0.5) is Silence.END
    assert verdict(end_queued=True, ended=True, quiet_s=0.5, forget_after_s=0.5) is Silence.FORGET


VARIANTS = st.builds(
    Variant,
    uri=st.sampled_from(["a.m3u8", "b.m3u8", "c.m3u8", "d.m3u8"]),
    bandwidth=st.integers(100_000, 130_000),
    average_bandwidth=st.none() | st.integers(90_000, 110_000),
    codecs=st.sampled_from([None, "avc1.64001f"]),
    resolution=st.sampled_from([None, "640x360"]),
    frame_rate=st.none(),
    independent=st.booleans(),
    ended=st.booleans(),
)


@given(st.lists(st.tuples(st.sampled_from(["a.m3u8", "b.m3u8", "c.m3u8", "d.m3u8"]), st.none() | VARIANTS,
                          st.booleans()), max_size=40))
def test_a_program_judged_per_rendition_uploads_when_the_whole_comparison_would(
    steps: list[tuple[str, Variant | None, bool]],
) -> None:
    """``Program.update`` looks at one rendition; ``needs_upload`` compares them all: same verdicts,
    also after an upload that failed (``uploaded`` not called)."""
    program = Program()
    current: dict[str, Variant] = {}
    published: tuple[Variant, ...] | None = None
    for uri, found, upload_succeeds in steps:
        found = dataclasses.replace(found, uri=uri) if found is not None else None
        if found is None:
            current.pop(uri, None)
        else:
            current[uri] = found
        expected = needs_upload(published, sorted_variants(list(current.values())))
        assert program.update(uri, found) == expected
        if expected and upload_succeeds:
            published = program.variants()
            program.uploaded(published)


def _listed(numbers: range, *, prefix: str = "seg", duration_s: float = 2.0, keyed: bool = True) -> list[PublishedSegment]:
    return [PublishedSegment(number, f"{prefix}-{number:05d}.ts", duration_s, False,
                             f"live/one/{prefix}-{number:05d}.ts" if keyed else None) for number in numbers]


def test_the_deletions_a_lost_daemon_had_queued_are_those_just_below_the_window_it_left() -> None:
    # Window 21..25 of 2-s segments, the longest playlist 10 s, an allowance of 60 s: segments
    # that left up to 70 s ago may still wait for deletion, 35 of them at most (each due from now).
    due = left_behind(_listed(range(21, 26)), output_prefix="seg", longest_playlist_s=10.0, allowance_s=60.0,
                      now=1000.0)
    assert [d.key for d in due] == [f"live/one/seg-{n:05d}.ts" for n in range(1, 21)]  # not below 1
    assert {d.due_at for d in due} == {1000.0 + 2.0 + 10.0 + 60.0}
    due = left_behind(_listed(range(101, 106)), output_prefix="seg", longest_playlist_s=10.0, allowance_s=60.0,
                      now=0.0)
    assert [d.key for d in due] == [f"live/one/seg-{n:05d}.ts" for n in range(66, 101)]


def test_nothing_is_left_behind_for_objects_this_program_did_not_write_or_of_another_prefix() -> None:
    kept = {"longest_playlist_s": 10.0, "allowance_s": 0.0, "now": 0.0}
    assert left_behind(_listed(range(5, 10), keyed=False), output_prefix="seg", **kept) == []  # another tool's
    assert left_behind(_listed(range(5, 10), prefix="low"), output_prefix="seg", **kept) == []
    assert left_behind([], output_prefix="seg", **kept) == []
    many = left_behind(_listed(range(5000, 5005), duration_s=0.001), output_prefix="seg", longest_playlist_s=3600.0,
                       allowance_s=0.0, now=0.0)
    assert len(many) == MAX_LEFT_BEHIND
