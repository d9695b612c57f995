"""A stream's writer as the spool records it: decided in the enqueue transaction (Spool.admit),
kept across a daemon restart, added to a spool an older daemon made."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from protocol import IndexMessage, writer_label
from tests.support.messages import ORIGINAL_MESSAGE
from uploader.ownership import Claim, OwnershipRule
from uploader.spool import SPOOL_FILE_NAME, NotTheWriter, Queued, Spool

A, B = "a" * 32, "b" * 32
RULE = OwnershipRule(takeover_after_s=30.0)
KEY = ORIGINAL_MESSAGE.stream_id


def message(last: int, writer: str | None = A, **changes: object) -> IndexMessage:
    return dataclasses.replace(ORIGINAL_MESSAGE, last_segment=last, duration=9.5, writer=writer, **changes)


def admit(spool: Spool, msg: IndexMessage, at: float, peer: str = "127.0.0.1",  # type: ignore[no-untyped-def]
          may_take_over: bool = False):
    return spool.admit(msg, None, Claim(msg.writer, msg.takeover, peer, at, may_take_over), RULE)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    opened = Spool.open(tmp_path / "spool")
    yield opened
    opened.close()


def owner_row(spool: Spool) -> tuple[object, ...]:
    return spool._db.execute(
        "SELECT writer, writer_peer, writer_seen_at, former_writer FROM streams WHERE bucket=? AND key_prefix=?"
        " AND idx=?", KEY).fetchone()


def test_a_writers_start_up_says_where_the_stream_is_and_its_first_segment_records_it(spool: Spool) -> None:
    first = admit(spool, message(0), 100.0)
    assert (first.queued, first.stream_last) == (Queued.IGNORED, 0)
    for number in (1, 2, 3):
        assert admit(spool, message(number), 100.0 + number).queued is Queued.NEW
    assert owner_row(spool) == (A, "127.0.0.1", 103.0, None)
    again = admit(spool, message(0), 104.0)  # the same writer restarted
    assert (again.queued, again.stream_last, again.took_over) == (Queued.IGNORED, 3, None)


def test_a_second_writer_is_refused_and_nothing_of_it_is_stored(spool: Spool) -> None:
    admit(spool, message(1), 100.0)
    with pytest.raises(NotTheWriter, match=f"written by {writer_label(A)} of peer 127.0.0.1"):
        admit(spool, message(7, B), 101.0, peer="10.0.0.9")
    with pytest.raises(NotTheWriter):
        admit(spool, message(0, B), 101.0)
    assert spool.queued_count() == 1
    assert owner_row(spool) == (A, "127.0.0.1", 100.0, None)


def test_the_owner_is_kept_across_a_daemon_restart(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    admit(spool, message(1), 100.0)
    spool.close()
    spool = Spool.open(tmp_path / "spool")
    try:
        with pytest.raises(NotTheWriter):
            admit(spool, message(2, B), 110.0)
    finally:
        spool.close()


def test_a_takeover_records_the_new_writer_and_the_former(spool: Spool) -> None:
    admit(spool, message(1), 100.0)
    admitted = admit(spool, message(0, B, takeover=True), 101.0, peer="10.0.0.9", may_take_over=True)
    assert admitted.stream_last == 1 and admitted.took_over is not None and admitted.took_over.writer == A
    assert owner_row(spool) == (B, "10.0.0.9", 101.0, A)
    with pytest.raises(NotTheWriter, match=f"was taken over by {writer_label(B)} of peer 10.0.0.9"):
        admit(spool, message(2), 102.0)
    assert admit(spool, message(2, B), 102.0, peer="10.0.0.9").queued is Queued.NEW


def test_a_writers_own_discontinuity_sent_again_is_a_duplicate_and_another_writers_opens_a_run(
    spool: Spool,
) -> None:
    # A segmenter re-sends what a daemon has not confirmed published: its first segment, marked
    # as a discontinuity, must not start the stream over. A new writer's (a wiped OUTPUT_DIR, a
    # takeover) is a new run.
    assert admit(spool, message(1, discontinuity=True), 100.0).queued is Queued.NEW
    for number in (2, 3):
        assert admit(spool, message(number), 100.0).queued is Queued.NEW
    assert admit(spool, message(1, discontinuity=True), 101.0).queued is Queued.DUPLICATE
    assert admit(spool, message(3, discontinuity=True), 101.0).queued is Queued.DUPLICATE
    new_run = message(1, B, discontinuity=True, takeover=True)
    assert admit(spool, new_run, 102.0, may_take_over=True).queued is Queued.NEW
    admit(spool, message(2, B, end=True), 103.0)
    # Once ended, its writer's re-send of a message is still a re-send: OK, nothing added.
    assert admit(spool, message(1, B, discontinuity=True), 104.0).queued is Queued.DUPLICATE


def test_start_up_messages_alone_claim_no_stream(spool: Spool) -> None:
    # A squatter repeating start-up messages for a stream name before its segmenter starts.
    for at in (100.0, 105.0, 110.0):
        assert admit(spool, message(0, B), at, peer="127.0.0.2").queued is Queued.IGNORED
    assert owner_row(spool) == (None, None, None, None)
    # The real writer's start-up and first segment are taken; the stream is its own.
    assert admit(spool, message(0), 111.0).queued is Queued.IGNORED
    assert admit(spool, message(1), 112.0).queued is Queued.NEW
    assert owner_row(spool)[:2] == (A, "127.0.0.1")
    with pytest.raises(NotTheWriter, match="refused as a second writer"):
        admit(spool, message(0, B), 113.0, peer="127.0.0.2")


def test_v1_messages_on_an_owned_live_stream_are_refused_and_work_on_an_unowned_one(spool: Spool) -> None:
    assert admit(spool, message(1, None), 100.0).queued is Queued.NEW
    assert admit(spool, message(2, None), 101.0).queued is Queued.NEW
    assert admit(spool, message(3, A), 102.0).queued is Queued.NEW  # an unowned stream takes a writer
    with pytest.raises(NotTheWriter, match="refused as a second writer"):
        admit(spool, message(4, None), 103.0)


@pytest.mark.parametrize("late", [
    pytest.param(message(0, B, takeover=True), id="takeover"),
    pytest.param(message(0, B), id="start-up-of-another-writer"),
    pytest.param(message(0), id="start-up-of-its-writer"),
    pytest.param(message(1, B, discontinuity=True), id="a-new-run-of-another-writer"),
    pytest.param(message(4, B, discontinuity=True), id="another-writers-segment-after-silence"),
])
def test_an_ended_stream_is_not_reopened(spool: Spool, late: IndexMessage) -> None:
    admit(spool, message(1, discontinuity=True), 100.0)
    admit(spool, message(2), 101.0)
    admit(spool, message(3, end=True), 102.0)
    before = owner_row(spool)
    assert admit(spool, late, 1000.0).queued is Queued.ENDED
    assert owner_row(spool)[0] == before[0] == A
    assert spool.queued_count() == 3


def test_the_daemons_own_end_of_a_silent_stream_needs_no_claim(spool: Spool) -> None:
    admit(spool, message(1), 100.0)
    assert spool.end_silent(KEY, quiet_since=10**12)
    assert spool.queued_count() == 2


def test_a_spool_of_an_older_daemon_gets_the_owner_columns(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    assert spool.enqueue(message(1, None)) is Queued.NEW
    spool.close()
    with sqlite3.connect(tmp_path / "spool" / SPOOL_FILE_NAME) as db:
        for column in ("writer", "writer_peer", "writer_seen_at", "former_writer"):
            db.execute(f"ALTER TABLE streams DROP COLUMN {column}")
    spool = Spool.open(tmp_path / "spool")
    try:
        assert owner_row(spool) == (None, None, None, None)
        assert admit(spool, message(2), 100.0).queued is Queued.NEW
        assert owner_row(spool)[0] == A
    finally:
        spool.close()
