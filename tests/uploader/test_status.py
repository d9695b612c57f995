"""``hls-uploadd status`` (issue 16): the streams of a running daemon's spool, read beside it, and
of the same spool once the daemon stopped; each state (live, blocked, failed, ended) made real."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.daemon import place_segment
from tests.support.s3_errors import S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.spool import SPOOL_FILE_NAME
from uploader.stream import StreamSummary
from uploader.status import status_json, status_line

from .conftest import StartUploader
from .test_correctable import held_lines, listed, s3_error
from .test_daemon import ext_message
from .test_faults import assert_published, send_all


def status(spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uploader", "status", "--spool-dir", str(spool), *args],
                          capture_output=True, text=True, timeout=60)


def by_stream(spool: Path) -> dict[str, dict[str, object]]:
    done = status(spool, "--json")
    assert done.returncode == 0, done.stderr
    return {entry["index"]: entry for entry in json.loads(done.stdout)}


def test_status_reads_each_state_beside_the_running_daemon_and_after_it_stopped(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url, "--bucket", bucket)
        for number in range(1, 4):
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 4), end_at=3)  # index.m3u8: ended
        assert_published(seaweed, bucket, 3)
        with daemon.connect() as client:
            place_segment(segment_source, segments_dir, "live", 1)
            client.send(ext_message(segments_dir, bucket, 1, index="live.m3u8", output_prefix="live"))
            # failed.m3u8: segment 1 listed, segment 2's file never written
            place_segment(segment_source, segments_dir, "gone", 1)
            client.send(ext_message(segments_dir, bucket, 1, index="failed.m3u8", output_prefix="gone"))
            client.send(ext_message(segments_dir, bucket, 2, index="failed.m3u8", output_prefix="gone"))
        wait_for(lambda: "gone-00002.ts failed permanently" in daemon.log(), message="segment 2 failed")
        wait_for(lambda: "seg-00001.ts" in listed(seaweed, bucket), message="index.m3u8 listed")
        wait_for(lambda: by_stream(daemon.spool_dir).get("live.m3u8", {}).get("media_sequence") == 1,
                 message="live.m3u8 published")
        proxy.fail_next(1000, s3_error(403, "AccessDenied"), path_ends="held-00001.ts")
        place_segment(segment_source, segments_dir, "held", 1)
        send_all_to(daemon, segments_dir, bucket, "held.m3u8", "held")
        wait_for(lambda: held_lines(daemon), message="the held stream's ERROR")
        wait_for(lambda: by_stream(daemon.spool_dir).get("held.m3u8", {}).get("state") == "blocked",
                 message="held.m3u8 blocked")

        streams = by_stream(daemon.spool_dir)
        assert {name: entry["state"] for name, entry in streams.items()} == {
            "index.m3u8": "ended", "live.m3u8": "live", "failed.m3u8": "failed", "held.m3u8": "blocked"}
        ended = streams["index.m3u8"]
        assert (ended["media_sequence"], ended["window"], ended["target_duration_s"], ended["queued"],
                ended["failed"]) == (3, 3, 2, 0, 0)
        assert ended["last_segment"] == "seg-00003.ts" and 0 <= ended["last_publish_age_s"] < 60
        assert (streams["failed.m3u8"]["failed"], streams["failed.m3u8"]["media_sequence"]) == (1, 1)
        held = streams["held.m3u8"]
        assert held["queued"] == 1 and held["media_sequence"] == 0 and held["oldest_queued_age_s"] >= 0
        assert "upload of live/one/held-00001.ts refused" in held["held_reason"] and "AccessDenied" in held["held_reason"]

        lines = status(daemon.spool_dir).stdout.splitlines()
        assert len(lines) == 4
        assert lines[0].startswith(f"{bucket}/live/one/failed.m3u8: failed; last gone-00001.ts (media sequence 1) ")
        assert lines[1].startswith(f"{bucket}/live/one/held.m3u8: blocked for ") and "AccessDenied" in lines[1]
        assert "nothing published yet; queued 1 (oldest " in lines[1]
        assert lines[2].startswith(f"{bucket}/live/one/index.m3u8: ended; last seg-00003.ts (media sequence 3) ")
        assert lines[2].endswith("; queued 0; window 3; target 2 s; failed 0")

        assert daemon.stop() == 0
        after = by_stream(daemon.spool_dir)  # a stopped daemon's spool: as it was left
        assert {name: entry["state"] for name, entry in after.items()} == {
            name: entry["state"] for name, entry in streams.items()}


def send_all_to(daemon: object, directory: Path, bucket: str, index: str, prefix: str) -> None:
    with daemon.connect() as client:  # type: ignore[attr-defined]
        client.send(ext_message(directory, bucket, 1, index=index, output_prefix=prefix))


def test_a_restarted_daemon_forgets_holds_until_the_store_refuses_again(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url, "--bucket", bucket)
        proxy.fail_next(1000, s3_error(403, "AccessDenied"), path_ends="seg-00001.ts")
        place_segment(segment_source, segments_dir, "seg", 1)
        send_all(daemon, segments_dir, bucket, range(1, 2), end_at=1)
        wait_for(lambda: by_stream(daemon.spool_dir)["index.m3u8"]["state"] == "blocked", message="blocked")
        assert daemon.stop() == 0
        proxy.clear()
        daemon.start()
        assert_published(seaweed, bucket, 1)
        entry = by_stream(daemon.spool_dir)["index.m3u8"]
        assert (entry["state"], entry["held_since"], entry["held_reason"]) == ("ended", None, None)


def test_status_without_a_spool_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = status(tmp_path / "none")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"hls-uploadd: no spool in {tmp_path / 'none'} (give the daemon's"
                                                " --spool-dir)"]


def test_status_of_a_spool_of_another_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    with sqlite3.connect(spool / SPOOL_FILE_NAME) as db:
        db.execute("CREATE TABLE streams (bucket TEXT)")
        db.execute("PRAGMA user_version=1")
    done = status(spool)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"hls-uploadd: spool {spool / SPOOL_FILE_NAME} is of another version of"
                                   " hls-uploadd: start the daemon once to upgrade it")


def test_an_empty_spool_says_so(start_uploader: StartUploader, bucket: str) -> None:
    daemon = start_uploader("--bucket", bucket)
    done = status(daemon.spool_dir)
    assert (done.returncode, done.stdout) == (0, f"no stream in {daemon.spool_dir}\n")
    assert json.loads(status(daemon.spool_dir, "--json").stdout) == []


def summary(**fields: object) -> StreamSummary:
    values: dict[str, object] = dict(key=("b", "p", "i.m3u8"), ended=False, end_queued=False, last_media_sequence=0,
                                     target_duration_s=None, published_at=None, held_since=None, held_reason=None,
                                     queued=0, oldest_queued_at=None, failed=0, listed=0, last_uri=None)
    values.update(fields)
    return StreamSummary(**values)  # type: ignore[arg-type]


def test_ages_are_given_in_the_unit_that_matters() -> None:
    now = 1_000_000.0
    ages = [status_line(summary(last_media_sequence=1, last_uri="x/s-1.ts", published_at=now - age), now)
            for age in (0.4, 119, 120, 7199, 7200, 172_800)]
    assert [line.split(") ")[1].split(" ago")[0] for line in ages] == ["0 s", "119 s", "2 min", "120 min", "2 h", "2 d"]


def test_a_blocked_stream_that_also_ended_or_failed_is_blocked_first() -> None:
    assert summary(held_since=1.0, held_reason="r", ended=True, failed=2).state == "blocked"
    assert summary(ended=True, failed=2).state == "ended"
    assert summary(failed=2).state == "failed"
    assert summary().state == "live"


def test_a_line_says_why_and_how_long_a_stream_is_held_and_what_waits() -> None:
    now = 1_000_000.0
    line = status_line(summary(held_since=now - 300, held_reason="upload of p/s-2.ts refused (AccessDenied)",
                               last_media_sequence=1, last_uri="p/s-1.ts", published_at=now - 400, queued=2,
                               oldest_queued_at=now - 360, listed=1, target_duration_s=6, failed=1), now)
    assert line == ("b/p/i.m3u8: blocked for 5 min (upload of p/s-2.ts refused (AccessDenied)); last s-1.ts"
                    " (media sequence 1) 7 min ago; queued 2 (oldest 6 min old); window 1; target 6 s; failed 1")


def test_a_line_before_the_first_publish_says_nothing_published_and_no_target() -> None:
    assert status_line(summary(queued=1), 0.0) == (
        "b/p/i.m3u8: live; nothing published yet; queued 1; window 0; target not set; failed 0")


def test_a_line_names_the_last_segment_by_its_file_name_and_no_time_in_the_future() -> None:
    now = 1_000_000.0
    assert status_line(summary(last_media_sequence=3, last_uri="s-3.ts", published_at=now + 50,
                               oldest_queued_at=now + 50, queued=1), now) == (
        "b/p/i.m3u8: live; last s-3.ts (media sequence 3) 0 s ago; queued 1 (oldest 0 s old); window 0;"
        " target not set; failed 0")
    # A segment listed by a spool that did not note its URI.
    assert status_line(summary(last_media_sequence=3), now).startswith(
        "b/p/i.m3u8: live; last ? (media sequence 3); queued 0")


def test_the_json_gives_every_field_of_every_stream_with_ages_never_negative() -> None:
    now = 1_000_000.0
    held = summary(key=("bucket", "live/one", "held.m3u8"), held_since=now - 300, held_reason="refused",
                   queued=2, oldest_queued_at=now - 360, failed=1, target_duration_s=6)
    ended = summary(key=("bucket", "live/one", "index.m3u8"), ended=True, end_queued=True, last_media_sequence=9,
                    last_uri="seg-00009.ts", published_at=now - 12.5, listed=3, target_duration_s=2)
    ahead = summary(published_at=now + 5, oldest_queued_at=now + 5, queued=1, last_media_sequence=1, last_uri="a.ts")
    assert json.loads(status_json([held, ended, ahead], now)) == [
        {"stream": "bucket/live/one/held.m3u8", "bucket": "bucket", "key_prefix": "live/one", "index": "held.m3u8",
         "state": "blocked", "held_since": now - 300, "held_reason": "refused", "media_sequence": 0,
         "last_segment": None, "last_publish_at": None, "last_publish_age_s": None, "queued": 2,
         "oldest_queued_age_s": 360.0, "window": 0, "target_duration_s": 6, "ended": False, "failed": 1},
        {"stream": "bucket/live/one/index.m3u8", "bucket": "bucket", "key_prefix": "live/one",
         "index": "index.m3u8", "state": "ended", "held_since": None, "held_reason": None, "media_sequence": 9,
         "last_segment": "seg-00009.ts", "last_publish_at": now - 12.5, "last_publish_age_s": 12.5, "queued": 0,
         "oldest_queued_age_s": None, "window": 3, "target_duration_s": 2, "ended": True, "failed": 0},
        {"stream": "b/p/i.m3u8", "bucket": "b", "key_prefix": "p", "index": "i.m3u8", "state": "live",
         "held_since": None, "held_reason": None, "media_sequence": 1, "last_segment": "a.ts",
         "last_publish_at": now + 5, "last_publish_age_s": 0.0, "queued": 1, "oldest_queued_age_s": 0.0,
         "window": 0, "target_duration_s": None, "ended": False, "failed": 0},
    ]
    assert status_json([], now) == "[]"
