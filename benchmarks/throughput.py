"""Sustained upload rate of hls-uploadd with a backlog from many streams, vs raw boto3 PUTs.

    python benchmarks/throughput.py [--streams 40] [--segments 20] [--threads 4,8,16,32,64]

Starts a loopback SeaweedFS (examples.embedded_s3), places STREAMS x SEGMENTS real ~2 Mbit/s
720p TS segments (2 s each) on disk, then in the same run:

1. raw: a plain boto3 script PUTs all of them with a thread pool (and as many pooled
   connections) of each size in --threads; the best MB/s is the baseline; then the same with a
   playlist PUT after each segment, streams in order, as the daemon must work;
2. daemon: hls-uploadd as a subprocess; every stream's simulated segmenter sends its whole
   backlog of messages on one connection (each after the previous OK, as hls-segment drains its
   outbox), and the clock stops at the daemon's log line for the last published segment.

The daemon also PUTs a playlist after every segment (it must); the raw script PUTs the segments
only. MB/s counts segment bytes only, in both.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    BUCKET,
    PublishedLog,
    PySpy,
    add_daemon_options,
    daemon_env,
    pooled_client,
    proc_figures,
    read_reply,
    segment_files,
    work_directory,
)
from botocore.client import BaseClient  # noqa: E402

from protocol import Ack, IndexMessage, ReplyDecoder, encode_message  # noqa: E402
from tests.support.daemon import UploaderDaemon  # noqa: E402
from examples.embedded_s3 import EmbeddedS3  # noqa: E402

INDEX = "index.m3u8"
PREFIX = "seg"
SEGMENT_SECONDS = 2.0
SETTLE_TIMEOUT_S = 600.0

Item = TypeVar("Item")


def timed_puts(weed: EmbeddedS3, threads: int, puts: Callable[[BaseClient, Item], None],
               items: Iterable[Item]) -> float:
    """Seconds for ``threads`` threads, sharing one client, to run ``puts(client, item)`` on every item."""
    client = pooled_client(weed.endpoint_url, threads, read_timeout_s=60)
    try:
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(functools.partial(puts, client), items):
                pass
        return time.monotonic() - began
    finally:
        client.close()


def raw_rate(weed: EmbeddedS3, paths: list[Path], threads: int, run: int) -> float:
    """Seconds to PUT every file with ``threads`` threads."""

    def put(client: BaseClient, item: tuple[int, Path]) -> None:
        n, path = item
        with open(path, "rb") as body:
            client.put_object(Bucket=BUCKET, Key=f"raw{run}/{n:06d}.ts", Body=body, ContentType="video/MP2T")

    return timed_puts(weed, threads, put, enumerate(paths))


def raw_two_put_rate(weed: EmbeddedS3, streams: list[list[Path]], threads: int, run: int) -> float:
    """Seconds to PUT every file and, after each, its stream's playlist (in order per stream, as
    the daemon must), ``threads`` streams at a time."""
    playlist = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n" + b"#EXTINF:2.0,\nseg-00001.ts\n" * 5

    def one_stream(client: BaseClient, item: tuple[int, list[Path]]) -> None:
        n, paths = item
        for path in paths:
            with open(path, "rb") as body:
                client.put_object(Bucket=BUCKET, Key=f"raw{run}/s{n:04d}/{path.name}", Body=body,
                                  ContentType="video/MP2T")
            client.put_object(Bucket=BUCKET, Key=f"raw{run}/s{n:04d}/index.m3u8", Body=playlist,
                              ContentType="application/vnd.apple.mpegurl")

    return timed_puts(weed, threads, one_stream, enumerate(streams))


def place_backlog(segments: Path, files: list[Path], streams: int, count: int) -> list[Path]:
    placed = []
    for stream in range(streams):
        directory = segments / f"s{stream:04d}"
        directory.mkdir(parents=True)
        for number in range(1, count + 1):
            target = directory / f"{PREFIX}-{number:05d}.ts"
            target.hardlink_to(files[(stream + number) % len(files)])
            placed.append(target)
    return placed


async def send_backlog(address: tuple[str, int], segments: Path, streams: int, count: int) -> None:
    async def one(stream: int) -> None:
        directory = segments / f"s{stream:04d}"
        reader, writer = await asyncio.open_connection(*address)
        replies = ReplyDecoder()
        try:
            for number in range(1, count + 1):
                message = IndexMessage(
                    index=INDEX, output_directory=str(directory), segment_duration=2, output_prefix=PREFIX,
                    http_prefix="", first_segment=1, last_segment=number, end=number == count, bucket=BUCKET,
                    key_prefix=f"live/s{stream:04d}", duration=SEGMENT_SECONDS, discontinuity=number == 1,
                )
                writer.write(encode_message(message, newline=True))
                reply = await read_reply(reader, replies)
                if reply != Ack(number):
                    raise RuntimeError(f"stream {stream} segment {number}: {reply}")
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(streams)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--segments", type=int, default=20, help="backlog per stream")
    parser.add_argument("--threads", default="4,8,16,32,64", help="raw boto3 thread counts to try")
    add_daemon_options(parser)
    args = parser.parse_args()
    if not 1 <= args.streams <= 2000 or not 1 <= args.segments <= 1000 or args.streams * args.segments > 20000:
        parser.error("bounds: 1..2000 streams, 1..1000 segments each, at most 20000 in all")
    thread_counts = [int(t) for t in args.threads.split(",")]
    files = segment_files(SEGMENT_SECONDS)
    work, temp = work_directory(args.keep, "hls-throughput-bench-")
    segments = work / "segments"
    try:
        paths = place_backlog(segments, files, args.streams, args.segments)
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        with EmbeddedS3(work / "weed") as weed:
            weed.create_bucket(BUCKET)
            raw_rate(weed, paths[:20], 4, 0)  # warm-up: SeaweedFS grows the bucket's volume
            load = os.getloadavg()[0]
            raw = {threads: raw_rate(weed, paths, threads, run) for run, threads in enumerate(thread_counts, 1)}
            by_stream = [paths[i * args.segments : (i + 1) * args.segments] for i in range(args.streams)]
            raw_pairs = {threads: raw_two_put_rate(weed, by_stream, threads, 100 + run)
                         for run, threads in enumerate(thread_counts, 1)}
            daemon = UploaderDaemon(
                work / "daemon",
                ["--allow-dir", str(segments), "--bucket", BUCKET, "--endpoint-url", weed.endpoint_url,
                 "--log-level", "INFO", *args.daemon_arg],
                env=daemon_env(weed.client_environment()),
            ).start()
            assert daemon.proc is not None
            log = PublishedLog(daemon.log_path)
            try:
                idle = proc_figures(daemon.proc.pid)
                spy = PySpy(daemon.proc.pid, args.py_spy, mode=args.py_spy_mode)
                began = time.time()
                asyncio.run(send_backlog(daemon.address, segments, args.streams, args.segments))
                queued_s = time.time() - began
                published: dict[tuple[str, str], float] = {}
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while len(published) < len(paths) and time.monotonic() < deadline:
                    published.update(log.poll())
                    time.sleep(0.05)
                final = proc_figures(daemon.proc.pid)
                spy.stop()
            finally:
                daemon.stop()
    finally:
        if temp is not None:
            temp.cleanup()  # type: ignore[attr-defined]
    if len(published) < len(paths):
        raise SystemExit(f"only {len(published)} of {len(paths)} segments published in {SETTLE_TIMEOUT_S:g} s")
    daemon_s = max(published.values()) - began
    print(f"\n{args.streams} streams x {args.segments} segments = {len(paths)} files, {total_mb:.0f} MB, "
          f"loopback SeaweedFS")
    print(f"{'':34}{'seconds':>9}{'MB/s':>9}")
    for threads, seconds in raw.items():
        print(f"{f'raw boto3, {threads} threads':34}{seconds:9.2f}{total_mb / seconds:9.1f}")
    for threads, seconds in raw_pairs.items():
        print(f"{f'raw, + playlist each, {threads} thr.':34}{seconds:9.2f}{total_mb / seconds:9.1f}")
    best = max(raw, key=lambda t: total_mb / raw[t])
    best_pairs = max(raw_pairs, key=lambda t: total_mb / raw_pairs[t])
    print(f"{'hls-uploadd (+ a playlist each)':34}{daemon_s:9.2f}{total_mb / daemon_s:9.1f}")
    print(f"all messages acknowledged after {queued_s:.2f} s")
    print(f"ratio daemon/best raw ({best} threads): {raw[best] / daemon_s:.2f} (goal >= 0.80); "
          f"daemon/best raw with playlists ({best_pairs} threads): {raw_pairs[best_pairs] / daemon_s:.2f}")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start")
    print(f"daemon: CPU {final.cpu_s - idle.cpu_s:.1f} s ({(final.cpu_s - idle.cpu_s) / len(paths) * 1000:.2f} ms "
          f"per segment), peak RSS {final.hwm_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
