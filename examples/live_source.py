"""A live test source made with PyAV alone: moving picture and a tone, H.264 + AAC in MPEG-TS.

Used by the demo where ffmpeg is not installed. Writes to stdout (or a file) paced in real time,
like an encoder fed by a camera:

    python -m examples.live_source --seconds 60 | hls-segment - 2 /tmp/seg demo out.m3u8 "" bucket live
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from typing import BinaryIO

import av

SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 1024  # one AAC frame


def _luma_pattern(width: int, height: int) -> bytes:
    """Diagonal stripes; rotating this buffer makes them move at no cost per frame."""
    return bytes(((x + y) * 4) % 220 + 16 for y in range(height) for x in range(width))


def _tone(start_sample: int, count: int, frequency: float = 440.0) -> bytes:
    amplitude = 0.2
    return b"".join(
        int(amplitude * 32767 * math.sin(2 * math.pi * frequency * (start_sample + i) / SAMPLE_RATE)).to_bytes(
            2, "little", signed=True
        )
        for i in range(count)
    )


def run(
    output: BinaryIO,
    *,
    seconds: float | None,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    gop_seconds: float = 2.0,
    video_bitrate: int = 800_000,
    realtime: bool = True,
) -> None:
    container = av.open(output, "w", format="mpegts")
    video = container.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.bit_rate = video_bitrate
    gop = round(gop_seconds * fps)
    video.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "bf": "0",
    }
    audio = container.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "mono"
    audio.bit_rate = 64_000

    pattern = _luma_pattern(width, height)
    chroma = bytes([128]) * (width * height // 4)
    tone = _tone(0, SAMPLE_RATE)  # one second, repeated (440 Hz fits a second exactly)
    started = time.monotonic()
    frame_index = 0
    sample_index = 0
    total_frames = None if seconds is None else round(seconds * fps)
    try:
        while total_frames is None or frame_index < total_frames:
            shift = (frame_index * 8) % len(pattern)
            frame = av.VideoFrame(width, height, "yuv420p")
            planes = (pattern[shift:] + pattern[:shift], chroma, chroma)
            for index, (plane, data) in enumerate(zip(frame.planes, planes)):
                _fill_plane(plane, data, width if index == 0 else width // 2)
            frame.pts = frame_index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
            frame_index += 1
            while sample_index < frame_index * SAMPLE_RATE // fps:
                offset = sample_index % SAMPLE_RATE
                chunk = (tone + tone)[offset * 2 : (offset + AUDIO_FRAME_SAMPLES) * 2]
                samples = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
                samples.planes[0].update(chunk)
                samples.sample_rate = SAMPLE_RATE
                samples.pts = sample_index
                samples.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(audio.encode(samples))
                sample_index += AUDIO_FRAME_SAMPLES
            if realtime:
                ahead = frame_index / fps - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            output.flush()
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    except (BrokenPipeError, KeyboardInterrupt):
        return
    finally:
        try:
            container.close()
        except (BrokenPipeError, OSError):
            pass


def _fill_plane(plane: av.video.plane.VideoPlane, data: bytes, width: int) -> None:
    """Copy tightly packed rows into a plane whose rows may be padded (line_size > width)."""
    if plane.line_size == width:
        plane.update(data)
        return
    rows = len(data) // width
    padding = bytes(plane.line_size - width)
    plane.update(b"".join(data[row * width : (row + 1) * width] + padding for row in range(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: run until stopped)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop-seconds", type=float, default=2.0, help="keyframe interval")
    parser.add_argument("--fast", action="store_true", help="as fast as possible, not in real time")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    run(sys.stdout.buffer, seconds=args.seconds, width=width, height=height, fps=args.fps,
        gop_seconds=args.gop_seconds, realtime=not args.fast)


if __name__ == "__main__":
    main()
