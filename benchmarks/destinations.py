"""Publish latency of hls-uploadd per destination type, on loopback: S3 (SeaweedFS), a directory,
FTP, FTPS, SFTP, WebDAV over HTTP and HTTPS; and S3 with an SFTP destination beside it.

For each, a daemon publishes SEGMENTS real ~500 KB segments of one stream at a steady pace and
the time from each message sent to the playlist naming its segment being readable at that
destination (over HTTP for S3, on the server's disk for the others) is taken; printed as median
and worst, with the ratio of each median against S3's, the peer.

    python benchmarks/destinations.py [--segments 30] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BUCKET, daemon_env, listed_segments  # noqa: E402
from publish_latency import INDEX, KEY_PREFIX, PREFIX, message  # noqa: E402

from protocol import Ack  # noqa: E402
from tests.support.daemon import UploaderDaemon, place_segment  # noqa: E402
from tests.support.file_servers import new_file_server, store_url  # noqa: E402
from tests.support.media import make_ts  # noqa: E402
from tests.support.seaweed import SeaweedServer  # noqa: E402

def on_disk(root: Path) -> Callable[[], list[str]]:
    """What the playlist under a server's ``root`` lists now."""
    path = root / BUCKET / KEY_PREFIX / INDEX

    def listed() -> list[str]:
        try:
            return [line for line in path.read_text().splitlines() if line.startswith(PREFIX + "-")]
        except FileNotFoundError:
            return []
    return listed


def latencies(work: Path, source: Path, stores: list[str], listers: list[Callable[[], list[str]]], count: int,
              interval_s: float, env: dict[str, str]) -> list[list[float]]:
    """Per lister: message sent -> its segment listed, seconds, for each of ``count`` segments."""
    segments = work / "segments"
    for number in range(1, count + 1):
        place_segment(source, segments, PREFIX, number)
    args = ["--allow-dir", str(segments), "--keep-segment-files", "--keep-segment-objects", "--log-level", "WARNING"]
    for store in stores:
        args += ["--store", store]
    daemon = UploaderDaemon(work / "daemon", args, env=env)
    daemon.start()
    sent: dict[int, float] = {}
    seen: list[dict[int, float]] = [{} for _ in listers]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() and any(len(one) < count for one in seen):
            for lister, one in zip(listers, seen, strict=True):
                now = time.monotonic()
                for name in lister():
                    one.setdefault(int(name[len(PREFIX) + 1 : -3]), now)
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with daemon.connect() as client:
            start = time.monotonic()
            for number in range(1, count + 1):
                time.sleep(max(0.0, start + (number - 1) * interval_s - time.monotonic()))
                sent[number] = time.monotonic()
                if (reply := client.send(message(segments, number, end=number == count))) != Ack(number):
                    raise RuntimeError(f"segment {number}: {reply}")
        poller.join(timeout=60)
    finally:
        done.set()
        daemon.stop()
    for store, one in zip(stores, seen, strict=True):
        if missing := sorted(set(sent) - set(one)):
            raise RuntimeError(f"{store}: segments never listed: {missing}")
    return [[one[n] - sent[n] for n in sorted(sent)] for one in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between segment messages")
    args = parser.parse_args()
    results: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="destinations-") as temp:
        work = Path(temp)
        source = make_ts(work / "source.ts", seconds=4, video_bitrate=1_000_000)
        size_kib = source.stat().st_size // 1024
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        with SeaweedServer(work / "weed") as weed:
            weed.create_bucket(BUCKET)
            weed.client().put_object(Bucket=BUCKET, Key="warm-up", Body=b"x")  # SeaweedFS grows a volume
            env = {**daemon_env(weed.client_environment()), "SSL_CERT_FILE": str(work / "ca.pem")}
            s3_listed = lambda: listed_segments(weed.object_url(BUCKET, f"{KEY_PREFIX}/{INDEX}"), PREFIX)  # noqa: E731

            def run(name: str, stores: list[str], listers: list[Callable[[], list[str]]]) -> list[list[float]]:
                run_dir = work / name.replace(" ", "-").replace("+", "and")
                run_dir.mkdir()
                return latencies(run_dir, source, stores, listers, args.segments, args.interval, env)

            results.append(("s3 (SeaweedFS)", run("s3", ["s3"], [s3_listed])[0]))
            root = work / "files-root"
            root.mkdir()
            results.append(("file://", run("file", [f"file://{root}"], [on_disk(root)])[0]))
            for kind, name in (("ftp", "ftp://"), ("ftps", "ftps://"), ("sftp", "sftp://"),
                               ("http", "http:// (WebDAV)"), ("https", "https:// (WebDAV)")):
                with new_file_server(kind, work / f"{kind}-root", ca) as server:
                    results.append((name, run(kind, [store_url(server)], [on_disk(server.root)])[0]))
            # The same stream in S3 again: its first run's playlist goes, so what is seen is this run's.
            weed.client().delete_object(Bucket=BUCKET, Key=f"{KEY_PREFIX}/{INDEX}")
            with new_file_server("sftp", work / "pair-root", ca) as sftp:
                both = run("s3 + sftp", ["s3", store_url(sftp)], [s3_listed, on_disk(sftp.root)])
            results.append(("s3, with sftp:// beside it", both[0]))
            results.append(("sftp://, with s3 beside it", both[1]))
    print(f"{args.segments} segments of {size_kib} KiB, one every {args.interval:g} s, loopback;"
          f" message sent -> playlist naming it readable at the destination")
    peer = statistics.median(results[0][1])
    for name, values in results:
        median = statistics.median(values)
        print(f"  {name:28} median {median * 1000:7.1f} ms   worst {max(values) * 1000:7.1f} ms"
              f"   median vs S3 x{median / peer:.2f}")


if __name__ == "__main__":
    main()
