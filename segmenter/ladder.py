"""hls-ladder's core. Pure: the bitrate ladder, its presets and TOML form, the command lines of
the processes it runs, the Matroska framing its relay reads and the keyframes it counts.

One source becomes several renditions (RFC 8216 4.3.4.2 variant streams) in this shape::

    source -> decoder ffmpeg -> one Matroska pipe per rendition (raw video, PCM audio, scaled)
           -> relay -> encoder ffmpeg per rendition (H.264 + AAC, MPEG-TS)
           -> relay -> hls-segment per rendition -> hls-uploadd (the master playlist)

The source is decoded once. Every encoder forces its keyframes on one grid of the source's
timestamps (``keyframe_expression``: the first frame at or after each multiple of the segment
duration), and keeps those timestamps (``-copyts``), so the segmenters cut every rendition at
the same PTS. An encoder that dies is restarted on its own: the relay hands the new one the
stream's Matroska header, then the clusters from the next grid point on, so its first keyframe
falls on the grid and the numbering of segments stays in step with the other renditions; its
MPEG-TS carries a new program number (``service_id``), which hls-segment takes as a program
change: the rendition's next segment starts a discontinuity (RFC 8216 4.3.2.3).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from common.settings import ConfigError

from .psi import TS_PACKET_BYTES, pes_timestamp

# A rendition's name: its playlist is NAME.m3u8, its segments NAME-%05u.ts in OUTPUT_DIR/NAME.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
# NAME.m3u8 of this name is hls-uploadd's master playlist (its default --master-name), which the
# daemon refuses a rendition's stream to take.
MASTER_STEM = "master"
_BITRATE = re.compile(r"(\d+(?:\.\d+)?)([kKmM]?)")
_SIZE = re.compile(r"(?:(\d+)x)?(\d+)p?")

MAX_RENDITIONS = 16
MAX_DIMENSION = 8192
MAX_BITRATE = 200_000_000  # bit/s


@dataclass(frozen=True, slots=True)
class Rendition:
    """One rung of the ladder. ``width`` None keeps the source's aspect ratio (an even width for
    ``height``). Bitrates in bit/s; the video's is also its peak (-maxrate), with a buffer of
    two seconds of it."""

    name: str
    height: int
    video_bitrate: int
    audio_bitrate: int
    width: int | None = None

    @property
    def bitrate(self) -> int:
        """Video and audio, bit/s (what the master's BANDWIDTH should come out near)."""
        return self.video_bitrate + self.audio_bitrate


# The original's ladder (128k, 256k, 364k in all, audio included; 4:3 sizes), and one for
# today's screens (16:9, the sizes and rates common in HLS authoring guides).
PRESETS: Mapping[str, tuple[Rendition, ...]] = {
    "original": (
        Rendition("128k", 240, 96_000, 32_000, 320),
        Rendition("256k", 360, 224_000, 32_000, 480),
        Rendition("364k", 480, 332_000, 32_000, 640),
    ),
    "modern": (
        Rendition("1080p", 1080, 5_000_000, 128_000, 1920),
        Rendition("720p", 720, 2_800_000, 128_000, 1280),
        Rendition("480p", 480, 1_400_000, 96_000, 854),
        Rendition("360p", 360, 800_000, 96_000, 640),
    ),
}


def parse_bitrate(where: str, value: object) -> int:
    """``value`` as bit/s: an integer, or text like "2800k", "5M", "96000". Raises ConfigError
    naming ``where``."""
    if isinstance(value, int) and not isinstance(value, bool):
        rate = value
    elif isinstance(value, str) and (match := _BITRATE.fullmatch(value.strip())):
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()]
        rate = round(float(match[1]) * scale)
    else:
        raise ConfigError(f"{where}: {value!r} is not a bitrate (bit/s, or like 800k or 5M)")
    if not 1_000 <= rate <= MAX_BITRATE:
        raise ConfigError(f"{where}: {value!r} is outside 1k..{MAX_BITRATE // 1_000_000}M bit/s")
    return rate


def _size(where: str, value: object) -> tuple[int | None, int]:
    """"1280x720", "720p", "720" or 720 -> (width or None, height)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{where}: {value!r} is not a size (WIDTHxHEIGHT, or HEIGHT like 720p)")
    width = int(match[1]) if match[1] else None
    height = int(match[2])
    for side in (width, height):
        if side is not None and not (16 <= side <= MAX_DIMENSION and side % 2 == 0):
            raise ConfigError(f"{where}: {value!r}: sides must be even, 16..{MAX_DIMENSION}")
    return width, height


def rendition_from_spec(spec: str) -> Rendition:
    """``--rendition NAME:SIZE:VIDEO_BITRATE[:AUDIO_BITRATE]``, e.g. ``720p:1280x720:2800k:128k``
    (audio 128k when left out). Raises ConfigError."""
    where = f"--rendition {spec!r}"
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ConfigError(f"{where} is not NAME:SIZE:VIDEO_BITRATE[:AUDIO_BITRATE]")
    return _rendition(where, {"name": parts[0], "size": parts[1], "video_bitrate": parts[2],
                              "audio_bitrate": parts[3] if len(parts) == 4 else "128k"})


def _rendition(where: str, table: Mapping[str, Any]) -> Rendition:
    unknown = sorted(set(table) - {"name", "size", "video_bitrate", "audio_bitrate"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")
    missing = [key for key in ("name", "size", "video_bitrate") if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    name = table["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must be 1-40 letters, digits, '_' or '-'")
    if name.lower() == MASTER_STEM:
        raise ConfigError(f"{where}: name {name!r} is taken: {MASTER_STEM}.m3u8 is the master playlist")
    width, height = _size(f"{where}: size", table["size"])
    return Rendition(name, height, parse_bitrate(f"{where}: video_bitrate", table["video_bitrate"]),
                     parse_bitrate(f"{where}: audio_bitrate", table.get("audio_bitrate", "128k")), width)


def ladder_from_toml(text: str, *, source: str) -> tuple[Rendition, ...]:
    """The ``[[rendition]]`` tables of a ladder file, in order (highest first is the custom)::

        [[rendition]]
        name = "720p"
        size = "1280x720"        # or "720p": the source's aspect ratio
        video_bitrate = "2800k"
        audio_bitrate = "128k"   # optional, 128k

    Raises ConfigError naming ``source`` and the rendition for anything else."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not TOML: {error}") from None
    unknown = sorted(set(document) - {"rendition"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s): {', '.join(unknown)} (a ladder file has [[rendition]] tables)")
    tables = document.get("rendition")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{source}: no [[rendition]] tables")
    return check_ladder(tuple(_rendition(f"{source}: rendition {number}", table)
                              for number, table in enumerate(tables, 1)), where=f"{source}: ")


def check_ladder(renditions: tuple[Rendition, ...], *, where: str = "") -> tuple[Rendition, ...]:
    """``renditions`` when they make a ladder: 1..MAX_RENDITIONS, names unique. Raises ConfigError,
    its message starting with ``where``."""
    if not 1 <= len(renditions) <= MAX_RENDITIONS:
        raise ConfigError(f"{where}a ladder has 1 to {MAX_RENDITIONS} renditions, not {len(renditions)}")
    names = [r.name for r in renditions]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ConfigError(f"{where}rendition name(s) used twice: {', '.join(doubled)}")
    return renditions


# -- the encoders -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Encoder:
    """An H.264 encoder ffmpeg has: the options that make it keep to the keyframe grid alone (no
    scene-cut keyframes, forced frames made IDR), its speed preset option, and the filter that
    brings frames to it (a hardware encoder's upload)."""

    codec: str
    grid_options: tuple[str, ...]
    preset_option: str | None
    default_preset: str | None
    filters: str = ""
    device_options: tuple[str, ...] = ()


ENCODERS: Mapping[str, Encoder] = {
    # zerolatency: each frame comes out as it goes in (no lookahead, no B-frames), so an encoder
    # that dies has lost little that the relay cannot give its successor again.
    "libx264": Encoder("libx264", ("-sc_threshold", "0", "-forced-idr", "1", "-tune", "zerolatency"), "-preset",
                       "veryfast"),
    "h264_nvenc": Encoder("h264_nvenc", ("-no-scenecut", "1", "-forced-idr", "1"), "-preset", "p4"),
    "h264_qsv": Encoder("h264_qsv", ("-forced_idr", "1"), "-preset", "veryfast"),
    "h264_vaapi": Encoder("h264_vaapi", (), None, None, "format=nv12,hwupload",
                          ("-vaapi_device", "/dev/dri/renderD128")),
}


def keyframe_expression(segment_seconds: Fraction, shift_ms: int = 0) -> str:
    """ffmpeg's ``-force_key_frames`` expression for the grid: a keyframe at an encoder's first
    frame and at the first frame at or after each multiple of ``segment_seconds`` from the
    ladder's first video frame. FFmpeg's ``t`` counts from an encoder's own first frame;
    ``shift_ms`` is how far that frame is from the ladder's first, for an encoder that joined
    later. In whole milliseconds (the encoders' time base, ``-enc_time_base 1:1000``, and the
    Matroska timecodes') and integer arithmetic, so that every encoder, and ``grid_point_after``,
    put a frame on the same side of a grid point: the grid index of ms ``m`` is
    floor(m x den / (num x 1000)) for ``segment_seconds`` = num/den."""
    scale, step = segment_seconds.denominator, segment_seconds.numerator * 1000

    def index(time: str) -> str:
        return f"floor((round({time}*1000)+{shift_ms})*{scale}/{step})"

    return f"expr:if(isnan(prev_forced_t),1,gte({index('t')},{index('prev_forced_t')}+1))"


def grid_point_after(timecode_ms: int, segment_seconds: Fraction, origin_ms: int) -> int:
    """The first point of the grid (``origin_ms`` + a multiple of ``segment_seconds``) after
    ``timecode_ms``, in ms: where an encoder that replaces a dead one joins."""
    step_ms = segment_seconds * 1000
    return origin_ms + math.ceil(math.floor((timecode_ms - origin_ms) / step_ms + 1) * step_ms)


def decoder_command(ffmpeg: str, source: str, renditions: tuple[Rendition, ...], fds: tuple[int, ...], *,
                    frame_rate: Fraction | None = None, audio: bool = True,
                    source_options: tuple[str, ...] = ()) -> list[str]:
    """The one ffmpeg that reads and decodes ``source`` (a URL, a file, or "-" for stdin) and writes
    each rendition's frames, scaled, as raw video (yuv420p) and 48-kHz stereo PCM in live
    Matroska, one cluster per packet, to the pipe ``fds[i]`` (``pipe:N``). ``frame_rate``:
    frames made constant-rate at it first; ``audio`` False: video only; ``source_options``:
    ffmpeg's options for opening ``source`` (its TLS certificate check)."""
    head = f"fps={frame_rate.numerator}/{frame_rate.denominator}," if frame_rate else ""
    labels = [f"s{i}" for i in range(len(renditions))]
    graph = [f"[0:v:0]{head}split={len(renditions)}" + "".join(f"[{label}]" for label in labels)]
    for i, (label, rendition) in enumerate(zip(labels, renditions, strict=True)):
        graph.append(f"[{label}]scale={rendition.width or -2}:{rendition.height},format=yuv420p[v{i}]")
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", *source_options, "-i", source,
               "-filter_complex", ";".join(graph)]
    for i, fd in enumerate(fds):
        command += ["-map", f"[v{i}]"]
        if audio:
            command += ["-map", "0:a:0?", "-c:a", "pcm_s16le", "-ar", "48000", "-ac", "2"]
        # No CRC-32 per cluster: a pipe does not corrupt, and it costs a pass over every frame.
        command += ["-c:v", "rawvideo", "-f", "matroska", "-live", "1", "-write_crc32", "0",
                    "-cluster_time_limit", "0", "-cluster_size_limit", "0", f"pipe:{fd}"]
    return command


def encoder_command(ffmpeg: str, rendition: Rendition, segment_seconds: Fraction, *, encoder: str = "libx264",
                    preset: str | None = None, service_id: int = 1, shift_ms: int = 0) -> list[str]:
    """The ffmpeg that encodes one rendition: live Matroska of raw frames on stdin, MPEG-TS (H.264
    and AAC) on stdout, keyframes on the grid, the source's timestamps kept, program number
    ``service_id`` (1..65535; a new one tells hls-segment a new encoder began); ``shift_ms``:
    see ``keyframe_expression``. Raises KeyError
    for an encoder not in ENCODERS."""
    kind = ENCODERS[encoder]
    video = rendition.video_bitrate
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", *kind.device_options,
               "-copyts", "-f", "matroska", "-i", "pipe:0", "-map", "0:v", "-map", "0:a?"]
    if kind.filters:
        command += ["-vf", kind.filters]
    command += ["-c:v", kind.codec, "-b:v", str(video), "-maxrate", str(video), "-bufsize", str(2 * video)]
    chosen = preset or kind.default_preset
    if kind.preset_option and chosen:
        command += [kind.preset_option, chosen]
    # No keyframe but the forced ones: a GOP may not end before the grid does.
    command += ["-enc_time_base:v", "1:1000", "-g", "100000", *kind.grid_options,
                "-force_key_frames", keyframe_expression(segment_seconds, shift_ms),
                "-c:a", "aac", "-b:a", str(rendition.audio_bitrate),
                "-f", "mpegts", "-mpegts_service_id", str(service_id), "-mpegts_start_pid", str(VIDEO_PID), "pipe:1"]
    return command


# The encoders' video PID: the first elementary stream (-mpegts_start_pid), video mapped first.
VIDEO_PID = 0x100


def keyframe_pts(data: bytes | bytearray) -> list[int]:
    """The PTS (90 kHz) of each video keyframe that starts in ``data`` (whole 188-byte MPEG-TS
    packets of an encoder's output): packets of VIDEO_PID with payload_unit_start_indicator and
    the adaptation field's random_access_indicator (ISO/IEC 13818-1 2.4.3.5), which FFmpeg sets
    on keyframes, whose PES header carries a PTS (2.4.3.7)."""
    found = []
    for at in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        if not (data[at + 1] & 0x40 and ((data[at + 1] & 0x1F) << 8 | data[at + 2]) == VIDEO_PID
                and data[at + 3] & 0x20 and data[at + 4] and data[at + 5] & 0x40):
            continue
        start = at + 5 + data[at + 4]  # after the adaptation field
        if start + 14 <= at + TS_PACKET_BYTES and data[start:start + 3] == b"\x00\x00\x01" and data[start + 7] & 0x80:
            found.append(pes_timestamp(data, start + 9))
    return found


def service_id(incarnation: int) -> int:
    """The program number of an encoder's ``incarnation`` (0, 1, ...): 1..65535, never the same
    twice in a row."""
    return incarnation % 65535 + 1


# -- Matroska framing (the decoder's pipes) ---------------------------------------------------

EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
CLUSTER_ID = 0x1F43B675
TIMECODE_ID = 0xE7
CRC32_ID = 0xBF
VOID_ID = 0xEC
SIMPLE_BLOCK_ID = 0xA3
BLOCK_GROUP_ID = 0xA0
BLOCK_ID = 0xA1
# The decoder maps video first: its track number in every rendition's Matroska.
VIDEO_TRACK = 1


@dataclass(frozen=True, slots=True)
class ElementHeader:
    """An EBML element's ID (with its length marker, as written), its data size in bytes (None:
    unknown, as a live Segment's) and the length of the ID and size together."""

    id: int
    size: int | None
    length: int


def _vint(data: bytes | bytearray, at: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``at``: (value, length), None when ``data`` ends first.
    Raises ValueError for a first byte of 0 (longer than 8 bytes: not EBML)."""
    if at >= len(data):
        return None
    first = data[at]
    if first == 0:
        raise ValueError(f"not EBML: a variable-length integer starts with 0x00 at {at}")
    length = 9 - first.bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def element_header(data: bytes | bytearray, at: int = 0) -> ElementHeader | None:
    """The element header at ``at`` of ``data`` (RFC 8794 4-6), None when ``data`` ends inside it.
    Raises ValueError for bytes that are no EBML."""
    found = _vint(data, at, keep_marker=True)
    if found is None:
        return None
    element_id, id_length = found
    if id_length > 4:
        raise ValueError(f"not EBML: an element ID of {id_length} bytes")
    sized = _vint(data, at + id_length, keep_marker=False)
    if sized is None:
        return None
    size, size_length = sized
    unknown = size == (1 << (7 * size_length)) - 1
    return ElementHeader(element_id, None if unknown else size, id_length + size_length)


@dataclass(frozen=True, slots=True)
class Cluster:
    """What the relay needs of a Cluster: its Timecode and the time of its first video frame, if
    it has one (ms at FFmpeg's TimecodeScale). The decoder starts a cluster at every packet it
    may (every raw frame, every PCM block), so a cluster holds at most a frame or two."""

    timecode: int
    video_ms: int | None


def read_cluster(payload: bytes | bytearray) -> Cluster | None:
    """The Timecode of a Cluster's data and the time of its first block of VIDEO_TRACK (a
    SimpleBlock or a BlockGroup's Block: track number, then a signed 16-bit time relative to
    the Timecode); None when it has no Timecode before its blocks. Raises ValueError for bytes
    that are no EBML."""
    at = 0
    timecode = None
    while (header := element_header(payload, at)) is not None and header.size is not None:
        start = at + header.length
        if header.id == TIMECODE_ID and header.size <= 8:
            timecode = int.from_bytes(payload[start : start + header.size], "big")
        elif header.id in (SIMPLE_BLOCK_ID, BLOCK_GROUP_ID):
            if timecode is None:
                return None
            block = start
            if header.id == BLOCK_GROUP_ID:  # its Block (0xA1) comes first
                inner = element_header(payload, start)
                block = start + inner.length if inner is not None and inner.id == BLOCK_ID else -1
            track = _vint(payload, block, keep_marker=False) if block >= 0 else None
            if track is not None and track[0] == VIDEO_TRACK and block + track[1] + 2 <= len(payload):
                relative = int.from_bytes(payload[block + track[1] : block + track[1] + 2], "big", signed=True)
                return Cluster(timecode, timecode + relative)
        at = start + header.size
    return None if timecode is None else Cluster(timecode, None)
