"""The durable queue: what is queued, what is a re-send, epochs, and state across reopen."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from protocol import IndexMessage
from tests.support.messages import ORIGINAL_MESSAGE
from uploader.spool import Queued, Spool, SpoolError, is_v1
from uploader.stream import StreamState, with_segment

V1 = dataclasses.replace(ORIGINAL_MESSAGE, last_segment=1)


def v1(last: int, **changes: object) -> IndexMessage:
    return dataclasses.replace(V1, last_segment=last, **changes)


def ext(last: int, **changes: object) -> IndexMessage:
    return dataclasses.replace(V1, last_segment=last, duration=9.96, **changes)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    opened = Spool.open(tmp_path / "spool")
    yield opened
    opened.close()


def drain(spool: Spool) -> list[tuple[int, bool, bool]]:
    """(last_segment, starts_epoch, end_only) of every queued item, completing each."""
    seen = []
    while (item := spool.next_queued(V1.stream_id)) is not None:
        seen.append((item.message.last_segment, item.starts_epoch, item.end_only))
        spool.complete(item, spool.load_state(V1.stream_id))
    return seen


def test_startup_message_is_ignored(spool: Spool) -> None:
    assert spool.enqueue(v1(0)) is Queued.IGNORED
    assert spool.queued_count() == 0


def test_messages_queue_in_order_and_keep_their_bytes(spool: Spool) -> None:
    for number in (1, 2, 3):
        assert spool.enqueue(ext(number)) is Queued.NEW
    item = spool.next_queued(V1.stream_id)
    assert item is not None and item.message == ext(1)
    assert drain(spool) == [(1, False, False), (2, False, False), (3, False, False)]


def test_extension_resend_is_idempotent(spool: Spool) -> None:
    for number in (1, 2, 3):
        spool.enqueue(ext(number))
    assert spool.enqueue(ext(2)) is Queued.DUPLICATE
    assert spool.enqueue(ext(3)) is Queued.DUPLICATE
    assert spool.enqueue(ext(4)) is Queued.NEW
    assert [number for number, _, _ in drain(spool)] == [1, 2, 3, 4]


def test_discontinuity_or_v1_restart_starts_an_epoch(spool: Spool) -> None:
    spool.enqueue(v1(1))
    spool.enqueue(v1(2))
    assert spool.enqueue(v1(1)) is Queued.NEW  # an original segmenter restarted
    assert spool.enqueue(ext(2, discontinuity=True)) is Queued.NEW
    assert spool.enqueue(ext(1, discontinuity=True)) is Queued.NEW
    assert spool.enqueue(ext(1)) is Queued.DUPLICATE
    assert drain(spool) == [(1, False, False), (2, False, False), (1, True, False), (2, True, False), (1, True, False)]


def test_end_for_an_already_queued_segment_is_an_end_only_item(spool: Spool) -> None:
    spool.enqueue(ext(1))
    spool.enqueue(ext(2))
    assert spool.enqueue(ext(2, end=True)) is Queued.NEW
    assert spool.enqueue(ext(2, end=True)) is Queued.DUPLICATE
    assert drain(spool) == [(1, False, False), (2, False, False), (2, False, True)]


def test_everything_survives_reopening(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path)
    spool.enqueue(ext(1))
    spool.enqueue(ext(2))
    item = spool.next_queued(V1.stream_id)
    assert item is not None
    state = with_segment(StreamState(), uri="u1", duration_s=9.96, promised_s=10, discontinuity=False, end=False,
                         keep=5).state
    spool.complete(item, state)
    spool.close()  # no checkpoint happens on kill -9 either; WAL replays on open

    reopened = Spool.open(tmp_path)
    assert reopened.load_state(V1.stream_id) == state
    assert reopened.streams_with_work() == [V1.stream_id]
    assert reopened.enqueue(ext(2)) is Queued.DUPLICATE
    assert drain(reopened) == [(2, False, False)]
    reopened.close()


def test_failures_are_kept_with_their_reason(spool: Spool) -> None:
    spool.enqueue(ext(1))
    item = spool.next_queued(V1.stream_id)
    assert item is not None
    spool.complete(item, StreamState(pending_discontinuity=True, target_duration_s=10), failure="gone")
    assert spool.failures() == [(ext(1), "gone")]
    assert spool.queued_count() == 0


def test_window_rows_are_pruned(spool: Spool) -> None:
    state = StreamState()
    for number in range(1, 9):
        spool.enqueue(ext(number))
        item = spool.next_queued(V1.stream_id)
        assert item is not None
        state = with_segment(state, uri=f"u{number}", duration_s=10, promised_s=10, discontinuity=False, end=False,
                             keep=3).state
        spool.complete(item, state)
    assert spool.load_state(V1.stream_id) == state
    assert [s.uri for s in state.segments] == ["u6", "u7", "u8"]


def test_is_v1() -> None:
    assert is_v1(V1)
    assert not is_v1(ext(1))
    assert not is_v1(dataclasses.replace(V1, extras=(("x", "1"),)))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    from uploader.spool import SpoolError

    Spool.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "spool.sqlite3")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(SpoolError, match="schema version 99"):
        Spool.open(tmp_path)


def test_a_run_restarted_from_one_opens_an_epoch_and_its_resend_is_a_duplicate(spool: Spool) -> None:
    # hls-segment flags the first segment of every run; a restart from 1 must not look like re-sends.
    for number in (1, 2, 3):
        assert spool.enqueue(ext(number, discontinuity=number == 1)) is Queued.NEW
    assert spool.enqueue(ext(1, discontinuity=True)) is Queued.NEW
    assert spool.enqueue(ext(1, discontinuity=True)) is Queued.DUPLICATE  # its OK was lost: sent again
    assert spool.enqueue(ext(2)) is Queued.NEW
    assert drain(spool) == [(1, False, False), (2, False, False), (3, False, False), (1, True, False), (2, False, False)]


def test_an_ended_stream_takes_no_new_segment_but_re_sends_stay_duplicates(tmp_path: Path) -> None:
    # RFC 8216 6.2.1: after EXT-X-ENDLIST a playlist never changes. The end is known from the
    # spool alone, so a daemon restarted in between refuses the same.
    spool = Spool.open(tmp_path)
    for number in (1, 2, 3):
        assert spool.enqueue(ext(number, discontinuity=number == 1, end=number == 3)) is Queued.NEW
    spool.close()
    spool = Spool.open(tmp_path)
    assert spool.enqueue(ext(4)) is Queued.ENDED  # the same run, going on
    assert spool.enqueue(ext(4, discontinuity=True)) is Queued.ENDED  # hls-segment restarted in its OUTPUT_DIR
    assert spool.enqueue(ext(1, discontinuity=True)) is Queued.ENDED  # ... or in a new one
    assert spool.enqueue(v1(1)) is Queued.ENDED  # an original segmenter started again
    assert spool.enqueue(ext(2)) is Queued.DUPLICATE  # re-sent after a lost OK
    assert spool.enqueue(ext(3, end=True)) is Queued.DUPLICATE
    assert spool.enqueue(ext(3, discontinuity=True)) is Queued.DUPLICATE
    assert drain(spool) == [(1, False, False), (2, False, False), (3, False, False)]
    spool.close()


def test_an_end_re_sent_for_a_queued_segment_ends_the_stream_too(spool: Spool) -> None:
    spool.enqueue(ext(1))
    spool.enqueue(ext(2))
    assert spool.enqueue(ext(1, end=True)) is Queued.NEW  # an end-only item
    assert spool.enqueue(ext(3)) is Queued.ENDED


def test_every_write_the_spool_refuses_is_a_spool_error(tmp_path: Path) -> None:
    # The daemon's loops (publisher, housekeeping) go on after a SpoolError; a raw sqlite3 error
    # would end them. query_only makes SQLite refuse every write, as a full disk does.
    spool = Spool.open(tmp_path / "spool")
    try:
        spool._db.execute("PRAGMA query_only=1")
        writes = [
            lambda: spool.enqueue(ORIGINAL_MESSAGE),
            lambda: spool.deletion_done(1),
            lambda: spool.deletion_failed(1, 0.0),
            lambda: spool.forget(ORIGINAL_MESSAGE.stream_id),
            lambda: spool.requeue_failed(),
        ]
        for write in writes:
            with pytest.raises(SpoolError, match="spool write failed"):
                write()
    finally:
        spool.close()
