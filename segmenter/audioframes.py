"""Audio frame headers of the codecs hls-segment copies: what a frame is and how long. Pure.

A pause in an audio track is filled with silent frames of the track's own format (``silence.py``):
so much must be known of each codec. Each family of codecs is one class with the same methods
(``Adts``, ``MpegAudio``, ``Ac3``, ``Eac3``; ``FAMILIES`` by FFmpeg's codec name):

- ``length(data, position)``: the length in bytes of the frame whose header starts there, from
  the header alone (0 when no header of the family starts there, or its length is not in it);
  ``HEADER_BYTES`` of it must be there. The fast path counts frames with it to know where the
  audio of a PES ends;
- ``format(data, position)``: the ``AudioFormat`` of that frame (None when no header);
- ``framed(format, encoded)``: a frame as the track carries it, from what FFmpeg's encoder gives
  (ADTS adds its header to a raw AAC frame; the others' encoders write whole frames);
- ``self_contained(frame)``: whether a frame decodes without the frames before it.

Sources: ISO/IEC 14496-3 1.A.2 (ADTS), 1.6.2.1 (AudioSpecificConfig); ISO/IEC 11172-3 2.4.1.3,
2.4.2.3 and ISO/IEC 13818-3 2.4.2.3 (MPEG audio header and frame length, lower sampling
frequencies); ATSC A/52 5.3.1, 5.3.2, 5.4.1, table 5.18 (AC-3 syncinfo, bsi, frame sizes) and
annex E E.1.2.1-E.1.2.2 (E-AC-3 syncinfo and bsi, frmsiz, numblkscod).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What a silent frame must match in one audio track: ``mode`` is the header fields, in the
    family's own terms, that the track's frames share and a silent frame must repeat;
    ``unfillable`` says why no silent frame is made for it ("" when one can be)."""

    codec: str  # FFmpeg's codec name: "aac", "mp2", "mp3", "ac3", "eac3"
    name: str  # for the log: "MPEG-1 Layer II, 48000 Hz, joint stereo, 192 kb/s"
    sample_rate: int  # Hz
    samples: int  # per frame
    channels: int  # LFE included
    layout: str  # FFmpeg's channel layout, in its native order
    mode: tuple[int, ...]
    bit_rate: int = 0  # bits per second of the frame read; 0 where its header does not say
    unfillable: str = ""

    def frame_ticks(self, time_base: Fraction) -> Fraction:
        """One frame's duration in ticks of ``time_base`` (seconds per tick)."""
        return Fraction(self.samples, self.sample_rate) / time_base


# -- AAC in ADTS, or raw with an AudioSpecificConfig ----------------------------------------------

# ISO/IEC 14496-3 table 1.18: sampling_frequency_index -> Hz.
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

AAC_LC = 2  # audioObjectType of AAC Low Complexity (ADTS profile 1)
AAC_SAMPLES = 1024  # samples per frame (ISO/IEC 14496-3 4.5.1.1)

# FFmpeg channel layouts of the AAC channel configurations 1..7 (ISO/IEC 14496-3 table 1.19).
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "7.1"}
_AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8}


@dataclass(frozen=True, slots=True)
class AacConfig:
    """An AAC stream's configuration: audioObjectType, sampling_frequency_index, channel_configuration."""

    object_type: int
    sampling_index: int
    channels: int  # channel_configuration (ISO/IEC 14496-3 table 1.19); 0: in a PCE

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.sampling_index]


def aac_format(config: AacConfig) -> AudioFormat:
    """The ``AudioFormat`` of an AAC configuration. Fillable: AAC-LC (FFmpeg's ``aac`` encoder makes
    no other object type) with channel configuration 1..7 (mono to 7.1)."""
    unfillable = ""
    if config.object_type != AAC_LC:
        unfillable = f"AAC object type {config.object_type}: FFmpeg's aac encoder makes AAC-LC only"
    elif config.channels not in _AAC_LAYOUTS:
        unfillable = f"AAC channel configuration {config.channels}" + (" (channels in a PCE)" if not config.channels else "")
    return AudioFormat("aac", f"AAC object type {config.object_type}, {config.sample_rate} Hz, channel configuration "
                       f"{config.channels}", config.sample_rate, AAC_SAMPLES, _AAC_CHANNELS.get(config.channels, 0),
                       _AAC_LAYOUTS.get(config.channels, ""),
                       (config.object_type, config.sampling_index, config.channels), unfillable=unfillable)


def adts_header(data: bytes, position: int = 0) -> bool:
    """Whether an ADTS header (ISO/IEC 14496-3 1.A.2.2: syncword 0xFFF, layer 0, a listed
    sampling_frequency_index) starts at ``data[position]``, its 7 bytes all there."""
    return (len(data) - position >= 7 and data[position] == 0xFF and data[position + 1] & 0xF6 == 0xF0
            and (data[position + 2] >> 2) & 0x0F < len(SAMPLE_RATES))


def adts_config(data: bytes) -> AacConfig | None:
    """The configuration in the ADTS header at the start of ``data``, or None if there is none
    (``adts_header``). ADTS profile = audioObjectType - 1 (ISO/IEC 14496-3 1.A.2.2)."""
    if not adts_header(data):
        return None
    return AacConfig((data[2] >> 6) + 1, (data[2] >> 2) & 0x0F, ((data[2] & 1) << 2) | (data[3] >> 6))


def asc_config(extradata: bytes | None) -> AacConfig | None:
    """The configuration in an AudioSpecificConfig (the extradata of AAC from MP4, FLV, RTMP),
    or None when absent or using an explicit sample rate (ISO/IEC 14496-3 1.6.2.1)."""
    if not extradata or len(extradata) < 2:
        return None
    object_type = extradata[0] >> 3
    index = ((extradata[0] & 0x07) << 1) | (extradata[1] >> 7)
    if object_type == 31 or index >= len(SAMPLE_RATES):
        return None
    return AacConfig(object_type, index, (extradata[1] >> 3) & 0x0F)


# FFmpeg's AAC profile names -> audioObjectType (ISO/IEC 14496-3 table 1.1).
_AAC_PROFILES = {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4, "HE-AAC": 5, "HE-AACv2": 29, "LD": 23, "ELD": 39}


def aac_decoder_config(profile: str | None, sample_rate: int, channels: int) -> AacConfig | None:
    """The configuration of an AAC stream as FFmpeg's probe describes it (profile name, Hz,
    channels), for a track whose frames are not at hand yet; None where that does not say it
    (an unknown profile or sample rate, a channel count no channel configuration has)."""
    object_type = _AAC_PROFILES.get(profile or "")
    configuration = next((c for c, count in _AAC_CHANNELS.items() if count == channels), None)
    if object_type is None or configuration is None or sample_rate not in SAMPLE_RATES:
        return None
    return AacConfig(object_type, SAMPLE_RATES.index(sample_rate), configuration)


def adts_frame(config: AacConfig, raw: bytes) -> bytes:
    """``raw`` (one raw_data_block) with a 7-byte ADTS header: MPEG-4, no CRC, one block.

    Raises ValueError for a configuration ADTS cannot carry (object type above 4)."""
    if not 1 <= config.object_type <= 4:
        raise ValueError(f"ADTS cannot carry AAC object type {config.object_type}")
    length = 7 + len(raw)
    if length >= 1 << 13:
        raise ValueError(f"an ADTS frame of {length} bytes")
    header = bytes((
        0xFF, 0xF1,  # syncword, MPEG-4, layer 0, no CRC
        ((config.object_type - 1) << 6) | (config.sampling_index << 2) | (config.channels >> 2),
        ((config.channels & 3) << 6) | (length >> 11),
        (length >> 3) & 0xFF,
        ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable bit rate
        0xFC,  # number_of_raw_data_blocks_in_frame - 1 = 0
    ))
    return header + raw


class Adts:
    """AAC in ADTS frames (ISO/IEC 14496-3 1.A.2): aac_frame_length, 13 bits of the header."""

    HEADER_BYTES = 7

    @staticmethod
    def length(data: bytes, position: int) -> int:
        if not adts_header(data, position):
            return 0
        length = ((data[position + 3] & 3) << 11) | (data[position + 4] << 3) | (data[position + 5] >> 5)
        return length if length >= 7 else 0

    @staticmethod
    def format(data: bytes, position: int) -> AudioFormat | None:
        config = adts_config(data[position : position + 7])
        return None if config is None else aac_format(config)

    @staticmethod
    def framed(format: AudioFormat, encoded: bytes) -> bytes:
        return adts_frame(AacConfig(*format.mode), encoded)

    @staticmethod
    def self_contained(frame: bytes) -> bool:
        return True


class _WholeFrames:
    """A family whose encoders write whole frames, headers included, each decoding alone."""

    @staticmethod
    def framed(format: AudioFormat, encoded: bytes) -> bytes:
        return encoded

    @classmethod
    def self_contained(cls, frame: bytes) -> bool:
        return cls.length(frame, 0) > 0  # type: ignore[attr-defined]


# -- MPEG-1/2 audio, Layers I, II, III ------------------------------------------------------------

# ISO/IEC 11172-3 2.4.2.3 and 13818-3 2.4.2.3: bitrate_index -> kbit/s, by (MPEG-1 or not, layer).
_MPEG_BIT_RATES = {
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),  # Layer I
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),  # Layer II
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # Layer III
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# ID bits (2 with MPEG-2.5) -> sampling_frequency -> Hz: MPEG-1, MPEG-2 (LSF), MPEG-2.5.
_MPEG_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MPEG_VERSIONS = {3: "MPEG-1", 2: "MPEG-2", 0: "MPEG-2.5"}
_MPEG_LAYERS = {3: "I", 2: "II", 1: "III"}
_MPEG_MODES = ("stereo", "joint stereo", "dual channel", "mono")


class MpegAudio(_WholeFrames):
    """MPEG-1 audio (ISO/IEC 11172-3) and MPEG-2's lower sampling frequencies (ISO/IEC 13818-3),
    with the MPEG-2.5 extension: 1152 samples a frame (Layer I: 384; Layer III at the lower
    frequencies: 576). The frame length (2.4.3.1, 2.4.2.3 bitrate_index and padding_bit):
    Layer I 4 * (12 * bitrate / fs + padding), Layer II and MPEG-1 Layer III 144 * bitrate / fs
    + padding, Layer III at the lower frequencies 72 * bitrate / fs + padding (bytes). A
    free-format stream (bitrate_index 0) has no length in its headers. Its ``mode``: ID, layer,
    sampling_frequency, mode, and for Layers I and II bitrate_index (their decoders need not
    follow a bit rate change, 11172-3 2.4.2.3); Layer III's may change frame by frame."""

    HEADER_BYTES = 4

    @staticmethod
    def _fields(data: bytes, position: int) -> tuple[int, int, int, int, int, int] | None:
        """(ID, layer, bitrate_index, sampling_frequency, padding_bit, mode), or None."""
        if len(data) - position < 4 or data[position] != 0xFF or data[position + 1] & 0xE0 != 0xE0:
            return None
        version, layer = (data[position + 1] >> 3) & 3, (data[position + 1] >> 1) & 3
        rate_index, frequency = data[position + 2] >> 4, (data[position + 2] >> 2) & 3
        if version == 1 or layer == 0 or rate_index == 15 or frequency == 3:
            return None  # reserved values: no header
        return version, layer, rate_index, frequency, (data[position + 2] >> 1) & 1, data[position + 3] >> 6

    @staticmethod
    def length(data: bytes, position: int) -> int:
        fields = MpegAudio._fields(data, position)
        if fields is None or not fields[2]:
            return 0
        version, layer, rate_index, frequency, padding, _ = fields
        bit_rate = _MPEG_BIT_RATES[version == 3, layer][rate_index] * 1000
        sample_rate = _MPEG_SAMPLE_RATES[version][frequency]
        if layer == 3:
            return (12 * bit_rate // sample_rate + padding) * 4
        if layer == 1 and version != 3:
            return 72 * bit_rate // sample_rate + padding
        return 144 * bit_rate // sample_rate + padding

    @staticmethod
    def format(data: bytes, position: int) -> AudioFormat | None:
        fields = MpegAudio._fields(data, position)
        if fields is None:
            return None
        version, layer, rate_index, frequency, _, mode = fields
        kbits = _MPEG_BIT_RATES[version == 3, layer][rate_index]
        sample_rate = _MPEG_SAMPLE_RATES[version][frequency]
        samples = 384 if layer == 3 else 576 if layer == 1 and version != 3 else 1152
        unfillable = ("Layer I: FFmpeg has no encoder for it" if layer == 3
                      else "free format: its frames' length is in no header" if not rate_index else "")
        name = (f"{_MPEG_VERSIONS[version]} Layer {_MPEG_LAYERS[layer]}, {sample_rate} Hz, {_MPEG_MODES[mode]}, "
                + (f"{kbits} kb/s" if kbits else "free format"))
        return AudioFormat("mp3" if layer == 1 else "mp2" if layer == 2 else "mp1", name, sample_rate, samples,
                           1 if mode == 3 else 2, "mono" if mode == 3 else "stereo",
                           (version, layer, frequency, mode) + ((rate_index,) if layer != 1 else ()),
                           kbits * 1000, unfillable)

    @staticmethod
    def self_contained(frame: bytes) -> bool:
        """Layer III: main_data_begin is 0 (ISO/IEC 11172-3 2.4.1.7, 13818-3 2.4.1.7: 9 bits, 8 at
        the lower frequencies, after the header and its CRC), so the frame takes no bits of the
        frames before it (the bit reservoir). Layers I and II are always."""
        fields = MpegAudio._fields(frame, 0)
        if fields is None or fields[1] != 1:
            return fields is not None
        at = 4 if frame[1] & 1 else 6  # protection_bit 0: a 16-bit CRC follows the header
        if len(frame) < at + 2:
            return False
        begin = (frame[at] << 1 | frame[at + 1] >> 7) if fields[0] == 3 else frame[at]
        return begin == 0


# -- AC-3 and E-AC-3 --------------------------------------------------------------------------------

# A/52 table 5.18: frmsizecod // 2 -> nominal bit rate, kbit/s.
_AC3_BIT_RATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640)
_AC3_SAMPLE_RATES = (48000, 44100, 32000)  # fscod 0..2 (A/52 table 5.6)
# acmod (A/52 table 5.8) -> its channels, in FFmpeg's native order (LFE goes after FC).
_ACMOD_CHANNELS = (("FL", "FR"), ("FC",), ("FL", "FR"), ("FL", "FR", "FC"), ("FL", "FR", "BC"),
                   ("FL", "FR", "FC", "BC"), ("FL", "FR", "SL", "SR"), ("FL", "FR", "FC", "SL", "SR"))
_ACMOD_NAMES = ("1+1", "1/0", "2/0", "3/0", "2/1", "3/1", "2/2", "3/2")
_AC3_SAMPLES = 1536  # 6 audio blocks of 256 samples


def _ac3_layout(acmod: int, lfeon: int) -> str:
    channels = list(_ACMOD_CHANNELS[acmod])
    if lfeon:
        channels.insert(3 if "FC" in channels else 2 if len(channels) > 1 else 1, "LFE")
    return "+".join(channels)


class Ac3(_WholeFrames):
    """AC-3 (ATSC A/52): syncword 0x0B77, 1536 samples a frame; the frame size in 16-bit words
    from fscod and frmsizecod (table 5.18: at 48 and 32 kHz the bit rate's share of 1536
    samples, at 44.1 kHz that rounded down plus frmsizecod's low bit). bsid 0..8 (5.4.2.1;
    higher is E-AC-3's). Its ``mode``: fscod, frmsizecod // 2 (the bit rate), acmod, lfeon."""

    HEADER_BYTES = 8

    @staticmethod
    def _fields(data: bytes, position: int) -> tuple[int, int, int, int] | None:
        """(fscod, frmsizecod, acmod, lfeon), or None."""
        if len(data) - position < 8 or data[position] != 0x0B or data[position + 1] != 0x77:
            return None
        fscod, frmsizecod = data[position + 4] >> 6, data[position + 4] & 0x3F
        if fscod == 3 or frmsizecod >= 2 * len(_AC3_BIT_RATES) or data[position + 5] >> 3 > 8:
            return None
        bsi = (data[position + 6] << 8) | data[position + 7]  # acmod at its top
        acmod, bit = bsi >> 13, 12  # the next field's highest bit
        if acmod & 1 and acmod != 1:
            bit -= 2  # cmixlev
        if acmod & 4:
            bit -= 2  # surmixlev
        if acmod == 2:
            bit -= 2  # dsurmod
        return fscod, frmsizecod, acmod, (bsi >> bit) & 1

    @staticmethod
    def length(data: bytes, position: int) -> int:
        fields = Ac3._fields(data, position)
        if fields is None:
            return 0
        fscod, frmsizecod = fields[0], fields[1]
        words = _AC3_BIT_RATES[frmsizecod >> 1] * 1000 * _AC3_SAMPLES // (16 * _AC3_SAMPLE_RATES[fscod])
        return 2 * (words + (frmsizecod & 1 if fscod == 1 else 0))

    @staticmethod
    def format(data: bytes, position: int) -> AudioFormat | None:
        fields = Ac3._fields(data, position)
        if fields is None:
            return None
        fscod, frmsizecod, acmod, lfeon = fields
        kbits = _AC3_BIT_RATES[frmsizecod >> 1]
        layout = _ac3_layout(acmod, lfeon)
        return AudioFormat("ac3", f"AC-3, {_AC3_SAMPLE_RATES[fscod]} Hz, {_ACMOD_NAMES[acmod]}{'+LFE' * lfeon}, "
                           f"{kbits} kb/s", _AC3_SAMPLE_RATES[fscod], _AC3_SAMPLES, layout.count("+") + 1, layout,
                           (fscod, frmsizecod >> 1, acmod, lfeon), kbits * 1000)


_EAC3_BLOCKS = (1, 2, 3, 6)  # numblkscod (A/52 table E.1.3)
_EAC3_HALF_RATES = (24000, 22050, 16000)  # fscod2, when fscod is 3 (table E.1.4)


class Eac3(_WholeFrames):
    """E-AC-3 (ATSC A/52 annex E): syncword 0x0B77, bsid 11..16, a frame of 1, 2, 3 or 6 blocks of
    256 samples (numblkscod; 6 when fscod is 3 and fscod2 gives a half rate), (frmsiz + 1) 16-bit
    words long (E.1.2.1). Frames of the independent substream 0 (strmtyp 0) are counted; any
    other (a dependent substream carrying channels beyond 5.1, another program) is not a frame of
    the track's timeline here, and its PES is not counted. Its ``mode``: fscod (fscod2), the
    blocks, acmod, lfeon."""

    HEADER_BYTES = 6

    @staticmethod
    def _fields(data: bytes, position: int) -> tuple[int, int, int, int, int] | None:
        """(frmsiz, sample rate, blocks, acmod, lfeon) of an independent substream 0 frame, or None."""
        if len(data) - position < 6 or data[position] != 0x0B or data[position + 1] != 0x77:
            return None
        if not 11 <= data[position + 5] >> 3 <= 16 or data[position + 2] >> 3:
            return None  # not E-AC-3, or not strmtyp 0 / substreamid 0
        frmsiz = ((data[position + 2] & 7) << 8) | data[position + 3]
        fscod, code = data[position + 4] >> 6, (data[position + 4] >> 4) & 3
        if fscod == 3:
            if code == 3:
                return None  # reserved
            rate, blocks = _EAC3_HALF_RATES[code], 6
        else:
            rate, blocks = _AC3_SAMPLE_RATES[fscod], _EAC3_BLOCKS[code]
        return frmsiz, rate, blocks, (data[position + 4] >> 1) & 7, data[position + 4] & 1

    @staticmethod
    def length(data: bytes, position: int) -> int:
        fields = Eac3._fields(data, position)
        return 0 if fields is None else 2 * (fields[0] + 1)

    @staticmethod
    def format(data: bytes, position: int) -> AudioFormat | None:
        fields = Eac3._fields(data, position)
        if fields is None:
            return None
        frmsiz, rate, blocks, acmod, lfeon = fields
        layout = _ac3_layout(acmod, lfeon)
        bit_rate = 2 * (frmsiz + 1) * 8 * rate // (256 * blocks)
        return AudioFormat("eac3", f"E-AC-3, {rate} Hz, {_ACMOD_NAMES[acmod]}{'+LFE' * lfeon}, {blocks} blocks",
                           rate, 256 * blocks, layout.count("+") + 1, layout, (rate, blocks, acmod, lfeon), bit_rate)


class Family(Protocol):
    """What each family of codecs gives (the module doc)."""

    HEADER_BYTES: int

    def length(self, data: bytes, position: int) -> int: ...

    def format(self, data: bytes, position: int) -> AudioFormat | None: ...

    def framed(self, format: AudioFormat, encoded: bytes) -> bytes: ...

    def self_contained(self, frame: bytes) -> bool: ...


# FFmpeg's codec name -> the family of its frames.
FAMILIES: dict[str, Family] = {
    "aac": Adts, "mp2": MpegAudio, "mp3": MpegAudio, "mp1": MpegAudio, "ac3": Ac3, "eac3": Eac3,
}
