"""Which pictures a decoder can start at: is a segment decodable alone? Pure.

A segment is *independent* (RFC 8216 4.3.5.1, EXT-X-INDEPENDENT-SEGMENTS: "all media samples in a
Media Segment can be decoded without information from other segments") when the first access unit
of each of its video streams, in decode order, is a picture that needs nothing before it, and no
picture after it in the segment refers back past it. Judged from the bytes, per codec:

- H.264 (ITU-T H.264 7.4.1.2): the first VCL NAL unit is an IDR slice (nal_unit_type 5). A
  non-IDR I picture, even with a recovery point SEI (an x264 ``open-gop`` keyframe), is not: the
  B pictures after it in decode order may refer to the previous GOP.
- HEVC (ITU-T H.265 7.4.2.2, 8.1.3): the first VCL NAL unit is IDR_W_RADL, IDR_N_LP or BLA
  (16..20), or a CRA (21) that no RASL picture (8, 9) follows: RASL pictures refer to pictures
  before the CRA and a decoder starting at it skips them. RADL pictures (6, 7) decode fine.
- MPEG-2 and MPEG-1 video (ISO/IEC 13818-2 6.3.8, ISO/IEC 11172-2 2.4.3.4): the first picture is
  an I picture, and either no B picture follows it before the next I or P picture (no leading B
  pictures), or the group_of_pictures header right before it has closed_gop = 1 (its leading B
  pictures use only backward prediction) and broken_link = 0 (broken_link = 1 says they "may not
  be correctly decoded": a decoder drops them). An I frame coded as two field pictures counts as
  one picture.
- Any other video codec is not judged: never independent.

A segment with no video at all (audio only) is independent. Parameter sets (SPS, PPS, sequence
headers) are the encoder's or the muxer's to repeat and are not checked.

``StartPicture`` judges one stream from its access units; ``SegmentStart`` judges a segment from
several streams' access units; ``TsSegmentStart`` does the same from the segment's MPEG-TS packets.

``ParameterWatch`` reads the sequence parameter set at each keyframe of a stream and says when
the encoding parameters change (docs/segmenter.md, "Encoding parameters that change").
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from fractions import Fraction

from .codecs import VideoParameters, h264_sps_parameters, hevc_sps_parameters
from .psi import PUSI, TS_PACKET_BYTES, packet_pid, payload_offset

_START_CODE = b"\x00\x00\x01"


class VideoCodec(enum.Enum):
    H264 = "H.264"
    HEVC = "HEVC"
    MPEG2 = "MPEG-2 video"  # MPEG-1 video has the same start codes, GOP and picture headers


# PyAV/FFmpeg codec names, and MPEG-TS stream types (ISO/IEC 13818-1 table 2-34), of the judged codecs.
_BY_NAME = {"h264": VideoCodec.H264, "hevc": VideoCodec.HEVC, "mpeg2video": VideoCodec.MPEG2,
            "mpeg1video": VideoCodec.MPEG2}
_BY_STREAM_TYPE = {0x1B: VideoCodec.H264, 0x24: VideoCodec.HEVC, 0x01: VideoCodec.MPEG2, 0x02: VideoCodec.MPEG2}


def codec_by_name(name: str) -> VideoCodec | None:
    """The judged codec of a PyAV/FFmpeg codec name ("h264", "hevc", "mpeg2video"), or None."""
    return _BY_NAME.get(name)


def codec_by_stream_type(stream_type: int) -> VideoCodec | None:
    """The judged codec of an MPEG-TS stream_type (0x1B, 0x24, 0x01, 0x02), or None."""
    return _BY_STREAM_TYPE.get(stream_type)


def nal_length_size(codec: VideoCodec | None, extradata: bytes | None) -> int:
    """Bytes of each NAL unit's length prefix when ``extradata`` is an MP4-style decoder
    configuration record (avcC: ISO/IEC 14496-15 5.3.3.1; hvcC: 8.3.3.1), else 0 (Annex B
    start codes, as in MPEG-TS)."""
    if not extradata or extradata[0] != 1:
        return 0
    if codec is VideoCodec.H264 and len(extradata) >= 5:
        return (extradata[4] & 0x03) + 1
    if codec is VideoCodec.HEVC and len(extradata) >= 22:
        return (extradata[21] & 0x03) + 1
    return 0


def nal_units(data: bytes, length_size: int = 0) -> Iterator[int]:
    """Offsets of the NAL unit headers in ``data``: after each 00 00 01 start code (Annex B,
    ITU-T H.264 B.1), or after each ``length_size``-byte big-endian length prefix."""
    if length_size:
        at = 0
        while at + length_size < len(data):
            size = int.from_bytes(data[at : at + length_size], "big")
            yield at + length_size
            at += length_size + size
        return
    at = data.find(_START_CODE)
    while at != -1 and at + 3 < len(data):
        yield at + 3
        at = data.find(_START_CODE, at + 3)


def h264_nal_type(data: bytes, header: int) -> int:
    """nal_unit_type of the H.264 NAL unit whose header byte is at ``header`` (ITU-T H.264 7.3.1)."""
    return data[header] & 0x1F


class StartPicture:
    """Whether one video stream of a segment starts at a picture a decoder can start at (see the
    module doc). Feed the stream's access units (or any split of its bytes at NAL unit or start
    code boundaries) in decode order until ``decided``; ``independent`` is the verdict, also
    when undecided at the segment's end (a CRA or I picture whose leading pictures never came).
    ``reason`` says why not, for a log line."""

    def __init__(self, codec: VideoCodec | None, length_size: int = 0) -> None:
        self.codec = codec
        self.length_size = length_size
        self.decided = False
        self.independent = True  # nothing fed yet: no video
        self.reason = ""
        self._started = False  # the first picture was seen and may still be spoilt by the next
        self._field_check = False  # MPEG-2: the next picture coding extension is the I picture's
        self._skip_field = False  # MPEG-2: the next picture is the I frame's second field
        self._closed_gop = self._broken_link = False

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the stream; returns ``decided``."""
        if self.decided:
            return True
        if self.codec is VideoCodec.H264:
            self._h264(data)
        elif self.codec is VideoCodec.HEVC:
            self._hevc(data)
        elif self.codec is VideoCodec.MPEG2:
            self._mpeg2(data)
        else:
            self._decide(False, "its video codec is not one whose random access points are judged")
        return self.decided

    def _decide(self, independent: bool, reason: str = "") -> None:
        self.decided = True
        self.independent = independent
        self.reason = reason

    def _h264(self, data: bytes) -> None:
        for header in nal_units(data, self.length_size):
            kind = h264_nal_type(data, header)
            if kind == 5:
                return self._decide(True)
            if 1 <= kind <= 4:
                return self._decide(False, "it starts with an H.264 picture that is not IDR (an open GOP, or a cut without a keyframe)")

    def _hevc(self, data: bytes) -> None:
        for header in nal_units(data, self.length_size):
            if header + 2 >= len(data):
                continue
            kind = (data[header] >> 1) & 0x3F
            layer = ((data[header] & 0x01) << 5) | (data[header + 1] >> 3)
            if kind > 31 or layer:
                continue  # not a VCL NAL unit of the base layer
            first_slice = data[header + 2] & 0x80
            if not self._started:
                if 16 <= kind <= 20:  # IDR_W_RADL, IDR_N_LP, BLA_W_LP, BLA_W_RADL, BLA_N_LP
                    return self._decide(True)
                if kind != 21:
                    return self._decide(False, "it starts with an HEVC picture that is not IRAP")
                self._started = True  # a CRA: its leading pictures follow it
            elif kind in (8, 9):  # RASL_N, RASL_R
                return self._decide(False, "it starts with an HEVC CRA picture that RASL pictures follow (open GOP)")
            elif kind in (6, 7) or (kind == 21 and not first_slice):
                continue  # RADL pictures, or more slices of the CRA picture
            else:
                return self._decide(True)  # a trailing picture, or the next IRAP: no leading pictures left

    def _mpeg2(self, data: bytes) -> None:
        for at in nal_units(data):
            code = data[at]
            if code == 0xB8 and at + 4 < len(data):  # group_start_code: 25-bit time_code, then the flags
                self._closed_gop = bool(data[at + 4] & 0x40)
                self._broken_link = bool(data[at + 4] & 0x20)
            elif code == 0xB5 and at + 3 < len(data) and data[at + 1] >> 4 == 8:
                # picture_coding_extension (13818-2 6.2.3.1): picture_structure 1 or 2 is a field
                if self._field_check:
                    self._field_check = False
                    self._skip_field = data[at + 3] & 0x03 in (1, 2)
            elif code == 0x00 and at + 2 < len(data):  # picture_start_code
                coding_type = (data[at + 2] >> 3) & 0x07  # 1 I, 2 P, 3 B, 4 D (13818-2 table 6-12)
                self._field_check = False
                if not self._started:
                    if coding_type != 1:
                        return self._decide(False, "it starts with an MPEG-2 picture that is not an I picture")
                    self._started = self._field_check = True
                elif self._skip_field:
                    self._skip_field = False  # the second field of the I frame
                elif coding_type != 3:
                    return self._decide(True)  # no leading B pictures
                elif self._closed_gop and not self._broken_link:
                    return self._decide(True)  # leading B pictures, backward-predicted only
                else:
                    why = "a broken link" if self._broken_link else "an open GOP"
                    return self._decide(False, f"it starts with an MPEG-2 I picture of {why} that B pictures follow")


class SegmentStart:
    """Whether a segment is independent, from the first access units of each video stream in it.

    ``streams`` maps a stream's key (its index, or PID) to (codec or None, NAL length size) for
    every video stream; other keys are ignored. A stream that puts nothing in the segment does
    not count against it.
    """

    def __init__(self, streams: Mapping[int, tuple[VideoCodec | None, int]]) -> None:
        self._judges = {key: StartPicture(codec, length) for key, (codec, length) in streams.items()}

    def wants(self, key: int) -> bool:
        """Whether ``key`` is a video stream whose start is not decided yet."""
        judge = self._judges.get(key)
        return judge is not None and not judge.decided

    def feed(self, key: int, data: bytes) -> None:
        """The next access unit (or part of one) of stream ``key``, in decode order."""
        judge = self._judges.get(key)
        if judge is not None:
            judge.feed(data)

    @property
    def independent(self) -> bool:
        return all(judge.independent for judge in self._judges.values())

    @property
    def reason(self) -> str:
        """Why the segment is not independent ("" when it is)."""
        return next((judge.reason for judge in self._judges.values() if not judge.independent), "")


class TsSegmentStart:
    """``SegmentStart`` fed with a segment's MPEG-TS packets (whole 188-byte packets, in the
    segment's order): the PES packets of each video PID are put back together and each whole
    one, without its PES header (ISO/IEC 13818-1 2.4.3.6), is one access unit. ``streams`` maps
    PIDs as ``SegmentStart``'s does. Once every video stream is decided, packets are not read."""

    def __init__(self, streams: Mapping[int, tuple[VideoCodec | None, int]]) -> None:
        self._start = SegmentStart(streams)
        self._pes: dict[int, bytearray] = {}  # PID -> the PES being put together
        self._open = set(streams)  # PIDs still undecided

    def feed(self, packets: bytes | memoryview) -> None:
        """The segment's next packets."""
        if not self._open:
            return
        for at in range(0, len(packets) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
            packet = bytes(packets[at : at + 3])
            pid = packet_pid(packet)
            if pid not in self._open:
                continue
            packet = bytes(packets[at : at + TS_PACKET_BYTES])
            offset = payload_offset(packet)
            if offset is None:
                continue
            if packet[1] & PUSI:
                self._unit_end(pid)
                self._pes[pid] = bytearray(packet[offset:])
            elif pid in self._pes:  # (packets before the PID's first PES start belong to no unit here)
                self._pes[pid] += packet[offset:]
            if not self._open:
                return

    def _unit_end(self, pid: int) -> None:
        pes = self._pes.pop(pid, None)
        if pes is None or len(pes) < 9 or pes[:3] != _START_CODE:
            return
        self._start.feed(pid, bytes(pes[9 + pes[8] :]))
        if not self._start.wants(pid):
            self._open.discard(pid)

    def finish(self) -> SegmentStart:
        """The segment ended: the units still being put together count as they are."""
        for pid in list(self._pes):
            self._unit_end(pid)
        return self._start


# -- Encoding parameters ------------------------------------------------------------------------

# Frames timed after new parameters without VUI timing info, to measure their frame rate.
RATE_FRAMES = 8


def sequence_parameter_set(codec: VideoCodec | None, data: bytes, length_size: int = 0) -> bytes | None:
    """The first sequence parameter set NAL unit (H.264 nal_unit_type 7, HEVC 33) in an access
    unit's bytes, from its header to the next NAL unit, or None (none there, or not H.264/HEVC)."""
    if codec is VideoCodec.H264:
        wanted, kind_of = 7, lambda header: data[header] & 0x1F
    elif codec is VideoCodec.HEVC:
        wanted, kind_of = 33, lambda header: (data[header] >> 1) & 0x3F
    else:
        return None
    found = None
    for header in nal_units(data, length_size):
        if found is not None:
            return data[found : header - (length_size or 3)]
        if kind_of(header) == wanted:
            found = header
    return data[found:] if found is not None else None


def sps_parameters(codec: VideoCodec | None, nal: bytes) -> VideoParameters | None:
    """``codecs.h264_sps_parameters`` or ``hevc_sps_parameters`` of an SPS NAL unit, or None."""
    if codec is VideoCodec.H264:
        return h264_sps_parameters(nal)
    if codec is VideoCodec.HEVC:
        return hevc_sps_parameters(nal)
    return None


class ParameterSet:
    """One run of identical sequence parameters of a video stream. ``frame_rate`` is the VUI's
    when the SPS has timing info, else measured from the smallest step between the decode
    timestamps of its first RATE_FRAMES frames (None until two came)."""

    def __init__(self, parameters: VideoParameters, time_base: Fraction) -> None:
        self.parameters = parameters
        self.frame_rate = parameters.frame_rate
        self._time_base = time_base
        self._frames = 0 if self.frame_rate is None else RATE_FRAMES
        self._last_dts: int | None = None
        self._step: int | None = None

    @property
    def measuring(self) -> bool:
        return self._frames < RATE_FRAMES

    def frame(self, dts: int | None) -> None:
        """The decode timestamp (in the stream's time base) of the next frame of this set."""
        if dts is None or not self.measuring:
            return
        self._frames += 1
        last, self._last_dts = self._last_dts, dts
        if last is not None and dts > last and (self._step is None or dts - last < self._step):
            self._step = dts - last
            rate = 1 / (self._step * self._time_base)
            self.frame_rate = round(float(rate), 3) if 0 < rate <= 1000 else None


class ParameterWatch:
    """The encoding parameters of one video stream, keyframe by keyframe: whether they change
    (RFC 8216 4.3.2.3: a segment starting with new ones is marked EXT-X-DISCONTINUITY).

    Feed each keyframe's access unit (or its first bytes, enough to hold its SPS) to
    ``keyframe`` before the cutter decides on it, and every frame's decode timestamp to
    ``frame``. ``first`` is the first parameter set seen (what the probe described); ``current``
    the latest. A keyframe without a readable SPS keeps the current set.
    """

    def __init__(self, codec: VideoCodec | None, time_base: Fraction, length_size: int = 0) -> None:
        self.codec = codec
        self.length_size = length_size
        self.time_base = time_base
        self.first: ParameterSet | None = None
        self.current: ParameterSet | None = None
        self._last_sps: bytes | None = None

    def keyframe(self, data: bytes) -> bool:
        """Read a keyframe's access unit; True when it carries parameters other than the current ones."""
        sps = sequence_parameter_set(self.codec, data, self.length_size)
        if sps is None or sps == self._last_sps:
            return False
        parameters = sps_parameters(self.codec, sps)
        if parameters is None:
            return False
        self._last_sps = sps
        current = self.current
        if current is not None and current.parameters == parameters:
            return False
        self.current = ParameterSet(parameters, self.time_base)
        if current is None:
            self.first = self.current
            return False
        return True

    def frame(self, dts: int | None) -> None:
        """A frame of the stream (any), in decode order: times the current set if it needs it."""
        current = self.current
        if current is not None and current.measuring:
            current.frame(dts)
