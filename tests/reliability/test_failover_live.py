"""Several daemons, one store: a daemon's host lost mid-stream, disk and all (issue 18).

Two hls-uploadd on one SeaweedFS, three renditions of one program live, each hls-segment given
both daemons (``--uploader A,B``). The daemon the program's segmenters send to loses its link to
the store, acknowledges one more segment of each rendition it cannot publish, and is killed with
SIGKILL, its spool deleted. The segmenters move to the other daemon and send it every message
the first had not confirmed published; it reads each playlist back from the store and goes on.
At the end every segment produced is in S3 exactly once, listed exactly once, in order; every
playlist version a viewer read conforms (RFC 8216 checker) and none goes back; an ffmpeg viewer
of one rendition plays to ENDLIST with no error and at most one stall.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import m3u8
import pytest

from segmenter.client import daemon_order
from tests.support.media import MediaCache
from tests.support.net import free_port
from tests.support.viewer import wait_for

from .conftest import Live, live_clip
from .test_faults_live import finish, published, wait_ended

RENDITIONS = ("low", "mid", "high")

# A viewer whose output stops growing for this long has stalled (segments last 1 s).
STALL_S = 3.0


class FfmpegViewer(threading.Thread):
    """FFmpeg's HLS demuxer playing ``url`` live to the end (-c copy), its progress read as it
    goes: ``stalls`` counts the times its output time stood still for STALL_S or more."""

    def __init__(self, url: str, out: Path) -> None:
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url, "-map", "0", "-c", "copy",
             "-f", "mpegts", "-y", str(out), "-progress", "pipe:1", "-stats_period", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stalls = 0
        self.longest_stall_s = 0.0

    def run(self) -> None:
        assert self.proc.stdout is not None
        last_time, moved_at, stalled = None, time.monotonic(), False
        for line in self.proc.stdout:
            now = time.monotonic()
            if line.startswith("out_time_us=") and line.strip() != "out_time_us=N/A":
                value = int(line.split("=", 1)[1])
                if value != last_time:
                    last_time, moved_at, stalled = value, now, False
            still_s = now - moved_at
            self.longest_stall_s = max(self.longest_stall_s, still_s)
            if still_s >= STALL_S and not stalled:
                self.stalls, stalled = self.stalls + 1, True

    def result(self, timeout_s: float) -> tuple[int, str]:
        """Its exit code and what it printed on stderr, once it ended (within ``timeout_s``)."""
        try:
            code = self.proc.wait(timeout_s)
            self.join(5)
            assert self.proc.stderr is not None
            return code, self.proc.stderr.read()
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("leases", [(), ("--lease-ttl", "3")], ids=["segmenters-move", "with-leases"])
def test_the_daemons_host_lost_mid_stream_the_other_daemon_goes_on_losing_nothing(
    live: Live, media: MediaCache, tmp_path: Path, request: pytest.FixtureRequest, leases: tuple[str, ...],
) -> None:
    clip = live_clip(media, 24)
    addresses = [("127.0.0.1", live.daemon_port), ("127.0.0.1", free_port())]
    (_, first_port), (_, other_port) = daemon_order(addresses, live.bucket, live.key_prefix)
    # The first daemon reaches the store through a link the test can cut, so that when its host
    # dies it holds messages it acknowledged and has not published: what it takes with it.
    link = live.proxy(("127.0.0.1", live.server.s3_port))
    first = live.daemon(*leases, name="first", port=first_port, endpoint_url=link.url)
    other = live.daemon(*leases, name="other", port=other_port)
    pollers = {name: live.poller(index=f"{name}.m3u8") for name in RENDITIONS}
    for name in RENDITIONS:
        live.segmenter(clip, 24, "--uploader", ",".join(f"{host}:{port}" for host, port in addresses),
                       prefix=name, index=f"{name}.m3u8")
    for name in RENDITIONS:
        wait_for(lambda: published(live, f"{name}-00006.ts", f"{name}.m3u8"), timeout=60,
                 message=f"segment 6 of {name} published")
    viewer = FfmpegViewer(live.server.object_url(live.bucket, f"{live.key_prefix}/mid.m3u8"), tmp_path / "viewed.ts")
    viewer.start()
    request.addfinalizer(viewer.close)
    time.sleep(2)
    link.refuse = True  # the first host's link to the store is lost, then the host itself
    link.drop_connections()

    def unpublished() -> set[str]:
        queued = set(re.findall(r" segment (\S+\.ts) queued", first.log()))
        return queued - set(re.findall(r" segment (\S+\.ts) published as media sequence", first.log()))

    wait_for(lambda: {name.split("-")[0] for name in unpublished()} == set(RENDITIONS), timeout=30,
             message="a segment of each rendition acknowledged and not published by the first daemon")
    live.sample()
    first.kill()
    lost_with_the_host = unpublished()
    shutil.rmtree(first.spool_dir)  # its host is gone, disk and all
    killed_at = time.monotonic()
    wait_for(lambda: all(f"stream {live.bucket}/{live.key_prefix}/{name}.m3u8: goes on from its playlist in the"
                         " store" in other.log() for name in RENDITIONS), timeout=30,
             message="the other daemon going on from the store for every rendition")
    taken_over_s = time.monotonic() - killed_at
    finish(live)
    for name in RENDITIONS:
        wait_ended(live, f"{name}.m3u8")
    code, errors = viewer.result(60)
    assert (code, errors) == (0, ""), errors
    assert viewer.stalls <= 1, f"{viewer.stalls} stalls, the longest {viewer.longest_stall_s:.1f} s"
    for name in RENDITIONS:
        poller = pollers[name]
        result = live.check(poller, index=f"{name}.m3u8", prefixes=(name,), taken_over_s=round(taken_over_s, 1),
                            viewer_longest_stall_s=round(viewer.longest_stall_s, 1),
                            lost_with_the_host=len(lost_with_the_host))
        versions = [m3u8.loads(text) for text in poller.texts]
        sequences = [version.media_sequence for version in versions]
        assert sequences == sorted(sequences), f"{name}: EXT-X-MEDIA-SEQUENCE went back: {sequences}"
        sequence_of: dict[str, int] = {}  # each segment at one media sequence number, in every version
        for version in versions:
            for number, segment in enumerate(version.segments, version.media_sequence):
                assert sequence_of.setdefault(segment.uri, number) == number, (name, segment.uri, number)
        assert len(set(sequence_of.values())) == len(sequence_of), f"{name}: a number lists two segments"
        listed = sorted(sequence_of, key=sequence_of.__getitem__)
        numbers = [int(uri.rsplit("-", 1)[1].removesuffix(".ts")) for uri in listed]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"{name}: {listed}"
        assert listed[-1] == result.produced[-1], (name, listed[-1], result.produced[-1])
    for segmenter in live.segmenters:
        assert "moving from the daemon at" in segmenter.log(), segmenter.log()[-2000:]
    # The other daemon's master lists every rendition from its first upload, read back from the
    # store's master, not only the renditions whose segmenters had moved to it by then.
    uploads = re.findall(r"master playlist uploaded with (\d+) rendition", other.log())
    assert uploads and set(uploads) == {str(len(RENDITIONS))}, uploads
    if leases:  # the program's lease lapsed with the first daemon's renewals, and the other took it
        assert "its lease taken over from daemon" in other.log()
        assert "its lease taken (fencing number 1)" in first.log()
