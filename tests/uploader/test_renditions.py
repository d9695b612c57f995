"""Three renditions of one source through three hls-segment processes into one daemon."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import m3u8
import pytest
from botocore.client import BaseClient

from protocol import Ack, Reject
from tests.support.daemon import place_segment
from tests.support.media import MediaCache
from tests.support.rfc8216 import master_playlist_problems, rendition_problems
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, read_playlist, wait_for

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none

# The original's ladder (128k, 256k, 364k in all, audio included), 320x240 and up.
LADDER = (
    ("low", 320, 240, 96_000),
    ("mid", 480, 360, 224_000),
    ("high", 640, 480, 332_000),
)
AUDIO_BPS = 32_000
KEY_PREFIX = "program"


def real_bitrates(s3: BaseClient, bucket: str, playlist: m3u8.M3U8, name: str) -> tuple[int, int]:
    """(peak, average) bit/s of the uploaded segments: their bytes over their EXTINF durations."""
    peak, bits, seconds = 0, 0, 0.0
    for segment in playlist.segments:
        size = s3.head_object(Bucket=bucket, Key=f"{KEY_PREFIX}/{segment.uri}")["ContentLength"]
        peak = max(peak, math.ceil(size * 8 / segment.duration))
        bits += size * 8
        seconds += segment.duration
    return peak, round(bits / seconds)


def first_video_pts(data: bytes) -> int:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.pts is not None:
                return packet.pts
    raise AssertionError("no video packet")


@pytest.mark.slow
def test_three_renditions_one_master(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, media: MediaCache,
    tmp_path: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(tmp_path), "--window", "10", "--player-page")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runs = []
    for name, width, height, video_bps in LADDER:
        source = media.ts(seconds=8.0, gop_seconds=1.0, width=width, height=height,
                          video_bitrate=video_bps, audio_bitrate=AUDIO_BPS)
        args = [sys.executable, "-m", "segmenter", str(source), "2", str(tmp_path / name), name, f"{name}.m3u8",
                "", bucket, KEY_PREFIX, "--uploader", f"127.0.0.1:{daemon.port}"]
        runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr

    base = seaweed.object_url(bucket, KEY_PREFIX)
    playlists = {}
    for name, *_ in LADDER:
        url = f"{base}/{name}.m3u8"
        playlists[name] = wait_for(lambda u=url: (p := fetch_playlist_or_none(u)) is not None and p.is_endlist and p,
                                   message=f"{name}.m3u8 ended", timeout=30)
    expected = {f"{name}.m3u8": real_bitrates(s3, bucket, playlists[name], name) for name, *_ in LADDER}

    def final_master() -> m3u8.M3U8 | None:
        reply = http_get(f"{base}/master.m3u8")
        if reply.status != 200:
            return None
        master = read_playlist(f"{base}/master.m3u8", reply.text)
        got = {p.uri: (p.stream_info.bandwidth, p.stream_info.average_bandwidth) for p in master.playlists}
        return master if got == expected else None

    master = wait_for(final_master, timeout=30, message=f"the master with the measured bit rates {expected}")
    reply = http_get(f"{base}/master.m3u8")
    # Served as a playlist (RFC 8216 4: the Content-Type names it) and cached briefly, as the
    # media playlists are: a master cached for a year would hide a rendition added later.
    assert reply.headers["Content-Type"] == "application/vnd.apple.mpegurl", reply.headers
    assert reply.headers["Cache-Control"] == "max-age=1", reply.headers
    assert master_playlist_problems(reply.text) == []
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in reply.text
    assert rendition_problems({name: http_get(f"{base}/{name}.m3u8").text for name, *_ in LADDER}) == []
    variants = master.playlists
    assert [p.uri for p in variants] == ["low.m3u8", "mid.m3u8", "high.m3u8"]  # sorted by bandwidth
    report = []
    for playlist, (name, width, height, video_bps) in zip(variants, LADDER):
        info = playlist.stream_info
        assert info.resolution == (width, height)
        assert info.codecs is not None and info.codecs.startswith("avc1.") and info.codecs.endswith(",mp4a.40.2")
        assert info.frame_rate == 25.0
        peak, average = expected[playlist.uri]
        # Within 10% of the real bit rate of the uploaded segments (in fact equal: same bytes).
        assert abs(info.bandwidth - peak) <= 0.1 * peak
        assert abs(info.average_bandwidth - average) <= 0.1 * average
        report.append(f"{playlist.uri}: BANDWIDTH {info.bandwidth} AVERAGE-BANDWIDTH {info.average_bandwidth}"
                      f" (encoder asked {video_bps + AUDIO_BPS}; uploaded peak {peak}, mean {average})")
    print("\n" + "\n".join(report))

    # ffprobe sees one program per variant.
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_programs", "-of", "json", f"{base}/master.m3u8"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert len(json.loads(probe.stdout)["programs"]) == 3

    # Segment N of every rendition starts at the same PTS.
    counts = {len(p.segments) for p in playlists.values()}
    assert counts == {4}
    for number in range(4):
        starts = {first_video_pts(http_get(f"{base}/{playlists[name].segments[number].uri}").body)
                  for name, *_ in LADDER}
        assert len(starts) == 1, f"segment {number + 1} starts at {starts}"
    assert "drifts" not in daemon.log()

    # The player page plays the master once there is one.
    assert 'href="master.m3u8"' in http_get(f"{base}/index.html").text


def test_a_drifting_rendition_is_named_in_a_warning(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    for prefix in ("a", "b"):
        for number in (1, 2):
            place_segment(segment_source, segments_dir, prefix, number)
    with daemon.connect() as client:
        for number, drift in ((1, 0.0), (2, 0.4)):
            for prefix, start in (("a", 0.0), ("b", drift)):
                message = ext_message(segments_dir, bucket, number, index=f"{prefix}.m3u8", output_prefix=prefix,
                                      start=2.0 * (number - 1) + start, frame_rate=25.0, duration=1.0,
                                      codecs="avc1.64000d,mp4a.40.2", resolution="320x240")
                assert client.send(message) == Ack(number)
        reply = client.send(ext_message(segments_dir, bucket, 1, index="master.m3u8"))
        assert reply == Reject("index master.m3u8 is the name of the master playlist (--master-name)")
    # Checked as the messages arrive: the warning is logged before the OK.
    warnings = [line for line in daemon.log().splitlines() if "drifts" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0] and f"program {bucket}/live/one segment 2:" in warnings[0]
    assert "rendition b.m3u8 drifts: its segment 2 starts at 2.400 s" in warnings[0]
    assert "from a.m3u8 (2.000 s)" in warnings[0]
    master_url = seaweed.object_url(bucket, "live/one/master.m3u8")
    master = wait_for(lambda: (p := fetch_playlist_or_none(master_url)) is not None and p, message="the master", timeout=30)
    assert sorted(p.uri for p in master.playlists) == ["a.m3u8", "b.m3u8"]
