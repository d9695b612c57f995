"""RFC 6381 codec strings ("avc1.64001f", "mp4a.40.2") from what the probe knows. Pure."""

from __future__ import annotations

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
