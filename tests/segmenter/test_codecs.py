"""RFC 6381 codec strings from codec ids, one real stream per codec the segmenter copies.

Each clip is made by ffmpeg, probed by PyAV as hls-segment probes it (``input.describe``), and its
string compared with what RFC 6381, ISO/IEC 14496-15 Annex E and the MP4 object type registry
say; the same input must give the same CODECS on the fast path and on the PyAV path, and end to end
an MP3 + H.264 input gets a master playlist that names both codecs.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
from botocore.client import BaseClient

from segmenter.codecs import (
    aac_codec,
    codec_string,
    h264_sps_parameters,
    hevc_codec,
    hevc_sps_parameters,
    hevc_string,
    mp2_codec,
    mpeg2_video_codec,
)
from segmenter.input import describe
from segmenter.randomaccess import VideoCodec, sequence_parameter_set, sps_parameters
from tests.support.daemon import UploaderDaemon
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import run_segmenter
from tests.support.viewer import http_get, read_playlist, wait_for

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
AUDIO_48K = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "high", "-level", "3.1", "-g", "25"]


@functools.cache
def ffmpeg_has(encoder: str) -> bool:
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    return f" {encoder} " in listing.stdout


def ffmpeg_clip(media: MediaCache, name: str, *args: str, seconds: float = 2.0) -> Path:
    """An MPEG-TS clip ``name`` made by ``ffmpeg ARGS``, cached in the media directory."""
    path = media.directory / f"codec-{name}.ts"
    if not path.exists():
        part = path.with_suffix(".part")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, "-t", f"{seconds:g}",
                        "-f", "mpegts", str(part)], check=True, timeout=120)
        os.replace(part, path)
    return path


def probed_codecs(path: Path) -> list[str | None]:
    """Each stream's string as hls-segment computes it from the probe."""
    with av.open(str(path)) as container:
        return [codec_string(s.codec_context.codec.canonical_name, s.codec_context.extradata, s.codec_context.profile,
                             s.codec_context.level if s.type == "video" else None,
                             sample_rate=getattr(s.codec_context, "sample_rate", None))
                for s in container.streams]


def ffprobe_level(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=level",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True, timeout=30)
    return int(out.stdout.split()[0])


# (name, ffmpeg arguments, encoder needed, expected strings per stream in input order)
CLIPS = [
    ("h264-aac", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "aac"], "libx264", ["avc1.64001f", "mp4a.40.2"]),
    ("h264-aac-main", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "aac", "-profile:a", "aac_main"], "aac",
     ["avc1.64001f", "mp4a.40.1"]),
    ("h264-mp3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "libmp3lame"], "libmp3lame", ["avc1.64001f", "mp4a.40.34"]),
    ("h264-ac3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "ac3"], "ac3", ["avc1.64001f", "ac-3"]),
    ("h264-eac3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "eac3"], "eac3", ["avc1.64001f", "ec-3"]),
    ("mpeg2-mp2", [*VIDEO, *AUDIO_48K, "-c:v", "mpeg2video", "-c:a", "mp2"], "mp2", ["mp4v.61", "mp4a.6b"]),
    ("mpeg2-simple-mp2-lsf", [*VIDEO, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=24000",
                              "-c:v", "mpeg2video", "-profile:v", "5", "-bf", "0", "-c:a", "mp2"], "mp2",
     ["mp4v.60", "mp4a.69"]),
    ("mpeg2-422", [*VIDEO, "-c:v", "mpeg2video", "-pix_fmt", "yuv422p"], "mpeg2video", ["mp4v.65"]),
]


@pytest.mark.parametrize(("name", "args", "encoder", "expected"), CLIPS, ids=[c[0] for c in CLIPS])
def test_each_codec_of_a_real_stream(name: str, args: list[str], encoder: str, expected: list[str],
                                     media: MediaCache) -> None:
    if not ffmpeg_has(encoder):
        pytest.skip(f"this ffmpeg has no {encoder}")
    path = ffmpeg_clip(media, name, *args)
    assert probed_codecs(path) == expected
    with av.open(str(path)) as container:
        assert describe(container).codecs == ",".join(dict.fromkeys(expected))


@pytest.mark.parametrize(("pixels", "profile", "compatibility", "constraints"), [
    ("yuv420p", 1, "6", "90"),  # Main: compatible with Main and Main 10 (flags 1, 2 reversed)
    ("yuv420p10le", 2, "4", "90"),  # Main 10
    ("yuv444p", 4, "10", "9E.08"),  # Format range extensions: the constraint bytes say 4:4:4 8 bit
])
def test_hevc_from_the_sps_of_a_real_stream(pixels: str, profile: int, compatibility: str, constraints: str,
                                             media: MediaCache) -> None:
    if not ffmpeg_has("libx265"):
        pytest.skip("this ffmpeg has no libx265")
    path = ffmpeg_clip(media, f"hevc-{pixels}", *VIDEO, *AUDIO_48K, "-c:v", "libx265", "-pix_fmt", pixels,
                       "-x265-params", "log-level=error", "-c:a", "aac")
    level = ffprobe_level(path)
    assert probed_codecs(path) == [f"hvc1.{profile}.{compatibility}.L{level}.{constraints}", "mp4a.40.2"]


def test_hevc_string_fields() -> None:
    # ISO/IEC 14496-15 E.5's examples: Main profile, Main tier, level 3.1, progressive and frame only.
    main = bytes([0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93])
    assert hevc_string(main) == "hvc1.1.6.L93.90"
    # Profile space 1 ("A"), High tier, every constraint byte set: none left out.
    high = bytes([0x40 | 0x20 | 0x02, 0x20, 0, 0, 0x01, 0xB0, 1, 2, 3, 4, 5, 120])
    assert hevc_string(high) == "hvc1.A2.80000004.H120.B0.01.02.03.04.05"
    # No constraint flags at all: the element is left out.
    assert hevc_string(bytes([0x01, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60])) == "hvc1.1.6.L60"
    # From an hvcC record (its version byte, then the same twelve bytes).
    assert hevc_codec(None, None, bytes([1]) + main + bytes(10)) == "hvc1.1.6.L93.90"
    # Annex B: emulation prevention bytes (00 00 03) are not part of the profile_tier_level.
    sps = b"\x00\x00\x00\x01\x42\x01\x01" + b"\x01\x60\x00\x00\x03\x00\x90\x00\x00\x03\x00\x00\x03\x00\x5d\xa0"
    assert hevc_codec(None, None, sps) == "hvc1.1.6.L93.90"
    # Without an SPS: from the profile name, as before.
    assert hevc_codec("Main", 93, None) == "hvc1.1.6.L93.B0"
    assert hevc_codec("Rext", 93, None) is None


def test_aac_object_types() -> None:
    assert aac_codec(bytes([0x2B, 0x92, 0x08, 0x00]), None) == "mp4a.40.5"  # AudioSpecificConfig: SBR
    assert aac_codec(bytes([0xEB, 0x0A]), None) == "mp4a.40.29"  # PS (object type 29)
    assert aac_codec(None, "HE-AAC") == "mp4a.40.5"  # ADTS says LC; the decoder found SBR
    assert aac_codec(None, "HE-AACv2") == "mp4a.40.29"


def test_mpeg_audio_and_video_versions() -> None:
    assert mp2_codec(48000) == mp2_codec(44100) == mp2_codec(32000) == mp2_codec(None) == "mp4a.6b"
    assert mp2_codec(22050) == mp2_codec(24000) == mp2_codec(16000) == "mp4a.69"
    assert mpeg2_video_codec(None, "High") == "mp4v.64"
    assert mpeg2_video_codec(None, None) == "mp4v.61"
    # A sequence extension's profile_and_level_indication (Simple, Main level) wins over the name.
    assert mpeg2_video_codec(b"\x00\x00\x01\xb5\x15\x8a\x00\x01", "Main") == "mp4v.60"
    assert codec_string("mp3float", None, None, None) is None  # a decoder's name is not a codec's


# Encodings whose sequence parameter sets take the parser's other branches: chroma formats and
# their cropping units, field coding, scaling matrices, picture order count types, VUI fields
# before the timing info, HEVC sub-layers, scaling lists and display windows.
# (name, encoder, ffmpeg arguments, frames per second as ffmpeg's -r says it)
_CQM4 = ",".join(["16"] * 15 + ["24"])
_CQM8 = ",".join(str(16 + n % 7) for n in range(64))
_VUI = ["-vf", "setsar=3/2", "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
SPS_ENCODINGS = [
    ("h264-444-matrices", "libx264", ["-s", "318x238", "-pix_fmt", "yuv444p",
                                      "-x264-params", f"cqm4={_CQM4}:cqm8={_CQM8}"], "25"),
    ("h264-422-10bit", "libx264", ["-s", "320x180", "-pix_fmt", "yuv422p10le", "-x264-params", "cqm=jvt"], "50"),
    ("h264-interlaced-vui", "libx264", ["-s", "352x280", "-pix_fmt", "yuv420p", *_VUI, "-flags", "+ildct+ilme",
                                        "-x264-params", "interlaced=1:overscan=show:chromaloc=1"], "25"),
    ("h264-baseline-5994", "libx264", ["-s", "176x144", "-pix_fmt", "yuv420p", "-profile:v", "baseline"],
     "60000/1001"),
    ("h264-cropped-matrices", "libx264", ["-s", "318x238", "-pix_fmt", "yuv420p", "-x264-params", f"cqm8={_CQM8}"],
     "24"),
    ("hevc-444", "libx265", ["-s", "318x238", "-pix_fmt", "yuv444p"], "25"),
    ("hevc-422-lists", "libx265", ["-s", "320x180", "-pix_fmt", "yuv422p", "-x265-params", "scaling-list=default"],
     "50"),
    ("hevc-gray", "libx265", ["-s", "318x238", "-pix_fmt", "gray"], "24"),
    ("hevc-layers-vui", "libx265", ["-s", "352x280", "-pix_fmt", "yuv420p", *_VUI, "-x265-params",
                                    "temporal-layers=1:overscan=show:chromaloc=1:display-window=2,2,2,2"],
     "30000/1001"),
]


@pytest.mark.parametrize(("name", "encoder", "args", "rate"), SPS_ENCODINGS, ids=[e[0] for e in SPS_ENCODINGS])
def test_the_sps_of_each_encoding_gives_the_decoded_size_the_frame_rate_and_the_probed_codec(
    name: str, encoder: str, args: list[str], rate: str, media: MediaCache
) -> None:
    if not ffmpeg_has(encoder):
        pytest.skip(f"this ffmpeg has no {encoder}")
    path = ffmpeg_clip(media, f"sps-{name}", "-f", "lavfi", "-i", f"testsrc2=size=352x288:rate={rate}", *args,
                       "-c:v", encoder, "-r", rate, seconds=0.5)
    codec = VideoCodec.H264 if encoder == "libx264" else VideoCodec.HEVC
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        probed = codec_string(context.name, context.extradata, context.profile, context.level)
        packet = next(p for p in container.demux(stream) if p.is_keyframe)
        sps = sequence_parameter_set(codec, bytes(packet))
        frame = next(iter(packet.decode()), None) or next(container.decode(stream))
    assert sps is not None
    parameters = sps_parameters(codec, sps)
    assert parameters is not None
    assert (parameters.width, parameters.height) == (frame.width, frame.height)
    assert parameters.frame_rate == round(float(Fraction(rate)), 3)
    assert parameters.codec == probed is not None


class Bits:
    """Writes an RBSP field by field (u(n), ue(v), se(v): ITU-T H.264 7.2, 9.1) and gives the NAL
    unit with emulation prevention bytes inserted (7.4.1)."""

    def __init__(self) -> None:
        self.bits = ""

    def u(self, bits: int, value: int) -> Bits:
        self.bits += format(value, f"0{bits}b") if bits else ""
        return self

    def ue(self, value: int) -> Bits:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code
        return self

    def se(self, value: int) -> Bits:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, header: bytes) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit, then alignment zeros
        bits += "0" * (-len(bits) % 8)
        out = bytearray(header)
        zeros = 0
        for at in range(0, len(bits), 8):
            byte = int(bits[at : at + 8], 2)
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def vui_head(bits: Bits) -> Bits:
    """Every VUI field before the timing info present: a sample aspect ratio of its own
    (aspect_ratio_idc 255), overscan, video signal type with colour description, chroma location."""
    bits.u(1, 1).u(8, 255).u(16, 3).u(16, 2)
    bits.u(1, 1).u(1, 1)
    bits.u(1, 1).u(3, 5).u(1, 0).u(1, 1).u(8, 1).u(8, 1).u(8, 1)
    return bits.u(1, 1).ue(1).ue(2)


def h264_sps(*, profile: int = 100, sps_id: int = 0, chroma: int = 1, separate: int = 0,
             mbs: tuple[int, int] = (20, 15), crop: tuple[int, int, int, int] = (1, 2, 0, 4),
             timing: tuple[int, int] | None = (1, 120)) -> bytes:
    """An H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1) with scaling matrices (High profiles), picture
    order count type 1, ``mbs`` macroblocks across and down, frame cropping ``crop`` (left, right,
    top, bottom) and VUI timing (num_units_in_tick, time_scale) after every other VUI field."""
    bits = Bits().ue(sps_id)
    if profile >= 100:
        bits.ue(chroma)
        if chroma == 3:
            bits.u(1, separate)
        bits.ue(0).ue(0).u(1, 0).u(1, 1)  # 8 bit, no transform bypass; seq_scaling_matrix_present_flag
        for i in range(12 if chroma == 3 else 8):
            deltas = {0: [4, -3] * 8, 6: [4, -3] * 32, 2: [8, -16], 7: [-1, -7]}.get(i, [-8] if i >= 8 else None)
            bits.u(1, deltas is not None)  # a whole list; one ending at next_scale 0; the default matrix
            for delta in deltas or []:
                bits.se(delta)
    bits.ue(0)  # log2_max_frame_num_minus4
    bits.ue(1).u(1, 0).se(0).se(2).ue(2).se(4).se(-5)  # pic_order_cnt_type 1 and its cycle
    bits.ue(1).u(1, 0).ue(mbs[0] - 1).ue(mbs[1] - 1).u(1, 1).u(1, 1)  # frames only, direct_8x8_inference
    bits.u(1, 1)
    for side in crop:
        bits.ue(side)
    vui_head(bits.u(1, 1)).u(1, timing is not None)
    if timing is not None:
        bits.u(32, timing[0]).u(32, timing[1]).u(1, 1)  # and fixed_frame_rate_flag
    return bits.nal(bytes([0x67, profile, 0, 30]))


@pytest.mark.parametrize(("sps", "expected"), [
    (h264_sps(), (320 - 2 * 3, 240 - 2 * 4, 60.0)),  # 4:2:0: cropped in 2-sample units
    (h264_sps(chroma=3, separate=1, timing=(1001, 120000)), (320 - 3, 240 - 4, 59.94)),  # colour planes apart
    (h264_sps(chroma=3, mbs=(1, 1), crop=(7, 8, 7, 8)), (1, 1, 60.0)),
    (h264_sps(profile=66, crop=(0, 0, 0, 2)), (320, 240 - 4, 60.0)),  # Baseline: 4:2:0 without saying so
    (h264_sps(timing=(0, 50)), (314, 232, None)),  # timing info of zero: no frame rate
    (h264_sps(timing=(1001, 0)), (314, 232, None)),
    (h264_sps(timing=None), (314, 232, None)),
    (h264_sps(sps_id=2**31 - 1), (314, 232, 60.0)),  # the longest Exp-Golomb code read: 31 leading zeros
    (h264_sps(sps_id=2**32 - 1), None),
    (h264_sps(mbs=(1, 15), crop=(4, 4, 0, 0)), None),  # cropped to nothing
    (h264_sps(mbs=(20, 1), crop=(0, 0, 4, 4)), None),
    (b"\x68" + h264_sps()[1:], None),  # a PPS
])
def test_an_h264_sps_built_field_by_field_gives_its_size_and_rate(sps: bytes, expected: tuple | None) -> None:
    parameters = h264_sps_parameters(sps)
    assert (parameters and (parameters.width, parameters.height, parameters.frame_rate)) == expected
    assert parameters is None or parameters.codec == f"avc1.{sps[1]:02x}001e"


def hevc_sps(*, chroma: int = 1, separate: int = 0, size: tuple[int, int] = (320, 240),
             window: tuple[int, int, int, int] = (0, 1, 0, 4), ordering_per_sub_layer: int = 1,
             vui: bool = True, timing: tuple[int, int] | None = (1001, 60000)) -> bytes:
    """An HEVC SPS NAL unit (ITU-T H.265 7.3.2.2.1): one sub-layer more than the base, a
    conformance window ``window`` (left, right, top, bottom), scaling lists, PCM, three short-term
    reference picture sets (two predicted), long-term ones, and VUI timing (vui_num_units_in_tick,
    vui_time_scale) after every other VUI field."""
    bits = Bits().u(4, 0).u(3, 1).u(1, 1)  # sps_video_parameter_set_id, one sub-layer more, nesting
    ptl = bytes([0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93])  # Main, Main tier, level 3.1
    bits.u(96, int.from_bytes(ptl, "big"))
    bits.u(1, 1).u(1, 1).u(14, 0)  # the sub-layer's profile and level present, alignment bits
    bits.u(88, 0x0160000000900000000000).u(8, 90)
    bits.ue(0).ue(chroma)
    if chroma == 3:
        bits.u(1, separate)
    bits.ue(size[0]).ue(size[1]).u(1, 1)
    for side in window:
        bits.ue(side)
    bits.ue(0).ue(0).ue(4)  # bit depths, log2_max_pic_order_cnt_lsb_minus4: 8-bit POC LSBs
    bits.u(1, ordering_per_sub_layer)
    for _ in range(2 if ordering_per_sub_layer else 1):
        bits.ue(4).ue(2).ue(0)
    bits.ue(0).ue(1).ue(0).ue(3).ue(0).ue(0)  # block sizes, transform hierarchy depths
    bits.u(1, 1).u(1, 1)  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
    for size_id in range(4):
        for matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if matrix_id % 2:
                bits.u(1, 0).ue(matrix_id)  # predicted from a reference list
            else:
                bits.u(1, 1)
                if size_id > 1:
                    bits.se(-7)  # scaling_list_dc_coef_minus8
                for n in range(min(64, 1 << (4 + (size_id << 1)))):
                    bits.se(5 if n % 3 else -2)
    bits.u(1, 1).u(1, 0)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
    bits.u(1, 1).u(4, 7).u(4, 7).ue(0).ue(1).u(1, 1)  # pcm_enabled_flag and its fields
    bits.ue(3)  # num_short_term_ref_pic_sets
    bits.ue(2).ue(1).ue(0).u(1, 1).ue(1).u(1, 0).ue(0).u(1, 1)  # set 0: two before, one after: 3 pictures
    bits.u(1, 1).u(1, 0).ue(0)  # set 1: predicted from set 0 (its 3 pictures and itself) ...
    bits.u(1, 1).u(1, 0).u(1, 0).u(1, 0).u(1, 0).u(1, 1)  # ... used, not used twice, used: 2 pictures
    bits.u(1, 1).u(1, 1).ue(1)  # set 2: predicted from set 1 (its 2 pictures and itself) ...
    bits.u(1, 1).u(1, 1).u(1, 0).u(1, 1)  # ... used, used, not used but use_delta
    bits.u(1, 1).ue(2).u(9, 0x155).u(9, 0x0AA)  # long_term_ref_pics_present_flag: two, POC LSBs and used
    bits.u(2, 3)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    bits.u(1, vui)
    if vui:
        vui_head(bits).u(3, 0).u(1, 1).ue(2).ue(2).ue(2).ue(2)  # default display window
        bits.u(1, timing is not None)
        if timing is not None:
            bits.u(32, timing[0]).u(32, timing[1]).u(1, 0)  # and vui_poc_proportional_to_timing_flag
    return bits.nal(b"\x42\x01")


@pytest.mark.parametrize(("sps", "expected"), [
    (hevc_sps(), (320 - 2, 240 - 8, 59.94)),  # 4:2:0: the window in 2-sample units
    (hevc_sps(chroma=3, separate=1), (320 - 1, 240 - 4, 59.94)),  # colour planes apart: 1-sample units
    (hevc_sps(chroma=3, size=(16, 16), window=(7, 8, 7, 8)), (1, 1, 59.94)),
    (hevc_sps(ordering_per_sub_layer=0), (318, 232, 59.94)),  # one sub_layer_ordering_info for all
    (hevc_sps(vui=False), (318, 232, None)),
    (hevc_sps(timing=(0, 50)), (318, 232, None)),  # timing info of zero: no frame rate
    (hevc_sps(timing=(1001, 0)), (318, 232, None)),
    (hevc_sps(size=(16, 240), window=(4, 4, 0, 0)), None),  # cropped to nothing
    (hevc_sps(size=(320, 16), window=(0, 0, 4, 4)), None),
    (b"\x44\x01" + hevc_sps()[2:], None),  # a PPS
])
def test_an_hevc_sps_built_field_by_field_gives_its_size_and_rate(sps: bytes, expected: tuple | None) -> None:
    parameters = hevc_sps_parameters(sps)
    assert (parameters and (parameters.width, parameters.height, parameters.frame_rate)) == expected
    assert parameters is None or parameters.codec == "hvc1.1.6.L93.90"


# An MPEG-2 sequence header (ISO/IEC 13818-2 6.2.2.1: 320x240, 16:9, 25 Hz, no matrices), and a
# sequence extension (6.2.2.3) with a profile_and_level_indication, then a sequence display extension.
SEQUENCE_HEADER = b"\x00\x00\x01\xb3\x14\x00\xf0\x33\xff\xff\xe0\x18"
SEQUENCE_DISPLAY_EXTENSION = b"\x00\x00\x01\xb5\x23\x05\x05\x05\x0a\x00\x0f\x00"


def sequence_extension(indication: int) -> bytes:
    return b"\x00\x00\x01\xb5" + bytes([0x10 | indication >> 4, (indication & 0x0F) << 4 | 0x0A, 0, 0x01, 0, 0x80])


@pytest.mark.parametrize(("indication", "expected"), [
    (0x58, "mp4v.60"),  # Simple profile, Main level
    (0x48, "mp4v.61"),  # Main, Main
    (0x3A, "mp4v.62"),  # SNR Scalable, Low
    (0x26, "mp4v.63"),  # Spatially Scalable, High 1440
    (0x14, "mp4v.64"),  # High, High
    (0x85, "mp4v.65"),  # 4:2:2 profile, Main level (escaped)
    (0x82, "mp4v.65"),  # 4:2:2 profile, High level
])
def test_the_mpeg2_sequence_extension_names_the_profile_whatever_the_probe_says(indication: int, expected: str) -> None:
    extradata = SEQUENCE_HEADER + sequence_extension(indication) + SEQUENCE_DISPLAY_EXTENSION
    for profile in ("Simple", "Main", "High", None):
        assert codec_string("mpeg2video", extradata, profile, None) == expected


def test_an_mpeg2_extradata_without_a_whole_sequence_extension_names_the_codec_from_the_profile() -> None:
    extension = SEQUENCE_HEADER + sequence_extension(0x58)[:6]  # up to the end of the indication
    assert codec_string("mpeg2video", extension, "High", None) == "mp4v.60"
    assert codec_string("mpeg2video", extension[:-1], "High", None) == "mp4v.64"  # its level bits cut off
    assert codec_string("mpeg2video", SEQUENCE_HEADER, "High", None) == "mp4v.64"
    assert codec_string("mpeg2video", None, "Reserved", None) == "mp4v.61"  # a profile FFmpeg cannot name


def test_hevc_extradata_whose_sps_is_cut_short_names_the_codec_from_the_vps() -> None:
    main10 = bytes([0x02, 0x20, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120])
    # VPS (ITU-T H.265 7.3.2.1): NAL header, 4 bytes of ids and counts, then the profile_tier_level.
    vps = b"\x00\x00\x00\x01\x40\x01\x0c\x01\xff\xff" + main10 + b"\x95\x98\x09"
    sps_header = b"\x00\x00\x01\x42\x01\x01"
    pps = b"\x00\x00\x01\x44\x01\xc1\x72\xb4\x62\x40" + bytes(8) + b"\x01"
    main = bytes([0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93])
    assert hevc_codec("Main", 93, vps + sps_header + main[:8] + pps) == "hvc1.2.4.L120.90"
    assert hevc_codec("Main", 93, vps) == "hvc1.2.4.L120.90"
    assert hevc_codec("Main", 93, vps[:22]) == "hvc1.2.4.L120.90"  # a VPS that ends with its profile_tier_level
    assert hevc_codec("Main", 93, vps[:21]) == "hvc1.1.6.L93.B0"  # one that does not hold it all
    assert hevc_codec("Main", 93, pps) == "hvc1.1.6.L93.B0"  # neither VPS nor SPS
    # An SPS that ends right after its profile_tier_level is enough.
    assert hevc_codec("Main", 93, vps + sps_header + main) == "hvc1.1.6.L93.90"
    # An hvcC record of exactly the version byte and the 12 bytes; and of a profile other than Main.
    assert hevc_codec(None, None, bytes([1]) + main10) == "hvc1.2.4.L120.90"
    assert hevc_codec(None, None, bytes([1]) + main10 + bytes(10)) == "hvc1.2.4.L120.90"


def test_extradata_ending_in_a_start_code_gives_the_codec_from_the_profile() -> None:
    pps = b"\x00\x00\x00\x01\x68\xeb\xe3\xcb\x22\xc0"
    assert codec_string("h264", pps + b"\x00\x00\x01", "High", 31) == "avc1.64001f"


@pytest.mark.parametrize("name", ["h264-mp3", "mpeg2-mp2", "h264-ac3"])
def test_both_paths_send_the_same_codecs(name: str, media: MediaCache, tmp_path: Path, free_port: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    args, encoder, expected = next((c[1], c[2], c[3]) for c in CLIPS if c[0] == name)
    if not ffmpeg_has(encoder):
        pytest.skip(f"this ffmpeg has no {encoder}")
    source = ffmpeg_clip(media, name, *args)
    sent = {}
    for path in ("fast-path", "pyav"):
        monkeypatch.setenv("HLS_SEGMENT_FAST_PATH", "1" if path == "fast-path" else "0")
        with Listener(free_port) as listener:
            result = run_segmenter(source, "1", tmp_path / path, free_port)
        assert result.returncode == 0, result.stderr
        sent[path] = {m.codecs for m in listener.messages}
    assert sent["fast-path"] == sent["pyav"] == {",".join(expected)}


@pytest.mark.slow
def test_mp3_and_h264_get_a_master_with_both_codecs(
    tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    if not ffmpeg_has("libmp3lame"):
        pytest.skip("this ffmpeg has no libmp3lame")
    source = ffmpeg_clip(media, "h264-mp3-long", *VIDEO, *AUDIO_48K, *H264, "-c:a", "libmp3lame", seconds=6)
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path)]).start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        runs = []
        for name, fast in (("low", "1"), ("high", "0")):  # two renditions, one per path: a master
            args = [sys.executable, "-m", "segmenter", str(source), "2", str(tmp_path / name), name,
                    f"{name}.m3u8", "", bucket, "mp3", "--uploader", f"127.0.0.1:{daemon.port}"]
            runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**env, "HLS_SEGMENT_FAST_PATH": fast}))
        for run in runs:
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 0, stderr
        base = seaweed.object_url(bucket, "mp3")

        def final_master() -> str | None:
            reply = http_get(f"{base}/master.m3u8")
            if reply.status != 200:
                return None
            read_playlist(f"{base}/master.m3u8", reply.text)
            return reply.text if reply.text.count("#EXT-X-STREAM-INF") == 2 else None

        master = wait_for(final_master, message="the master with both renditions", timeout=30)
    finally:
        daemon.kill()
    assert master.count('CODECS="avc1.64001f,mp4a.40.34"') == 2, master
    assert "Traceback" not in daemon.log()
