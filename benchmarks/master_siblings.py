"""The publisher's CPU per publish with many sibling streams under one key prefix (one program,
one master playlist), against as many streams under separate prefixes.

    python benchmarks/master_siblings.py [--siblings 10 100 1000] [--rounds 6]

In one process, for each N: a spool on /dev/shm (so its fsyncs cost nothing), the real
``Publisher`` over a store that keeps objects in memory (the publisher's own CPU is what is
measured, not a store's), and N streams that each publish ``--rounds`` segments of one size, in
rounds. The first rounds settle each rendition (its first appearance, its independence, its
bandwidth) and upload the master; the last half of the rounds change nothing in it and are
timed: CPU seconds of the process (``time.process_time``) per segment published. The same with
every stream under its own prefix (no master at all) gives the reference; the ratio is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import IndexMessage  # noqa: E402
from uploader.config import UploaderConfig  # noqa: E402
from uploader.files import AllowedDirs  # noqa: E402
from uploader.payloads import PayloadStore  # noqa: E402
from uploader.publisher import Publisher  # noqa: E402
from uploader.spool import Spool, SpoolThread  # noqa: E402
from uploader.stores import Body  # noqa: E402

SEGMENT_BYTES = 250_000  # 1 s of a 2 Mbit/s rendition
BUCKET = "bench"


class MemoryStore:
    """Objects in a dict: a PUT costs the publisher's side of it only."""

    description = "memory"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], int] = {}

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str) -> None:
        if isinstance(body, bytes):
            size = len(body)
        else:
            with body() as file:
                size = len(file.read())
        self.objects[(bucket, key)] = size

    def delete(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)


def message(directory: Path, key_prefix: str, index: str, number: int) -> IndexMessage:
    return IndexMessage(
        index=f"{index}.m3u8", output_directory=f"{directory}/", segment_duration=1, output_prefix=index,
        http_prefix="", first_segment=1, last_segment=number, end=False, bucket=BUCKET, key_prefix=key_prefix,
        duration=1.0, codecs="avc1.64001f,mp4a.40.2", resolution="1280x720", independent=True,
    )


async def measure(siblings: int, rounds: int, *, one_prefix: bool, work: Path) -> float:
    """CPU seconds per published segment over the last half of ``rounds``."""
    segments = work / "segments"
    segments.mkdir()
    source = segments / "source.ts"
    source.write_bytes(os.urandom(SEGMENT_BYTES))
    config = UploaderConfig.from_settings({
        "spool_dir": str(work / "spool"), "allow_dir": [str(segments)], "keep_segment_files": True,
        "keep_segment_objects": True, "max_inflight": 8,
    })
    spool = SpoolThread(Spool.open(config.spool_dir))
    payloads = PayloadStore(config.spool_dir, max_inflight_bytes=config.max_payload_inflight_bytes)
    payloads.open()
    publisher = Publisher(config=config, spool=spool, store=MemoryStore(), allowed=AllowedDirs(config.allow_dirs),
                          payloads=payloads)
    streams = [("program" if one_prefix else f"program-{n}", f"r{n:04d}") for n in range(siblings)]
    timed_from = rounds - rounds // 2
    began = 0.0
    try:
        for number in range(1, rounds + 1):
            if number == timed_from + 1:
                began = time.process_time()
            for key_prefix, index in streams:
                os.link(source, segments / f"{index}-{number:05d}.ts")
                queued = message(segments, key_prefix, index, number)
                await spool.call(Spool.enqueue, spool.spool, queued)
                publisher.notify(queued.stream_id)
            while await spool.call(Spool.queued_count, spool.spool):
                await asyncio.sleep(0.005)
        return (time.process_time() - began) / (siblings * (rounds - timed_from))
    finally:
        await publisher.drain(10)
        publisher.close()
        spool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--siblings", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"{'siblings':>8} {'one prefix ms/publish':>22} {'separate ms/publish':>20} {'ratio':>6}")
    for siblings in args.siblings:
        figures = []
        for one_prefix in (True, False):
            with tempfile.TemporaryDirectory(dir="/dev/shm") as work:
                figures.append(asyncio.run(measure(siblings, args.rounds, one_prefix=one_prefix, work=Path(work))))
        together, apart = figures
        print(f"{siblings:>8} {together * 1000:>22.3f} {apart * 1000:>20.3f} {together / apart:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
