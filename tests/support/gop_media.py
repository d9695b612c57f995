"""Clips whose GOP structure decides whether a segment decodes alone, made with ffmpeg, and a
check that decodes a segment file alone.

Every clip: testsrc2 320x240 at 24 fps, a keyframe about every 24 frames (scene cuts off),
AAC audio, MPEG-TS (or MP4, whose H.264 is length-prefixed). What differs is what the encoder
puts at each keyframe after the first:

| kind | at each later keyframe | decodable alone from it |
|---|---|---|
| h264-open | non-IDR I picture with a recovery point SEI, mostly B frames that refer back | mostly not |
| h264-closed | IDR | yes |
| hevc-open | CRA, then RASL pictures | no |
| hevc-closed | IDR_W_RADL | yes |
| hevc-cra | CRA without leading pictures (no B frames) | yes |
| mpeg2-open | I picture of a GOP with closed_gop=0, then B pictures | no |
| mpeg2-closed | I picture of a GOP with closed_gop=1 | yes |
| mpeg2-no-b | I picture of a GOP with closed_gop=0, no B pictures | yes |
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

FPS = 24
GOP_FRAMES = 24  # x265 puts an open GOP's CRA at the end of a B mini-GOP (no RASL) when 25 is asked

_X264 = f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0"
_X265 = f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0:log-level=error"
_MPEG2 = ["-c:v", "mpeg2video", "-g", str(GOP_FRAMES), "-b:v", "600k", "-sc_threshold", "1000000000"]

# x264 puts no leading B frames before some of its open-GOP keyframes (where a B run ends anyway):
# those decode alone, but only an IDR is judged independent in H.264 (segmenter/randomaccess.py).

GOP_KINDS: dict[str, tuple[list[str], bool]] = {  # kind -> (video encoder arguments, later segments judged independent)
    "h264-open": (["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-x264-params", f"open-gop=1:{_X264}"], False),
    "h264-closed": (["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-x264-params", _X264], True),
    "hevc-open": (["-c:v", "libx265", "-preset", "veryfast", "-x265-params", f"open-gop=1:bframes=3:{_X265}"], False),
    "hevc-closed": (["-c:v", "libx265", "-preset", "veryfast", "-x265-params", f"open-gop=0:bframes=3:{_X265}"], True),
    "hevc-cra": (["-c:v", "libx265", "-preset", "veryfast", "-x265-params", f"open-gop=1:bframes=0:{_X265}"], True),
    "mpeg2-open": ([*_MPEG2, "-bf", "2"], False),
    "mpeg2-closed": ([*_MPEG2, "-bf", "2", "-flags", "+cgop"], True),
    "mpeg2-no-b": ([*_MPEG2, "-bf", "0"], True),
}


def gop_clip(directory: Path, kind: str, *, seconds: int = 10, container: str = "mpegts") -> Path:
    """The clip of ``kind`` (see the module doc), made once in ``directory``."""
    suffix = "ts" if container == "mpegts" else container
    path = directory / f"gop-{kind}-{seconds}.{suffix}"
    if path.exists():
        return path
    video, _ = GOP_KINDS[kind]
    tmp = path.with_name(f".{path.name}.part")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         *video, "-c:a", "aac", "-b:a", "64k",
         # No edit list in MP4: no negative DTS. With them, the PyAV path's first segment comes out
         # shifted by the muxer and overlaps the second by two frames' timestamps (not what these
         # clips test).
         *(["-use_editlist", "0"] if container == "mp4" else []),
         "-f", container, str(tmp)],
        check=True, timeout=120,
    )
    os.replace(tmp, path)
    return path


Pictures = dict[int, str]  # pts -> digest of the decoded picture's pixels


def picture_digest(frame: av.VideoFrame) -> str:
    """A digest of a decoded picture's visible pixels (row padding left out)."""
    digest = hashlib.sha256()
    for plane in frame.planes:
        data = bytes(plane)
        for row in range(plane.height):
            digest.update(data[row * plane.line_size : row * plane.line_size + plane.width])
    return digest.hexdigest()


def decoded_pictures(path: Path) -> Pictures:
    """Every picture of ``path``'s first video stream, decoded from its start (the reference a
    segment decoded alone is compared with)."""
    with av.open(str(path)) as container:
        return {frame.pts: picture_digest(frame) for frame in container.decode(video=0)}


@dataclass(frozen=True, slots=True)
class Alone:
    """What decoding one file's first video stream alone gave."""

    packets: int  # video access units in the file
    frames: int  # pictures the decoder gave back
    same: int  # pictures identical to the ones decoded in sequence, from the stream's start
    errors: int  # decode calls that raised

    @property
    def complete(self) -> bool:
        """Every picture decoded, as decoding in sequence gives it: the file needs nothing before it."""
        return self.packets == self.frames == self.same and not self.errors


def decode_alone(path: Path, reference: Pictures) -> Alone:
    """Decode ``path``'s video alone with PyAV and compare each picture with ``reference`` (by
    pts). FFmpeg drops some pictures it cannot decode and conceals the missing references of
    others: both show."""
    packets = frames = same = errors = 0
    with av.open(str(path)) as container:
        if not container.streams.video:
            return Alone(0, 0, 0, 0)
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
            try:
                decoded = stream.decode(packet)  # a size-0 packet flushes the decoder
            except av.error.FFmpegError:
                errors += 1
                continue
            frames += len(decoded)
            same += sum(reference.get(frame.pts) == picture_digest(frame) for frame in decoded)
    return Alone(packets, frames, same, errors)
