"""The silent frame of an audio track's format, made with FFmpeg's encoder of its codec (PyAV).

Both run kinds fill a pause in an audio track with copies of one frame of zeros
(``silence.py``); this makes it, once per track, and checks it: its header repeats the track's
``AudioFormat.mode`` (sample rate, channels, mode, bit rate where frames must keep it), it needs
no frame before it (``self_contained``: an MP3 frame takes no bits from the bit reservoir), and it
decodes to a frame's count of zero samples in the track's layout and rate.
"""

from __future__ import annotations

import array
import logging
from fractions import Fraction

import av

from .audioframes import FAMILIES, AudioFormat, aac_decoder_config, aac_format

log = logging.getLogger(__name__)

# FFmpeg's codec name -> its encoder, and the encoder options to try in turn (the first whose
# frame matches the track's mode is taken). LAME without its bit reservoir: every frame
# self-contained; joint stereo or plain stereo, as the track is.
_ENCODERS: dict[str, tuple[str, tuple[dict[str, str], ...]]] = {
    "aac": ("aac", ({},)),
    "mp2": ("mp2", ({},)),
    "mp3": ("libmp3lame", ({"reservoir": "0", "joint_stereo": "1"}, {"reservoir": "0", "joint_stereo": "0"})),
    "ac3": ("ac3", ({},)),
    "eac3": ("eac3", ({},)),
}

# Frames of zeros given to the encoder: its first packets may be its priming.
_FRAMES_ENCODED = 6

# The loudest sample a silent frame may decode to, as a fraction of full scale: less than half a
# step of 16-bit audio, which plays it as zero. AC-3 decoders fill the mantissas an encoder gave
# no bits with dither (A/52 7.3.4), about 2**-17 for a frame of zeros from FFmpeg's encoder.
SILENT_PEAK = Fraction(1, 2**16)

# Decoded sample formats -> (array typecode, full scale).
_SAMPLES = {"flt": ("f", 1), "dbl": ("d", 1), "s16": ("h", 2**15), "s32": ("i", 2**31)}


def silent_frame(audio: AudioFormat) -> bytes:
    """One frame of ``audio`` that decodes to ``audio.samples`` zero samples per channel, as the
    codec's encoder writes it (raw AAC, without ADTS header; a whole frame of the others).

    Raises ValueError, saying why, when no such frame can be made: ``audio.unfillable``, a codec
    without an encoder here, or an encoder that cannot make the track's mode."""
    if audio.unfillable:
        raise ValueError(audio.unfillable)
    if audio.codec not in _ENCODERS:
        raise ValueError(f"no encoder for {audio.codec}")
    name, option_sets = _ENCODERS[audio.codec]
    family = FAMILIES[audio.codec]
    made: AudioFormat | None = None
    for options in option_sets:
        frame = _encoded(name, audio, options)
        made = audio if audio.codec == "aac" else family.format(frame, 0)  # raw AAC carries no header
        if made is not None and made.mode == audio.mode and family.self_contained(frame):
            _check_silent(family.framed(audio, frame), audio)
            return frame
    raise ValueError(f"FFmpeg's {name} encoder makes {made.name if made else 'no frame of it'}, not {audio.name}")


def probed_format(codec: str, profile: str | None, sample_rate: int, layout: str, bit_rate: int) -> AudioFormat | None:
    """The format of a track as the probe describes it (FFmpeg's codec name and profile, Hz,
    channel layout, bits per second), for a track whose frames are not at hand yet: AAC's from its
    profile (``aac_decoder_config``), the others' from the header of a frame their encoder makes
    in that rate, layout and bit rate. None where that says nothing: an unknown AAC profile, a
    codec without a frame family or encoder here, parameters the encoder refuses."""
    if codec == "aac":
        config = aac_decoder_config(profile, sample_rate, av.AudioLayout(layout).nb_channels if layout else 0)
        return aac_format(config) if config else None
    family = FAMILIES.get(codec)
    if family is None or codec not in _ENCODERS or not sample_rate or not layout:
        return None
    name, option_sets = _ENCODERS[codec]
    described = AudioFormat(codec, codec, sample_rate, 0, av.AudioLayout(layout).nb_channels, layout, (), bit_rate)
    try:
        return family.format(_encoded(name, described, option_sets[0]), 0)
    except ValueError:
        return None


def fillable_streams(codecs: dict[int, str]) -> set[int]:
    """The audio streams (index -> FFmpeg's codec name) whose pauses can be filled: those of a
    codec with a frame family (``audioframes.FAMILIES``). The others are named in one line: their
    pauses stay holes."""
    unfilled = {index: codec for index, codec in codecs.items() if codec not in FAMILIES}
    if unfilled:
        log.info("pauses not filled with silence (AAC, MP2, MP3, AC-3, E-AC-3 only): %s",
                 ", ".join(f"stream #{index} ({codec})" for index, codec in unfilled.items()))
    return codecs.keys() - unfilled.keys()


def silent_frame_or_none(index: int, audio: AudioFormat, *, quiet: bool = False) -> bytes | None:
    """``silent_frame``, or None when there is none; then stream ``index``'s pauses stay holes,
    and the log says so once, naming it and why (``quiet``: not, for a format only described)."""
    try:
        return silent_frame(audio)
    except ValueError as reason:
        if not quiet:
            log.info("stream #%d: pauses are not filled with silence (%s: %s)", index, audio.name, reason)
        return None


def _encoded(name: str, audio: AudioFormat, options: dict[str, str]) -> bytes:
    """The last packet FFmpeg's ``name`` encoder gives for frames of zeros in ``audio``'s rate,
    layout and bit rate (where its header says one)."""
    encoder = av.CodecContext.create(name, "w")
    encoder.sample_rate = audio.sample_rate
    encoder.layout = audio.layout
    encoder.format = encoder.codec.audio_formats[0].name
    encoder.time_base = Fraction(1, audio.sample_rate)
    if audio.bit_rate:
        encoder.bit_rate = audio.bit_rate
    encoder.options = options
    try:
        encoder.open()
    except av.error.FFmpegError as error:
        raise ValueError(f"FFmpeg's {name} encoder refuses {audio.name}: {error}") from None
    samples = encoder.frame_size or audio.samples
    packet = b""
    for number in range(_FRAMES_ENCODED):
        frame = av.AudioFrame(format=encoder.format.name, layout=audio.layout, samples=samples)
        for plane in frame.planes[: audio.channels]:  # PyAV lists one plane too many past 8 channels
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = audio.sample_rate
        frame.pts = number * samples
        for encoded in encoder.encode(frame):
            packet = bytes(encoded)
    encoder.encode(None)  # drained, the encoder closes quietly
    return packet


def _check_silent(frame: bytes, audio: AudioFormat) -> None:
    """Raise ValueError unless ``frame``, decoded twice in a row, gives ``audio.samples`` samples
    each time, in ``audio``'s rate and channel count, none louder than ``SILENT_PEAK``."""
    decoder = av.CodecContext.create(audio.codec, "r")
    decoded = [out for _ in range(2) for out in decoder.decode(av.Packet(frame))]
    if len(decoded) != 2:
        raise ValueError(f"its silent frame decodes to {len(decoded)} frames out of 2")
    for out in decoded:
        typecode, scale = _SAMPLES[out.format.name.rstrip("p")]
        count = out.samples * (1 if out.format.is_planar else out.layout.nb_channels)
        peak = max(abs(sample) for plane in out.planes[: audio.channels]
                   for sample in array.array(typecode, bytes(plane)[: count * out.format.bytes]))
        if (out.samples != audio.samples or out.sample_rate != audio.sample_rate
                or out.layout.nb_channels != audio.channels or peak > SILENT_PEAK * scale):
            raise ValueError(f"its silent frame decodes to {out.samples} samples at {out.sample_rate} Hz, "
                             f"{out.layout.nb_channels} channels, peak {peak / scale:.2g}")
