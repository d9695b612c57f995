"""Issue 16: a live run watched from both programs' /metrics, each figure checked against what
happened: the segments hls-segment logged (count, bytes, seconds), a packet lost on the way (a
continuity error on its PID), a stalled input (the stall gauge and /healthz), and what hls-uploadd
published (the playlist in SeaweedFS)."""

from __future__ import annotations

import re
from pathlib import Path

import m3u8
import pytest

from tests.segmenter.ts_surgery import remove_packets
from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache
from tests.support.pipeline import Feeder, Segmenter, TcpSource, segmenter_command
from tests.support.scrape import Scrape, check, endpoint_in, endpoint_of, scrape
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for

CLIP_SECONDS = 14.0
VIDEO_PID = 0x100
_SEGMENT = re.compile(r"segment live-\d+\.ts: (\S+) s at \S+, (\d+) bytes")


def logged_segments(log: str) -> list[tuple[float, int]]:
    """(duration s, bytes) of every segment hls-segment logged."""
    return [(float(duration), int(size)) for duration, size in _SEGMENT.findall(log)]


def steady_scrape(segmenter: Segmenter, base: str) -> tuple[Scrape, list[tuple[float, int]]]:
    """A scrape of hls-segment and the segments it had logged then (no segment written between)."""
    def attempt() -> tuple[Scrape, list[tuple[float, int]]] | None:
        before = logged_segments(segmenter.log())
        taken = scrape(base)
        return (taken, before) if logged_segments(segmenter.log()) == before else None
    return wait_for(attempt, message="a scrape between two segments")


@pytest.mark.slow
@pytest.mark.parametrize("tcp", [False, True], ids=["stdin-fast-path", "tcp-url-pyav-path"])
def test_a_live_run_is_watched_from_both_programs_metrics(
    tcp: bool, tmp_path: Path, seaweed: SeaweedServer, bucket: str, media: MediaCache,
) -> None:
    """Read from stdin (the fast path, bytes counted as read) and from a tcp:// URL (FFmpeg reads
    it: the PyAV path, its packets counted, the stall watched from them)."""
    clip = tmp_path / "lossy.ts"
    # The 300th video TS packet lost on the way (about 3 s in).
    clip.write_bytes(remove_packets(media.ts(seconds=CLIP_SECONDS).read_bytes(), VIDEO_PID, {300}))
    segments = tmp_path / "segments"
    segments.mkdir()
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--bucket", bucket,
                                                   "--metrics-listen", "127.0.0.1:0"]).start()
    segmenter: Segmenter | None = None
    try:
        daemon_base = endpoint_of(daemon.log())
        source = TcpSource() if tcp else None
        command = segmenter_command("2", segments, daemon.port, bucket, "watched", "--metrics-listen", "127.0.0.1:0",
                                    "--stall-warning", "1", input=source.url if source else "-")
        segmenter = Segmenter(command, tmp_path / "segmenter.log")
        feeder = Feeder(clip, source or segmenter.proc, CLIP_SECONDS)  # type: ignore[arg-type]
        feeder.start()
        base = endpoint_in(segmenter.log)
        wait_for(lambda: len(logged_segments(segmenter.log())) >= 2, timeout=30, message="two segments")

        # The input stalls: the gauge grows past --stall-warning and /healthz says so.
        feeder.pause()
        status, reason = wait_for(lambda: (answer := check(base, "/healthz"))[0] == 503 and answer, timeout=10,
                                  message="unhealthy while the input is silent")
        assert re.fullmatch(r"no input for \d+ s \(--stall-warning 1\)", reason), reason
        assert scrape(base).value("hls_segment_input_stall_seconds") >= 1
        feeder.resume()
        wait_for(lambda: check(base, "/healthz") == (200, "ok"), message="healthy once input comes again")

        wait_for(lambda: len(logged_segments(segmenter.log())) >= 5, timeout=30, message="five segments")
        metrics, written = steady_scrape(segmenter, base)
        assert metrics.value("hls_segment_segments_total") == len(written)
        assert metrics.value("hls_segment_segment_bytes_total") == sum(size for _, size in written)
        assert metrics.value("hls_segment_media_seconds_total") == pytest.approx(sum(d for d, _ in written), abs=1e-3)
        assert metrics.value("hls_segment_continuity_errors_total", pid="0x100") == 1
        assert metrics.value("hls_segment_packets_dropped_total") == 0
        assert metrics.value("hls_segment_discontinuities_total") == 1  # the run's first segment
        assert 0 < metrics.value("hls_segment_input_bytes_total") <= feeder.fed
        assert metrics.value("hls_segment_input_stall_seconds") < 1
        assert 0 <= metrics.value("hls_segment_messages_owed") <= 2
        wait_for(lambda: scrape(base).value("hls_segment_messages_owed") == 0, message="every message acknowledged")

        # hls-uploadd, during the run: what was acknowledged gets published, and never more.
        labels = {"bucket": bucket, "key_prefix": "watched", "index": "live.m3u8"}
        published = wait_for(lambda: (count := scrape(daemon_base).value("hls_uploadd_segments_published_total",
                                                                          **labels)) and count >= len(written) and count,
                             message="the acknowledged segments published")
        assert published <= len(logged_segments(segmenter.log()))

        assert segmenter.wait(60) == 0
        playlist_url = seaweed.object_url(bucket, "watched/live.m3u8")
        wait_for(lambda: http_get(playlist_url).text.endswith("#EXT-X-ENDLIST\n"), timeout=30, message="the end")
        playlist = m3u8.loads(http_get(playlist_url).text)
        total = len(logged_segments(segmenter.log()))
        after = scrape(daemon_base)
        assert after.value("hls_uploadd_segments_published_total", **labels) == total
        assert after.value("hls_uploadd_stream_media_sequence", **labels) == playlist.media_sequence + len(
            playlist.segments) - 1 == total
        assert after.value("hls_uploadd_stream_target_duration_seconds", **labels) == playlist.target_duration
        assert after.value("hls_uploadd_stream_ended", **labels) == 1
        assert after.value("hls_uploadd_publish_latency_seconds_count", **labels) == total
        assert after.value("hls_uploadd_uploaded_bytes_total", **labels) > sum(
            size for _, size in logged_segments(segmenter.log()))
        assert "Traceback" not in segmenter.log()
    finally:
        if segmenter is not None:
            segmenter.kill()
        daemon.kill()
    assert "Traceback" not in daemon.log(all_runs=True)
