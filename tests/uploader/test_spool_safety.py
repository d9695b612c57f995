"""The spool's own failures, with real daemons: one daemon per spool directory (a lock), the spool
removed or replaced while running, a damaged page at start and mid-run. Each ends with one line
and an exit code, never a traceback, and nothing is acknowledged that a restart would not find."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol import Ack, IndexMessage
from tests.support.daemon import Client, UploaderDaemon, legit_message, place_segment
from tests.support.net import LOOPBACK
from tests.support.viewer import wait_for
from uploader.cli import EXIT_CONFIG, EXIT_SPOOL
from uploader.spool import SPOOL_FILE_NAME

PAGE_BYTES = 4096  # SQLite's default page size, the spool's


_started: list[UploaderDaemon] = []


@pytest.fixture(autouse=True)
def _kill_daemons() -> Iterator[None]:
    yield
    while _started:
        _started.pop().kill()


def _daemon(tmp_path: Path, segments: Path) -> UploaderDaemon:
    """hls-uploadd on ``tmp_path/uploadd/spool``, storing into ``tmp_path/www``; killed after the test."""
    store = f"file://{tmp_path / 'www'}"
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--store", store])
    _started.append(daemon)
    return daemon


def _serving(tmp_path: Path, segments: Path, source: Path, count: int) -> UploaderDaemon:
    """A started daemon, with segments 1..``count`` of the stream ``legit`` in ``segments``."""
    for number in range(1, count + 1):
        place_segment(source, segments, "legit", number)
    return _daemon(tmp_path, segments).start()


def _assert_stopped_by_the_spool(daemon: UploaderDaemon, reason: str) -> None:
    """The daemon exited 3 on its own, with one ERROR line giving ``reason``, and no traceback."""
    assert daemon.proc is not None
    code = daemon.proc.wait(60)
    daemon.kill()  # closes its pipe
    log = daemon.log()
    assert code == EXIT_SPOOL, log
    stops = [line for line in log.splitlines() if "nothing more is acknowledged" in line]
    assert len(stops) == 1 and " ERROR " in stops[0] and reason in stops[0], log
    assert "Traceback" not in log


def _run_on_spool(spool: Path) -> subprocess.CompletedProcess[str]:
    """hls-uploadd started on ``spool`` that is expected to exit at once."""
    command = [sys.executable, "-m", "uploader", "--listen", f"{LOOPBACK}:0", "--spool-dir", str(spool),
               "--any-bucket"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def damage_pages(path: Path) -> None:
    """Overwrite every page after the first (the header and schema) with bytes no page holds."""
    size = path.stat().st_size
    assert size > PAGE_BYTES, "the spool has no page to damage"
    with open(path, "r+b") as file:
        for offset in range(PAGE_BYTES, size, PAGE_BYTES):
            file.seek(offset)
            file.write(b"\xa5" * PAGE_BYTES)
        file.flush()
        os.fsync(file.fileno())


def _not_acknowledged(client: Client, message: IndexMessage) -> bool:
    """Whether the daemon answers ``message`` with anything but OK: an ERR, or closing the
    connection as it stops."""
    try:
        return not isinstance(client.send(message), Ack)
    except ConnectionError:
        return True


def _checkpoint(path: Path) -> None:
    """Move what the write-ahead log holds into the database file, as SQLite does on its own."""
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def test_a_second_daemon_on_the_same_spool_exits_2_naming_the_first_pid(
    tmp_path: Path, segments_dir: Path
) -> None:
    first = _daemon(tmp_path, segments_dir).start()
    try:
        assert first.proc is not None
        second = _run_on_spool(first.spool_dir)
        assert second.returncode == EXIT_CONFIG
        line = _one_line(second.stderr)
        assert f"PID {first.proc.pid}" in line and str(first.spool_dir) in line
        assert second.stdout == ""  # it never listened
    finally:
        assert first.stop() == 0
    # The lock goes with its holder: the next daemon starts.
    _daemon(tmp_path, segments_dir).start().stop()


def _remove_directory(spool: Path, scratch: Path) -> None:
    shutil.rmtree(spool)


def _replace_file(spool: Path, scratch: Path) -> None:
    shutil.copyfile(spool / SPOOL_FILE_NAME, scratch / "copy")
    os.replace(scratch / "copy", spool / SPOOL_FILE_NAME)


@pytest.mark.parametrize(("fault", "reason"), [(_remove_directory, "is gone"),
                                               (_replace_file, "was replaced by another file")])
def test_the_spool_removed_or_replaced_while_running_stops_the_daemon_before_any_ok(
    fault: Callable[[Path, Path], None], reason: str, tmp_path: Path, segments_dir: Path, segment_source: Path
) -> None:
    daemon = _serving(tmp_path, segments_dir, segment_source, 2)
    with daemon.connect() as client:
        assert client.send(legit_message(segments_dir, "bucket", 1)) == Ack(1)
        fault(daemon.spool_dir, tmp_path)
        assert _not_acknowledged(client, legit_message(segments_dir, "bucket", 2))
    _assert_stopped_by_the_spool(daemon, reason)


def test_a_damaged_page_is_found_at_start_with_one_line(
    tmp_path: Path, segments_dir: Path, segment_source: Path
) -> None:
    daemon = _serving(tmp_path, segments_dir, segment_source, 1)
    with daemon.connect() as client:
        assert client.send(legit_message(segments_dir, "bucket", 1, end=True)) == Ack(1)
    assert daemon.stop() == 0
    spool_file = daemon.spool_dir / SPOOL_FILE_NAME
    _checkpoint(spool_file)
    damage_pages(spool_file)
    done = _run_on_spool(daemon.spool_dir)
    assert done.returncode == EXIT_SPOOL
    line = _one_line(done.stderr)
    assert "is damaged" in line and str(spool_file) in line and "move it aside" in line


def test_a_page_damaged_mid_run_stops_the_daemon_with_one_line(
    tmp_path: Path, segments_dir: Path, segment_source: Path
) -> None:
    daemon = _serving(tmp_path, segments_dir, segment_source, 2)
    spool_file = daemon.spool_dir / SPOOL_FILE_NAME
    playlist = tmp_path / "www/bucket/legit/legit.m3u8"
    with daemon.connect() as client:
        assert client.send(legit_message(segments_dir, "bucket", 1)) == Ack(1)
        wait_for(playlist.exists, message="the first playlist")
        _checkpoint(spool_file)
        damage_pages(spool_file)
        # Another writer's commit: the daemon's SQLite reads its pages from the file again.
        with sqlite3.connect(spool_file, isolation_level=None) as other:
            other.execute("PRAGMA user_version=2")
        other.close()
        assert _not_acknowledged(client, legit_message(segments_dir, "bucket", 2))
    _assert_stopped_by_the_spool(daemon, "is damaged")


@pytest.mark.parametrize("damage", ["not a database", "truncated"])
def test_a_spool_file_that_is_no_database_is_refused_at_start(tmp_path: Path, damage: str) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    content = b"x" * 10_000 if damage == "not a database" else b"SQLite format 3\0" + b"\0" * 84
    (spool / SPOOL_FILE_NAME).write_bytes(content)
    done = _run_on_spool(spool)
    assert done.returncode == EXIT_SPOOL, done.stderr
    assert "is damaged" in _one_line(done.stderr)
