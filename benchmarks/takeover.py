"""Takeover time: how long viewers wait when the daemon a live stream goes through dies.

    python benchmarks/takeover.py [--kills 10] [--segment-seconds 1] [--silent] [--lease-ttl 6]

Starts a loopback SeaweedFS (examples.embedded_s3), two hls-uploadd with spools of their own, and
one real hls-segment fed a live ffmpeg test picture (lavfi, -re), given both daemons
(``--uploader A,B``). Then, --kills times: waits for a few segments, kills the daemon the stream
goes through with SIGKILL, deletes its spool (its host is gone), and reads the playlist every
20 ms until it lists a new segment; the killed daemon is started again, empty, for the next round,
which kills the other one.

With --silent the daemon is stopped with SIGSTOP instead, as a host that hangs or drops off
the network: its connections stay open and nothing answers, so the segmenter waits for its
reply timeout (5 s with several daemons) before it moves; the daemon is then killed and started
again, empty, as after a SIGKILL.

With --lease-ttl the daemons hold the program's lease in the store (uploader/lease.py): the other
daemon publishes only once the dead one's lease has lapsed, its time to live after its last
renewal (and up to a second of the store's clock).

Per kill it measures the takeover: the signal to the first playlist version that lists a
segment the dead daemon had not published. The same interval between two playlist versions with new
segments, in the minute before, is the baseline: a segment duration, plus the publish time. Prints
median and max of both over the kills and their ratio to the issue's bound (10 s).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BUCKET, daemon_env, listed_segments, work_directory  # noqa: E402

from examples.embedded_s3 import EmbeddedS3, free_ports  # noqa: E402
from segmenter.client import daemon_order  # noqa: E402
from tests.support.daemon import UploaderDaemon  # noqa: E402

BOUND_S = 10.0  # the takeover bound the issue asks for
KEY_PREFIX = "takeover"
INDEX = "index.m3u8"
PREFIX = "seg"
POLL_S = 0.02


def source(segment_seconds: float) -> subprocess.Popen[bytes]:
    """ffmpeg's live test picture and tone in MPEG-TS on stdout, at real-time pace, a keyframe
    every segment."""
    gop = round(25 * segment_seconds)
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "500k",
         "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-"],
        stdout=subprocess.PIPE)


def newest(url: str) -> int:
    """The highest segment number the playlist at ``url`` lists now (0: none)."""
    try:
        names = listed_segments(url, PREFIX)
    except OSError:
        return 0
    return max((int(name.removeprefix(PREFIX + "-").removesuffix(".ts")) for name in names), default=0)


def wait_newer(url: str, than: int, timeout_s: float) -> tuple[int, float]:
    """Poll until the playlist lists a segment above ``than``: that number and when (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (number := newest(url)) > than:
            return number, time.monotonic()
        time.sleep(POLL_S)
    raise SystemExit(f"the playlist listed nothing after segment {than} in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    parser.add_argument("--silent", action="store_true", help="SIGSTOP the daemon (a hung host), not SIGKILL")
    parser.add_argument("--lease-ttl", type=float, default=0.0, help="the daemons' --lease-ttl (0: no leases)")
    parser.add_argument("--keep", help="work directory to keep (new or empty)")
    args = parser.parse_args()
    work, temp = work_directory(args.keep, "takeover-")
    try:
        with EmbeddedS3(work / "weed") as weed:
            weed.create_bucket(BUCKET)
            url = weed.object_url(BUCKET, f"{KEY_PREFIX}/{INDEX}")
            segments = work / "segments"
            segments.mkdir()
            ports = free_ports(2)
            daemons = {port: UploaderDaemon(work / f"daemon-{port}", [
                "--listen", f"127.0.0.1:{port}", "--allow-dir", str(segments), "--bucket", BUCKET,
                "--endpoint-url", weed.endpoint_url, "--keep-segment-files", "--lease-ttl", f"{args.lease_ttl:g}"], env=daemon_env(weed.client_environment()))
                for port in ports}
            for daemon in daemons.values():
                daemon.start()
            addresses = [("127.0.0.1", port) for port in ports]
            order = [daemons[port] for _, port in daemon_order(addresses, BUCKET, KEY_PREFIX)]
            feed = source(args.segment_seconds)
            segmenter = subprocess.Popen(
                [sys.executable, "-m", "segmenter", "-", str(args.segment_seconds), str(segments), PREFIX, INDEX, "",
                 BUCKET, KEY_PREFIX, "--uploader", ",".join(f"{h}:{p}" for h, p in addresses), "--quiet"],
                stdin=feed.stdout, stderr=(work / "segmenter.log").open("wb"), env=daemon_env(weed.client_environment()))
            signal_name = "SIGSTOP" if args.silent else "SIGKILL"
            takeovers: list[float] = []
            baseline: list[float] = []
            try:
                last, seen_at = wait_newer(url, 0, 60)
                for kill in range(args.kills):
                    for _ in range(3):  # the interval between new segments while nothing breaks
                        number, at = wait_newer(url, last, 30)
                        baseline.append(at - seen_at)
                        last, seen_at = number, at
                    victim = order[kill % 2]
                    if args.silent:
                        victim.signal(signal.SIGSTOP)
                    else:
                        victim.kill()
                    killed_at = time.monotonic()
                    last, seen_at = wait_newer(url, last, 60)  # a segment the dead daemon had not published
                    takeovers.append(seen_at - killed_at)
                    print(f"kill {kill + 1}: the playlist went on {takeovers[-1]:.2f} s after {signal_name},"
                          f" with segment {last}", flush=True)
                    victim.kill()
                    shutil.rmtree(victim.spool_dir)
                    victim.start()
            finally:
                segmenter.terminate()
                feed.terminate()
                segmenter.wait(30)
                feed.wait(30)
                for daemon in daemons.values():
                    daemon.kill()
    finally:
        if temp is not None:
            temp.cleanup()  # type: ignore[attr-defined]
    median, worst = statistics.median(takeovers), max(takeovers)
    leases = f"leases of {args.lease_ttl:g} s" if args.lease_ttl else "no leases"
    print(f"\n{len(takeovers)} kills ({'SIGSTOP' if args.silent else 'SIGKILL'}), {args.segment_seconds:g}-s segments,"
          f" {leases}")
    print(f"takeover (the signal to a new segment listed): median {median:.2f} s, max {worst:.2f} s;"
          f" ratio to the {BOUND_S:g}-s bound: {median / BOUND_S:.2f} (median), {worst / BOUND_S:.2f} (max)")
    print(f"baseline (between new segments, no fault): median {statistics.median(baseline):.2f} s,"
          f" max {max(baseline):.2f} s; takeover / baseline (median): {median / statistics.median(baseline):.2f}")


if __name__ == "__main__":
    main()
