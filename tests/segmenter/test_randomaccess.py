"""Which pictures a decoder can start at (``segmenter.randomaccess``), on bytes built here.

The byte layouts are those of ITU-T H.264 7.3.1, ITU-T H.265 7.3.1.2, ISO/IEC 13818-2 6.2 and
ISO/IEC 11172-2 2.4.2, and of ISO/IEC 14496-15 for length-prefixed NAL units; the same rules on
real encodes, and through hls-segment, are in test_independence.py.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from segmenter.codecs import VideoParameters
from segmenter.randomaccess import (
    RATE_FRAMES,
    ParameterSet,
    ParameterWatch,
    SegmentStart,
    StartPicture,
    TsSegmentStart,
    VideoCodec,
    codec_by_name,
    codec_by_stream_type,
    nal_length_size,
    nal_units,
    sequence_parameter_set,
    sps_parameters,
)
from tests.segmenter.ts_surgery import _packetize

TICKS = Fraction(1, 90000)

# Sequence parameter sets: x264's for 320x240 at 25 fps and 640x360 at 50 fps; a Baseline one for
# 320x240 without VUI (no frame rate); x265's for 640x360 at 25 fps.
SPS_320 = bytes.fromhex("6764000dacd94141fb011000000300100000030320f1429960")
SPS_640 = bytes.fromhex("6764001facd940a02ff97011000003000100000300640f183196")
SPS_UNTIMED = bytes.fromhex("6742c01eda0507e4")
HEVC_SPS = bytes.fromhex("42010101600000030090000003000003003fa00502016965959a4932bc05a02000000300200000030321")
PPS = b"\x68\xeb\xe3\xcb\x22\xc0"
AUD = b"\x09\xf0"
SEI = b"\x06\x05\x01\x00\x80"


def annex_b(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x01" + nal for nal in nals)


def length_prefixed(*nals: bytes, size: int = 4) -> bytes:
    return b"".join(len(nal).to_bytes(size, "big") + nal for nal in nals)


def h264(kind: int) -> bytes:
    """An H.264 NAL unit of ``kind`` (nal_ref_idc 3) and a few bytes of its payload."""
    return bytes([0x60 | kind]) + b"\x88\x84\x21"


def hevc(kind: int, *, first: bool = True, layer: int = 0) -> bytes:
    """An HEVC NAL unit of ``kind`` in nuh_layer_id ``layer`` (TemporalId 0). A slice starts with
    first_slice_segment_in_pic_flag; the bits around it are set the other way."""
    header = bytes([(kind << 1) | (layer >> 5), ((layer & 0x1F) << 3) | 1])
    return header + (b"\xaf\x00\x11" if first else b"\x41\x80\x11")


def judged(codec: VideoCodec, pieces: list[bytes], length_size: int = 0) -> StartPicture:
    start = StartPicture(codec, length_size)
    for piece in pieces:
        start.feed(piece)
    return start


def verdicts(codec: VideoCodec, nals: list[bytes]) -> set[tuple[bool, bool, bool]]:
    """(decided, independent, a reason given) for ``nals`` fed whole and one by one, with start
    codes and with 4- and 2-byte length prefixes: one element when all of them agree."""
    ways = [[annex_b(*nals)], [annex_b(nal) for nal in nals], [length_prefixed(*nals)],
            [length_prefixed(nal, size=2) for nal in nals]]
    found = set()
    for pieces, length in zip(ways, (0, 0, 4, 2)):
        start = judged(codec, pieces, length)
        found.add((start.decided, start.independent, bool(start.reason)))
    return found


DECIDED_INDEPENDENT = {(True, True, False)}
DECIDED_NOT = {(True, False, True)}
UNDECIDED = {(False, True, False)}


@pytest.mark.parametrize(("nals", "expected"), [
    ([AUD, SPS_320, PPS, SEI, h264(5)], DECIDED_INDEPENDENT),  # IDR
    ([AUD, SEI, h264(1)], DECIDED_NOT),  # non-IDR slice: an open GOP's I picture, or a P or B picture
    ([AUD, h264(2)], DECIDED_NOT),  # data partition A
    ([h264(4), h264(5)], DECIDED_NOT),  # data partition C
    ([AUD, SPS_320, PPS], UNDECIDED),  # no picture yet
    ([AUD, b"\x41"], DECIDED_NOT),  # the NAL unit header alone says it
])
def test_an_h264_segment_starts_at_an_idr_picture_only(nals: list[bytes], expected: set) -> None:
    assert verdicts(VideoCodec.H264, nals) == expected


RASL_N, RASL_R, RADL_N, RADL_R, TRAIL_N, TRAIL_R, CRA = 8, 9, 6, 7, 0, 1, 21
VPS, SPS, PPS_HEVC, AUD_HEVC = b"\x40\x01\x0c\x01", HEVC_SPS, b"\x44\x01\xc1\x72", b"\x46\x01\x50"


@pytest.mark.parametrize(("nals", "expected"), [
    ([AUD_HEVC, VPS, SPS, PPS_HEVC, hevc(19)], DECIDED_INDEPENDENT),  # IDR_W_RADL
    ([hevc(20)], DECIDED_INDEPENDENT),  # IDR_N_LP
    ([hevc(16)], DECIDED_INDEPENDENT),  # BLA_W_LP
    ([hevc(18)], DECIDED_INDEPENDENT),  # BLA_N_LP
    ([AUD_HEVC, hevc(TRAIL_R)], DECIDED_NOT),
    ([hevc(CRA), hevc(CRA, first=False), hevc(RADL_N), hevc(RADL_R), hevc(TRAIL_N)], DECIDED_INDEPENDENT),
    ([hevc(CRA), hevc(TRAIL_R)], DECIDED_INDEPENDENT),
    ([hevc(CRA), hevc(RASL_N)], DECIDED_NOT),
    ([hevc(CRA), hevc(RASL_R)], DECIDED_NOT),
    ([hevc(CRA), hevc(CRA, first=False), hevc(RASL_N)], DECIDED_NOT),  # a second slice of the CRA first
    ([hevc(CRA), hevc(RADL_N), hevc(RASL_N)], DECIDED_NOT),
    ([hevc(CRA), hevc(RADL_R), hevc(RASL_R)], DECIDED_NOT),
    ([hevc(CRA), hevc(CRA), hevc(RASL_N)], DECIDED_INDEPENDENT),  # the next CRA picture: no leading pictures
    # RASL pictures of other layers (nuh_layer_id 1 and 32) do not count: the base layer decides.
    ([hevc(CRA), hevc(RASL_N, layer=1), hevc(RASL_N, layer=32), hevc(TRAIL_R)], DECIDED_INDEPENDENT),
    ([hevc(CRA), SPS, PPS_HEVC], UNDECIDED),  # a CRA whose leading pictures never came
])
def test_an_hevc_segment_starts_at_an_irap_picture_no_rasl_picture_follows(nals: list[bytes], expected: set) -> None:
    assert verdicts(VideoCodec.HEVC, nals) == expected


def test_an_hevc_nal_unit_cut_after_its_header_is_not_judged() -> None:
    cra = annex_b(hevc(CRA))
    assert judged(VideoCodec.HEVC, [cra + b"\x00\x00\x01" + hevc(RASL_N)[:2]]).decided is False
    three_bytes = judged(VideoCodec.HEVC, [cra + b"\x00\x00\x01" + hevc(RASL_N)[:3]])
    assert (three_bytes.decided, three_bytes.independent) == (True, False)


def test_a_decided_start_says_so_and_takes_nothing_more() -> None:
    start = StartPicture(VideoCodec.H264)
    assert start.feed(annex_b(AUD, SPS_320, PPS)) is False
    assert start.reason == ""
    assert start.feed(annex_b(h264(5))) is True
    assert start.feed(annex_b(h264(1))) is True
    assert (start.independent, start.reason) == (True, "")


def test_the_nal_unit_length_size_comes_from_an_avcc_or_hvcc_record_only() -> None:
    assert nal_length_size(VideoCodec.H264, None) == 0
    assert nal_length_size(VideoCodec.H264, b"") == 0
    assert nal_length_size(VideoCodec.H264, b"\x00\x00\x00\x01\x67\x64") == 0  # Annex B extradata
    assert nal_length_size(VideoCodec.H264, b"\x01\x64\x00\x1f\xfd") == 2  # lengthSizeMinusOne = 1
    assert nal_length_size(VideoCodec.H264, b"\x01\x64\x00\x1f") == 0  # too short for it
    hvcc = bytes([1]) + bytes(20) + b"\xf0"
    assert nal_length_size(VideoCodec.HEVC, hvcc) == 1
    assert nal_length_size(VideoCodec.HEVC, hvcc[:-1]) == 0
    assert nal_length_size(VideoCodec.MPEG2, hvcc + bytes(10)) == 0
    assert nal_length_size(None, b"\x01\x64\x00\x1f\xff") == 0


def test_nal_units_are_found_after_start_codes_or_length_prefixes() -> None:
    units = [b"\x65\x88", b"\x41\x9a\x02", b"\x01"]
    assert list(nal_units(length_prefixed(*units), 4)) == [4, 10, 17]
    assert list(nal_units(length_prefixed(*units) + b"\x00\x00\x00\x05", 4)) == [4, 10, 17]  # a bare prefix
    assert list(nal_units(length_prefixed(*units, size=1), 1)) == [1, 4, 8]
    data = b"\x00\x00\x00\x01" + units[0] + b"\x00\x00\x01" + units[1] + b"\x00\x00\x01"
    assert list(nal_units(data)) == [4, 9]  # a start code with nothing after it starts no NAL unit


def test_a_segment_of_length_prefixed_units_is_judged_by_its_streams_length_size() -> None:
    start = SegmentStart({0: (VideoCodec.H264, 4), 1: (VideoCodec.H264, 2)})
    start.feed(0, length_prefixed(AUD, h264(1)))
    assert not start.independent and not start.wants(0) and start.wants(1)
    start = SegmentStart({1: (VideoCodec.H264, 2)})
    start.feed(1, length_prefixed(AUD, h264(5), size=2))
    assert start.independent and not start.wants(1)


def test_no_video_is_independent_and_an_unjudged_codec_is_not() -> None:
    assert SegmentStart({}).independent  # an audio-only input
    start = SegmentStart({0: (VideoCodec.H264, 0), 1: (None, 0)})
    assert start.independent and start.reason == ""  # audio only in this segment: the video paused
    assert start.wants(0) and start.wants(1) and not start.wants(2)
    start.feed(1, b"\x00\x00\x01\xb6")  # an MPEG-4 part 2 VOP: not a codec whose pictures are judged
    assert not start.independent and not start.wants(1)
    assert start.reason == "its video codec is not one whose random access points are judged"
    assert codec_by_name("mpeg4") is None and codec_by_stream_type(0x10) is None
    assert codec_by_name("mpeg1video") is codec_by_stream_type(0x02) is VideoCodec.MPEG2


# MPEG-2 headers (ISO/IEC 13818-2 6.2.2.6, 6.2.3, 6.2.3.1) for what ffmpeg's encoder cannot make:
# field pictures, and broken_link.
def gop_header(*, closed: bool, broken: bool = False) -> bytes:
    return b"\x00\x00\x01\xb8\x00\x08\x00" + bytes([0x40 * closed | 0x20 * broken])


def picture(coding_type: int, structure: int = 3) -> bytes:
    header = b"\x00\x00\x01\x00\x00" + bytes([coding_type << 3]) + b"\xff\xf8"
    extension = b"\x00\x00\x01\xb5\x8f\xff" + bytes([0xf0 | structure]) + b"\x80"
    return header + extension + b"\x00\x00\x01\x01\x12\x34"  # and a slice


I, P, B = 1, 2, 3


@pytest.mark.parametrize(("stream", "independent"), [
    (gop_header(closed=False) + picture(I) + picture(B), False),  # open GOP, leading B
    (gop_header(closed=True) + picture(I) + picture(B), True),  # closed GOP: backward-predicted B
    (gop_header(closed=True, broken=True) + picture(I) + picture(B), False),  # the B pictures are dropped
    (gop_header(closed=False, broken=True) + picture(I) + picture(P), True),  # no leading B
    (gop_header(closed=False) + picture(I, 1) + picture(P, 2) + picture(B), False),  # I frame as two fields
    (gop_header(closed=False) + picture(I, 1) + picture(I, 2) + picture(P), True),
    (gop_header(closed=True) + picture(P), False),
    (gop_header(closed=False) + picture(I), True),  # the segment ends after it
])
def test_mpeg2_leading_b_pictures(stream: bytes, independent: bool) -> None:
    judge = StartPicture(VideoCodec.MPEG2)
    judge.feed(stream)
    assert judge.independent is independent
    # Fed a start code at a time, the verdict is the same.
    judge = StartPicture(VideoCodec.MPEG2)
    for piece in stream.split(b"\x00\x00\x01")[1:]:
        judge.feed(b"\x00\x00\x01" + piece)
    assert judge.independent is independent


def test_mpeg1_pictures_have_no_coding_extension() -> None:
    """ISO/IEC 11172-2: a picture header is followed by its slices directly (no
    picture_coding_extension, no field pictures); a slice's first byte may look like an
    extension's."""
    slice_ = b"\x00\x00\x01\x01\x84\x00\x01\x12"  # quantizer_scale 16
    i_picture = b"\x00\x00\x01\x00\x00\x08\xff\xf8" + slice_
    b_picture = b"\x00\x00\x01\x00\x00\x18\xff\xf8" + slice_
    p_picture = b"\x00\x00\x01\x00\x00\x10\xff\xf8" + slice_
    assert judged(VideoCodec.MPEG2, [gop_header(closed=False) + i_picture + b_picture + p_picture]).independent is False
    assert judged(VideoCodec.MPEG2, [gop_header(closed=False) + i_picture + p_picture]).independent is True


def test_mpeg2_headers_cut_short_at_the_end_are_not_judged() -> None:
    start = gop_header(closed=False) + picture(I)
    b_picture = picture(B)
    assert judged(VideoCodec.MPEG2, [start + b_picture[:6]]).independent is False  # up to the coding type
    cut = judged(VideoCodec.MPEG2, [start + b_picture[:5]])
    assert (cut.decided, cut.independent) == (False, True)
    extension = picture(I)[8:]
    assert judged(VideoCodec.MPEG2, [gop_header(closed=False) + picture(I)[:8] + extension[:6]]).decided is False
    assert judged(VideoCodec.MPEG2, [gop_header(closed=False)[:7]]).decided is False


def test_a_start_that_is_not_independent_says_why() -> None:
    for stream in (gop_header(closed=False) + picture(I) + picture(B),
                   gop_header(closed=True, broken=True) + picture(I) + picture(B),
                   gop_header(closed=True) + picture(P)):
        start = judged(VideoCodec.MPEG2, [stream])
        assert start.independent is False and start.reason
    assert judged(VideoCodec.HEVC, [annex_b(hevc(CRA), hevc(RASL_N))]).reason
    unjudged = judged(None, [b"\x00\x00\x01\xb6"])
    assert unjudged.independent is False and unjudged.reason


# -- MPEG-TS packets ------------------------------------------------------------------------------

VIDEO_PID = 0x100


def pes(es: bytes, pid: int = VIDEO_PID) -> list[bytes]:
    """A video PES (stream_id 0xE0, PTS only, unbounded length) carrying ``es``, in TS packets."""
    return _packetize(pid, b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01" + es)


def ts_judged(packets: list[bytes], codec: VideoCodec = VideoCodec.HEVC) -> list[bool]:
    """The verdict on ``packets`` fed whole, and fed one packet at a time."""
    found = []
    for pieces in ([b"".join(packets)], packets):
        start = TsSegmentStart({VIDEO_PID: (codec, 0)})
        for piece in pieces:
            start.feed(piece)
        found.append(start.finish().independent)
    return found


def test_ts_packets_of_other_pids_and_each_pes_header_are_left_out() -> None:
    audio = _packetize(0x101, b"\x00\x00\x01\xc0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01" + bytes(300))
    cra = pes(annex_b(AUD_HEVC, VPS, SPS, PPS_HEVC, hevc(CRA)) + bytes(400))
    rasl = pes(annex_b(AUD_HEVC, hevc(RASL_N)))
    trail = pes(annex_b(AUD_HEVC, hevc(TRAIL_R)))
    assert ts_judged([audio[0], *cra, audio[1], *rasl, *trail]) == [False, False]
    assert ts_judged([*audio, *cra, *trail, *rasl]) == [True, True]
    # RADL pictures decide nothing: the stream is read on to the RASL picture.
    radl = pes(annex_b(AUD_HEVC, hevc(RADL_N)))
    assert ts_judged([*cra, *radl, *rasl]) == [False, False]
    # A packet with an adaptation field only (a PCR on the video PID) is no part of a unit.
    pcr_only = bytes([0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x20, 183, 0x10]) + bytes(6) + b"\xff" * 176
    assert ts_judged([*cra, pcr_only, *rasl]) == [False, False]
    # The PES still being put together at the end counts as it is.
    assert ts_judged([*audio, *pes(annex_b(AUD_HEVC, hevc(TRAIL_R)))]) == [False, False]
    # The payload right after the PES header is a 3-byte start code.
    assert ts_judged(pes(b"\x00\x00\x01" + h264(1)), VideoCodec.H264) == [False, False]


def test_a_ts_packet_that_starts_no_pes_is_not_a_unit() -> None:
    corrupt = _packetize(VIDEO_PID, b"\xff" * 8 + b"\x00" + annex_b(h264(1)) + bytes(40))  # no PES start code
    assert ts_judged([*corrupt, *pes(annex_b(AUD, h264(5)))], VideoCodec.H264) == [True, True]


def test_payload_bytes_that_look_like_a_packet_header_are_payload() -> None:
    """Packets are read at 188-byte steps only: "47 01 00 10" at the end of a video payload is
    slice data, not a packet of the video PID whose payload (here, audio bytes with an IDR start
    code in them) would join the access unit."""
    cra = pes(annex_b(hevc(CRA)) + b"\x47\x01\x00\x10")
    audio = _packetize(0x101, b"\x00\x00\x01\xc0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01\xff\xf1"
                       + annex_b(hevc(19)) + bytes(40))
    assert ts_judged([*cra, *audio, *pes(annex_b(hevc(RASL_N)))]) == [False, False]


# -- encoding parameters --------------------------------------------------------------------------


def test_the_sequence_parameter_set_is_cut_from_its_header_to_the_next_nal_unit() -> None:
    assert sequence_parameter_set(VideoCodec.H264, annex_b(AUD, SPS_320, PPS, h264(5))) == SPS_320
    assert sequence_parameter_set(VideoCodec.H264, annex_b(AUD, SPS_320)) == SPS_320
    assert sequence_parameter_set(VideoCodec.H264, annex_b(AUD, PPS, h264(5))) is None
    assert sequence_parameter_set(VideoCodec.H264, length_prefixed(AUD, SPS_640, PPS), 4) == SPS_640
    assert sequence_parameter_set(VideoCodec.H264, length_prefixed(AUD, SPS_640), 4) == SPS_640
    assert sequence_parameter_set(VideoCodec.HEVC, annex_b(AUD_HEVC, VPS, SPS, PPS_HEVC)) == SPS
    assert sequence_parameter_set(VideoCodec.MPEG2, annex_b(AUD, SPS_320)) is None
    assert sps_parameters(VideoCodec.HEVC, SPS) == VideoParameters("hvc1.1.6.L63.90", 640, 360, 25.0)
    assert sps_parameters(VideoCodec.MPEG2, SPS) is None


@pytest.mark.parametrize("length_size", [0, 4])
def test_the_watch_reports_new_parameters_not_new_bytes(length_size: int) -> None:
    def unit(*nals: bytes) -> bytes:
        return length_prefixed(*nals) if length_size else annex_b(*nals)

    watch = ParameterWatch(VideoCodec.H264, TICKS, length_size)
    assert watch.first is None and watch.current is None
    watch.frame(0)  # a frame before any keyframe: nothing to time
    assert watch.keyframe(unit(AUD, SPS_320, PPS, h264(5))) is False  # the first parameters: what the probe saw
    assert watch.first is watch.current is not None
    assert (watch.current.parameters.resolution, watch.current.frame_rate) == ("320x240", 25.0)
    assert watch.keyframe(unit(AUD, SPS_320, PPS, h264(5))) is False
    assert watch.keyframe(unit(AUD, PPS, h264(5))) is False  # no SPS: the current ones hold
    assert watch.keyframe(unit(AUD, SPS_640[:6], PPS, h264(5))) is False  # nor does an unreadable one
    assert watch.keyframe(unit(AUD, SPS_320 + b"\x00", PPS, h264(5))) is False  # other bytes, same parameters
    assert watch.keyframe(unit(AUD, SPS_640, PPS, h264(5))) is True
    assert (watch.current.parameters.resolution, watch.current.frame_rate) == ("640x360", 50.0)
    assert watch.first.parameters.resolution == "320x240"


def test_the_watch_times_frames_of_parameters_without_a_frame_rate() -> None:
    watch = ParameterWatch(VideoCodec.H264, TICKS)
    watch.keyframe(annex_b(SPS_UNTIMED, PPS, h264(5)))
    assert watch.current is not None and watch.current.frame_rate is None
    for dts in (0, 3600, 7200):
        watch.frame(dts)
    assert watch.current.frame_rate == 25.0


@pytest.mark.parametrize(("time_base", "steps", "rate"), [
    (TICKS, [3600] * (RATE_FRAMES - 2) + [1800, 900], 50.0),  # the first RATE_FRAMES frames only
    (TICKS, [0, 3600], 25.0),  # a frame sent twice is no step
    (Fraction(1, 1000), [42, 42], 23.81),  # three decimal places (RFC 8216 4.3.4.2, FRAME-RATE)
    (TICKS, [180000], 0.5),  # a picture every two seconds
    (TICKS, [90], 1000.0),
    (TICKS, [1], None),  # 90000 frames a second: not a frame rate
])
def test_a_frame_rate_is_measured_from_the_smallest_decode_time_step(
    time_base: Fraction, steps: list[int], rate: float | None
) -> None:
    measured = ParameterSet(VideoParameters("avc1.42c01e", 320, 240, None), time_base)
    dts = 0
    measured.frame(dts)
    for step in steps:
        dts += step
        measured.frame(dts)
    assert measured.frame_rate == rate
