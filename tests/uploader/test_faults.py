"""Faults: S3 going away, the daemon killed or stopped with work queued. Nothing acknowledged is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Ack
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.net import free_port
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer, bucket_name
from tests.support.viewer import http_get, wait_for

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none


def dead_endpoint() -> str:
    """An S3 endpoint where nothing listens: every PUT is refused, a transient error."""
    return f"http://127.0.0.1:{free_port()}"


def send_all(daemon: UploaderDaemon, directory: Path, bucket: str, numbers: range, *, end_at: int | None = None) -> None:
    with daemon.connect() as client:
        for number in numbers:
            client.send_only(ext_message(directory, bucket, number, end=number == end_at))
        assert [client.reply() for _ in numbers] == [Ack(n) for n in numbers]


def assert_published(seaweed: SeaweedServer, bucket: str, count: int, timeout: float = 30.0) -> None:
    """Every segment 1..count is in S3 and the ended playlist lists the last five."""
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p,
                     timeout=timeout, message="the ended playlist")
    assert [s.uri for s in final.segments] == [f"seg-{n:05d}.ts" for n in range(max(1, count - 4), count + 1)]
    assert final.media_sequence == max(1, count - 4)
    for number in range(1, count + 1):
        assert http_get(seaweed.object_url(bucket, f"live/one/seg-{number:05d}.ts")).status == 200, number


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test's own, free to be stopped."""
    with SeaweedServer(tmp_path / "weed") as server:
        yield server


@pytest.mark.slow
def test_s3_down_then_up(
    start_uploader: StartUploader, own_seaweed: SeaweedServer, segments_dir: Path, segment_source: Path
) -> None:
    bucket = own_seaweed.create_bucket(bucket_name("s3-down"))
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", own_seaweed.endpoint_url)
    for number in range(1, 11):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 4))
    url = own_seaweed.object_url(bucket, "live/one/index.m3u8")
    wait_for(lambda: "seg-00003.ts" in http_get(url).text)

    own_seaweed.stop()
    send_all(daemon, segments_dir, bucket, range(4, 11), end_at=10)  # acknowledged while S3 is down
    wait_for(lambda: "failed (attempt 1), retrying" in daemon.log(), message="a retry in the log")
    own_seaweed.start()
    assert_published(own_seaweed, bucket, 10)
    assert "succeeded after" in daemon.log()


def test_kill_9_after_ok_then_restart(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    # S3 unreachable at first, so every acknowledged message is still only in the spool.
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", dead_endpoint())
    for number in range(1, 9):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 9), end_at=8)
    daemon.kill()
    assert http_get(seaweed.object_url(bucket, "live/one/index.m3u8")).status == 404

    daemon.args = ["--allow-dir", str(segments_dir)]  # same spool; S3 from AWS_ENDPOINT_URL
    daemon.start()
    assert_published(seaweed, bucket, 8)
    assert "resuming 1 stream(s)" in daemon.log()


def test_kill_9_mid_stream_then_restart(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    for number in range(1, 21):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 21), end_at=20)
    daemon.kill()  # whatever was being published is cut off
    daemon.start()
    assert_published(seaweed, bucket, 20)


def test_sigterm_drains_within_its_bound_and_the_rest_waits_in_the_spool(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", dead_endpoint(),
                            "--drain-timeout", "1")
    for number in range(1, 6):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 6), end_at=5)
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 10
    log = daemon.log()
    assert "drain timeout" in log and "5 message(s) left queued" in log

    daemon.args = ["--allow-dir", str(segments_dir)]
    daemon.start()
    assert_published(seaweed, bucket, 5)
    assert daemon.stop() == 0
    assert "0 message(s) left queued" in daemon.log()


def test_second_signal_exits_at_once(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", dead_endpoint(),
                            "--drain-timeout", "120")
    place_segment(segment_source, segments_dir, "seg", 1)
    send_all(daemon, segments_dir, bucket, range(1, 2))
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received: stopping" in daemon.log())
    daemon.signal(signal.SIGINT)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=10) == 1
    assert "SIGINT received again: exiting at once" in daemon.log()


GATEWAY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize("answer", [
    Answer(502, GATEWAY_PAGE),  # a load balancer in front of S3: HTML, no S3 error code
    Answer(504, b"<html><body>Gateway Time-out</body></html>"),
    Answer(500, b"", "text/plain"),
    Answer(503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>",
           "application/xml"),
    Answer(429, b"", "text/plain"),
    Answer(400, b"<Error><Code>RequestTimeout</Code><Message>Idle too long</Message></Error>", "application/xml"),
], ids=lambda answer: str(answer.status))
def test_transient_s3_answers_are_retried_and_nothing_is_lost(
    answer: Answer, start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.fail_next(3, answer)
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url,
                                "--retry-max-delay", "0.2")
        for number in range(1, 4):
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 4), end_at=3)
        assert_published(seaweed, bucket, 3)
        assert proxy.statuses()[:3] == [answer.status] * 3
    assert "failed permanently" not in daemon.log()
    assert "succeeded after" in daemon.log()
