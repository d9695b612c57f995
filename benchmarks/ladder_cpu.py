"""CPU cost of encoding one source into a bitrate ladder, three ways, on this machine.

    python benchmarks/ladder_cpu.py [--ladder original] [--seconds 20] [--runs 2] [--source-size WxH]

Makes once, at the start (in a temporary directory), a test source with ffmpeg: lavfi testsrc2 at
25 fps and a 48-kHz stereo sine, ``--seconds`` long, H.264 + AAC in MPEG-TS, of ``--source-size``
(default 1280x720, or the ladder's largest rendition when that is larger: 1920x1080 for
``modern``). Then encodes it, as fast as the machine goes (no -re), into the renditions of
segmenter.ladder.PRESETS[--ladder]:

(a) one ffmpeg, several outputs: decodes once, ``-filter_complex split`` + ``scale`` per
    rendition, one libx264 + AAC encoder and one MPEG-TS file per rendition;
(b) hls-ladder's way: the decoder of ``decoder_command`` (raw video + PCM in live Matroska, one
    pipe per rendition), ``segmenter.ladder_run.Rung``'s relay threads in this process, one
    ``encoder_command`` ffmpeg per rendition, its MPEG-TS copied by ``Rung.drain`` to a file
    (where hls-ladder has hls-segment, which is left out);
(c) separate ffmpeg commands: one ffmpeg per rendition, each decoding the source itself (as
    examples/three-renditions.sh does), all at once.

Every way encodes each rendition with encoder_command's options (libx264 veryfast zerolatency,
-b:v/-maxrate/-bufsize, the keyframe grid of 2-s segments, AAC at the rendition's rate). CPU is
user + system seconds of the ffmpeg children (getrusage RUSAGE_CHILDREN deltas, each child
waited) and of this process (time.process_time deltas: (b)'s relay), per second of source.
Each way runs ``--runs`` times, alternating the order; prints the medians, the ratios against
(c) and (a), how (b) and (c) split, and the video frames each output holds (every output is
checked with ffprobe).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmenter.ladder import PRESETS, Rendition, decoder_command, encoder_command  # noqa: E402
from segmenter.ladder_run import Encoder, Rung  # noqa: E402

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
FRAME_RATE = 25  # frames/s of the source
SEGMENT_SECONDS = Fraction(2)  # hls-ladder's default: the keyframe grid
QUIET = ("-hide_banner", "-nostdin", "-loglevel", "warning")


@dataclass(frozen=True, slots=True)
class Setup:
    """What every way encodes: the source file, its length (s), the renditions, and where the
    outputs go."""

    source: Path
    seconds: int
    renditions: tuple[Rendition, ...]
    out_dir: Path

    def outputs(self, way: str) -> list[Path]:
        return [self.out_dir / f"{way}-{r.name}.ts" for r in self.renditions]


@dataclass(frozen=True, slots=True)
class Sample:
    """One run of one way: CPU seconds of the ffmpeg children and of this process, wall seconds,
    and the CPU seconds of its parts (name -> s, ffmpeg children only)."""

    ffmpeg_s: float
    python_s: float
    wall_s: float
    parts: dict[str, float]


class Meter:
    """CPU (s) of waited children and of this process, and wall time (s), since it was made."""

    def __init__(self) -> None:
        self._children = _children_cpu_s()
        self._self = time.process_time()
        self._wall = time.perf_counter()

    def children_s(self) -> float:
        return _children_cpu_s() - self._children

    def sample(self, parts: dict[str, float]) -> Sample:
        return Sample(self.children_s(), time.process_time() - self._self, time.perf_counter() - self._wall, parts)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def encoder_options(rendition: Rendition) -> list[str]:
    """encoder_command's codec options for ``rendition``: from -c:v up to its output format."""
    command = encoder_command(FFMPEG, rendition, SEGMENT_SECONDS)
    return command[command.index("-c:v") : command.index("-f", command.index("-c:a"))]


def scale_filter(rendition: Rendition) -> str:
    """The decoder_command's scaling of ``rendition``'s frames."""
    return f"scale={rendition.width or -2}:{rendition.height},format=yuv420p"


def _check_exit(what: str, code: int) -> None:
    if code != 0:
        raise SystemExit(f"ladder_cpu: {what} exited with code {code}")


# -- the three ways ---------------------------------------------------------------------------

def one_ffmpeg(setup: Setup) -> Sample:
    """(a): one ffmpeg, one decode, split + scale, an encoder and an MPEG-TS output per rendition."""
    labels = "".join(f"[s{i}]" for i in range(len(setup.renditions)))
    graph = [f"[0:v:0]split={len(setup.renditions)}{labels}"]
    graph += [f"[s{i}]{scale_filter(r)}[v{i}]" for i, r in enumerate(setup.renditions)]
    command = [FFMPEG, *QUIET, "-y", "-i", str(setup.source), "-filter_complex", ";".join(graph)]
    for i, (rendition, path) in enumerate(zip(setup.renditions, setup.outputs("a"), strict=True)):
        command += ["-map", f"[v{i}]", "-map", "0:a:0?", *encoder_options(rendition), "-f", "mpegts", str(path)]
    meter = Meter()
    _check_exit("(a)'s ffmpeg", subprocess.run(command).returncode)
    return meter.sample({})


def hls_ladder_way(setup: Setup) -> Sample:
    """(b): decoder_command -> Rung relay threads -> encoder_command per rendition -> a file (no
    hls-segment), started the way Ladder._start and Ladder._arm_encoder do."""
    meter = Meter()
    pipes = [os.pipe() for _ in setup.renditions]
    rungs = [Rung(r, read_end, SEGMENT_SECONDS) for r, (read_end, _) in zip(setup.renditions, pipes, strict=True)]
    for rung, path in zip(rungs, setup.outputs("b"), strict=True):
        rung.segmenter_in = open(path, "wb", buffering=0)
    write_ends = tuple(write_end for _, write_end in pipes)
    try:
        decoder = subprocess.Popen(decoder_command(FFMPEG, str(setup.source), setup.renditions, write_ends),
                                   pass_fds=write_ends)
    finally:
        for fd in write_ends:
            os.close(fd)
    for rung in rungs:
        rung.arm(_spawner(rung))  # before the feeder reads: it starts at the first video frame
        rung.feeder.start()
    _check_exit("(b)'s decoder", decoder.wait())
    decoder_s = meter.children_s()  # the encoders are not waited yet: this is the decoder's alone
    for rung in rungs:
        rung.feeder.join()  # at the decoder's end it closes the encoder's stdin
    for rung in rungs:
        if rung.encoder is None:
            raise SystemExit(f"ladder_cpu: (b)'s relay never started rendition {rung.rendition.name}'s encoder")
        _check_exit(f"(b)'s encoder of {rung.rendition.name}", rung.encoder.process.wait())
        assert rung.encoder.drain is not None
        rung.encoder.drain.join()
        rung.end_segmenter_input()
    sample = meter.sample({})
    return Sample(sample.ffmpeg_s, sample.python_s, sample.wall_s,
                  {"decoder": decoder_s, "encoders": sample.ffmpeg_s - decoder_s, "relay (python)": sample.python_s})


def _spawner(rung: Rung) -> Callable[[Fraction], BinaryIO]:
    """``rung``'s spawn(offset) for Rung.arm: starts its encoder and a drain thread, returns its stdin."""
    def spawn(offset: Fraction) -> BinaryIO:
        command = encoder_command(FFMPEG, rung.rendition, SEGMENT_SECONDS, grid_offset=offset)
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdin is not None and process.stdout is not None
        drain = threading.Thread(target=rung.drain, args=(process.stdout,), name=f"drain-{rung.rendition.name}",
                                 daemon=True)
        drain.start()
        rung.encoder = Encoder(process, time.monotonic(), 0, drain)
        return process.stdin

    return spawn


def separate_ffmpegs(setup: Setup) -> Sample:
    """(c): one ffmpeg per rendition, all at once, each decoding, scaling and encoding on its own."""
    meter = Meter()
    processes = [subprocess.Popen([FFMPEG, *QUIET, "-y", "-i", str(setup.source), "-map", "0:v:0", "-map", "0:a:0?",
                                   "-vf", scale_filter(r), *encoder_options(r), "-f", "mpegts", str(path)])
                 for r, path in zip(setup.renditions, setup.outputs("c"), strict=True)]
    parts = {}
    for rendition, process in zip(setup.renditions, processes, strict=True):
        before = meter.children_s()
        _check_exit(f"(c)'s ffmpeg of {rendition.name}", process.wait())
        parts[rendition.name] = meter.children_s() - before  # the only child waited in between
    return meter.sample(parts)


WAYS: dict[str, tuple[str, Callable[[Setup], Sample]]] = {
    "a": ("one ffmpeg, N outputs", one_ffmpeg),
    "b": ("hls-ladder's way", hls_ladder_way),
    "c": ("separate ffmpeg commands", separate_ffmpegs),
}


# -- source, checks, report -------------------------------------------------------------------

def make_source(path: Path, size: str, seconds: int) -> None:
    """``seconds`` of testsrc2 at ``size`` and FRAME_RATE, and a 48-kHz stereo sine: H.264 + AAC
    in MPEG-TS."""
    subprocess.run([FFMPEG, *QUIET, "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FRAME_RATE}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "veryfast", "-g", str(2 * FRAME_RATE), "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "mpegts", str(path)], check=True)


def video_frames(path: Path) -> int:
    """The video packets ffprobe reads in ``path`` (0 when it has no video stream)."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout.strip()
    return int(out.split()[0]) if out else 0  # the stream, then again under its program


def check_outputs(setup: Setup, way: str) -> list[int]:
    """The video frames of each of ``way``'s outputs; exits when one has none."""
    frames = []
    for path in setup.outputs(way):
        size = path.stat().st_size if path.exists() else 0
        count = video_frames(path) if size else 0
        if count == 0:
            raise SystemExit(f"ladder_cpu: ({way})'s output {path.name} has no video ({size} bytes)")
        frames.append(count)
    return frames


def default_source_size(renditions: tuple[Rendition, ...]) -> str:
    """1280x720, or the largest rendition's size when it is larger (16:9 for a width left out)."""
    top = max(renditions, key=lambda r: r.height)
    width = top.width or (top.height * 16 // 9 + 1) // 2 * 2
    return f"{width}x{top.height}" if top.height > 720 or width > 1280 else "1280x720"


def report(samples: dict[str, list[Sample]], setup: Setup) -> None:
    """The medians of ``samples`` (way -> runs) as CPU seconds per second of source, and ratios."""
    def median(way: str, field: Callable[[Sample], float]) -> float:
        return statistics.median(field(s) for s in samples[way])

    per_s = 1 / setup.seconds
    totals = {way: median(way, lambda s: s.ffmpeg_s + s.python_s) for way in samples}
    print(f"\nCPU seconds per second of source (medians of {len(samples['a'])} run(s)); wall in seconds")
    print(f"{'way':<30} {'ffmpeg':>7} {'python':>7} {'total':>7} {'/rend.':>7} {'wall':>6} {'vs (c)':>7} {'vs (a)':>7}")
    for way, (title, _) in WAYS.items():
        total = totals[way]
        print(f"({way}) {title:<26} {median(way, lambda s: s.ffmpeg_s) * per_s:7.3f}"
              f" {median(way, lambda s: s.python_s) * per_s:7.3f} {total * per_s:7.3f}"
              f" {total * per_s / len(setup.renditions):7.3f} {median(way, lambda s: s.wall_s):6.2f}"
              f" {total / totals['c']:6.2f}x {total / totals['a']:6.2f}x")
    for way in ("b", "c"):
        names = samples[way][0].parts
        split = ", ".join(f"{name} {median(way, lambda s, n=name: s.parts[n]) * per_s:.3f}" for name in names)
        print(f"({way}) split, CPU s per s: {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", choices=sorted(PRESETS), default="original")
    parser.add_argument("--seconds", type=int, default=20, help="length of the source, s")
    parser.add_argument("--runs", type=int, default=2, help="runs of each way (median reported)")
    parser.add_argument("--source-size", help="WIDTHxHEIGHT (default: 1280x720, or the ladder's largest)")
    args = parser.parse_args()
    renditions = PRESETS[args.ladder]
    size = args.source_size or default_source_size(renditions)

    with tempfile.TemporaryDirectory(prefix="ladder-cpu-") as work:
        setup = Setup(Path(work) / "source.ts", args.seconds, renditions, Path(work))
        make_source(setup.source, size, args.seconds)
        ladder = ", ".join(f"{r.name} {r.width or 'auto'}x{r.height} "
                           f"{r.video_bitrate // 1000}k+{r.audio_bitrate // 1000}k" for r in renditions)
        mbits = setup.source.stat().st_size * 8 / args.seconds / 1e6
        print(f"ladder {args.ladder}: {ladder}")
        print(f"source: {size} {FRAME_RATE} fps, {args.seconds} s, {mbits:.2f} Mbit/s; {os.cpu_count()} CPUs")
        samples: dict[str, list[Sample]] = {way: [] for way in WAYS}
        for run in range(args.runs):
            order = list(WAYS) if run % 2 == 0 else list(reversed(WAYS))
            line = []
            for way in order:
                sample = WAYS[way][1](setup)
                frames = check_outputs(setup, way)  # after the meter: ffprobe is not counted
                samples[way].append(sample)
                line.append(f"({way}) {sample.wall_s:.1f} s, frames {'/'.join(map(str, frames))}")
            print(f"run {run + 1}/{args.runs}: " + "; ".join(line), flush=True)
        report(samples, setup)


if __name__ == "__main__":
    main()
