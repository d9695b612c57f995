"""The shared fixtures are real: SeaweedFS serves S3 and plain HTTP, media is what it claims."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.client import BaseClient

from tests.support.media import (
    AAC_FRAME_SAMPLES,
    AAC_PRIMING_SAMPLES,
    PTS_WRAP,
    TS_CLOCK_HZ,
    MediaCache,
    probe,
)
from tests.support.seaweed import SeaweedServer, WeedPorts, bucket_name
from tests.support.viewer import Headers, fetch_playlist, http_get, wait_for

# -- SeaweedFS ---------------------------------------------------------------------


def test_object_put_with_boto3_is_served_over_plain_http(
    seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    body = bytes(range(256)) * 100
    s3.put_object(Bucket=bucket, Key="live/seg-00001.ts", Body=body,
                  ContentType="video/MP2T", CacheControl="max-age=86400")

    reply = http_get(seaweed.object_url(bucket, "live/seg-00001.ts"))

    assert reply.status == 200
    assert reply.headers["content-type"] == "video/MP2T"
    assert reply.headers["Cache-Control"] == "max-age=86400"
    assert reply.body == body
    assert http_get(seaweed.object_url(bucket, "live/missing.ts")).status == 404


def test_playlist_is_fetched_and_parsed_like_a_player(
    seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\ns-00007.ts\n"
    s3.put_object(Bucket=bucket, Key="live/index.m3u8", Body=playlist.encode(),
                  ContentType="application/vnd.apple.mpegurl", CacheControl="max-age=1")

    parsed = fetch_playlist(seaweed.object_url(bucket, "live/index.m3u8"))

    assert parsed.media_sequence == 7
    assert parsed.segments[0].absolute_uri == seaweed.object_url(bucket, "live/s-00007.ts")
    with pytest.raises(AssertionError, match="HTTP 404"):
        fetch_playlist(seaweed.object_url(bucket, "live/other.m3u8"))


def test_subprocesses_find_seaweed_through_the_environment(
    seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    """What a daemon started by a test sees: plain boto3, no endpoint or keys in code."""
    code = f"import boto3; boto3.client('s3').put_object(Bucket={bucket!r}, Key='k', Body=b'hi')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hi"


def test_seaweed_listens_only_on_the_ports_it_was_given(seaweed: SeaweedServer) -> None:
    assert seaweed.listening_ports() == seaweed.ports.all()
    assert seaweed.endpoint_url == f"http://127.0.0.1:{seaweed.s3_port}"


def test_two_servers_at_once_do_not_clash(
    tmp_path: Path, seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worst clash: one of them first picks every port of the running session server.
    picks = iter([seaweed.ports])
    real_pick = WeedPorts.pick
    monkeypatch.setattr(WeedPorts, "pick", staticmethod(lambda: next(picks, None) or real_pick()))
    servers = [SeaweedServer(tmp_path / name) for name in ("one", "two")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(SeaweedServer.start, servers))
    try:
        one, two = servers
        assert [("address already in use" in s.log_path.read_text()) for s in servers].count(True) == 1
        assert not one.ports.all() & two.ports.all()
        assert not (one.ports.all() | two.ports.all()) & seaweed.ports.all()
        assert one.listening_ports() == one.ports.all()
        assert two.listening_ports() == two.ports.all()
        one.create_bucket("only-in-one")
        assert http_get(one.object_url("only-in-one", "nothing")).status == 404  # bucket, no key
        missing_bucket = http_get(two.object_url("only-in-one", "nothing"))
        assert missing_bucket.status == 404
        assert b"NoSuchBucket" in missing_bucket.body
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(SeaweedServer.stop, servers))
    assert not any(server.running for server in servers)
    assert seaweed.running


def test_stop_start_and_restart_keep_ports_and_data(tmp_path: Path) -> None:
    with SeaweedServer(tmp_path) as server:
        client = server.client(max_attempts=1)
        try:
            server.create_bucket("kept")
            client.put_object(Bucket="kept", Key="a.ts", Body=b"before", ContentType="video/MP2T")
            ports, url = server.ports, server.object_url("kept", "a.ts")

            server.stop()
            assert not server.running
            with pytest.raises(urllib.error.URLError):
                http_get(url, timeout=2)  # S3 is really down

            server.start()
            assert server.ports == ports
            assert http_get(url).body == b"before"
            client.put_object(Bucket="kept", Key="b.ts", Body=b"after")  # client made before stop

            server.restart()
            assert server.ports == ports
            assert http_get(url).headers["Content-Type"] == "video/MP2T"
            assert client.get_object(Bucket="kept", Key="b.ts")["Body"].read() == b"after"
        finally:
            client.close()
    assert not server.running


def test_weed_log_is_kept(seaweed: SeaweedServer) -> None:
    assert seaweed.log_path.is_file()
    assert seaweed.data_dir.is_dir()
    assert seaweed.last_start_s is not None and seaweed.last_start_s < 30


# -- buckets and ports -------------------------------------------------------------


@pytest.mark.parametrize("hint", ["test_x[a-b]", "T" * 200, "___", "test_playlist[EVENT-5]"])
def test_bucket_names_are_valid_and_unique(hint: str) -> None:
    names = {bucket_name(hint) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name), name
        assert "--" not in name


def test_free_port_can_be_bound(free_port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port))


# -- media -------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "fps", "gop_seconds"), [(6.0, 25, 2.0), (3.0, 30, 1.0)])
def test_clip_has_requested_duration_and_keyframes_every_gop(
    media: MediaCache, seconds: float, fps: int, gop_seconds: float
) -> None:
    info = probe(media.ts(seconds=seconds, fps=fps, gop_seconds=gop_seconds))

    assert info.kinds == ("video", "audio")
    assert info.codecs == ("h264", "aac")
    assert info.video is not None and info.audio is not None
    assert info.video.packet_count == seconds * fps
    assert info.video.duration_s == pytest.approx(seconds, abs=1 / fps)
    # AAC packets also carry the encoder's priming and the padded last frame.
    extra_audio_s = (AAC_PRIMING_SAMPLES + AAC_FRAME_SAMPLES) / 48_000
    assert seconds <= info.audio.duration_s <= seconds + extra_audio_s
    assert info.video.start_s == info.audio.start_s == 0.0
    expected = tuple(i * gop_seconds for i in range(round(seconds / gop_seconds)))
    assert info.keyframe_times == pytest.approx(expected, abs=1e-9)


def test_audio_only_and_video_only_clips(media: MediaCache) -> None:
    audio = probe(media.ts(seconds=2, video=False))
    video = probe(media.ts(seconds=2, audio=False))
    assert (audio.kinds, audio.codecs, audio.keyframe_times) == (("audio",), ("aac",), ())
    assert (video.kinds, video.codecs, video.keyframe_times) == (("video",), ("h264",), (0.0,))


def test_bitrates_differ_but_keyframes_line_up(media: MediaCache) -> None:
    low_path = media.ts(seconds=6, video_bitrate=150_000)
    high_path = media.ts(seconds=6, video_bitrate=400_000)
    low, high = probe(low_path), probe(high_path)

    assert low.video is not None and high.video is not None
    assert low.video.bit_rate == pytest.approx(150_000, rel=0.2)
    assert high.video.bit_rate == pytest.approx(400_000, rel=0.2)
    assert low_path.stat().st_size < 0.7 * high_path.stat().st_size
    assert low.video.keyframe_pts == high.video.keyframe_pts
    assert len(low.video.keyframe_pts) == 3


def test_pts_offset_shifts_both_streams(media: MediaCache) -> None:
    info = probe(media.ts(seconds=2, pts_offset_seconds=100.0))
    assert [s.start_s for s in info.streams] == [100.0, 100.0]
    assert info.keyframe_times == (100.0,)


def test_wrapping_clip_timestamps_wrap_at_33_bits(media: MediaCache) -> None:
    path = media.wrapping_ts(seconds=4, wrap_after_seconds=1.0)
    raw = probe(path, raw_timestamps=True)
    assert raw.video is not None and raw.audio is not None
    for stream in (raw.video, raw.audio):
        assert stream.pts[0] >= PTS_WRAP - 1.1 * TS_CLOCK_HZ
        assert stream.pts[-1] < 3.1 * TS_CLOCK_HZ
        assert max(stream.pts) < PTS_WRAP
    # Keyframes 2 s apart: the first just below 2**33, the second just past the wrap.
    after_wrap, before_wrap = sorted(raw.video.keyframe_pts)
    assert after_wrap + PTS_WRAP - before_wrap == 2 * TS_CLOCK_HZ

    # By default libavformat unwraps: the pre-wrap part comes out negative.
    unwrapped = probe(path)
    assert unwrapped.keyframe_times == pytest.approx((-0.9977, 1.0023), abs=1e-3)
    assert unwrapped.duration_s == pytest.approx(4.0, abs=0.04)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
def test_wrapping_clip_wraps_according_to_ffprobe(media: MediaCache) -> None:
    path = media.wrapping_ts(seconds=4, wrap_after_seconds=1.0)
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-correct_ts_overflow", "0", "-select_streams", "v",
         "-show_entries", "packet=pts", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    pts = [int(line.split(",")[0]) for line in done.stdout.split()]  # "pts," + side data
    assert max(pts) > PTS_WRAP - TS_CLOCK_HZ
    assert min(pts) < TS_CLOCK_HZ
    assert all(p < PTS_WRAP for p in pts)


def test_media_is_cached_by_parameters(media: MediaCache) -> None:
    assert media.ts(seconds=2) == media.ts(seconds=2, fps=25, audio=True)
    assert media.ts(seconds=2) != media.ts(seconds=2, seed=1)


# -- viewer helpers ----------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = Headers([("Content-Type", "video/MP2T"), ("X-A", "1"), ("x-a", "2")])
    assert headers["CONTENT-TYPE"] == headers.get("content-type") == "video/MP2T"
    assert "content-type" in headers
    assert headers["X-A"] == "1, 2"


def test_wait_for_returns_the_value_or_fails_with_a_message() -> None:
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.001) == "ready"
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the moon; last value False"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, message="the moon")
