"""Group commit: calls queued while a commit runs share the next one; results only after it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from protocol import IndexMessage
from tests.support.messages import ORIGINAL_MESSAGE
from uploader.spool import Queued, Spool, SpoolError, SpoolThread, _transaction

MESSAGE = dataclasses.replace(ORIGINAL_MESSAGE, last_segment=1, duration=9.96)


def message(stream: int, last: int) -> IndexMessage:
    return dataclasses.replace(MESSAGE, key_prefix=f"stream{stream:04d}", last_segment=last)


class CountingCommits:
    """Counts COMMITs on the spool's connection (trace callback) to see calls share one."""

    def __init__(self, spool: Spool) -> None:
        self.commits = 0
        spool._db.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            self.commits += 1


def test_concurrent_calls_share_commits_and_all_are_durable(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    counter = CountingCommits(spool)
    thread = SpoolThread(spool)

    async def main() -> list[Queued]:
        return await asyncio.gather(*(thread.call(Spool.enqueue, spool, message(s, n))
                                      for s in range(20) for n in (1, 2, 3)))

    results = asyncio.run(main())
    thread.close()
    assert results == [Queued.NEW] * 60
    assert counter.commits < 60  # grouped
    reopened = Spool.open(tmp_path / "spool")
    try:
        assert reopened.queued_count() == 60
    finally:
        reopened.close()


def test_a_failing_call_undoes_only_its_own_writes(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    thread = SpoolThread(spool)

    def half_then_fail(target: Spool) -> None:
        with _transaction(target._db):
            target._db.execute("INSERT INTO streams (bucket, key_prefix, idx) VALUES ('x', 'y', 'z.m3u8')")
            raise sqlite3.IntegrityError("boom")

    async def main() -> list[object]:
        return await asyncio.gather(
            thread.call(Spool.enqueue, spool, message(1, 1)),
            thread.call(half_then_fail, spool),
            thread.call(Spool.enqueue, spool, message(2, 1)),
            return_exceptions=True,
        )

    first, failed, last = asyncio.run(main())
    thread.close()
    assert first == last == Queued.NEW
    assert isinstance(failed, sqlite3.IntegrityError)
    reopened = Spool.open(tmp_path / "spool")
    try:
        assert reopened.queued_count() == 2
        assert reopened._db.execute("SELECT count(*) FROM streams WHERE bucket='x'").fetchone()[0] == 0
    finally:
        reopened.close()


def test_a_closed_spool_thread_refuses_calls(tmp_path: Path) -> None:
    thread = SpoolThread(Spool.open(tmp_path / "spool"))
    thread.close()
    with pytest.raises(RuntimeError):
        asyncio.run(thread.call(Spool.queued_count, thread.spool))


def test_spool_error_from_a_call_reaches_its_caller(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    thread = SpoolThread(spool)

    def broken(target: Spool) -> None:
        raise SpoolError("disk full")

    with pytest.raises(SpoolError):
        asyncio.run(thread.call(broken, spool))
    thread.close()


def test_the_spool_s_own_connection_syncs_fully(tmp_path: Path) -> None:
    # The pragma is per connection: read it on the connection that commits the messages.
    spool = Spool.open(tmp_path / "spool")
    try:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        spool.close()


def test_no_call_of_a_group_is_answered_before_its_commit_and_a_failed_commit_fails_them_all(
    tmp_path: Path,
) -> None:
    # A real failing COMMIT: a deferred foreign key left dangling fails the transaction only at
    # COMMIT time. Every call grouped with it must then fail, and none of its writes remain.
    spool = Spool.open(tmp_path / "spool")
    db = spool._db
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TEMP TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    thread = SpoolThread(spool)
    gate = threading.Event()

    def dangling(target: Spool) -> None:
        target._db.execute("INSERT INTO child VALUES (1)")  # fails the COMMIT, not this statement

    async def main() -> list[object]:
        blocker = thread.call(gate.wait, 10)  # holds the thread: the calls below queue up as one group
        grouped = [thread.call(Spool.enqueue, spool, message(s, 1)) for s in range(5)]
        grouped.insert(2, thread.call(dangling, spool))
        waiting = asyncio.ensure_future(asyncio.gather(*grouped, return_exceptions=True))
        await asyncio.sleep(0.2)
        gate.set()
        await blocker
        return await waiting

    results = asyncio.run(main())
    thread.close()
    assert all(isinstance(result, SpoolError) for result in results), results
    reopened = Spool.open(tmp_path / "spool")
    try:
        assert reopened.queued_count() == 0
    finally:
        reopened.close()
