"""Mistakes the operator can correct lose nothing (issue 14 A): missing credentials, a bucket that
does not exist, a refused or expired key, a refused playlist PUT. The stream is held and retried,
loudly, and everything is published once the mistake is corrected. Also: a segment whose playlist
was skipped is listed when the next message fails (issue 14 C), and ``hls-uploadd requeue``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer, bucket_name
from tests.support.viewer import fetch_playlist, http_get, wait_for
from uploader.spool import Spool
from uploader.stream import with_failure

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none
from .test_faults import assert_published, send_all

STREAM = "live/one/index.m3u8"


def s3_error(status: int, code: str) -> Answer:
    return Answer(status, f"<Error><Code>{code}</Code><Message>{code} from the test</Message></Error>".encode(),
                  "application/xml")


def held_lines(daemon: UploaderDaemon) -> list[str]:
    return [line for line in daemon.log().splitlines() if " ERROR " in line and " held: " in line]


def listed(seaweed: SeaweedServer, bucket: str) -> list[str]:
    playlist = fetch_playlist_or_none(seaweed.object_url(bucket, STREAM))
    return [segment.uri for segment in playlist.segments] if playlist is not None else []


def refused_midway(daemon: UploaderDaemon, seaweed: SeaweedServer, bucket: str, directory: Path, source: Path,
                   last: int, refuse: Callable[[], None]) -> None:
    """Segments 1-3 published, then ``refuse()`` queues the proxy's refusals and segments 4 to
    ``last`` (the end) are sent; every one must be published."""
    for number in range(1, last + 1):
        place_segment(source, directory, "seg", number)
    send_all(daemon, directory, bucket, range(1, 4))
    wait_for(lambda: "seg-00003.ts" in listed(seaweed, bucket), message="segment 3 listed")
    refuse()
    send_all(daemon, directory, bucket, range(4, last + 1), end_at=last)
    assert_published(seaweed, bucket, last)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[UploaderDaemon]]:
    """Daemons a test builds itself (its own environment); killed and checked for tracebacks."""
    started: list[UploaderDaemon] = []
    yield started
    for daemon in started:
        daemon.kill()
        assert "Traceback" not in daemon.log(all_runs=True), daemon.log(all_runs=True)


def test_started_without_credentials_it_holds_and_a_restart_with_them_publishes_everything(
    daemons: list[UploaderDaemon], seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    tmp_path: Path,
) -> None:
    # No key in the environment, no credentials file, no instance metadata (tests/conftest.py).
    without = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments_dir), "--bucket", bucket], env=without)
    daemons.append(daemon)
    daemon.start()
    wait_for(lambda: f"bucket {bucket} cannot be written" in daemon.log(), message="the start check's ERROR")
    assert "credentials" in daemon.log() and "Its streams are held" in daemon.log()
    for number in range(1, 7):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 7), end_at=6)
    line = wait_for(lambda: held_lines(daemon), message="the held stream's ERROR")[0]
    assert f"stream {bucket}/{STREAM} held" in line
    # The stream's first request: reading its playlist, to go on from what the store has.
    assert "read of live/one/index.m3u8" in line and "fix: give the daemon valid credentials" in line
    assert daemon.stop() == 0
    log = daemon.log()
    assert "failed permanently" not in log
    assert "6 message(s) left queued" in log

    daemon.env = None  # the operator fixes the credentials and restarts the service
    daemon.start()
    assert_published(seaweed, bucket, 6)
    assert "failed permanently" not in daemon.log(all_runs=True)


def test_a_bucket_missing_at_start_is_reported_and_its_stream_held_until_it_is_created(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, segments_dir: Path, segment_source: Path,
) -> None:
    later = bucket_name("created-later")
    daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", later)
    wait_for(lambda: f"bucket {later} cannot be written" in daemon.log(), message="the start check's ERROR")
    assert f"check that bucket {later} exists" in daemon.log()
    for number in range(1, 5):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, later, range(1, 5), end_at=4)
    wait_for(lambda: held_lines(daemon), message="the held stream's ERROR")
    s3.create_bucket(Bucket=later)
    try:
        assert_published(seaweed, later, 4)
        assert "failed permanently" not in daemon.log()
        assert "succeeded after" in daemon.log()
    finally:
        s3.delete_bucket(Bucket=later)


def test_a_bucket_that_can_be_written_is_reported_so_at_start(
    start_uploader: StartUploader, bucket: str, segments_dir: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket)
    wait_for(lambda: f"bucket {bucket} can be written" in daemon.log(), message="the start check")
    assert "cannot be written" not in daemon.log() and "does not refuse a create-only write" not in daemon.log()


@pytest.mark.parametrize("answer", [
    s3_error(403, "AccessDenied"),  # a bucket policy being edited
    s3_error(400, "ExpiredToken"),  # credentials rotating
    s3_error(400, "InvalidToken"),
    s3_error(403, "InvalidAccessKeyId"),
    s3_error(403, "SignatureDoesNotMatch"),
    s3_error(404, "NoSuchBucket"),
], ids=lambda answer: answer.body.split(b"<Code>")[1].split(b"<")[0].decode())
def test_one_correctable_refusal_among_successes_loses_nothing(
    answer: Answer, start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
        refused_midway(daemon, seaweed, bucket, segments_dir, segment_source, 8,
                       lambda: proxy.fail_next(1, answer, path_ends=".ts"))
        assert answer.status in proxy.statuses()
    log = daemon.log()
    assert "failed permanently" not in log
    assert len(held_lines(daemon)) == 1 and "live/one/seg-00004.ts" in held_lines(daemon)[0]


def test_a_refused_playlist_put_fails_no_segment(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
        refused_midway(daemon, seaweed, bucket, segments_dir, segment_source, 6,
                       lambda: proxy.fail_next(3, s3_error(403, "AccessDenied"), path_ends=".m3u8"))
        assert proxy.statuses().count(403) == 3
    assert "failed permanently" not in daemon.log()
    assert "live/one/index.m3u8" in held_lines(daemon)[0]


def test_a_long_hold_is_reported_at_a_bounded_rate(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    refusals = 40
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.fail_next(refusals, s3_error(403, "AccessDenied"))
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url,
                                "--retry-max-delay", "0.1")
        place_segment(segment_source, segments_dir, "seg", 1)
        send_all(daemon, segments_dir, bucket, range(1, 2), end_at=1)
        assert_published(seaweed, bucket, 1)
        assert proxy.statuses().count(403) == refusals
    reports = held_lines(daemon)
    assert 1 <= len(reports) < refusals // 4, reports  # one per 30 s, not one per refusal
    assert "(attempt 1)" in reports[0]


def test_a_segment_whose_playlist_was_skipped_is_listed_when_the_next_message_fails(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    """Issue 14 C: segment 5's playlist is skipped because message 6 is queued behind it (a
    backlog); segment 6's file is gone, so it fails; the playlist must still list 5."""
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url,
                                "--retry-max-delay", "0.2")
        for number in range(1, 6):  # segment 6 never reaches the disk
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 5))
        wait_for(lambda: "seg-00004.ts" in listed(seaweed, bucket), message="segment 4 listed")
        # Segment 5's PUT is slowed by 503s, so that message 6 is queued while it is published.
        proxy.fail_next(20, s3_error(503, "SlowDown"), path_ends="seg-00005.ts")
        send_all(daemon, segments_dir, bucket, range(5, 6))
        wait_for(lambda: 503 in proxy.statuses(), message="segment 5 being retried")
        send_all(daemon, segments_dir, bucket, range(6, 7))
        wait_for(lambda: "seg-00006.ts failed permanently" in daemon.log(), timeout=30, message="segment 6 failed")
        assert "seg-00005.ts published as media sequence 5 (listed by the next playlist)" in daemon.log()
        wait_for(lambda: "seg-00005.ts" in listed(seaweed, bucket), message="segment 5 listed")
    assert listed(seaweed, bucket) == [f"seg-{n:05d}.ts" for n in range(1, 6)]


def requeue(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uploader", "requeue", *args], capture_output=True, text=True,
                          timeout=60)


def test_requeue_publishes_a_segment_whose_file_was_restored(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    for number in (1, 3):  # segment 2's file is missing: it fails for good
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 4))
    wait_for(lambda: "seg-00002.ts failed permanently" in daemon.log(), message="segment 2 failed")
    wait_for(lambda: "seg-00003.ts" in listed(seaweed, bucket), message="segment 3 listed")
    busy = requeue("--spool-dir", str(daemon.spool_dir))  # the running daemon holds the spool
    assert busy.returncode == 1 and "in use by another hls-uploadd (PID" in busy.stderr, busy.stderr
    assert busy.stderr.rstrip().endswith("stop it, then requeue") and busy.stderr.count("\n") == 1, busy.stderr
    assert daemon.stop() == 0

    place_segment(segment_source, segments_dir, "seg", 2)  # the operator puts the file back
    done = requeue("--spool-dir", str(daemon.spool_dir), f"{bucket}/{STREAM}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"stream {bucket}/{STREAM}: 1 failed message(s) queued again, published at the"
                           " daemon's next start\n")
    again = requeue("--spool-dir", str(daemon.spool_dir), f"{bucket}/{STREAM}")
    assert again.returncode == 1 and again.stdout.startswith(f"no failed message of stream {bucket}/{STREAM}")

    daemon.start()
    wait_for(lambda: "seg-00002.ts" in listed(seaweed, bucket), message="segment 2 listed")
    place_segment(segment_source, segments_dir, "seg", 4)
    send_all(daemon, segments_dir, bucket, range(4, 5), end_at=4)
    url = seaweed.object_url(bucket, STREAM)
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p)
    fetch_playlist(url)  # through the RFC 8216 checker with the versions read before
    # Requeued after 3 was published: listed after it, marked as a discontinuity.
    assert [(s.uri, s.discontinuity) for s in final.segments] == [
        ("seg-00001.ts", False), ("seg-00003.ts", True), ("seg-00002.ts", True), ("seg-00004.ts", False)]
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00002.ts")).status == 200


def test_requeue_reopens_a_stream_an_older_daemon_failed_whole(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    tmp_path: Path,
) -> None:
    """The spool an older daemon left after running without credentials: every message failed,
    the end too, so the stream is ended with nothing listed. Requeue opens it again."""
    spool_dir = tmp_path / "uploadd" / "spool"
    spool = Spool.open(spool_dir)
    for number in range(1, 4):
        place_segment(segment_source, segments_dir, "seg", number)
        spool.enqueue(ext_message(segments_dir, bucket, number, end=number == 3))
    while (item := spool.next_queued((bucket, "live/one", "index.m3u8"))) is not None:
        state = with_failure(spool.load_state(item.message.stream_id), promised_s=2, end=item.message.end)
        spool.complete(item, state, failure="no AWS credentials found (environment, profile or instance role)")
    ended = spool.load_state((bucket, "live/one", "index.m3u8"))
    assert ended.ended and not ended.published_any
    spool.close()

    done = requeue("--spool-dir", str(spool_dir))
    assert done.returncode == 0, done.stderr
    assert "3 failed message(s) queued again" in done.stdout
    start_uploader("--allow-dir", str(segments_dir))
    url = seaweed.object_url(bucket, STREAM)
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p)
    assert [s.uri for s in final.segments] == ["seg-00001.ts", "seg-00002.ts", "seg-00003.ts"]


def test_requeue_keeps_an_ended_stream_that_lists_segments_final(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    place_segment(segment_source, segments_dir, "seg", 1)  # segment 2 missing, 3 ends the stream
    place_segment(segment_source, segments_dir, "seg", 3)
    send_all(daemon, segments_dir, bucket, range(1, 4), end_at=3)
    wait_for(lambda: "(stream ended)" in daemon.log(), message="the end published")
    assert daemon.stop() == 0
    done = requeue("--spool-dir", str(daemon.spool_dir), f"{bucket}/{STREAM}")
    assert done.returncode == 1
    assert "nothing requeued: the stream has ended and its playlist lists segments" in done.stdout
    bad = requeue("--spool-dir", str(daemon.spool_dir), "just-a-bucket")
    assert bad.returncode == 2 and "is not BUCKET/KEY_PREFIX/INDEX" in bad.stderr
    nowhere = requeue("--spool-dir", str(daemon.base_dir / "nowhere"))
    assert nowhere.returncode == 2 and "no spool in" in nowhere.stderr
