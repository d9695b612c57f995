"""The cost of the spool's integrity check at start (PRAGMA quick_check, uploader/spool.py).

    python benchmarks/spool_check.py [--messages 100000 1000000] [--drop-caches]

For each size, builds a spool holding that many queued messages (real encoded index messages,
spread over 100 streams; a backlog that size is what an S3 outage of hours leaves), then times
Spool.open as the daemon does it (lock, open, quick_check, schema), first with the page cache as
the build left it or, with --drop-caches (root; it empties the whole machine's cache), cold; then
warm; and PRAGMA quick_check alone, warm. Prints the database size and the seconds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol import IndexMessage, encode_message  # noqa: E402
from uploader.spool import SPOOL_FILE_NAME, Spool  # noqa: E402

STREAMS = 100


def build(directory: Path, messages: int) -> Path:
    """A spool in ``directory`` with ``messages`` queued messages; returns its database file."""
    Spool.open(directory).close()
    path = directory / SPOOL_FILE_NAME
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    rows = []
    for n in range(messages):
        stream = n % STREAMS
        message = IndexMessage(
            index=f"stream-{stream}.m3u8", output_directory=f"/srv/hls/channel-{stream}/", segment_duration=6,
            output_prefix=f"seg-{stream}", http_prefix="", first_segment=1, last_segment=n // STREAMS + 1, end=False,
            bucket="live-bucket", key_prefix=f"channel-{stream}", duration=6.006, codecs="avc1.64001f,mp4a.40.2",
            resolution="1280x720", frame_rate=25.0,
        )
        rows.append(("live-bucket", f"channel-{stream}", f"stream-{stream}.m3u8", encode_message(message), 0, 0, 0,
                     "queued", time.time()))
    db.executemany(
        "INSERT INTO messages (bucket, key_prefix, idx, line, epoch, starts_epoch, end_only, state, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(action) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--drop-caches", action="store_true", help="time the first open with a cold page cache")
    args = parser.parse_args()
    for messages in args.messages:
        with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as temp:
            directory = Path(temp) / "spool"
            path = build(directory, messages)
            size_mb = path.stat().st_size / 1e6

            def check() -> None:
                db = sqlite3.connect(path)
                assert db.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
                db.close()

            cold = args.drop_caches and drop_caches()
            open_cold = timed(lambda: Spool.open(directory).close())
            warm_open = timed(lambda: Spool.open(directory).close())
            warm_check = timed(check)
            print(f"{messages:>9} queued messages, {size_mb:7.1f} MB: Spool.open "
                  f"{open_cold:.2f} s ({'cold' if cold else 'cache not dropped'}), {warm_open:.2f} s warm; "
                  f"quick_check alone {warm_check:.2f} s warm")


if __name__ == "__main__":
    main()
