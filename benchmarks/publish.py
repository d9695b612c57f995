"""Publish latency of hls-uploadd with many renditions at live pace, vs raw boto3 PUTs.

    python benchmarks/publish.py [--renditions 20] [--segment-seconds 2] [--minutes 1]

Starts a loopback SeaweedFS (examples.embedded_s3) and then, in the same run:

1. raw: a plain boto3 script that, for N streams on the same live schedule, PUTs each segment
   and then a playlist naming it (thread per stream in flight, a connection pool of N): the
   storage's own time for the two PUTs;
2. daemon: hls-uploadd as a subprocess and N simulated segmenters (asyncio tasks, one persistent
   extension connection each, protocol.encode_message / ReplyDecoder) that, every
   SEGMENT_SECONDS, hard-link a real ~2 Mbit/s 720p TS segment into their directory and send
   its message (duration, start, codecs, resolution, frame rate), waiting for OK as
   hls-segment does. Renditions come in channels of 4 that cut at the same instant.

Latency per segment: message sent -> the daemon's log line saying its playlist PUT completed
(asctime, ms resolution); a few streams are also polled over plain HTTP to check that the
playlist is readable then. Prints p50/p95/p99/max of both, the ratio, and the daemon's CPU
seconds and peak RSS (/proc/PID/stat, VmHWM), per stream; then, of the CPU per segment, the S3
client's own share: the same segment and playlist PUTs made in this process through the daemon's
store code (``client_alone``), so the rest is the daemon's own work; and the daemon's CPU per
segment by thread (/proc/PID/task: the event loop, object_store's runtime, the other threads by
their kernel name, which Python 3.11 leaves as the process's own).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    BUCKET,
    ProcFigures,
    PublishedLog,
    PySpy,
    add_daemon_options,
    daemon_env,
    listed_segments,
    pooled_client,
    proc_figures,
    read_reply,
    thread_cpu,
    segment_files,
    summary_ms,
    work_directory,
)

from protocol import Ack, IndexMessage, ReplyDecoder, encode_message  # noqa: E402
from tests.support.daemon import UploaderDaemon  # noqa: E402
from tests.support.viewer import wait_for  # noqa: E402
from examples.embedded_s3 import EmbeddedS3  # noqa: E402

INDEX = "index.m3u8"
CLIENT_PAIRS = 200  # segment + playlist PUTs timed for the S3 client's own CPU
PREFIX = "seg"
RENDITIONS_PER_CHANNEL = 4
CODECS = "avc1.64001f,mp4a.40.2"
WINDOW = 5
# Between two rounds of playlist GETs (only streams with a segment sent and not yet seen are read).
POLL_INTERVAL_S = 0.005
# After the last message, how long the daemon may take to publish what is left.
SETTLE_TIMEOUT_S = 120.0


def key_prefix(stream: int) -> str:
    return f"live/s{stream:04d}"


def label(stream: int) -> str:
    return f"{BUCKET}/{key_prefix(stream)}/{INDEX}"


def segment_name(number: int) -> str:
    return f"{PREFIX}-{number:05d}.ts"


class Schedule:
    """When each stream's segment k (1-based) is due: channels of renditions share a phase."""

    def __init__(self, streams: int, segment_seconds: float, minutes: float, seed: int = 8) -> None:
        rng = random.Random(seed)
        channels = math.ceil(streams / RENDITIONS_PER_CHANNEL)
        phases = [rng.uniform(0, segment_seconds) for _ in range(channels)]
        self.streams = streams
        self.segment_seconds = segment_seconds
        self.count = max(1, round(minutes * 60 / segment_seconds))
        self.phase = [phases[i // RENDITIONS_PER_CHANNEL] for i in range(streams)]

    def due(self, start: float, stream: int, number: int) -> float:
        return start + self.phase[stream] + (number - 1) * self.segment_seconds


def playlist_text(number: int, segment_seconds: float) -> bytes:
    first = max(1, number - WINDOW + 1)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(segment_seconds)}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for n in range(first, number + 1):
        lines += [f"#EXTINF:{segment_seconds:g},", segment_name(n)]
    return ("\n".join(lines) + "\n").encode()


# -- raw boto3 ----------------------------------------------------------------------------------

def run_raw(weed: EmbeddedS3, schedule: Schedule, files: list[Path]) -> list[float]:
    """Two PUTs per segment (segment, then playlist) on the daemon's schedule; seconds each,
    from the moment the segment was due to the playlist PUT's completion."""
    threads = min(schedule.streams, 256)
    client = pooled_client(weed.endpoint_url, threads, read_timeout_s=30)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="raw")
    times: list[float] = []

    def two_puts(stream: int, number: int, due: float) -> None:
        with open(files[(stream + number) % len(files)], "rb") as body:
            client.put_object(Bucket=BUCKET, Key=f"raw/{key_prefix(stream)}/{segment_name(number)}", Body=body,
                              ContentType="video/MP2T", CacheControl="max-age=31536000, immutable")
        client.put_object(Bucket=BUCKET, Key=f"raw/{key_prefix(stream)}/{INDEX}",
                          Body=playlist_text(number, schedule.segment_seconds),
                          ContentType="application/vnd.apple.mpegurl", CacheControl="max-age=1")
        times.append(time.time() - due)

    async def stream_task(stream: int, start: float) -> None:
        loop = asyncio.get_running_loop()
        pending = []
        for number in range(1, schedule.count + 1):
            due = schedule.due(start, stream, number)
            await asyncio.sleep(max(0.0, due - time.time()))
            pending.append(loop.run_in_executor(pool, two_puts, stream, number, due))
        await asyncio.gather(*pending)

    async def all_streams() -> None:
        start = time.time() + 0.5
        await asyncio.gather(*(stream_task(i, start) for i in range(schedule.streams)))

    try:
        asyncio.run(all_streams())
    finally:
        pool.shutdown()
        client.close()
    return times


# -- the daemon ---------------------------------------------------------------------------------

class DaemonRun:
    def __init__(self, weed: EmbeddedS3, work: Path, schedule: Schedule, files: list[Path],
                 daemon_args: list[str], sample: int, py_spy: str | None = None, py_spy_mode: str = "active") -> None:
        self.py_spy = (py_spy, py_spy_mode)
        self.weed = weed
        self.schedule = schedule
        self.files = files
        self.segments = work / "segments"
        self.segments.mkdir(parents=True)
        self.daemon = UploaderDaemon(
            work / "daemon",
            ["--allow-dir", str(self.segments), "--bucket", BUCKET, "--endpoint-url", weed.endpoint_url,
             "--log-level", "INFO", *daemon_args],
            env=daemon_env(weed.client_environment()),
        )
        self.sent: dict[tuple[str, str], float] = {}
        self.published: dict[tuple[str, str], float] = {}
        self.polled: dict[tuple[str, str], float] = {}
        self.last_sent: dict[str, tuple[str, str]] = {}
        self.sampled = sorted(random.Random(1).sample(range(schedule.streams), min(sample, schedule.streams)))
        self.refused: list[str] = []
        self.idle: ProcFigures | None = None
        self.final: ProcFigures | None = None
        self.pid = 0

    def run(self) -> None:
        self.daemon.start()
        assert self.daemon.proc is not None
        pid = self.pid = self.daemon.proc.pid
        log = PublishedLog(self.daemon.log_path)
        done = threading.Event()
        poller = threading.Thread(target=self._poll, args=(done,), daemon=True)
        try:
            # Idle = in service: after the start-up write check, whose PUT loads the S3 client
            # (object_store's runtime and pool: some 10 MiB once, not per stream).
            wait_for(lambda: f"bucket {BUCKET} can be written" in self.daemon.log_path.read_text(), timeout=30,
                     message=f"the daemon's check of bucket {BUCKET} (its log: {self.daemon.log_path})")
            self.idle = proc_figures(pid)
            spy = PySpy(pid, self.py_spy[0], mode=self.py_spy[1])
            poller.start()
            asyncio.run(self._segmenters())
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while time.monotonic() < deadline:
                self.published.update(log.poll())
                if len(self.published) >= len(self.sent):
                    break
                time.sleep(0.1)
            self.final = proc_figures(pid)
            spy.stop()
        finally:
            done.set()
            poller.join(timeout=10)
            self.daemon.stop()

    async def _segmenters(self) -> None:
        start = time.time() + 1.0
        await asyncio.gather(*(self._segmenter(i, start) for i in range(self.schedule.streams)))

    async def _segmenter(self, stream: int, start: float) -> None:
        directory = self.segments / f"s{stream:04d}"
        directory.mkdir()
        reader, writer = await asyncio.open_connection(*self.daemon.address)
        replies = ReplyDecoder()
        try:
            for number in range(1, self.schedule.count + 1):
                due = self.schedule.due(start, stream, number)
                await asyncio.sleep(max(0.0, due - time.time()))
                source = self.files[(stream + number) % len(self.files)]
                target = directory / segment_name(number)
                target.hardlink_to(source)
                message = IndexMessage(
                    index=INDEX, output_directory=str(directory),
                    segment_duration=math.ceil(self.schedule.segment_seconds), output_prefix=PREFIX,
                    http_prefix="", first_segment=1, last_segment=number, end=False, bucket=BUCKET,
                    key_prefix=key_prefix(stream), duration=self.schedule.segment_seconds,
                    start=round(10 + (number - 1) * self.schedule.segment_seconds, 6),
                    discontinuity=number == 1, codecs=CODECS, resolution="1280x720", frame_rate=30.0,
                )
                self.sent[(label(stream), target.name)] = time.time()
                self.last_sent[label(stream)] = (label(stream), target.name)
                writer.write(encode_message(message, newline=True))
                reply = await read_reply(reader, replies)
                if reply != Ack(number):
                    self.refused.append(f"stream {stream} segment {number}: {reply}")
        finally:
            writer.close()

    def _poll(self, done: threading.Event) -> None:
        """Polls the sampled streams' playlists over HTTP while one of their segments is sent and
        not yet seen (so the GETs do not load SeaweedFS); first time each segment is named."""
        urls = {label(i): self.weed.object_url(BUCKET, f"{key_prefix(i)}/{INDEX}") for i in self.sampled}
        while not done.is_set() and urls:
            for name, url in urls.items():
                last = self.last_sent.get(name)
                if last is None or last in self.polled:
                    continue
                names = listed_segments(url, PREFIX)
                now = time.time()
                for segment in names:
                    self.polled.setdefault((name, segment), now)
            time.sleep(POLL_INTERVAL_S)

    def latencies(self) -> list[float]:
        return [self.published[key] - sent for key, sent in self.sent.items() if key in self.published]

    def polled_latencies(self) -> list[float]:
        return [self.polled[key] - sent for key, sent in self.sent.items() if key in self.polled]


def warm_up(weed: EmbeddedS3) -> None:
    """SeaweedFS grows a volume for a new bucket on its first write (seconds): not ours to time."""
    client = weed.client()
    try:
        for n in range(3):
            client.put_object(Bucket=BUCKET, Key=f"warm-up-{n}", Body=b"x" * 100_000)
    finally:
        client.close()


def client_alone(weed: EmbeddedS3, files: list[Path], pairs: int) -> float:
    """CPU seconds (this process: the calling thread and object_store's runtime) per segment PUT
    (create-only) plus playlist PUT (replacing the version before it, with state metadata) through
    the daemon's own store code (``uploader.stores.S3Store`` on ``uploader.cli.s3_client``, the
    default settings) in one thread, with the same segments: the S3 client's share of a published
    segment's CPU, which no work in the daemon can save."""
    import resource

    from uploader.cli import s3_client
    from uploader.config import OPTIONS
    from uploader.resume import STATE_METADATA
    from uploader.stores import S3Store

    config = argparse.Namespace(**{**{option.name: option.default for option in OPTIONS},
                                   "endpoint_url": weed.endpoint_url})
    saved = dict(os.environ)
    os.environ.update(weed.client_environment())
    try:
        store = S3Store(s3_client(config))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    bodies = [f.read_bytes() for f in files]
    playlist = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n" + b"#EXTINF:2.000,\nseg-00001.ts\n" * 5
    metadata = {STATE_METADATA: "x" * 200}  # about what resume.state_metadata puts beside a playlist
    version: dict[str, str | None] = {}

    def put_pair(number: int, prefix: str) -> None:
        store.put(BUCKET, f"{prefix}/seg-{number:05d}.ts", bodies[number % len(bodies)], content_type="video/mp2t",
                  cache_control="max-age=31536000, immutable", create_only=True)
        version[prefix] = store.put_version(
            BUCKET, f"{prefix}/index.m3u8", playlist, content_type="application/vnd.apple.mpegurl",
            cache_control="max-age=1", metadata=metadata, replaces=version.get(prefix))

    for number in range(10):  # the client's runtime loaded, its connections made
        put_pair(number, "client-warm-up")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    for number in range(pairs):
        put_pair(number, "client-alone")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    store.close()
    return (usage.ru_utime + usage.ru_stime - before) / pairs


def row(name: str, values_ms: tuple[float, float, float, float], count: int) -> str:
    return f"{name:44}{count:>7}" + "".join(f"{v:9.1f}" for v in values_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renditions", type=int, default=20, help="simulated segmenters (streams)")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each of the two phases")
    parser.add_argument("--sample", type=int, default=4, help="streams whose playlist is also polled over HTTP")
    parser.add_argument("--skip-raw", action="store_true")
    add_daemon_options(parser)
    args = parser.parse_args()
    if not 1 <= args.renditions <= 2000 or not 0.5 <= args.segment_seconds <= 60 or not 0 < args.minutes <= 30:
        parser.error("bounds: 1..2000 renditions, 0.5..60 s segments, up to 30 minutes")
    files = segment_files(args.segment_seconds)
    sizes = [f.stat().st_size for f in files]
    schedule = Schedule(args.renditions, args.segment_seconds, args.minutes)
    work, temp = work_directory(args.keep, "hls-publish-bench-")
    try:
        with EmbeddedS3(work / "weed") as weed:
            weed.create_bucket(BUCKET)
            warm_up(weed)
            assert weed.pid is not None
            load = os.getloadavg()[0]
            weed_cpu = [proc_figures(weed.pid).cpu_s]
            raw = [] if args.skip_raw else run_raw(weed, schedule, files)
            weed_cpu.append(proc_figures(weed.pid).cpu_s)
            run = DaemonRun(weed, work, schedule, files, args.daemon_arg, args.sample, args.py_spy, args.py_spy_mode)
            run.run()
            weed_cpu.append(proc_figures(weed.pid).cpu_s)
            client_s = client_alone(weed, files, CLIENT_PAIRS)
    finally:
        if temp is not None:
            temp.cleanup()  # type: ignore[attr-defined]

    latencies = run.latencies()
    polled = run.polled_latencies()
    mean_kib = sum(sizes) / len(sizes) / 1024
    rate_mbit = sum(sizes) / len(sizes) * 8 / args.segment_seconds / 1e6
    print(f"\n{args.renditions} renditions x {schedule.count} segments of {args.segment_seconds:g} s "
          f"({mean_kib:.0f} KiB, {rate_mbit:.1f} Mbit/s), live pace, loopback SeaweedFS")
    print(f"{'':44}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    if raw:
        print(row("raw boto3 segment PUT + playlist PUT", summary_ms(raw), len(raw)))
    if latencies:
        print(row("daemon: message sent -> playlist PUT done", summary_ms(latencies), len(latencies)))
    if polled:
        print(row(f"daemon: sent -> readable over HTTP ({len(run.sampled)} polled)", summary_ms(polled), len(polled)))
    missing = len(run.sent) - len(latencies)
    if missing:
        print(f"NOT PUBLISHED within {SETTLE_TIMEOUT_S:g} s of the last message: {missing} of {len(run.sent)}")
    if run.refused:
        print(f"refused: {len(run.refused)}, e.g. {run.refused[0]}")
    if raw and latencies:
        raw_ms, ours_ms = summary_ms(raw), summary_ms(latencies)
        print(f"ratio daemon/raw: p50 {ours_ms[0] / raw_ms[0]:.2f}, p95 {ours_ms[1] / raw_ms[1]:.2f}, "
              f"p99 {ours_ms[2] / raw_ms[2]:.2f} (goal p99 <= 1.5)")
    print(f"SeaweedFS CPU: {weed_cpu[1] - weed_cpu[0]:.1f} s in the raw phase, {weed_cpu[2] - weed_cpu[1]:.1f} s in the "
          f"daemon phase; {os.cpu_count()} CPUs, load average {load:.1f} at the start")
    if run.idle and run.final:
        grown_kib = run.final.hwm_kib - run.idle.rss_kib
        per_segment_s = (run.final.cpu_s - run.idle.cpu_s) / (schedule.count * args.renditions)
        print(f"daemon: CPU {run.final.cpu_s - run.idle.cpu_s:.1f} s over {args.minutes:g} min "
              f"({per_segment_s * 1000:.2f} ms per segment); "
              f"RSS idle {run.idle.rss_kib / 1024:.1f} MiB, peak {run.final.hwm_kib / 1024:.1f} MiB, "
              f"growth {grown_kib / 1024:.1f} MiB = {grown_kib / args.renditions:.0f} KiB per stream (goal < 1024)")
        print(f"of which the S3 client alone (uploader.stores.S3Store, {CLIENT_PAIRS} segment + playlist PUTs in one"
              f" thread): {client_s * 1000:.2f} ms per segment; the daemon's own work: "
              f"{(per_segment_s - client_s) * 1000:.2f} ms per segment (goal: <= 2 ms per segment in all)")
        print("the daemon's CPU per segment by thread:")
        print("\n".join(thread_cpu(run.pid, run.idle, run.final, schedule.count * args.renditions)))


if __name__ == "__main__":
    main()
