"""hls-segment vs ffmpeg's own HLS muxer on the same 600-s 720p file.

    python benchmarks/segmenter.py [--runs 5] [--seconds 600] [--short 10] [--pyav]

Makes (once, cached in benchmarks/.cache/) a 1280x720 2 Mbit/s H.264 + AAC MPEG-TS with Debian's
ffmpeg, then times, alternating, `hls-segment IN 10 ...` (with a trivial acknowledging listener
on its port) and `ffmpeg -i IN -c copy -f hls -hls_time 10`. Prints the median wall and CPU
seconds, the ratios ffmpeg/ours, and the peak RSS of each (from wait4's rusage).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import make_source  # noqa: E402

from protocol import Ack, IndexMessage, MessageDecoder, NEED_DATA, CLOSED, encode_reply  # noqa: E402


@dataclass(frozen=True, slots=True)
class Sample:
    wall_s: float
    cpu_s: float
    max_rss_kib: int


class AckListener:
    """Replies OK n to every message, like a daemon with an instant disk."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = MessageDecoder()
        with conn:
            while data := conn.recv(65536):
                decoder.receive_data(data)
                while (event := decoder.next_event()) not in (NEED_DATA, CLOSED):
                    if isinstance(event, IndexMessage):
                        self.messages += 1
                        conn.sendall(encode_reply(Ack(event.last_segment)))


def timed(args: list[str], env: dict[str, str] | None = None) -> Sample:
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({process.returncode}): {stderr}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def measure(source: Path, runs: int, port: int, scratch: str, pyav: bool) -> dict[str, list[Sample]]:
    """``runs`` alternating runs of each tool on ``source``: hls-segment (fast path), ffmpeg, and
    with ``pyav`` hls-segment on its PyAV path (HLS_SEGMENT_FAST_PATH=0)."""

    def ours(path: str) -> Callable[[], Sample]:
        def run() -> Sample:
            out = Path(scratch) / f"ours-{path}"
            shutil.rmtree(out, ignore_errors=True)
            return timed([
                sys.executable, "-m", "segmenter", str(source), "10", str(out), "bench", "bench.m3u8",
                "http://cdn.example.net/bench/", "benchbucket", "bench",
                "--uploader", f"127.0.0.1:{port}", "--quiet",
            ], env={**os.environ, "HLS_SEGMENT_FAST_PATH": "1" if path == "fast" else "0"})
        return run

    def ffmpeg() -> Sample:
        out = Path(scratch) / "ffmpeg"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return timed([
            "ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-f", "hls",
            "-hls_time", "10", "-hls_list_size", "0", str(out / "bench.m3u8"),
        ])

    jobs: dict[str, Callable[[], Sample]] = {"hls-segment": ours("fast"), "ffmpeg hls": ffmpeg}
    if pyav:
        jobs["hls-segment, PyAV path"] = ours("pyav")
    samples: dict[str, list[Sample]] = {name: [] for name in jobs}
    for run in range(runs):
        names = list(jobs) if run % 2 == 0 else list(reversed(jobs))
        for name in names:
            samples[name].append(jobs[name]())
    return samples


def compile_project() -> None:
    """Write the project's bytecode first, as installing the package does: with
    PYTHONDONTWRITEBYTECODE set (some machines set it) an editable checkout would otherwise be
    compiled again in every timed run (0.1-0.25 s of start-up, measured)."""
    root = Path(__file__).resolve().parent.parent
    for package in ("common", "protocol", "segmenter"):
        compileall.compile_dir(root / package, quiet=1)


def median(samples: list[Sample], attribute: str) -> float:
    return statistics.median(getattr(s, attribute) for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--short", type=int, default=10,
                        help="also time a SHORT-second file: the fixed start-up cost, and the cost per "
                             "media minute beyond it (0: skip)")
    parser.add_argument("--pyav", action="store_true", help="also time hls-segment's PyAV path")
    options = parser.parse_args()
    compile_project()
    source = make_source(options.seconds)
    short = make_source(options.short) if options.short else None
    listener = AckListener()
    with tempfile.TemporaryDirectory(prefix="hls-bench-") as scratch:
        long_runs = measure(source, options.runs, listener.port, scratch, options.pyav)
        short_runs = measure(short, options.runs, listener.port, scratch, options.pyav) if short else None
    size_mb = source.stat().st_size / 1e6
    ours, theirs = long_runs["hls-segment"], long_runs["ffmpeg hls"]

    print(f"\ninput: {source.name}, {size_mb:.0f} MB, {options.runs} runs each, alternating")
    print(f"{'':24}{'wall s':>10}{'CPU s':>10}{'peak RSS MiB':>15}")
    for name, samples in long_runs.items():
        rss = max(s.max_rss_kib for s in samples) / 1024
        print(f"{name:24}{median(samples, 'wall_s'):10.3f}{median(samples, 'cpu_s'):10.3f}{rss:15.1f}")
    print(
        f"ratio ffmpeg/ours: wall {median(theirs, 'wall_s') / median(ours, 'wall_s'):.2f}, "
        f"CPU {median(theirs, 'cpu_s') / median(ours, 'cpu_s'):.2f} (goal >= 1.0)"
    )
    if short_runs is not None:
        minutes = (options.seconds - options.short) / 60
        print(f"\nstart-up ({options.short}-s file) and cost per media minute beyond it (wall, median):")
        print(f"{'':24}{'start-up s':>12}{'s per min':>12}")
        marginal = {}
        for name in long_runs:
            fixed = median(short_runs[name], "wall_s")
            marginal[name] = (median(long_runs[name], "wall_s") - fixed) / minutes
            print(f"{name:24}{fixed:12.3f}{marginal[name]:12.4f}")
        print(f"ratio ffmpeg/ours per media minute: {marginal['ffmpeg hls'] / marginal['hls-segment']:.2f}")


if __name__ == "__main__":
    main()
