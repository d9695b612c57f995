"""RFC 6381 codec strings ("avc1.64001f", "mp4a.40.2") from what the probe knows. Pure.

A stream is named by its codec (FFmpeg's codec id, as ``avcodec_get_name`` spells it: "mp3",
"mp2", "ac3", never a decoder's name such as "mp3float"), and the string's parameters come from
the bitstream where it carries them (the H.264 or HEVC SPS, the AAC AudioSpecificConfig, the
MPEG-2 sequence extension), else from the profile and level the probe reported.

Sources: RFC 6381 section 3.3 (ISO base media file format names: "avc1.PPCCLL", "mp4a.OTI[.AOT]",
"mp4v.OTI"), ISO/IEC 14496-15 Annex E (the "hvc1" string), the MP4 registration authority's object
type indications (0x60-0x65 MPEG-2 video, 0x6A MPEG-1 video, 0x69 MPEG-2 audio, 0x6B MPEG-1
audio), ISO/IEC 14496-3 table 1.17 (audio object types: 2 AAC LC, 5 SBR, 29 PS, 34 Layer-3),
ETSI TS 102 366 Annex F ("ac-3", "ec-3"), and Apple's HLS authoring specification, whose examples
use these strings (and "hvc1", not "hev1", for HEVC).
"""

from __future__ import annotations

from dataclasses import dataclass

# H.264 profile names (as libavcodec reports them) -> (profile_idc, constraint flags byte), for
# when no SPS is at hand. The constraint byte is what encoders usually write for that profile.
_H264_PROFILES = {
    "Baseline": (66, 0x00),
    "Constrained Baseline": (66, 0xC0),
    "Main": (77, 0x40),
    "Extended": (88, 0x00),
    "High": (100, 0x00),
    "High 10": (110, 0x00),
    "High 4:2:2": (122, 0x00),
    "High 4:4:4 Predictive": (244, 0x00),
}

# AAC profile names -> MPEG-4 audio object type (the last number of "mp4a.40.N").
_AAC_OBJECT_TYPES = {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4, "HE-AAC": 5, "HE-AACv2": 29}

# HEVC profile names -> "profile.compatibility" as Apple's HLS authoring spec writes them, for
# when no SPS is at hand.
_HEVC_PROFILES = {"Main": "1.6", "Main 10": "2.4", "Main Still Picture": "3.8"}

# MPEG-2 video: profile_identification (ISO/IEC 13818-2 table 8-3) and FFmpeg's profile names ->
# the MP4 object type indication of that profile (0x60 Simple ... 0x65 4:2:2).
_MPEG2_PROFILE_IDS = {5: 0x60, 4: 0x61, 3: 0x62, 2: 0x63, 1: 0x64}
_MPEG2_PROFILES = {"Simple": 0x60, "Main": 0x61, "SNR Scalable": 0x62, "Spatially Scalable": 0x63,
                   "High": 0x64, "4:2:2": 0x65}

# Sample rates of MPEG-2 audio's lower sampling frequencies (ISO/IEC 13818-3), in Hz: an MP2
# stream at these rates is MPEG-2 audio (0x69), at 32, 44.1 and 48 kHz MPEG-1 audio (0x6B).
_MPEG2_AUDIO_RATES = {16000, 22050, 24000}

# Codecs whose string has no parameters.
_FIXED = {
    "mp3": "mp4a.40.34", "ac3": "ac-3", "eac3": "ec-3", "opus": "Opus", "flac": "fLaC",
    "mpeg1video": "mp4v.6a",
}


def h264_codec(extradata: bytes | None, profile: str | None, level: int | None) -> str | None:
    """``avc1.PPCCLL`` (RFC 6381 3.3: profile_idc, the constraint flags byte and level_idc in hex)
    from the SPS (avcC or Annex B extradata), else from the profile name and level; None when
    neither is known."""
    if extradata:
        if extradata[0] == 1 and len(extradata) >= 4:  # avcC (MP4-style) record
            return "avc1." + extradata[1:4].hex()
        sps = _annex_b_sps(extradata)
        if sps is not None:
            return "avc1." + sps.hex()
    if profile in _H264_PROFILES and level is not None and level > 0:
        profile_idc, constraints = _H264_PROFILES[profile]
        return f"avc1.{profile_idc:02x}{constraints:02x}{level:02x}"
    return None


def _annex_b_sps(data: bytes) -> bytes | None:
    """profile_idc, constraint flags and level_idc of the first SPS NAL unit in Annex B bytes."""
    nal = _annex_b_nal(data, lambda header: header & 0x1F == 7)
    return nal[1:4] if nal is not None and len(nal) >= 4 else None


def _rbsp(nal: bytes) -> bytes:
    """A NAL unit with its emulation prevention bytes removed (00 00 03 -> 00 00: ISO/IEC
    14496-10 7.4.1, ITU-T H.265 7.4.2)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _hevc_sps_profile_tier_level(sps: bytes) -> bytes | None:
    """The 12 bytes of the general profile_tier_level of an HEVC SPS RBSP (its 2-byte NAL header,
    then ids and the sub-layer count in one byte, then the PTL: ITU-T H.265 7.3.2.2.1)."""
    return sps[3:15] if len(sps) >= 15 else None


def _annex_b_nal(data: bytes, wanted) -> bytes | None:  # type: ignore[no-untyped-def]
    """The first NAL unit in Annex B ``data`` whose first header byte ``wanted`` accepts, with its
    emulation prevention bytes removed (ISO/IEC 14496-10 7.4.1, ITU-T H.265 7.4.2)."""
    at = data.find(b"\x00\x00\x01")
    while at >= 0:
        header = at + 3
        end = data.find(b"\x00\x00\x01", header)
        if header < len(data) and wanted(data[header]):
            return _rbsp(data[header : end if end >= 0 else len(data)])
        at = end
    return None


def hevc_codec(profile: str | None, level: int | None, extradata: bytes | None = None) -> str | None:
    """``hvc1.A.B.TL.C`` (ISO/IEC 14496-15 E.3) from the general profile_tier_level of the SPS
    (or VPS) in Annex B extradata or an hvcC record, else from the profile name and level.

    A: general_profile_space as "", "A", "B" or "C", then general_profile_idc; B: the 32
    general_profile_compatibility flags in reverse bit order, in hex without leading zeros; T: "L"
    (Main tier) or "H" (High tier), then general_level_idc; C: the six constraint-flag bytes in
    hex, one element each, trailing zero bytes left out. None when neither is known.
    """
    ptl = _hevc_profile_tier_level(extradata) if extradata else None
    if ptl is not None:
        return hevc_string(ptl)
    if profile not in _HEVC_PROFILES or level is None or level <= 0:
        return None
    return f"hvc1.{_HEVC_PROFILES[profile]}.L{level}.B0"


def hevc_string(ptl: bytes) -> str:
    """The ``hvc1`` string of the 12 bytes of a general profile_tier_level (ITU-T H.265 7.3.3:
    profile space, tier and profile, compatibility flags, constraint flags, level)."""
    space = "" if ptl[0] >> 6 == 0 else "ABC"[(ptl[0] >> 6) - 1]
    tier = "H" if ptl[0] & 0x20 else "L"
    compatibility = int(f"{int.from_bytes(ptl[1:5], 'big'):032b}"[::-1], 2)
    constraints = [f"{byte:02X}" for byte in ptl[5:11]]
    while constraints and constraints[-1] == "00":
        constraints.pop()
    return ".".join([f"hvc1.{space}{ptl[0] & 0x1F}", f"{compatibility:X}", f"{tier}{ptl[11]}", *constraints])


def _hevc_profile_tier_level(extradata: bytes) -> bytes | None:
    """The general profile_tier_level bytes of an hvcC record (bytes 1-12) or of the first SPS
    (NAL type 33) or VPS (32) in Annex B bytes."""
    if extradata[0] == 1 and len(extradata) >= 13:  # hvcC: the same 12 bytes after its version
        return extradata[1:13]
    sps = _annex_b_nal(extradata, lambda header: (header >> 1) & 0x3F == 33)
    if sps is not None and (ptl := _hevc_sps_profile_tier_level(sps)) is not None:
        return ptl
    vps = _annex_b_nal(extradata, lambda header: (header >> 1) & 0x3F == 32)
    if vps is not None and len(vps) >= 18:  # 2-byte NAL header, 4 bytes of ids and counts, then PTL
        return vps[6:18]
    return None


def aac_codec(extradata: bytes | None, profile: str | None) -> str:
    """``mp4a.40.N``: N, the MPEG-4 audio object type (ISO/IEC 14496-3 1.6.2.1), from the
    AudioSpecificConfig when present, else from the profile name (from the ADTS header, or HE-AAC
    when the probe's decoder found SBR); LC when neither says."""
    if extradata:
        object_type = extradata[0] >> 3
        if object_type == 31 and len(extradata) >= 2:  # escape: 32 + next 6 bits
            object_type = 32 + (((extradata[0] & 0x07) << 3) | (extradata[1] >> 5))
        if object_type:
            return f"mp4a.40.{object_type}"
    return f"mp4a.40.{_AAC_OBJECT_TYPES.get(profile or 'LC', 2)}"


def mpeg2_video_codec(extradata: bytes | None, profile: str | None) -> str:
    """``mp4v.6N``: the MP4 object type indication of the MPEG-2 video profile, from the sequence
    extension's profile_and_level_indication (ISO/IEC 13818-2 6.3.5) in the extradata, else from
    the profile name; Main (0x61) when neither says. The 4:2:2 profile is an escaped one."""
    if extradata:
        at = extradata.find(b"\x00\x00\x01\xb5")
        if at >= 0 and at + 5 < len(extradata) and extradata[at + 4] >> 4 == 1:  # sequence extension
            indication = ((extradata[at + 4] & 0x0F) << 4) | (extradata[at + 5] >> 4)
            if indication & 0x80:
                if indication in (0x82, 0x85):  # 4:2:2 profile at High or Main level
                    return "mp4v.65"
            elif (indication >> 4) & 0x07 in _MPEG2_PROFILE_IDS:
                return f"mp4v.{_MPEG2_PROFILE_IDS[(indication >> 4) & 0x07]:02x}"
    return f"mp4v.{_MPEG2_PROFILES.get(profile or 'Main', 0x61):02x}"


def mp2_codec(sample_rate: int | None) -> str:
    """``mp4a.6b`` for MPEG-1 audio, ``mp4a.69`` for MPEG-2 audio (its lower sampling rates):
    MP4 object type indications 0x6B and 0x69 (RFC 6381 3.3)."""
    return "mp4a.69" if sample_rate in _MPEG2_AUDIO_RATES else "mp4a.6b"


def codec_string(
    name: str, extradata: bytes | None, profile: str | None, level: int | None, *, sample_rate: int | None = None,
) -> str | None:
    """The RFC 6381 string of one stream, or None when we cannot name it exactly.

    ``name`` is the codec's name ("h264", "hevc", "aac", "mp3", "mp2", "ac3", "eac3",
    "mpeg2video", ...: PyAV's ``codec_context.codec.canonical_name``), ``level`` as libavcodec
    reports it, ``sample_rate`` in Hz (which MPEG audio version an MP2 stream is).
    """
    if name == "h264":
        return h264_codec(extradata, profile, level)
    if name == "hevc":
        return hevc_codec(profile, level, extradata)
    if name == "aac":
        return aac_codec(extradata, profile)
    if name == "mpeg2video":
        return mpeg2_video_codec(extradata, profile)
    if name == "mp2":
        return mp2_codec(sample_rate)
    return _FIXED.get(name)


def codecs_list(strings: list[str | None]) -> str | None:
    """The CODECS value for a rendition: every stream's string once, or None if one is unknown.

    RFC 8216 4.3.4.2: CODECS lists every format in the rendition, so a partial list would make
    players refuse a playable rendition; none lets them probe.
    """
    if not strings or any(s is None for s in strings):
        return None
    unique: list[str] = []
    for s in strings:
        if s not in unique:
            unique.append(s)  # type: ignore[arg-type]
    return ",".join(unique)


# -- Video parameters from a sequence parameter set ---------------------------------------------
# What a change of encoding parameters inside one rendition changes in its index messages:
# the codec string (profile, level), the picture size and the frame rate.

# HEVC general_profile_idc -> the profile name ``hevc_codec`` takes (ITU-T H.265 A.3).
_HEVC_PROFILE_NAMES = {1: "Main", 2: "Main 10", 3: "Main Still Picture"}

# H.264 profile_idc values whose SPS carries chroma_format_idc and bit depths (H.264 7.3.2.1.1).
_H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class VideoParameters:
    """A video stream's encoding parameters as one sequence parameter set gives them."""

    codec: str | None  # RFC 6381 string, as ``h264_codec`` / ``hevc_codec`` name it
    width: int  # luma samples, after the SPS's cropping / conformance window
    height: int
    frame_rate: float | None  # frames per second from the VUI timing info; None when absent

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


class _Bits:
    """An RBSP bit reader (emulation prevention bytes removed, H.264 7.4.1). Reading past the
    end raises IndexError."""

    def __init__(self, nal: bytes) -> None:
        self._data = _rbsp(nal)
        self._at = 0

    def u(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            byte = self._data[self._at >> 3]
            value = (value << 1) | ((byte >> (7 - (self._at & 7))) & 1)
            self._at += 1
        return value

    def ue(self) -> int:
        """Exp-Golomb ue(v) (H.264 9.1)."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def h264_sps_parameters(nal: bytes) -> VideoParameters | None:
    """The parameters of an H.264 SPS NAL unit (header byte first, ITU-T H.264 7.3.2.1.1, E.1.1),
    or None when ``nal`` is not a whole readable SPS. Frame rate = time_scale / (2 x
    num_units_in_tick) (E.2.1, one frame = two field ticks)."""
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        return None
    try:
        bits = _Bits(nal[4:])
        bits.ue()  # seq_parameter_set_id
        profile_idc = nal[1]
        chroma_format_idc, separate_planes = 1, 0
        if profile_idc in _H264_HIGH_PROFILES:
            chroma_format_idc = bits.ue()
            if chroma_format_idc == 3:
                separate_planes = bits.u(1)
            bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
            if bits.u(1):  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format_idc != 3 else 12):
                    if bits.u(1):
                        _skip_scaling_list(bits, 16 if i < 6 else 64)
        bits.ue()  # log2_max_frame_num_minus4
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()
        elif poc_type == 1:
            bits.u(1), bits.se(), bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue(), bits.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
        width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
        frame_mbs_only = bits.u(1)
        if not frame_mbs_only:
            bits.u(1)  # mb_adaptive_frame_field_flag
        bits.u(1)  # direct_8x8_inference_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
        chroma = 0 if separate_planes else chroma_format_idc
        unit_x = 1 if chroma in (0, 3) else 2
        unit_y = (2 - frame_mbs_only) * (2 if chroma == 1 else 1)
        width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
        height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
        rate = None
        if bits.u(1):  # vui_parameters_present_flag
            _skip_vui_head(bits)
            if bits.u(1):  # timing_info_present_flag
                ticks, scale = bits.u(32), bits.u(32)
                rate = round(scale / (2 * ticks), 3) if ticks and scale else None
    except (IndexError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    return VideoParameters(h264_codec(b"\x00\x00\x01" + nal, None, None), width, height, rate)


def hevc_sps_parameters(nal: bytes) -> VideoParameters | None:
    """The parameters of an HEVC SPS NAL unit (two header bytes first, ITU-T H.265 7.3.2.2.1,
    E.2.1), or None when ``nal`` is not a whole readable SPS. Frame rate = vui_time_scale /
    vui_num_units_in_tick."""
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != 33:
        return None
    try:
        bits = _Bits(nal[2:])
        bits.u(4)  # sps_video_parameter_set_id
        sub_layers = bits.u(3)  # sps_max_sub_layers_minus1
        bits.u(1)
        bits.u(3)  # general_profile_space, general_tier_flag
        profile_idc = bits.u(5)
        bits.u(32), bits.u(16), bits.u(32)  # compatibility flags, 48 constraint bits
        level_idc = bits.u(8)
        present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
        if sub_layers:
            bits.u(2 * (8 - sub_layers))
        for profile_present, level_present in present:
            bits.u(88 * profile_present + 8 * level_present)
        bits.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3 and bits.u(1):
            chroma_format_idc = 0  # separate_colour_plane_flag: ChromaArrayType 0
        width, height = bits.ue(), bits.ue()
        if bits.u(1):  # conformance_window_flag
            unit_x = 2 if chroma_format_idc in (1, 2) else 1
            unit_y = 2 if chroma_format_idc == 1 else 1
            width -= unit_x * (bits.ue() + bits.ue())
            height -= unit_y * (bits.ue() + bits.ue())
        bits.ue(), bits.ue()  # bit depths
        log2_poc_lsb = bits.ue() + 4
        for _ in range(sub_layers + 1 if bits.u(1) else 1):
            bits.ue(), bits.ue(), bits.ue()  # sps_max_dec_pic_buffering, num_reorder, latency
        for _ in range(6):
            bits.ue()  # coding and transform block sizes, transform hierarchy depths
        if bits.u(1) and bits.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
            _skip_hevc_scaling_lists(bits)
        bits.u(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
        if bits.u(1):  # pcm_enabled_flag
            bits.u(8), bits.ue(), bits.ue(), bits.u(1)
        sets = bits.ue()  # num_short_term_ref_pic_sets
        deltas: list[int] = []
        for index in range(sets):
            deltas.append(_skip_short_term_ref_pic_set(bits, index, deltas))
        if bits.u(1):  # long_term_ref_pics_present_flag
            for _ in range(bits.ue()):
                bits.u(log2_poc_lsb + 1)
        bits.u(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
        rate = None
        if bits.u(1):  # vui_parameters_present_flag
            _skip_vui_head(bits)
            bits.u(3)  # neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
            if bits.u(1):  # default_display_window_flag
                bits.ue(), bits.ue(), bits.ue(), bits.ue()
            if bits.u(1):  # vui_timing_info_present_flag
                ticks, scale = bits.u(32), bits.u(32)
                rate = round(scale / ticks, 3) if ticks and scale else None
    except (IndexError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    ptl = _hevc_sps_profile_tier_level(_rbsp(nal))
    codec = hevc_string(ptl) if ptl is not None else hevc_codec(_HEVC_PROFILE_NAMES.get(profile_idc), level_idc)
    return VideoParameters(codec, width, height, rate)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """H.264 7.3.2.1.1.1 scaling_list()."""
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def _skip_hevc_scaling_lists(bits: _Bits) -> None:
    """H.265 7.3.4 scaling_list_data()."""
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not bits.u(1):  # scaling_list_pred_mode_flag
                bits.ue()
                continue
            if size_id > 1:
                bits.se()
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                bits.se()


def _skip_short_term_ref_pic_set(bits: _Bits, index: int, deltas: list[int]) -> int:
    """H.265 7.3.7 st_ref_pic_set(index) in an SPS; returns its NumDeltaPocs."""
    if index and bits.u(1):  # inter_ref_pic_set_prediction_flag
        bits.u(1), bits.ue()  # delta_rps_sign, abs_delta_rps_minus1
        count = 0
        for _ in range(deltas[index - 1] + 1):
            used = bits.u(1)
            if used or bits.u(1):  # used_by_curr_pic_flag, use_delta_flag
                count += 1
        return count
    negative, positive = bits.ue(), bits.ue()
    for _ in range(negative + positive):
        bits.ue(), bits.u(1)
    return negative + positive


def _skip_vui_head(bits: _Bits) -> None:
    """The VUI fields before the ones H.264 and HEVC do not share (H.264 E.1.1, H.265 E.2.1):
    aspect ratio, overscan, video signal type, chroma location."""
    if bits.u(1) and bits.u(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc
        bits.u(32)  # sar_width, sar_height
    if bits.u(1):
        bits.u(1)  # overscan_appropriate_flag
    if bits.u(1):  # video_signal_type_present_flag
        bits.u(4)
        if bits.u(1):
            bits.u(24)  # colour primaries, transfer characteristics, matrix coefficients
    if bits.u(1):  # chroma_loc_info_present_flag
        bits.ue(), bits.ue()
