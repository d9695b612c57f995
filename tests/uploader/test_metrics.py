"""hls-uploadd's operator endpoint (issue 16): /metrics checked against what happened, /healthz
and /readyz following the spool and the store, on a real daemon, SeaweedFS and (for store
errors) a loopback proxy that answers with them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Ack, Reject
from tests.reliability.test_faults_live import fill, tmpfs
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.s3_errors import S3ErrorProxy
from tests.support.scrape import check, endpoint_of, scrape
from tests.support.seaweed import SeaweedServer, bucket_name
from tests.support.viewer import http_get, wait_for

from .conftest import StartUploader
from .test_correctable import held_lines, listed, s3_error
from .test_daemon import ext_message
from .test_faults import assert_published, send_all

STREAM = {"key_prefix": "live/one", "index": "index.m3u8"}
ENDPOINT = ("--metrics-listen", "127.0.0.1:0")


def started(start_uploader: StartUploader, *args: str) -> tuple[UploaderDaemon, str]:
    daemon = start_uploader(*ENDPOINT, *args)
    return daemon, endpoint_of(daemon.log())


def test_a_published_stream_is_counted_and_described_as_the_store_and_the_playlist_hold_it(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--bucket", bucket)
    labels = {"bucket": bucket, **STREAM}
    playlist_url = seaweed.object_url(bucket, "live/one/index.m3u8")
    playlist_bytes = 0
    for number in range(1, 7):  # one at a time: each message gets its own playlist PUT
        place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(number, number + 1), end_at=6)
        wait_for(lambda: f"seg-{number:05d}.ts" in listed(seaweed, bucket), message=f"segment {number} listed")
        if number == 6:
            wait_for(lambda: http_get(playlist_url).text.endswith("#EXT-X-ENDLIST\n"), message="the end")
        playlist_bytes += len(http_get(playlist_url).body)
    assert_published(seaweed, bucket, 6)
    wait_for(lambda: scrape(base).value("hls_uploadd_segments_published_total", **labels) == 6,
             message="six published segments counted")
    metrics = scrape(base)
    segment_bytes = 6 * segment_source.stat().st_size
    assert metrics.value("hls_uploadd_uploaded_bytes_total", **labels) == segment_bytes + playlist_bytes
    assert metrics.value("hls_uploadd_segments_failed_total", **labels) is None  # never counted
    assert metrics.value("hls_uploadd_publish_latency_seconds_count", **labels) == 6
    assert 0 < metrics.value("hls_uploadd_publish_latency_seconds_sum", **labels) < 6 * 30
    assert metrics.value("hls_uploadd_stream_media_sequence", **labels) == 6
    assert metrics.value("hls_uploadd_stream_ended", **labels) == 1
    assert metrics.value("hls_uploadd_stream_queued_messages", **labels) == 0
    assert metrics.value("hls_uploadd_stream_behind_seconds", **labels) == 0
    assert metrics.value("hls_uploadd_stream_target_duration_seconds", **labels) == 2
    assert metrics.value("hls_uploadd_stream_failed_messages", **labels) == 0
    assert 0 <= metrics.value("hls_uploadd_stream_last_publish_age_seconds", **labels) < 60
    # The start's write check, then a segment and a playlist per message.
    assert metrics.value("hls_uploadd_store_requests_total", operation="put") == 1 + 6 + 6
    assert metrics.value("hls_uploadd_connections") == 0
    assert metrics.value("hls_uploadd_payload_inflight_bytes") == 0
    assert metrics.value("hls_uploadd_spool_bytes") > 0
    assert "# TYPE hls_uploadd_publish_latency_seconds histogram" in metrics.text
    assert "_created" not in metrics.text
    assert check(base, "/healthz") == (200, "ok")
    assert check(base, "/readyz") == (200, "ok")
    assert check(base, "/nothing")[0] == 404


def test_refusals_are_counted_by_reason(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--bucket", bucket)
    place_segment(segment_source, segments_dir, "seg", 1)
    with daemon.connect() as client:
        assert isinstance(client.send(ext_message(segments_dir, "not-" + bucket, 1)), Reject)  # scope
        assert isinstance(client.send(ext_message(Path("/etc"), bucket, 1)), Reject)  # scope: a directory
        assert isinstance(client.send(b"this is not an index message\n"), Reject)  # bad message
        assert client.send(ext_message(segments_dir, bucket, 1, end=True)) == Ack(1)
        place_segment(segment_source, segments_dir, "seg", 2)
        assert isinstance(client.send(ext_message(segments_dir, bucket, 2)), Reject)  # ended
    counts = {reason: scrape(base).value("hls_uploadd_refusals_total", reason=reason)
              for reason in ("authentication", "scope", "not_writer", "ended", "bad_message", "payload", "daemon")}
    assert counts == {"authentication": 0, "scope": 2, "not_writer": 0, "ended": 1, "bad_message": 1,
                      "payload": 0, "daemon": 0}


def test_store_errors_and_retries_are_counted_and_a_held_stream_makes_the_daemon_not_ready_until_it_goes_on(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--endpoint-url", proxy.url,
                               "--bucket", bucket, "--not-ready-after", "1", "--retry-max-delay", "0.3")
        wait_for(lambda: check(base, "/readyz") == (200, "ok"), message="ready after the start's check")
        proxy.fail_next(2, s3_error(503, "SlowDown"), path_ends="seg-00001.ts")
        place_segment(segment_source, segments_dir, "seg", 1)
        send_all(daemon, segments_dir, bucket, range(1, 2))
        wait_for(lambda: "seg-00001.ts" in listed(seaweed, bucket), message="segment 1 listed")
        metrics = scrape(base)
        assert metrics.value("hls_uploadd_store_errors_total", operation="put", kind="transient") == 2
        assert metrics.value("hls_uploadd_store_retries_total", operation="put") == 2

        proxy.fail_next(1000, s3_error(403, "AccessDenied"), path_ends="seg-00002.ts")
        place_segment(segment_source, segments_dir, "seg", 2)
        send_all(daemon, segments_dir, bucket, range(2, 3), end_at=2)
        wait_for(lambda: held_lines(daemon), message="the held stream's ERROR")
        status, reason = wait_for(lambda: (answer := check(base, "/readyz"))[0] == 503 and answer,
                                  message="not ready while the stream is held")
        assert f"stream {bucket}/live/one/index.m3u8 held for" in reason and "AccessDenied" in reason, reason
        assert check(base, "/healthz") == (200, "ok")  # held is not unhealthy: nothing is lost
        metrics = scrape(base)
        assert metrics.value("hls_uploadd_store_errors_total", operation="put", kind="correctable") >= 1
        assert metrics.value("hls_uploadd_stream_held_seconds", bucket=bucket, **STREAM) >= 1
        proxy.clear()
        assert_published(seaweed, bucket, 2)
        wait_for(lambda: check(base, "/readyz") == (200, "ok"), message="ready again once the stream goes on")
        assert scrape(base).value("hls_uploadd_stream_held_seconds", bucket=bucket, **STREAM) == 0


def test_a_store_that_does_not_answer_makes_the_daemon_not_ready_and_its_return_ready_again(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
) -> None:
    """Idle: no stream runs, the daemon probes the store itself."""
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.fail_next(100_000, s3_error(503, "ServiceUnavailable"))
        daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--endpoint-url", proxy.url,
                               "--bucket", bucket, "--not-ready-after", "1")
        status, reason = wait_for(lambda: (answer := check(base, "/readyz"))[0] == 503 and "failed every" in answer[1]
                                  and answer, timeout=20, message="not ready: the store fails")
        assert "the store has failed every request for" in reason and "ServiceUnavailable" in reason, reason
        assert check(base, "/healthz") == (200, "ok")
        proxy.clear()
        wait_for(lambda: check(base, "/readyz") == (200, "ok"), timeout=20, message="ready once the store answers")


def test_a_bucket_that_cannot_be_written_makes_the_daemon_not_ready(
    start_uploader: StartUploader, segments_dir: Path,
) -> None:
    missing = bucket_name("never-made")
    daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--bucket", missing)
    status, reason = wait_for(lambda: (answer := check(base, "/readyz"))[0] == 503 and "cannot be written" in answer[1]
                              and answer, message="not ready: the bucket is missing")
    assert reason.startswith(f"bucket {missing} cannot be written: s3://{missing}/.hls-uploadd-write-check: "), reason


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs(tmp_path / "uploadd" / "spool", "size=8m,mode=0700")


def test_a_full_spool_file_system_makes_the_daemon_unhealthy_until_space_is_freed(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, small_spool: Path,
) -> None:
    daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--bucket", bucket)
    assert daemon.spool_dir == small_spool
    assert check(base, "/healthz") == (200, "ok")
    filler = fill(small_spool)
    status, reason = check(base, "/healthz")
    assert status == 503 and f"the file system of spool {small_spool}/spool.sqlite3 is full" in reason, reason
    assert check(base, "/readyz")[0] == 503
    filler.unlink()
    assert check(base, "/healthz") == (200, "ok")


def test_a_forgotten_stream_s_series_are_removed(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon, base = started(start_uploader, "--allow-dir", str(segments_dir), "--bucket", bucket,
                           "--end-silent-after", "1", "--forget-ended-after", "1")
    for number in (1, 2):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(1, 3))
    wait_for(lambda: scrape(base).value("hls_uploadd_segments_published_total", bucket=bucket, **STREAM) == 2,
             message="two segments counted")
    wait_for(lambda: "its state is removed from the spool" in daemon.log(), timeout=30, message="the stream forgotten")
    assert scrape(base).labelled(bucket=bucket) == []


def test_a_metrics_address_in_use_stops_the_start_with_one_line_and_no_port_file(
    start_uploader: StartUploader, tmp_path: Path, bucket: str,
) -> None:
    _, base = started(start_uploader, "--bucket", bucket)
    taken = base.removeprefix("http://")
    port_file = tmp_path / "uploadd.port"
    done = subprocess.run([sys.executable, "-m", "uploader", "--bucket", bucket, "--listen", "127.0.0.1:0",
                           "--spool-dir", str(tmp_path / "other"), "--metrics-listen", taken,
                           "--port-file", str(port_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"hls-uploadd: cannot start: cannot serve --metrics-listen {taken}: Address already in use")
    # Whoever waits for the port file (a supervisor, the demo) must not take this daemon as started.
    assert not port_file.exists()


@pytest.mark.parametrize("value", ["nowhere", "127.0.0.1:http", "127.0.0.1:70000"])
def test_a_metrics_address_that_is_no_address_is_a_configuration_error(tmp_path: Path, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "uploader", "--bucket", "some-bucket", "--spool-dir", str(tmp_path),
                           "--metrics-listen", value], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hls-uploadd: configuration error: --metrics-listen") and value in lines[0], lines
