"""Pauses filled for every audio codec the segmenter copies: the frame headers of each codec
family (segmenter/audioframes.py) read on frames FFmpeg's encoders make, the fast path's frame
counter, the silent frames (segmenter/silentframe.py), and each format that cannot be filled,
named."""

from __future__ import annotations

import array
import logging
import math
from collections import Counter
from fractions import Fraction
from functools import partial

import av
import pytest

from segmenter.audioframes import FAMILIES, AacConfig, Ac3, Adts, AudioFormat, Eac3, MpegAudio, aac_format, adts_frame
from segmenter.silence import FILL_LAG_S, FrameCounter, TsPauseFill
from segmenter.silentframe import SILENT_PEAK, fillable_streams, probed_format, silent_frame, silent_frame_or_none
from segmenter.tsfast import find_program
from tests.segmenter.test_silence import audio_pes, pes_packets, pes_units, pid_packets, split
from tests.support.media import MediaCache

# (FFmpeg encoder, codec, sample rate, layout, bit rate): what each family's tests encode.
ENCODES = [
    ("mp2", "mp2", 48000, "stereo", 192000),
    ("mp2", "mp2", 22050, "mono", 64000),  # MPEG-2, a lower sampling frequency
    ("libmp3lame", "mp3", 44100, "stereo", 128000),  # padded and unpadded frames
    ("libmp3lame", "mp3", 24000, "stereo", 64000),  # MPEG-2 Layer III: 576 samples
    ("libmp3lame", "mp3", 8000, "mono", 16000),  # MPEG-2.5
    ("ac3", "ac3", 48000, "5.1(side)", 384000),
    ("ac3", "ac3", 44100, "stereo", 192000),  # frame sizes alternating by frmsizecod's low bit
    ("ac3", "ac3", 32000, "mono", 96000),
    ("eac3", "eac3", 48000, "stereo", 96000),
    ("eac3", "eac3", 44100, "5.1(side)", 256000),
]
IDS = [f"{codec}-{rate}-{layout}" for _, codec, rate, layout, _ in ENCODES]


def encode(encoder: str, rate: int, layout: str, bit_rate: int, frames: int = 12) -> list[bytes]:
    """The packets FFmpeg's ``encoder`` makes of ``frames`` frames of a 1 kHz tone."""
    context = av.CodecContext.create(encoder, "w")
    context.sample_rate, context.layout, context.bit_rate = rate, layout, bit_rate
    context.format = context.codec.audio_formats[0].name
    context.time_base = Fraction(1, rate)
    context.open()
    size = context.frame_size
    resampler = av.AudioResampler(format=context.format.name, layout=layout, rate=rate)
    packets: list[bytes] = []
    for number in range(frames):
        tone = av.AudioFrame(format="flt", layout="mono", samples=size)
        tone.planes[0].update(array.array("f", (0.3 * math.sin(2 * math.pi * 1000 * (number * size + i) / rate)
                                                for i in range(size))).tobytes())
        tone.sample_rate, tone.pts, tone.time_base = rate, number * size, Fraction(1, rate)
        for frame in resampler.resample(tone):
            packets += [bytes(packet) for packet in context.encode(frame)]
    packets += [bytes(packet) for packet in context.encode(None)]
    return packets


def channels(layout: str) -> int:
    return len(av.AudioLayout(layout).channels)


# -- frame headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder, codec, rate, layout, bit_rate", ENCODES, ids=IDS)
def test_each_frame_header_gives_its_frames_length_and_the_tracks_format(
    encoder: str, codec: str, rate: int, layout: str, bit_rate: int,
) -> None:
    packets = encode(encoder, rate, layout, bit_rate)
    family = FAMILIES[codec]
    assert len(packets) >= 6
    for packet in packets:
        assert family.length(packet, 0) == len(packet)
        audio = family.format(packet, 0)
        assert audio is not None and audio.codec == codec and not audio.unfillable
        assert (audio.sample_rate, audio.channels) == (rate, channels(layout))
    audio = family.format(packets[-1], 0)
    assert audio is not None
    assert audio.samples == {"mp2": 1152, "ac3": 1536, "eac3": 1536}.get(codec, 1152 if rate >= 32000 else 576)
    if codec != "eac3":  # E-AC-3 gives a bit rate of the frame's size, rounded
        assert audio.bit_rate == bit_rate
    # Frame after frame, the lengths walk the stream from one header to the next.
    stream = b"".join(packets)
    position, count = 0, 0
    while position < len(stream):
        length = family.length(stream, position)
        assert length, position
        position, count = position + length, count + 1
    assert (position, count) == (len(stream), len(packets))


def mpeg_header(version: int, layer: int, rate_index: int, frequency: int, padding: int = 0, mode: int = 0) -> bytes:
    """An MPEG audio frame header (ISO/IEC 11172-3 2.4.1.3), no CRC."""
    return bytes((0xFF, 0xE0 | version << 3 | layer << 1 | 1, rate_index << 4 | frequency << 2 | padding << 1,
                  mode << 6))


@pytest.mark.parametrize("header, length, samples", [
    (mpeg_header(3, 3, 12, 1), 4 * (12 * 384000 // 48000), 384),  # MPEG-1 Layer I, 384 kb/s, 48 kHz
    (mpeg_header(3, 3, 12, 1, padding=1), 4 * (12 * 384000 // 48000 + 1), 384),  # a slot is 4 bytes
    (mpeg_header(3, 3, 1, 0), 4 * (12 * 32000 // 44100), 384),  # Layer I, 32 kb/s, 44.1 kHz: slots rounded down
    (mpeg_header(3, 2, 10, 1), 144 * 192000 // 48000, 1152),  # MPEG-1 Layer II, 192 kb/s
    (mpeg_header(3, 1, 9, 0), 144 * 128000 // 44100, 1152),  # MPEG-1 Layer III, 128 kb/s, 44.1 kHz: 417
    (mpeg_header(3, 1, 9, 0, padding=1), 144 * 128000 // 44100 + 1, 1152),  # 418
    (mpeg_header(2, 2, 8, 0), 144 * 64000 // 22050, 1152),  # MPEG-2 Layer II, 64 kb/s, 22.05 kHz
    (mpeg_header(2, 1, 8, 1), 72 * 64000 // 24000, 576),  # MPEG-2 Layer III, 64 kb/s, 24 kHz
    (mpeg_header(0, 1, 2, 2, padding=1), 72 * 16000 // 8000 + 1, 576),  # MPEG-2.5, 16 kb/s, 8 kHz
])
def test_mpeg_audio_frame_lengths_follow_11172_3_and_13818_3_padding_included(
    header: bytes, length: int, samples: int,
) -> None:
    assert MpegAudio.length(header, 0) == length
    audio = MpegAudio.format(header, 0)
    assert audio is not None and audio.samples == samples


def test_the_padding_bit_of_real_mp3_frames_is_their_extra_byte() -> None:
    packets = encode("libmp3lame", 44100, "stereo", 128000, frames=20)
    padded = [(packet[2] >> 1) & 1 for packet in packets]
    assert set(padded) == {0, 1}  # both kinds are there
    assert [len(packet) for packet in packets] == [417 + bit for bit in padded]
    unpadded = bytes((packets[padded.index(1)][0], packets[padded.index(1)][1], packets[padded.index(1)][2] & ~2))
    assert MpegAudio.length(unpadded + b"\0", 0) == 417


def test_reserved_mpeg_audio_values_are_no_header_and_adts_is_not_mpeg_audio() -> None:
    assert MpegAudio.format(mpeg_header(1, 1, 9, 0), 0) is None  # ID '01': reserved
    assert MpegAudio.format(mpeg_header(3, 0, 9, 0), 0) is None  # layer '00': reserved (ADTS has it)
    assert MpegAudio.format(mpeg_header(3, 1, 15, 0), 0) is None  # bitrate_index '1111'
    assert MpegAudio.format(mpeg_header(3, 1, 9, 3), 0) is None  # sampling_frequency '11'
    assert MpegAudio.length(b"\xff\xf1\x4c\x80\x01\xbf\xfc", 0) == 0  # an ADTS header
    assert MpegAudio.length(mpeg_header(3, 1, 9, 0)[:3], 0) == 0  # not whole


def ac3_header(fscod: int, frmsizecod: int, acmod: int = 2, lfeon: int = 0) -> bytes:
    """An AC-3 syncinfo and the start of its bsi (A/52 5.3.1, 5.3.2): bsid 8, bsmod 0, then acmod,
    the mix levels its acmod has (zeros) and lfeon."""
    bits, width = acmod, 3
    for present in (acmod & 1 and acmod != 1, acmod & 4, acmod == 2):
        if present:
            bits, width = bits << 2, width + 2
    bits, width = bits << 1 | lfeon, width + 1
    return b"\x0b\x77\x00\x00" + bytes((fscod << 6 | frmsizecod, 8 << 3)) + (bits << (16 - width)).to_bytes(2, "big")


@pytest.mark.parametrize("fscod, frmsizecod, words", [
    (0, 0, 64), (0, 1, 64), (0, 37, 1280),  # 48 kHz: 32 kb/s, 640 kb/s (A/52 table 5.18)
    (1, 0, 69), (1, 1, 70), (1, 36, 1393), (1, 37, 1394),  # 44.1 kHz: the low bit adds a word
    (2, 0, 96), (2, 37, 1920),  # 32 kHz
])
def test_ac3_frame_sizes_are_a52_table_5_18(fscod: int, frmsizecod: int, words: int) -> None:
    assert Ac3.length(ac3_header(fscod, frmsizecod), 0) == 2 * words


@pytest.mark.parametrize("acmod", range(8))
@pytest.mark.parametrize("lfeon", [0, 1])
def test_ac3_lfeon_is_found_behind_each_acmods_mix_levels(acmod: int, lfeon: int) -> None:
    audio = Ac3.format(ac3_header(0, 10, acmod, lfeon), 0)
    assert audio is not None and audio.mode == (0, 5, acmod, lfeon)
    assert audio.channels == (2, 1, 2, 3, 3, 4, 4, 5)[acmod] + lfeon  # nfchans (A/52 table 5.8), LFE
    assert ("LFE" in audio.layout) == bool(lfeon)
    names = audio.layout.split("+")
    assert names == sorted(names, key=FFMPEG_CHANNEL_ORDER.index)


FFMPEG_CHANNEL_ORDER = ("FL", "FR", "FC", "LFE", "BL", "BR", "BC", "SL", "SR")  # its native layout order


def test_ac3_and_e_ac3_frames_are_told_apart_by_bsid_and_a_dependent_substream_is_not_counted() -> None:
    ac3 = encode("ac3", 48000, "stereo", 192000)[-1]
    eac3 = encode("eac3", 48000, "stereo", 96000)[-1]
    assert Eac3.length(ac3, 0) == 0 and Ac3.length(eac3, 0) == 0
    dependent = eac3[:2] + bytes((eac3[2] | 0x40,)) + eac3[3:]  # strmtyp 1
    assert Eac3.length(dependent, 0) == 0 and Eac3.format(dependent, 0) is None
    three_blocks = eac3[:4] + bytes((eac3[4] & 0xCF | 2 << 4,)) + eac3[5:]  # numblkscod 2
    audio = Eac3.format(three_blocks, 0)
    assert audio is not None and audio.samples == 768 and Eac3.length(three_blocks, 0) == len(eac3)


# -- the fast path's frame counter ------------------------------------------------------------------

@pytest.mark.parametrize("encoder, codec, rate, layout, bit_rate", ENCODES, ids=IDS)
def test_a_frame_counter_counts_each_codecs_whole_frames_across_packets(
    encoder: str, codec: str, rate: int, layout: str, bit_rate: int,
) -> None:
    frames = encode(encoder, rate, layout, bit_rate)[2:7]
    packets = pes_packets(b"".join(frames))
    counter = FrameCounter(FAMILIES[codec])
    for packet in packets[:-1]:
        counter.packet(packet)
    assert not counter.complete and counter.frames < 5
    counter.packet(packets[-1])
    assert counter.complete and counter.frames == 5
    assert counter.format == FAMILIES[codec].format(frames[0], 0)
    broken = pes_packets(frames[0] + b"\x00" * 8 + frames[1], cc=len(packets))  # no header after the first
    counter.packets(broken)
    assert not counter.complete and counter.frames == 1


# -- the silent frames --------------------------------------------------------------------------------

FORMATS = [FAMILIES[codec].format(encode(encoder, rate, layout, bit_rate, frames=8)[-1], 0)
           for encoder, codec, rate, layout, bit_rate in ENCODES]
FORMATS += [aac_format(AacConfig(2, 3, 7)), aac_format(AacConfig(2, 4, 1))]  # 7.1; mono at 44.1 kHz
FORMAT_IDS = [*IDS, "aac-7.1", "aac-mono-44100"]


def decoded(codec: str, frame: bytes, copies: int) -> list[av.AudioFrame]:
    decoder = av.CodecContext.create(codec, "r")
    return [out for _ in range(copies) for out in decoder.decode(av.Packet(frame))]


@pytest.mark.parametrize("audio", FORMATS, ids=FORMAT_IDS)
def test_a_silent_frame_decodes_to_a_frames_count_of_zeros_in_the_tracks_layout_and_rate(audio: AudioFormat) -> None:
    assert audio is not None
    family = FAMILIES[audio.codec]
    frame = family.framed(audio, silent_frame(audio))
    made = family.format(frame, 0)
    assert made is not None and made.mode == audio.mode and family.self_contained(frame)
    if audio.codec in ("mp2", "ac3"):  # frames of a constant size: the track's bit rate
        assert made.bit_rate == audio.bit_rate
    outs = decoded(audio.codec, frame, 3)
    assert len(outs) == 3
    for out in outs:
        assert (out.samples, out.sample_rate, len(out.layout.channels)) == (audio.samples, audio.sample_rate,
                                                                           audio.channels)
        typecode = {"fltp": "f", "flt": "f", "s16p": "h", "s16": "h", "s32p": "i"}[out.format.name]
        scale = 1 if typecode == "f" else 2 ** (8 * out.format.bytes - 1)
        peak = max(abs(x) for plane in out.planes[: audio.channels]
                   for x in array.array(typecode, bytes(plane)[: out.samples * out.format.bytes * (
                       1 if out.format.is_planar else audio.channels)]))
        assert peak <= SILENT_PEAK * scale, peak


def test_an_mp3_silent_frame_takes_no_bits_from_the_frames_before_it() -> None:
    real = encode("libmp3lame", 44100, "stereo", 128000, frames=20)
    assert not all(MpegAudio.self_contained(frame) for frame in real)  # LAME uses its bit reservoir
    audio = MpegAudio.format(real[-1], 0)
    assert audio is not None and MpegAudio.self_contained(silent_frame(audio))


# -- what is not filled, named ----------------------------------------------------------------------

def with_byte(frame: bytes, at: int, value: int) -> bytes:
    return frame[:at] + bytes((value,)) + frame[at + 1 :]


MP2 = encode("mp2", 48000, "stereo", 192000)[-1]
EAC3 = encode("eac3", 48000, "stereo", 96000)[-1]
AC3 = encode("ac3", 48000, "stereo", 192000)[-1]


@pytest.mark.parametrize("audio, reason", [
    (MpegAudio.format(mpeg_header(3, 3, 12, 1), 0), "Layer I: FFmpeg has no encoder"),
    (MpegAudio.format(mpeg_header(3, 1, 0, 0), 0), "free format"),
    (MpegAudio.format(with_byte(MP2, 3, MP2[3] & 0x3F | 1 << 6), 0),  # joint stereo
     "FFmpeg's mp2 encoder makes MPEG-1 Layer II, 48000 Hz, stereo, 192 kb/s, not MPEG-1 Layer II, 48000 Hz, joint"),
    (MpegAudio.format(with_byte(MP2, 3, MP2[3] & 0x3F | 2 << 6), 0), "dual channel"),
    (Ac3.format(with_byte(AC3, 6, AC3[6] & 0x1F), 0), "not AC-3, 48000 Hz, 1\\+1"),  # acmod 0: dual mono
    (MpegAudio.format(mpeg_header(3, 1, 9, 0, mode=2), 0), "not MPEG-1 Layer III, 44100 Hz, dual channel"),
    (Ac3.format(ac3_header(0, 20, 6, 1), 0), "FFmpeg's ac3 encoder refuses AC-3, 48000 Hz, 2/2\\+LFE"),
    (Eac3.format(with_byte(EAC3, 4, EAC3[4] & 0xCF | 1 << 4), 0), "6 blocks, not E-AC-3, 48000 Hz, 2/0, 2 blocks"),
    (aac_format(AacConfig(5, 3, 2)), "object type 5: FFmpeg's aac encoder makes AAC-LC only"),
    (aac_format(AacConfig(2, 3, 0)), "channels in a PCE"),
], ids=["Layer I", "free format", "MP2 joint stereo", "MP2 dual channel", "AC-3 dual mono", "MP3 dual channel",
        "AC-3 2/2+LFE", "E-AC-3 2 blocks",
        "explicit HE-AAC", "AAC PCE"])
def test_a_format_no_silent_frame_is_made_for_is_named_with_why(
    audio: AudioFormat | None, reason: str, caplog: pytest.LogCaptureFixture,
) -> None:
    assert audio is not None
    with pytest.raises(ValueError, match=reason):
        silent_frame(audio)
    with caplog.at_level(logging.INFO, logger="segmenter.silentframe"):
        assert silent_frame_or_none(3, audio) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"stream #3: pauses are not filled with silence ({audio.name}: {silent_reason(audio)})"]


def test_tracks_of_a_codec_without_a_frame_family_are_named_once_at_the_start(caplog: pytest.LogCaptureFixture) -> None:
    # Opus and PCM have no frame family: their pauses stay holes, said in one line; the others
    # go on to their own checks (an MP1 track is then named with why, at its first frame).
    with caplog.at_level(logging.INFO, logger="segmenter.silentframe"):
        assert fillable_streams({1: "aac", 2: "opus", 3: "mp1", 4: "pcm_s16le", 5: "eac3"}) == {1, 3, 5}
    assert [r.getMessage() for r in caplog.records] == [
        "pauses not filled with silence (AAC, MP2, MP3, AC-3, E-AC-3 only): stream #2 (opus), stream #4 (pcm_s16le)"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segmenter.silentframe"):
        assert fillable_streams({1: "mp3"}) == {1}
    assert not caplog.records


def silent_reason(audio: AudioFormat) -> str:
    try:
        silent_frame(audio)
    except ValueError as error:
        return str(error)
    raise AssertionError("a silent frame was made")


def test_an_adts_header_whose_frame_length_is_shorter_than_the_header_is_no_frame() -> None:
    header = adts_frame(AacConfig(2, 3, 2), b"")
    assert Adts.length(header, 0) == 7
    short = header[:3] + bytes((header[3] & 0xFC, 0, 6 << 5 | 0x1F)) + header[6:]  # aac_frame_length 6
    assert Adts.length(short, 0) == 0
    assert Adts.format(bytes(7), 0) is None


def test_an_mpeg_audio_header_needs_its_whole_syncword_and_its_four_bytes() -> None:
    header = mpeg_header(3, 1, 9, 0)
    assert MpegAudio.length(header, 0) > 0
    assert MpegAudio.length(b"\x00" + header[1:], 0) == 0
    assert MpegAudio.length(header[:1] + bytes((header[1] & 0x1F,)) + header[2:], 0) == 0
    assert MpegAudio.length(b"\x00" + header[:3], 1) == 0


def test_bytes_without_a_frame_header_are_not_a_self_contained_frame() -> None:
    assert not MpegAudio.self_contained(bytes(8))
    assert not Ac3.self_contained(bytes(8))


def test_a_free_format_mp3_track_is_not_filled_though_the_encoder_could_make_a_frame() -> None:
    audio = MpegAudio.format(mpeg_header(3, 1, 0, 0), 0)  # MPEG-1 Layer III, bitrate_index 0
    assert audio is not None
    with pytest.raises(ValueError, match="free format"):
        silent_frame(audio)


def test_an_mp3_frame_with_a_crc_has_its_main_data_begin_after_the_crc() -> None:
    header = mpeg_header(3, 1, 9, 0)
    protected = header[:1] + bytes((header[1] & 0xFE,)) + header[2:]  # protection_bit 0: a CRC follows
    assert not MpegAudio.self_contained(protected + b"\x00\x00" + b"\x80" + bytes(40))  # main_data_begin 256
    assert MpegAudio.self_contained(protected + b"\xff\xff" + bytes(41))  # main_data_begin 0


def test_mp3_main_data_begin_is_9_bits_in_mpeg_1_and_8_at_the_lower_sampling_frequencies() -> None:
    mpeg1, mpeg2 = mpeg_header(3, 1, 9, 0), mpeg_header(2, 1, 9, 0)
    assert not MpegAudio.self_contained(mpeg1 + b"\x00\x80" + bytes(40))  # main_data_begin 1
    assert not MpegAudio.self_contained(mpeg1 + b"\x01\x00" + bytes(40))  # main_data_begin 2
    assert MpegAudio.self_contained(mpeg2 + b"\x00\x80" + bytes(40))  # main_data_begin 0, then private_bits
    assert not MpegAudio.self_contained(mpeg1)  # a header without its side information


def test_an_ac3_header_needs_its_whole_syncword_eight_bytes_and_no_reserved_fscod_or_frmsizecod() -> None:
    header = ac3_header(0, 10)
    assert Ac3.length(header, 0) > 0
    assert Ac3.length(b"\x00" + header[1:], 0) == 0
    assert Ac3.length(header[:1] + b"\x00" + header[2:], 0) == 0
    assert Ac3.length(b"\x00" + header[:7], 1) == 0
    assert Ac3.length(ac3_header(3, 10), 0) == 0  # fscod 3: reserved
    assert Ac3.length(ac3_header(0, 38), 0) == 0  # frmsizecod 38: past table 5.18
    assert Ac3.length(header[:5] + bytes((9 << 3,)) + header[6:], 0) == 0  # bsid 9: neither AC-3 nor E-AC-3


def test_an_e_ac3_header_needs_its_syncword_six_bytes_bsid_11_to_16_and_substream_0() -> None:
    assert Eac3.length(EAC3[:6], 0) == Eac3.length(EAC3, 0) > 0
    assert Eac3.length(b"\x00" + EAC3[1:], 0) == 0
    assert Eac3.length(EAC3[:1] + b"\x00" + EAC3[2:], 0) == 0
    assert Eac3.length(b"\x00" + EAC3[:5], 1) == 0
    assert Eac3.length(with_byte(EAC3, 2, EAC3[2] | 0x08), 0) == 0  # substreamid 1
    assert Eac3.length(with_byte(EAC3, 5, 11 << 3), 0) > 0
    assert Eac3.length(with_byte(EAC3, 5, 17 << 3), 0) == 0


def test_an_e_ac3_frame_at_half_a_sampling_rate_has_6_blocks_and_fscod2_3_is_reserved() -> None:
    half = Eac3.format(with_byte(EAC3, 4, 3 << 6 | 0 << 4 | EAC3[4] & 0x0F), 0)  # fscod 3, fscod2 0
    assert half is not None and (half.sample_rate, half.samples) == (24000, 1536)
    assert Eac3.length(with_byte(EAC3, 4, 3 << 6 | 3 << 4 | EAC3[4] & 0x0F), 0) == 0


def test_an_e_ac3_frame_gives_the_bit_rate_its_frame_size_means() -> None:
    audio = Eac3.format(EAC3, 0)  # encoded at 96 kb/s: 384 bytes every 1536 samples at 48 kHz
    assert audio is not None and audio.bit_rate == 96000


def test_codecs_without_a_frame_family_are_not_filled() -> None:
    assert {"opus", "aac_latm", "flac", "pcm_s16le"}.isdisjoint(FAMILIES)


# -- the fast path, on ffmpeg's MPEG-TS ---------------------------------------------------------------

FRAME_TICKS = {"mp2": 2160, "mp3": 2160, "ac3": 2880, "eac3": 2880}  # 1152 and 1536 samples at 48 kHz


@pytest.mark.parametrize("codec", ["mp2", "mp3", "ac3", "eac3"])
def test_the_fast_path_fills_a_pause_of_each_codec_with_its_silent_frames(codec: str, media: MediaCache) -> None:
    data = media.encoder_ts(seconds=12, audio_gap=(3, 9), audio_codec=codec).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    plain, _ = split(data, silence=False, codec=codec)
    filled, dropped = split(data, silence=True, codec=codec)
    assert sorted(plain) == sorted(filled) and not dropped
    before, after = audio_pes(plain, audio_pid), audio_pes(filled, audio_pid)
    inputs = Counter(payload for _, _, payload in before)
    silent = [(n, pts, p) for n, pts, p in after if p not in inputs]
    assert Counter(p for _, _, p in after if p in inputs) == inputs  # every input PES, whole, once
    family, frame = FAMILIES[codec], FRAME_TICKS[codec]
    assert len({p for _, _, p in silent}) == 1 and family.length(silent[0][2], 0) == len(silent[0][2])
    assert len(silent) >= 5 * 90000 // frame and len({n for n, _, _ in silent}) >= 3

    def frames(payload: bytes) -> int:
        count = position = 0
        while position < len(payload):
            position += family.length(payload, position)
            count += 1
        return count

    # Sorted by pts, frame after frame, no overlap; where the audio resumes off the filler's grid
    # of frames (ffmpeg's source gave 1024 samples at a time), less than a frame is left.
    ends = sorted((pts, pts + frame * frames(p)) for _, pts, p in after)
    steps = [b[0] - a[1] for a, b in zip(ends, ends[1:])]
    assert all(-1 <= step < frame for step in steps) and sum(step > 1 for step in steps) <= 1, [
        (a, b) for a, b in zip(ends, ends[1:]) if abs(b[0] - a[1]) > 1][:3]
    holes = sorted((pts, pts + frame * frames(p)) for _, pts, p in before)
    assert any(b[0] - a[1] > 2 * frame for a, b in zip(holes, holes[1:]))  # the input has the hole


@pytest.mark.parametrize("codec", ["aac", "mp2", "mp3", "ac3", "eac3"])
def test_a_tracks_format_as_the_probe_describes_it_is_its_first_frames(codec: str, media: MediaCache) -> None:
    # The PyAV path fills a track that starts after the video from the probe's description.
    source = media.encoder_ts(seconds=4, audio_gap=(0, 1), audio_codec=codec)
    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        context = stream.codec_context
        described = probed_format(codec, context.profile, context.sample_rate, context.layout.name, context.bit_rate or 0)
        first = bytes(next(p for p in container.demux(stream) if p.size))
    assert described == FAMILIES[codec].format(first, 0)
    assert silent_frame(described)


def test_a_probe_description_that_says_no_format_gives_none() -> None:
    assert probed_format("opus", None, 48000, "stereo", 0) is None  # no frame family
    assert probed_format("aac", "LC", 47999, "stereo", 0) is None  # no sampling_frequency_index
    assert probed_format("aac", None, 48000, "stereo", 0) is None  # profile unknown
    assert probed_format("mp2", None, 47000, "stereo", 128000) is None  # the encoder refuses the rate
    assert probed_format("mp3", None, 0, "", 0) is None  # nothing described
    assert probed_format("aac", "HE-AACv2", 48000, "stereo", 0).unfillable  # type: ignore[union-attr]


def test_filler_before_a_tracks_first_frame_carries_the_stream_id_of_its_pes() -> None:
    # FFmpeg's MPEG-TS muxer writes AC-3 and E-AC-3 as private_stream_1 (0xBD), not 0xC0.
    fill = TsPauseFill(0x101, Ac3, partial(silent_frame_or_none, 1))
    first = pes_packets(AC3 * 2, 4 * 90000)  # read ahead by the probe
    first[0] = first[0].replace(b"\x00\x00\x01\xc0", b"\x00\x00\x01\xbd", 1)
    fill.look_ahead(first)
    data = fill.begin(90000) + fill.due(3 * 90000 + int(FILL_LAG_S * 90000)) + fill.unit(4 * 90000, True, 4 * 90000)[0]
    units = pes_units(pid_packets(data, 0x101))
    assert len(units) == 3 * 90000 // FRAME_TICKS["ac3"] and {unit[:4] for unit in units} == {b"\x00\x00\x01\xbd"}
