"""The fast path's pure core alone: CPU of ``tsfast.TsSplitter`` over the 600-s file, with and without the audio pause filler.

    python benchmarks/tsfast_split.py [--runs 7] [--seconds 600]

Uses the file benchmarks/segmenter.py makes (cached in benchmarks/.cache/). Feeds it to a
``TsSplitter`` in 752-KiB reads (the shell's ``READ_CHUNK_BYTES``), with the cutter and the
parameter watch the shell gives it, 10-s segments, events counted but not written; alternating
runs with the filler (``silent_frame`` given, as ``fastrun`` does) and without. Prints the median
process CPU seconds of each and the filler's share. No start-up, no file writes, no outbox: on a
shared machine this moves far less than benchmarks/segmenter.py's whole-process figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the project first: benchmarks/segmenter.py is not the package

from _support import make_source  # noqa: E402

from segmenter.cutter import Cutter, StreamInfo, StreamKind  # noqa: E402
from segmenter.input import READ_CHUNK_BYTES  # noqa: E402
from segmenter.randomaccess import ParameterWatch, codec_by_stream_type  # noqa: E402
from segmenter.silentframe import silent_frame_or_none  # noqa: E402
from segmenter.tsfast import STREAM_TYPE_H264, ProgramMap, Track, TsSplitter, find_program  # noqa: E402

TICKS = Fraction(1, 90000)
FRAME_TICKS = 3000  # the benchmark file's 30 frames/s


def splitter(program: ProgramMap, fill: bool) -> TsSplitter:
    """A splitter for the benchmark file's program (one H.264 stream, one AAC stream)."""
    types = dict(program.streams)
    video = next(pid for pid, kind in program.streams if kind == STREAM_TYPE_H264)
    audio = next(pid for pid, kind in program.streams if kind == 0x0F)  # AAC in ADTS
    tracks = [Track(video, 0, True, False, FRAME_TICKS), Track(audio, 1, False, False, None, codec="aac")]
    cutter = Cutter([StreamInfo(0, StreamKind.VIDEO, TICKS, True), StreamInfo(1, StreamKind.AUDIO, TICKS, True)],
                    Fraction(10))
    watch = ParameterWatch(codec_by_stream_type(types[video]), TICKS)
    return TsSplitter(program, tracks, cutter, watch, silent_frame_or_none if fill else None)


def cpu_seconds(data: bytes, program: ProgramMap, fill: bool) -> float:
    split = splitter(program, fill)
    started = time.process_time()
    events = 0
    for start in range(0, len(data), READ_CHUNK_BYTES):
        events += len(split.feed(data[start : start + READ_CHUNK_BYTES]))
    events += len(split.finish())
    assert events
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=600)
    options = parser.parse_args()
    data = make_source(options.seconds).read_bytes()
    program = find_program(data)
    samples: dict[bool, list[float]] = {True: [], False: []}
    for run in range(options.runs):
        for fill in (True, False) if run % 2 == 0 else (False, True):
            samples[fill].append(cpu_seconds(data, program, fill))
    with_fill, without = statistics.median(samples[True]), statistics.median(samples[False])
    print(f"\nTsSplitter over {options.seconds} s of media ({len(data) / 1e6:.0f} MB), {options.runs} runs each, "
          "median process CPU s:")
    print(f"  with the pause filler     {with_fill:.3f}")
    print(f"  without (silent_frame=None) {without:.3f}")
    print(f"  the filler's cost         {with_fill - without:.3f} s ({with_fill / without - 1:+.0%})")


if __name__ == "__main__":
    main()
