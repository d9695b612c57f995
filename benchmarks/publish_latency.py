"""Publish latency of hls-uploadd: segment message sent -> playlist naming it readable over HTTP.

Starts a loopback SeaweedFS and the daemon, publishes SEGMENTS segments of one stream at a steady
pace (real ~500 KB H.264+AAC TS files), polls the playlist over plain HTTP and reports the median
and worst latency; beside them, the raw boto3 time of the same two PUTs (segment, then playlist).

    python benchmarks/publish_latency.py [--segments 50] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BUCKET, daemon_env, listed_segments  # noqa: E402

from protocol import Ack, IndexMessage  # noqa: E402
from tests.support.daemon import UploaderDaemon, place_segment  # noqa: E402
from tests.support.media import make_ts  # noqa: E402
from tests.support.seaweed import SeaweedServer  # noqa: E402

KEY_PREFIX = "live/bench"
INDEX = "index.m3u8"
PREFIX = "seg"


def message(directory: Path, number: int, *, end: bool) -> IndexMessage:
    return IndexMessage(
        index=INDEX, output_directory=str(directory), segment_duration=4, output_prefix=PREFIX, http_prefix="",
        first_segment=1, last_segment=number, end=end, bucket=BUCKET, key_prefix=KEY_PREFIX, duration=4.0,
    )


def daemon_latencies(weed: SeaweedServer, work: Path, source: Path, count: int, interval_s: float) -> list[float]:
    segments = work / "segments"
    for number in range(1, count + 1):
        place_segment(source, segments, PREFIX, number)
    daemon = UploaderDaemon(work / "daemon", ["--allow-dir", str(segments), "--endpoint-url", weed.endpoint_url,
                                              "--log-level", "WARNING"], env=daemon_env(weed.client_environment()))
    daemon.start()
    url = weed.object_url(BUCKET, f"{KEY_PREFIX}/{INDEX}")
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            names = listed_segments(url, PREFIX)
            now = time.monotonic()
            for name in names:
                seen.setdefault(int(name[len(PREFIX) + 1 : -3]), now)
            if len(seen) == count:
                return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with daemon.connect() as client:
            start = time.monotonic()
            for number in range(1, count + 1):
                time.sleep(max(0.0, start + (number - 1) * interval_s - time.monotonic()))
                sent[number] = time.monotonic()
                reply = client.send(message(segments, number, end=number == count))
                if reply != Ack(number):
                    raise RuntimeError(f"segment {number}: {reply}")
        poller.join(timeout=60)
    finally:
        done.set()
        daemon.stop()
    missing = sorted(set(sent) - set(seen))
    if missing:
        raise RuntimeError(f"segments never seen in the playlist: {missing}")
    return [seen[n] - sent[n] for n in sorted(sent)]


def raw_put_times(weed: SeaweedServer, source: Path, count: int) -> list[float]:
    client = weed.client()
    body = source.read_bytes()
    playlist = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n" + b"#EXTINF:4,\nseg-00001.ts\n" * 5
    times = []
    try:
        for number in range(1, count + 1):
            began = time.monotonic()
            client.put_object(Bucket=BUCKET, Key=f"raw/seg-{number:05d}.ts", Body=body, ContentType="video/MP2T")
            client.put_object(Bucket=BUCKET, Key="raw/index.m3u8", Body=playlist,
                              ContentType="application/vnd.apple.mpegurl")
            times.append(time.monotonic() - began)
    finally:
        client.close()
    return times


def warm_up(weed: SeaweedServer) -> None:
    """SeaweedFS grows a volume for a new bucket on its first write (up to seconds): not ours to time."""
    client = weed.client()
    try:
        client.put_object(Bucket=BUCKET, Key="warm-up", Body=b"x")
    finally:
        client.close()


def describe(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values) * 1000:.1f} ms, worst {max(values) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between segment messages")
    parser.add_argument("--verbose", action="store_true", help="print every latency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="publish-latency-") as temp:
        work = Path(temp)
        source = make_ts(work / "source.ts", seconds=4, video_bitrate=1_000_000)
        size_kib = source.stat().st_size // 1024
        with SeaweedServer(work / "weed") as weed:
            weed.create_bucket(BUCKET)
            warm_up(weed)
            latencies = daemon_latencies(weed, work, source, args.segments, args.interval)
            raw = raw_put_times(weed, source, args.segments)
    print(f"{args.segments} segments of {size_kib} KiB, one every {args.interval:g} s, "
          f"loopback SeaweedFS")
    print(describe("message sent -> playlist naming it readable over HTTP", latencies))
    print(describe("raw boto3 segment PUT + playlist PUT", raw))
    if args.verbose:
        print("per segment, ms:", " ".join(f"{value * 1000:.0f}" for value in latencies))


if __name__ == "__main__":
    main()
