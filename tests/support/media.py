"""Real test media made with PyAV (its wheels carry libx264 and FFmpeg's AAC), and a probe.

Clips are H.264 + AAC in MPEG-TS, like a live encoder's output: keyframes exactly
every GOP, moving content so the bitrate is what was asked for, a sine tone.
"""

from __future__ import annotations

import array
import hashlib
import inspect
import math
import os
import random
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

TS_CLOCK_HZ = 90_000
PTS_WRAP = 2**33  # MPEG-TS timestamps are 33-bit counts of the 90 kHz clock (~26.5 h)
PTS_WRAP_SECONDS = PTS_WRAP / TS_CLOCK_HZ
AAC_FRAME_SAMPLES = 1024
# FFmpeg's AAC encoder stamps its first packet this many samples before the first
# frame it was given (encoder delay); we feed frames that much later so audio and
# video both start exactly at pts_offset_seconds.
AAC_PRIMING_SAMPLES = 1024
TONE_HZ = 1000.0
NOISE_BOX = 64  # side of the moving noise square, in pixels


def make_ts(
    path: Path | str,
    *,
    seconds: float,
    fps: int = 25,
    gop_seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    video: bool = True,
    audio: bool = True,
    video_bitrate: int = 300_000,
    audio_bitrate: int = 64_000,
    sample_rate: int = 48_000,
    pts_offset_seconds: float = 0.0,
    seed: int = 0,
    b_frames: int = 0,
) -> Path:
    """Encode an MPEG-TS clip of `seconds` to `path` (written under a temp name, then renamed).

    Keyframes (IDR, closed GOP) fall exactly every `gop_seconds`, counted from the
    first frame, so encodes of the same `seed` at different bitrates line up.
    `pts_offset_seconds` (rounded to a whole video frame) shifts every timestamp;
    the muxer writes them modulo 2**33, so an offset just below PTS_WRAP_SECONDS
    yields a clip whose timestamps wrap (see make_wrapping_ts).
    """
    if not (video or audio):
        raise ValueError("a clip needs video, audio or both")
    gop_frames = round(gop_seconds * fps)
    if video and (gop_frames < 1 or abs(gop_frames - gop_seconds * fps) > 1e-9):
        raise ValueError(f"gop_seconds={gop_seconds} is not a whole number of frames at {fps} fps")
    if width % 2 or height % 2:
        raise ValueError("yuv420p needs an even width and height")
    path = Path(path)
    ticks = round(seconds * fps)  # one tick per video frame; audio is encoded up to each tick
    offset_frames = round(pts_offset_seconds * fps)
    offset_samples = offset_frames * sample_rate // fps
    total_samples = round(seconds * sample_rate)
    rng = random.Random(seed)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp_name, "w", format="mpegts") as out:
            if video:
                vstream = out.add_stream("libx264", rate=fps)
                vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
                vstream.bit_rate = video_bitrate
                vstream.options = {
                    "preset": "veryfast",
                    "g": str(gop_frames),
                    "keyint_min": str(gop_frames),
                    "sc_threshold": "0",  # no extra keyframes on scene cuts
                    "bf": str(b_frames),
                    "flags": "+cgop",  # closed GOPs: every keyframe starts a decodable segment
                }
            if audio:
                astream = out.add_stream("aac", rate=sample_rate, layout="stereo")
                astream.bit_rate = audio_bitrate
            samples_done = 0
            for tick in range(ticks):
                if video:
                    frame = _video_frame(tick, width, height, rng)
                    frame.pts = offset_frames + tick
                    frame.time_base = Fraction(1, fps)
                    out.mux(vstream.encode(frame))
                while audio and samples_done < min(total_samples, (tick + 1) * sample_rate // fps):
                    count = min(AAC_FRAME_SAMPLES, total_samples - samples_done)
                    aframe = _tone_frame(samples_done, count, sample_rate)
                    aframe.pts = offset_samples + AAC_PRIMING_SAMPLES + samples_done
                    aframe.time_base = Fraction(1, sample_rate)
                    out.mux(astream.encode(aframe))
                    samples_done += count
            if video:
                out.mux(vstream.encode(None))
            if audio:
                out.mux(astream.encode(None))
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise
    return path


def make_wrapping_ts(path: Path | str, *, seconds: float = 4.0, wrap_after_seconds: float = 1.0,
                     **params: object) -> Path:
    """A clip whose 33-bit PTS/DTS wrap to ~0 about `wrap_after_seconds` after its start."""
    offset = PTS_WRAP_SECONDS - wrap_after_seconds
    return make_ts(path, seconds=seconds, pts_offset_seconds=offset, **params)  # type: ignore[arg-type]


def make_mpeg2_ts(path: Path | str, *, seconds: float, pts_offset_seconds: float = 0.0) -> Path:
    """MPEG-2 video + MP2 audio on the PIDs of make_ts's clips (0x100, 0x101, PMT 0x1000), from
    ffmpeg: appended to an H.264 clip, it is an encoder restarting with other codecs."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "mpeg2video", "-g", "25", "-b:v", "300k", "-c:a", "mp2",
         "-output_ts_offset", str(pts_offset_seconds), "-muxdelay", "0", "-muxpreload", "0",
         "-f", "mpegts", str(tmp)],
        check=True, timeout=60,
    )
    os.replace(tmp, path)
    return path


def _video_frame(tick: int, width: int, height: int, rng: random.Random) -> av.VideoFrame:
    """A scrolling diagonal gradient with a square of fresh noise moving over it."""
    frame = av.VideoFrame(width, height, "yuv420p")
    ramp = bytes(range(256)) * (width // 256 + 2)
    luma = bytearray()
    for row in range(height):
        start = (row + 3 * tick) % 256
        luma += ramp[start : start + width]
    box = min(NOISE_BOX, width // 2, height // 2)
    left = (5 * tick) % (width - box)
    top = (3 * tick) % (height - box)
    noise = rng.randbytes(box * box)
    for row in range(box):
        at = (top + row) * width + left
        luma[at : at + box] = noise[row * box : (row + 1) * box]
    _fill_plane(frame.planes[0], luma, width)
    chroma_size = (width // 2) * (height // 2)
    _fill_plane(frame.planes[1], bytes([(96 + tick) % 256]) * chroma_size, width // 2)
    _fill_plane(frame.planes[2], bytes([(160 - tick) % 256]) * chroma_size, width // 2)
    return frame


def _fill_plane(plane: av.video.plane.VideoPlane, pixels: bytes | bytearray, width: int) -> None:
    """Copy tightly packed rows into a plane whose rows may be padded to line_size."""
    if plane.line_size == width:
        plane.update(bytes(pixels))
        return
    pad = bytes(plane.line_size - width)
    rows = (pixels[i : i + width] + pad for i in range(0, len(pixels), width))
    plane.update(b"".join(rows))


def _tone_frame(first_sample: int, count: int, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
    step = 2 * math.pi * TONE_HZ / sample_rate
    samples = array.array("f", (0.3 * math.sin(step * (first_sample + i)) for i in range(count)))
    for plane in frame.planes:
        # Planes may be padded beyond `count` samples; only the first ones are read.
        plane.update(samples.tobytes().ljust(plane.buffer_size, b"\0"))
    frame.sample_rate = sample_rate
    return frame

# ffmpeg's audio encoder and bit rate for each codec make_encoder_ts can give its audio.
ENCODER_AUDIO = {
    "aac": ("aac", "64k"), "mp2": ("mp2", "128k"), "mp3": ("libmp3lame", "128k"), "ac3": ("ac3", "192k"),
    "eac3": ("eac3", "96k"),
}


def make_encoder_ts(path: Path | str, *, seconds: float, fps: int = 25, gop_frames: int = 50,
                    keyframes_at: tuple[float, ...] = (), video_gap: tuple[float, float] | None = None,
                    audio_gap: tuple[float, float] | None = None, b_frames: int = 0, audio_codec: str = "aac",
                    second_audio_gap: tuple[float, float] | None = None) -> Path:
    """H.264 + AAC (or ``audio_codec``: a key of ENCODER_AUDIO; 48 kHz stereo) in MPEG-TS from the
    ffmpeg command line, as a live encoder with an odd timing makes it (ffmpeg's own muxer, with
    its usual interleave of up to 0.7 s).

    ``keyframes_at`` (seconds) replaces the regular GOP of ``gop_frames`` by keyframes at exactly
    those times (a lost or late keyframe, one long GOP). ``video_gap`` / ``audio_gap`` (start,
    end in seconds) leave that track out for that time while the other goes on, timestamps kept:
    a still source sending no frames, a pause in the audio. ``b_frames`` is the most B-frames in a
    row (x264's -bf): pictures then come in decode order, not display order.
    ``second_audio_gap``: a second audio track (a 500 Hz sine, the same codec) is added, left out
    for that time (0 to N: it starts N s late).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    video_filters = [f"select='not(between(t,{video_gap[0]},{video_gap[1]}))'"] if video_gap else []
    audio_filters = [f"aselect='not(between(t,{audio_gap[0]},{audio_gap[1]}))'"] if audio_gap else []
    keys = (["-g", "100000", "-keyint_min", "100000", "-force_key_frames", ",".join(f"{t:g}" for t in keyframes_at)]
            if keyframes_at else ["-g", str(gop_frames), "-keyint_min", str(gop_frames)])
    second = ([] if second_audio_gap is None else
              ["-f", "lavfi", "-i", f"sine=frequency=500:sample_rate=48000:duration={seconds}",
               "-map", "0:v", "-map", "1:a", "-map", "2:a",
               "-filter:a:1", f"aselect='not(between(t,{second_audio_gap[0]},{second_audio_gap[1]}))'"])
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
         *second,
         *(["-vf", ",".join(video_filters)] if video_filters else []),
         *(["-filter:a:0", ",".join(audio_filters)] if audio_filters else []),
         "-fps_mode", "passthrough",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "300k", "-bf", str(b_frames), "-sc_threshold", "0", *keys,
         "-c:a", ENCODER_AUDIO[audio_codec][0], "-b:a", ENCODER_AUDIO[audio_codec][1], "-f", "mpegts", str(tmp)],
        check=True, timeout=120,
    )
    os.replace(tmp, path)
    return path


def make_implicit_he_aac_ts(path: Path | str, *, seconds: float) -> Path:
    """H.264 + AAC whose ADTS headers say AAC-LC at 24 kHz mono while every frame carries an SBR
    extension (ISO/IEC 14496-3 4.5.2.8: an ID_FIL element of type EXT_SBR_DATA): implicitly
    signalled HE-AAC, which FFmpeg's probe describes as HE-AAC at 48 kHz. The SBR payload is
    empty (bs_header_flag 0): decoders that follow it output 48 kHz, as for a real HE-AAC track."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as work:
        lc = Path(work) / "lc.adts"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"sine=frequency=1000:sample_rate=24000:duration={seconds}",
                        "-c:a", "aac", "-b:a", "48k", "-f", "adts", str(lc)], check=True, timeout=60)
        he = Path(work) / "he.adts"
        he.write_bytes(_with_sbr_extension(lc.read_bytes()))
        tmp = path.with_name(f".{path.name}.part")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}", "-i", str(he),
                        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "300k", "-g", "50", "-c:a", "copy",
                        "-f", "mpegts", str(tmp)], check=True, timeout=120)
    os.replace(tmp, path)
    return path


def _with_sbr_extension(adts: bytes) -> bytes:
    """Each ADTS frame of ``adts`` (one raw_data_block, ending in ID_END) with an empty
    EXT_SBR_DATA fill element before its ID_END, and the frame length to match."""
    out = bytearray()
    position = 0
    while position + 7 <= len(adts):
        header = bytearray(adts[position : position + 7])
        length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
        header_length = 7 if header[1] & 1 else 9
        bits = "".join(f"{byte:08b}" for byte in adts[position + header_length : position + length])
        end = bits.rfind("1") - 2  # ID_END (111), then byte alignment
        assert bits[end : end + 3] == "111", "a raw_data_block that does not end in ID_END"
        fill = "110" + "0010" + "1101" + "0" + "0" * 10 + "0"  # ID_FIL, 2 bytes, EXT_SBR_DATA, no header
        block = bits[:end] + fill + "111"
        block += "0" * (-len(block) % 8)
        raw = bytes(int(block[k : k + 8], 2) for k in range(0, len(block), 8))
        size = 7 + len(raw)
        header[1] |= 1  # no CRC
        header[3] = (header[3] & 0xFC) | (size >> 11)
        header[4] = (size >> 3) & 0xFF
        header[5] = ((size & 7) << 5) | (header[5] & 0x1F)
        out += header + raw
        position += length
    return bytes(out)


# -- probing -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamInfo:
    kind: str  # "video" or "audio"
    codec: str
    time_base: Fraction
    pts: tuple[int, ...]  # in time_base units, in file (decode) order
    keyframe_pts: tuple[int, ...]
    end_pts: int  # largest pts + packet duration
    payload_bytes: int

    @property
    def packet_count(self) -> int:
        return len(self.pts)

    @property
    def start_s(self) -> float:
        return float(min(self.pts) * self.time_base)

    @property
    def duration_s(self) -> float:
        """From the first pts to the end of the last packet (meaningless across a wrap)."""
        return float((self.end_pts - min(self.pts)) * self.time_base)

    @property
    def keyframe_times(self) -> tuple[float, ...]:
        return tuple(float(pts * self.time_base) for pts in self.keyframe_pts)

    @property
    def bit_rate(self) -> float:
        """Elementary stream bits per second, without MPEG-TS overhead."""
        return self.payload_bytes * 8 / self.duration_s


@dataclass(frozen=True, slots=True)
class MediaInfo:
    streams: tuple[StreamInfo, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(stream.kind for stream in self.streams)

    @property
    def codecs(self) -> tuple[str, ...]:
        return tuple(stream.codec for stream in self.streams)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def duration_s(self) -> float:
        start = min(s.start_s for s in self.streams)
        return max(s.start_s + s.duration_s for s in self.streams) - start

    @property
    def keyframe_times(self) -> tuple[float, ...]:
        return self.video.keyframe_times if self.video else ()

    @property
    def packet_count(self) -> int:
        return sum(s.packet_count for s in self.streams)


def probe(path: Path | str, *, raw_timestamps: bool = False) -> MediaInfo:
    """Summarise a media file's packets with PyAV.

    libavformat "corrects" a 33-bit wrap it sees near the start of a file by
    making the earlier timestamps negative; raw_timestamps=True turns that off
    and reports the values exactly as written in the PES headers.
    """
    options = {"correct_ts_overflow": "0"} if raw_timestamps else {}
    with av.open(str(path), options=options) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        pts: dict[int, list[int]] = {s.index: [] for s in streams}
        keys: dict[int, list[int]] = {s.index: [] for s in streams}
        ends: dict[int, int] = {s.index: 0 for s in streams}
        sizes: dict[int, int] = {s.index: 0 for s in streams}
        for packet in container.demux(streams):
            if packet.pts is None:  # end-of-stream marker
                continue
            index = packet.stream.index
            pts[index].append(packet.pts)
            if packet.is_keyframe:
                keys[index].append(packet.pts)
            ends[index] = max(ends[index], packet.pts + (packet.duration or 0))
            sizes[index] += packet.size
        return MediaInfo(tuple(
            StreamInfo(
                kind=s.type,
                codec=s.codec_context.name,
                time_base=s.time_base or Fraction(1, TS_CLOCK_HZ),
                pts=tuple(pts[s.index]),
                keyframe_pts=tuple(sorted(keys[s.index])),
                end_pts=ends[s.index],
                payload_bytes=sizes[s.index],
            )
            for s in streams
            if pts[s.index]
        ))


# -- per-session cache ---------------------------------------------------------


class MediaCache:
    """Makes each distinct clip once, named by its parameters, in `directory`."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def ts(self, **params: object) -> Path:
        """make_ts(**params), cached; e.g. cache.ts(seconds=6, video_bitrate=150_000)."""
        # Bind defaults too, so ts(seconds=2) and ts(seconds=2, fps=25) share a file.
        bound = inspect.signature(make_ts).bind(None, **params)
        bound.apply_defaults()
        settings = sorted((k, v) for k, v in bound.arguments.items() if k != "path")
        digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:12]
        path = self.directory / f"clip-{digest}.ts"
        if not path.exists():
            make_ts(path, **params)  # type: ignore[arg-type]
        return path

    def encoder_ts(self, **params: object) -> Path:
        """make_encoder_ts(**params), cached."""
        digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:12]
        path = self.directory / f"encoder-{digest}.ts"
        return path if path.exists() else make_encoder_ts(path, **params)  # type: ignore[arg-type]

    def implicit_he_aac_ts(self, *, seconds: float) -> Path:
        """make_implicit_he_aac_ts, cached."""
        path = self.directory / f"implicit-he-aac-{seconds:g}.ts"
        return path if path.exists() else make_implicit_he_aac_ts(path, seconds=seconds)

    def mpeg2_ts(self, *, seconds: float, pts_offset_seconds: float = 0.0) -> Path:
        """make_mpeg2_ts, cached."""
        path = self.directory / f"mpeg2-{seconds:g}-{pts_offset_seconds:g}.ts"
        return path if path.exists() else make_mpeg2_ts(path, seconds=seconds, pts_offset_seconds=pts_offset_seconds)

    def wrapping_ts(self, *, seconds: float = 4.0, wrap_after_seconds: float = 1.0,
                    **params: object) -> Path:
        """Like make_wrapping_ts, cached."""
        offset = PTS_WRAP_SECONDS - wrap_after_seconds
        return self.ts(seconds=seconds, pts_offset_seconds=offset, **params)
