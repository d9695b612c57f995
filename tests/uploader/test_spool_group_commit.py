"""Group commit: calls queued while a commit runs share the next one; results only after it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from protocol import IndexMessage
from tests.support.messages import ORIGINAL_MESSAGE
from uploader import spool as spool_module
from uploader.spool import SPOOL_FILE_NAME, Queued, Spool, SpoolBroken, SpoolError, SpoolThread, _transaction

from .test_spool_safety import damage_pages

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


# -- reads on the caller's thread -------------------------------------------------------------------

def test_a_read_sees_each_call_that_returned_and_no_transaction_in_progress(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    thread = SpoolThread(spool)
    first = message(1, 1)
    inside, release = threading.Event(), threading.Event()

    def queue_and_wait(target: Spool) -> None:
        with _transaction(target._db):
            target.enqueue(message(1, 2))
            inside.set()
            release.wait(10)

    async def main() -> None:
        assert thread.read(Spool.next_queued, first.stream_id) is None
        await thread.call(Spool.enqueue, spool, first)
        item = thread.read(Spool.next_queued, first.stream_id)
        assert item is not None and item.message == first
        assert not thread.read(Spool.has_newer_queued, item)
        pending = thread.call(queue_and_wait, spool)
        waiting = asyncio.ensure_future(pending)
        await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
        assert not thread.read(Spool.has_newer_queued, item)  # not committed yet
        release.set()
        await waiting
        assert thread.read(Spool.has_newer_queued, item)

    try:
        asyncio.run(main())
    finally:
        release.set()
        thread.close()


def test_a_read_cannot_write_and_says_why_it_failed(tmp_path: Path) -> None:
    thread = SpoolThread(Spool.open(tmp_path / "spool"))
    try:
        with pytest.raises(SpoolError, match="spool read failed: attempt to write a readonly database"):
            thread.read(lambda spool: spool._db.execute("DELETE FROM messages"))
        assert thread.broken is None
    finally:
        thread.close()


def test_a_damaged_page_met_by_a_read_stops_the_spool_once(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    spool = Spool.open(path)
    told: list[SpoolBroken] = []
    thread = SpoolThread(spool, on_broken=told.append)

    async def main() -> None:
        for stream in range(40):
            await thread.call(Spool.enqueue, spool, message(stream, 1))
        assert thread.read(Spool.queued_count) == 40
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        damage_pages(path / SPOOL_FILE_NAME)
        # Another connection's commit: the reader's pages are read from the file again.
        other = sqlite3.connect(path / SPOOL_FILE_NAME, isolation_level=None)
        other.execute("PRAGMA user_version=2")
        other.close()
        with pytest.raises(SpoolBroken, match="is damaged"):
            thread.read(Spool.queued_count)
        with pytest.raises(SpoolBroken, match="is damaged"):
            await thread.call(Spool.enqueue, spool, message(99, 1))

    try:
        asyncio.run(main())
    finally:
        thread.close()
    assert len(told) == 1 and "is damaged" in str(told[0])


@pytest.mark.parametrize("fault", ["removed", "replaced"])
@pytest.mark.parametrize("reader", ["opened", "first-read"])
def test_a_read_of_a_spool_whose_file_went_stops_the_spool_without_making_a_new_one(
    tmp_path: Path, fault: str, reader: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "spool" / SPOOL_FILE_NAME
    spool = Spool.open(tmp_path / "spool")
    if reader == "first-read":  # the reader could not be opened with the spool: it is at the first read
        def busy(self: Spool) -> Spool:
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(Spool, "reader", busy)
    told: list[SpoolBroken] = []
    thread = SpoolThread(spool, on_broken=told.append)
    monkeypatch.undo()
    try:
        path.unlink()
        if fault == "replaced":  # another database at the path: never read in place of the spool
            other = sqlite3.connect(path)
            other.execute("CREATE TABLE messages (id INTEGER)")
            other.close()
        with pytest.raises(SpoolBroken, match="is gone" if fault == "removed" else "was replaced"):
            thread.read(Spool.queued_count)
        assert path.exists() == (fault == "replaced")
        assert len(told) == 1
        with pytest.raises(SpoolBroken):
            asyncio.run(thread.call(Spool.queued_count, spool))
    finally:
        thread.close()


def test_a_message_queued_lately_is_read_back_without_a_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "REMEMBERED_MESSAGES", 2)
    spool = Spool.open(tmp_path / "spool")
    thread = SpoolThread(spool)
    queued = [message(stream, 1) for stream in range(3)]

    async def main() -> None:
        for one in queued:
            await thread.call(Spool.enqueue, spool, one)

    try:
        asyncio.run(main())
        read_back = [thread.read(Spool.next_queued, one.stream_id) for one in queued]
    finally:
        thread.close()
    assert [item.message if item else None for item in read_back] == queued
    assert read_back[0].message is not queued[0]  # forgotten: parsed from its line
    assert read_back[1].message is queued[1] and read_back[2].message is queued[2]


def test_a_reader_is_never_opened_on_another_file_than_the_spool_s(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool")
    try:
        path = tmp_path / "spool" / SPOOL_FILE_NAME
        os.replace(path, tmp_path / "moved")
        sqlite3.connect(path).close()
        with pytest.raises(SpoolBroken, match="was replaced"):
            spool.reader()
    finally:
        spool.close()
