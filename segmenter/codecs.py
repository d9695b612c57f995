"""RFC 6381 codec strings ("avc1.64001f", "mp4a.40.2") from what the probe knows. Pure."""

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

# HEVC profile names -> "profile.compatibility" as Apple's HLS authoring spec writes them.
_HEVC_PROFILES = {"Main": "1.6", "Main 10": "2.4", "Main Still Picture": "3.8"}

# Codecs whose string has no parameters (MPEG-1/2 ones by their MP4 object type: 0x61 MPEG-2
# video Main profile, 0x6A MPEG-1 video, 0x6B MPEG-1 audio, which is what an MP2 track is).
_FIXED = {
    "mp3": "mp4a.40.34", "ac3": "ac-3", "eac3": "ec-3", "opus": "Opus", "flac": "fLaC",
    "mpeg2video": "mp4v.61", "mpeg1video": "mp4v.6a", "mp2": "mp4a.6b",
}


def h264_codec(extradata: bytes | None, profile: str | None, level: int | None) -> str | None:
    """``avc1.PPCCLL`` from the SPS (avcC or Annex B extradata), else from profile and level."""
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
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 6 < len(data) + 2:
        header = at + 3
        if header < len(data) and data[header] & 0x1F == 7 and header + 4 <= len(data):
            return data[header + 1 : header + 4]
        at = data.find(b"\x00\x00\x01", header)
    return None


def hevc_codec(profile: str | None, level: int | None) -> str | None:
    if profile not in _HEVC_PROFILES or level is None or level <= 0:
        return None
    return f"hvc1.{_HEVC_PROFILES[profile]}.L{level}.B0"


def aac_codec(extradata: bytes | None, profile: str | None) -> str:
    """``mp4a.40.N``: N from the AudioSpecificConfig when present, else from the profile name."""
    if extradata:
        object_type = extradata[0] >> 3
        if object_type == 31 and len(extradata) >= 2:  # escape: 32 + next 6 bits
            object_type = 32 + (((extradata[0] & 0x07) << 3) | (extradata[1] >> 5))
        if object_type:
            return f"mp4a.40.{object_type}"
    return f"mp4a.40.{_AAC_OBJECT_TYPES.get(profile or 'LC', 2)}"


def codec_string(name: str, extradata: bytes | None, profile: str | None, level: int | None) -> str | None:
    """The RFC 6381 string of one stream, or None when we cannot name it exactly."""
    if name == "h264":
        return h264_codec(extradata, profile, level)
    if name == "hevc":
        return hevc_codec(profile, level)
    if name == "aac":
        return aac_codec(extradata, profile)
    return _FIXED.get(name)


def codecs_list(strings: list[str | None]) -> str | None:
    """The CODECS value for a rendition: every stream's string once, or None if one is unknown.

    A partial list would make players refuse a playable rendition; none lets them probe.
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
        self._data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
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
    return VideoParameters(hevc_codec(_HEVC_PROFILE_NAMES.get(profile_idc), level_idc), width, height, rate)


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
