"""hls-ladder end to end: a live source over UDP, three renditions, one daemon, SeaweedFS, and
real viewers (ffmpeg's HLS demuxer on the master, hls.js in Chromium switching levels).

One run of about a minute covers what the ladder promises: every rendition's segment N starts
at the same PTS; the master lists all three with BANDWIDTH near what was really sent; killing
one encoder mid-stream costs that rendition one discontinuity and no other; SIGINT ends all
three with ENDLIST.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import m3u8
import pytest
from botocore.client import BaseClient

from tests.support.browser import open_page
from tests.support.daemon import UploaderDaemon
from tests.support.pipeline import PlaylistPoller
from tests.support.processes import encoder_pids
from tests.support.rfc8216 import master_playlist_problems
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for

SEGMENT_SECONDS = 2
KEY_PREFIX = "ladder"
# Small renditions keep three live x264 encoders within two shared cores.
RENDITIONS = {"low": ("320x180", 150_000, 48_000), "mid": ("480x270", 300_000, 48_000),
              "high": ("640x360", 600_000, 64_000)}
KILLED = "mid"
LADDER = str(Path(sys.executable).parent / "hls-ladder")


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def source_command(port: int) -> list[str]:
    """A live camera stand-in: test pattern and tone at real pace, MPEG-TS over UDP (as an
    encoder in the field sends to a ladder), for up to five minutes."""
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", "300", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-b:v", "2M",
            "-c:a", "aac", "-b:a", "96k", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]


class SegmentCopier(threading.Thread):
    """Copies every .ts object under the key prefix out of the bucket as it appears (the daemon
    may delete what slid out of the window): the segments as viewers got them."""

    def __init__(self, s3: BaseClient, bucket: str, into: Path) -> None:
        super().__init__(daemon=True)
        self.s3, self.bucket, self.into = s3, bucket, into
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.3):
            self.copy()

    def copy(self) -> None:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{KEY_PREFIX}/").get("Contents", [])
        for item in listed:
            name = item["Key"].rsplit("/", 1)[1]
            target = self.into / name
            if name.endswith(".ts") and not target.exists():
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                target.write_bytes(body)


def first_video_pts(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                          "-read_intervals", "%+#1", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0].strip(","))


def discontinuities(texts: list[str]) -> set[str]:
    """The segments any version of a playlist put behind an EXT-X-DISCONTINUITY."""
    marked = set()
    for text in texts:
        lines = text.splitlines()
        for at, line in enumerate(lines):
            if line == "#EXT-X-DISCONTINUITY":
                marked.add(next(following for following in lines[at + 1:] if not following.startswith("#")))
    return marked


def numbered(directory: Path, name: str) -> dict[int, Path]:
    return {int(path.stem.rsplit("-", 1)[1]): path for path in directory.glob(f"{name}-*.ts")}


@pytest.mark.slow
def test_a_live_source_becomes_an_aligned_ladder_that_survives_an_encoder(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str, s3: BaseClient,
) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--bucket", bucket,
                                                   "--player-page"]).start()
    port = udp_port()
    log_path = tmp_path / "ladder.log"
    specs = [f"--rendition={name}:{size}:{video}:{audio}" for name, (size, video, audio) in RENDITIONS.items()]
    with open(log_path, "wb") as log:
        ladder = subprocess.Popen([LADDER, f"udp://127.0.0.1:{port}", str(segments), bucket, KEY_PREFIX,
                                   "--uploader", f"127.0.0.1:{daemon.port}", *specs],
                                  stdout=log, stderr=subprocess.STDOUT)
    source = subprocess.Popen(source_command(port), stdin=subprocess.DEVNULL)
    base = f"{seaweed.endpoint_url}/{bucket}/{KEY_PREFIX}/"
    pollers = {name: PlaylistPoller(f"{base}{name}.m3u8", base, interval_s=0.2) for name in RENDITIONS}
    copier = SegmentCopier(s3, bucket, tmp_path / "published")
    copier.into.mkdir()
    started = time.monotonic()
    try:
        for poller in pollers.values():
            poller.start()
        copier.start()

        def listed(name: str) -> int:
            return len(pollers[name].first_seen)

        wait_for(lambda: all(listed(name) >= 3 for name in RENDITIONS), timeout=90,
                 message="three segments of every rendition")
        playable_s = time.monotonic() - started
        master_url = f"{base}master.m3u8"
        wait_for(lambda: http_get(master_url).body.count(b"#EXT-X-STREAM-INF") == 3, timeout=30,
                 message="a master with three renditions")

        # A viewer of the master (ffmpeg's HLS demuxer) for six seconds of media.
        viewer = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", master_url,
                                 "-map", "0:v:0", "-t", "6", "-f", "null", "-"],
                                capture_output=True, text=True, timeout=60)
        assert viewer.returncode == 0 and not viewer.stderr.strip(), viewer.stderr

        # hls.js plays the master and switches levels when told to.
        with open_page(f"{base}index.html?hls.js") as evaluate:
            wait_for(lambda: str(evaluate("document.getElementById('status').textContent")).startswith("Playing"),
                     timeout=60, message="hls.js playing the master")
            assert evaluate("hls.levels.length") == 3
            heights = evaluate("hls.levels.map(level => level.height)")
            for level in (heights.index(180), heights.index(360)):  # type: ignore[union-attr]
                evaluate(f"hls.currentLevel = {level}")
                wait_for(lambda level=level: evaluate("video.videoHeight") == heights[level]  # type: ignore[index]
                         and evaluate("hls.currentLevel") == level and not evaluate("video.paused"),
                         timeout=45, message=f"hls.js on level {level} ({heights[level]}p)")  # type: ignore[index]

        # One encoder dies: its rendition goes on after a discontinuity, the others do not notice.
        victims = encoder_pids(ladder.pid, RENDITIONS[KILLED][1])
        assert len(victims) == 1, victims
        before = listed(KILLED)
        os.kill(victims[0], signal.SIGKILL)
        wait_for(lambda: listed(KILLED) >= before + 4, timeout=60, message="four segments after the restart")
        assert encoder_pids(ladder.pid, RENDITIONS[KILLED][1]) not in ([], victims)

        ladder.send_signal(signal.SIGINT)
        assert ladder.wait(90) == 0, log_path.read_text()
    finally:
        source.terminate()
        source.wait(10)
        if ladder.poll() is None:
            ladder.kill()
            ladder.wait()
        for poller in pollers.values():
            poller.stop()
        copier.halt.set()
        copier.join(10)
        daemon.stop()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text + daemon.log(), log_text

    # Every rendition ended with ENDLIST, and every version read was conformant.
    for name, poller in pollers.items():
        final = s3.get_object(Bucket=bucket, Key=f"{KEY_PREFIX}/{name}.m3u8")["Body"].read().decode()
        poller.add_version(final)
        assert final.rstrip().endswith("#EXT-X-ENDLIST"), (name, final)
        assert poller.conformance == [] and poller.problems == [], (name, poller.conformance, poller.problems)
    copier.copy()
    master_text = s3.get_object(Bucket=bucket, Key=f"{KEY_PREFIX}/master.m3u8")["Body"].read().decode()
    assert master_playlist_problems(master_text) == [], master_text

    # One discontinuity in the rendition whose encoder was killed, none in the others.
    marked = {name: discontinuities(poller.texts) for name, poller in pollers.items()}
    assert len(marked[KILLED]) == 1 and all(not marked[name] for name in RENDITIONS if name != KILLED), marked
    assert log_text.count("the encoder exited") == 1, log_text

    # Segment N of every rendition starts at the same PTS (the restarted encoder's too).
    published = {name: numbered(copier.into, name) for name in RENDITIONS}
    common = sorted(set.intersection(*(set(files) for files in published.values())))
    assert len(common) >= 8, published
    misaligned = {}
    for number in common:
        starts = {name: first_video_pts(published[name][number]) for name in RENDITIONS}
        if max(starts.values()) - min(starts.values()) > 0.001:
            misaligned[number] = starts
    assert misaligned == {}, misaligned
    assert set(published[KILLED]) == set(published["low"]), "the restart cost the rendition a segment number"

    # The master's BANDWIDTH and AVERAGE-BANDWIDTH are within 10 % of what the segments carry:
    # their bytes over the time between their first video frames (at most their EXTINF),
    # the peak over sets of segments lasting 0.5 to 1.5 target durations (RFC 8216 4.3.4.2).
    master = m3u8.loads(master_text)
    assert sorted(variant.uri for variant in master.playlists) == sorted(f"{name}.m3u8" for name in RENDITIONS)
    for variant in master.playlists:
        name = variant.uri.removesuffix(".m3u8")
        files = [path for _, path in sorted(published[name].items())]
        starts = [first_video_pts(path) for path in files]
        listed = [pollers[name].durations[path.name] for path in files]
        # Before the discontinuity the media stops short of the next start: there, EXTINF.
        seconds = [min(after - before, extinf) for before, after, extinf in zip(starts, starts[1:], listed)] + listed[-1:]
        measured = [(path.stat().st_size * 8, duration) for path, duration in zip(files, seconds)]
        runs = [measured[start:end + 1] for end in range(len(measured)) for start in range(end + 1)]
        peak = max(sum(bits for bits, _ in run) / sum(duration for _, duration in run) for run in runs
                   if 0.5 * SEGMENT_SECONDS <= sum(duration for _, duration in run) <= 1.5 * SEGMENT_SECONDS)
        average = sum(bits for bits, _ in measured) / sum(seconds)
        info = variant.stream_info
        assert abs(info.bandwidth - peak) <= 0.1 * peak, (variant.uri, info.bandwidth, peak)
        assert abs(info.average_bandwidth - average) <= 0.1 * average, (variant.uri, info.average_bandwidth, average)
    print(f"playable after {playable_s:.1f} s; master: {master_text}")
