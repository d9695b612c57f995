"""Silence for a pause in an AAC track (segmenter/silence.py), and the fast path's use of it."""

from __future__ import annotations

import logging
from collections import Counter
from fractions import Fraction

import av
import pytest

from segmenter.audioframes import (
    AacConfig, Adts, AudioFormat, aac_decoder_config, aac_format, adts_config, adts_frame, adts_header, asc_config,
)
from segmenter.cutter import DISCONTINUITY_GAP_S, Cutter, StreamInfo, StreamKind
from segmenter.silence import FILL_LAG_S, FrameCounter, PauseFiller, TsPauseFill, filler_packets, retimed_pes
from segmenter.silentframe import silent_frame, silent_frame_or_none
from segmenter.tsfast import DATA, DROPPED, OPEN, Track, TsSplitter, find_program
from tests.support.media import MediaCache
from tests.support.segmenter_media import TS_PACKET_BYTES

TICKS = Fraction(1, 90000)
STEREO_48K = AacConfig(2, 3, 2)  # AAC-LC, 48 kHz, stereo
FRAME = 1920  # 1024 samples at 48 kHz in 90 kHz ticks


def pid_packets(data: bytes, pid: int) -> list[bytes]:
    packets = [data[i : i + TS_PACKET_BYTES] for i in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES)]
    return [p for p in packets if ((p[1] & 0x1F) << 8) | p[2] == pid]


def pes_pts(packet: bytes) -> int:
    offset = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
    b = packet[offset + 9 : offset + 14]
    return ((b[0] & 0x0E) << 29) | (b[1] << 22) | ((b[2] & 0xFE) << 14) | (b[3] << 7) | (b[4] >> 1)


def silent_aac_frame(config: AacConfig) -> bytes:
    """The raw silent frame of an AAC configuration, as the shell makes it."""
    return silent_frame(aac_format(config))


def silent_or_none(audio: AudioFormat) -> bytes | None:
    """The fast path's ``silent_frame`` for one track (stream #1)."""
    return silent_frame_or_none(1, audio)


def decode_adts(frames: list[bytes]) -> list[av.AudioFrame]:
    decoder = av.CodecContext.create("aac", "r")
    out = []
    for frame in frames:
        out += decoder.decode(av.Packet(frame))
    return out


# -- configuration and framing ------------------------------------------------------------------

def test_adts_header_round_trips_the_configuration() -> None:
    frame = adts_frame(STEREO_48K, b"\x21\x10\x04\x60\x8c\x1c")
    assert len(frame) == 13 and frame[:2] == b"\xff\xf1"
    assert adts_config(frame) == STEREO_48K
    assert ((frame[3] & 3) << 11 | frame[4] << 3 | frame[5] >> 5) == 13  # aac_frame_length
    assert adts_config(b"\x00" * 7) is None and adts_config(b"\xff\xf1") is None


def test_what_the_probe_says_of_an_aac_track_gives_its_configuration_or_nothing() -> None:
    assert aac_decoder_config("LC", 48000, 2) == STEREO_48K
    assert aac_decoder_config("HE-AAC", 44100, 8) == AacConfig(5, 4, 7)  # 7.1: configuration 7
    assert aac_decoder_config("Main", 7350, 1) == AacConfig(1, 12, 1)
    assert aac_format(aac_decoder_config("HE-AACv2", 48000, 2)).unfillable  # type: ignore[arg-type]
    for unknown in [("LC", 47999, 2), ("LC", 48000, 7), ("LC", 48000, 0), (None, 48000, 2), ("Opus", 48000, 2)]:
        assert aac_decoder_config(*unknown) is None, unknown


def test_an_adts_header_is_found_at_a_position_only_with_its_seven_bytes_there() -> None:
    frame = adts_frame(STEREO_48K, b"\x21\x10\x04\x60\x8c\x1c")
    data = frame + frame[:7]
    assert adts_header(data, 0) and adts_header(data, 13) and adts_header(frame)
    assert not adts_header(data[:19], 13) and not adts_header(data, 1)  # six bytes left; no syncword


def test_audio_specific_config_is_read_and_only_aac_lc_1_to_7_channels_is_fillable() -> None:
    assert asc_config(bytes.fromhex("1190")) == STEREO_48K
    assert asc_config(bytes.fromhex("1188")) == AacConfig(2, 3, 1)
    assert asc_config(b"") is None and asc_config(None) is None
    assert asc_config(bytes.fromhex("f800")) is None  # escaped object type
    assert not aac_format(STEREO_48K).unfillable and not aac_format(AacConfig(2, 4, 6)).unfillable
    assert not aac_format(AacConfig(2, 3, 7)).unfillable  # 7.1
    assert "object type 5" in aac_format(AacConfig(5, 3, 2)).unfillable  # HE-AAC signalled explicitly
    assert "PCE" in aac_format(AacConfig(2, 3, 0)).unfillable  # channels in a PCE
    with pytest.raises(ValueError, match="object type 5"):
        adts_frame(AacConfig(5, 3, 2), b"\x00")


def adts_fields(frame: bytes) -> dict[str, int]:
    """The fixed and variable header of an ADTS frame (ISO/IEC 14496-3 1.A.2.2), field by field."""
    bits = int.from_bytes(frame[:7], "big")
    names = [("syncword", 12), ("id", 1), ("layer", 2), ("protection_absent", 1), ("profile", 2),
             ("sampling_frequency_index", 4), ("private_bit", 1), ("channel_configuration", 3),
             ("original_copy", 1), ("home", 1), ("copyright_identification_bit", 1),
             ("copyright_identification_start", 1), ("aac_frame_length", 13), ("adts_buffer_fullness", 11),
             ("number_of_raw_data_blocks_in_frame", 2)]
    fields, position = {}, 56
    for name, width in names:
        position -= width
        fields[name] = bits >> position & (1 << width) - 1
    return fields


@pytest.mark.parametrize("config", [AacConfig(1, 3, 2), STEREO_48K, AacConfig(4, 0, 6), AacConfig(2, 11, 4),
                                    AacConfig(2, 3, 5)])
@pytest.mark.parametrize("raw_bytes", [6, 2041, 8184])
def test_an_adts_header_carries_each_field_as_iso_14496_3_lays_it_out(config: AacConfig, raw_bytes: int) -> None:
    frame = adts_frame(config, bytes(raw_bytes))
    assert adts_fields(frame) == {
        "syncword": 0xFFF, "id": 0, "layer": 0, "protection_absent": 1, "profile": config.object_type - 1,
        "sampling_frequency_index": config.sampling_index, "private_bit": 0,
        "channel_configuration": config.channels, "original_copy": 0, "home": 0,
        "copyright_identification_bit": 0, "copyright_identification_start": 0,
        "aac_frame_length": 7 + raw_bytes, "adts_buffer_fullness": 0x7FF,  # variable bit rate
        "number_of_raw_data_blocks_in_frame": 0,  # one raw_data_block
    }
    assert adts_config(frame) == config and frame[7:] == bytes(raw_bytes)


def test_an_adts_frame_is_at_most_8191_bytes_and_only_object_types_1_to_4() -> None:
    assert len(adts_frame(STEREO_48K, bytes(8184))) == 8191
    with pytest.raises(ValueError):
        adts_frame(STEREO_48K, bytes(8185))  # aac_frame_length has 13 bits
    with pytest.raises(ValueError):
        adts_frame(STEREO_48K, bytes(16377))
    with pytest.raises(ValueError, match="object type 0"):
        adts_frame(AacConfig(0, 3, 2), b"\x00")


def test_headers_of_other_audio_or_with_a_reserved_sample_rate_give_no_configuration() -> None:
    assert adts_config(b"\xff\xfb\x90\x64\x00\x00\x00") is None  # MPEG-1 Layer III
    assert adts_config(b"\xfe\xf1\x4c\x80\x01\xbf\xfc") is None  # a syncword one bit off
    for index in (13, 14, 15):  # reserved, reserved, escape (ISO/IEC 14496-3 table 1.18)
        assert adts_config(bytes((0xFF, 0xF1, 0x40 | index << 2, 0x80, 0x01, 0xBF, 0xFC))) is None
    assert asc_config(bytes((0x16, 0x90))) is None  # AAC-LC, index 13
    assert asc_config(bytes((0x17, 0x10))) is None  # index 14
    assert asc_config(bytes((0x15, 0x90))) == AacConfig(2, 11, 2)  # 8 kHz, the last listed


@pytest.mark.parametrize("config", [STEREO_48K, AacConfig(2, 4, 1), AacConfig(2, 3, 6), AacConfig(2, 8, 2),
                                    AacConfig(2, 3, 7)])
def test_silent_frame_decodes_to_1024_samples_of_silence(config: AacConfig) -> None:
    frame = adts_frame(config, silent_aac_frame(config))
    decoded = decode_adts([frame, frame, frame])
    assert len(decoded) == 3
    for audio in decoded:
        assert audio.samples == 1024 and audio.sample_rate == config.sample_rate
        assert len(audio.layout.channels) == aac_format(config).channels
        assert all(not any(bytes(plane)) for plane in audio.planes[: len(audio.layout.channels)])
    with pytest.raises(ValueError, match="PCE"):
        silent_aac_frame(AacConfig(2, 3, 0))


# -- when and what to fill ----------------------------------------------------------------------

SECOND = 90000
LAG = int(FILL_LAG_S * SECOND)


def filler(batch: int = 1) -> PauseFiller:
    return PauseFiller(aac_format(STEREO_48K).frame_ticks(TICKS), TICKS, batch=batch)


def written(gaps: PauseFiller, pts: int, clock: int) -> list[int]:
    """A real frame at ``pts`` written (not a late unit): the filler before it."""
    assert not gaps.late(pts)
    fills = gaps.resume(pts, clock)
    gaps.ended(pts + FRAME)
    return fills


def test_a_hole_of_two_frames_or_less_is_left_as_it_is() -> None:
    gaps = filler()
    assert written(gaps, 0, 0) == []
    assert written(gaps, FRAME * 3, FRAME * 3) == []  # two frames missing: jitter, a lost frame
    assert written(gaps, FRAME * 4 + 1, FRAME * 4) == []
    assert gaps.due(FRAME * 5 + LAG) == []


def test_audio_behind_the_video_by_a_muxers_interleave_is_no_pause() -> None:
    gaps = filler()
    for k in range(200):
        assert written(gaps, k * FRAME, k * FRAME + SECOND) == []
        assert gaps.due(k * FRAME + SECOND) == []  # 1 s behind: INTERLEAVE_S, within FILL_LAG_S


def test_a_pause_shorter_than_the_lag_is_filled_before_the_packet_that_ends_it() -> None:
    gaps = filler()
    written(gaps, SECOND, SECOND)
    assert gaps.due(SECOND + FRAME + LAG) == []
    resume = SECOND + FRAME + SECOND // 2 + 100  # 0.5 s later and 100 ticks: a partial frame
    fills = written(gaps, resume, resume)
    assert fills == [SECOND + FRAME * (k + 1) for k in range(len(fills))]
    assert fills[-1] + FRAME <= resume < fills[-1] + 2 * FRAME  # the partial frame stays a hole


def test_an_open_pause_is_filled_behind_the_clock_as_it_goes_on_and_up_to_the_resumed_audio() -> None:
    gaps = filler(batch=16)
    written(gaps, 0, 0)
    fills: list[int] = []
    for clock in range(0, 8 * SECOND, 3600):  # video frames at 25 fps
        due = gaps.due(clock)
        assert not due or len(due) >= 16
        assert all(pts + FRAME <= clock - LAG for pts in due)  # FILL_LAG_S behind the video
        fills += due
    assert fills[0] == FRAME and fills[-1] + FRAME > clock - LAG - 16 * FRAME
    resume = 8 * SECOND - SECOND // 2
    fills += written(gaps, resume, 8 * SECOND)
    assert fills == [FRAME * (k + 1) for k in range(len(fills))]
    assert resume - FRAME < fills[-1] + FRAME <= resume


def test_the_muxers_late_unit_follows_the_filler_and_the_rest_is_filled_up_to_the_resumed_audio() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    fills = gaps.due(6 * SECOND)
    assert fills and gaps.late(FRAME) and not gaps.late(FRAME * 3)
    unit = 12 * FRAME  # FFmpeg's PES of 12 frames before the pause, written when the audio resumed
    moved = gaps.retime(unit, 6 * SECOND)
    assert moved == fills[-1] + FRAME
    resume = 6 * SECOND - SECOND // 4
    rest = written(gaps, resume, 6 * SECOND)
    assert rest[0] == moved + unit and resume - FRAME < rest[-1] + FRAME <= resume


def test_a_late_unit_that_would_reach_the_resumed_audio_is_left_out() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    fills = gaps.due(6 * SECOND)
    assert gaps.retime(SECOND, 6 * SECOND) is None  # 1 s of audio: past the clock less INTERLEAVE_S
    assert written(gaps, 6 * SECOND - SECOND // 4, 6 * SECOND)[0] == fills[-1] + FRAME  # filled on


def test_at_the_end_of_input_a_pause_being_filled_is_filled_to_the_end_and_no_other() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    assert gaps.finish(SECOND) == []  # the audio ends 1 s before the video: nothing added
    gaps.due(6 * SECOND)
    fills = gaps.finish(6 * SECOND)
    assert 6 * SECOND - FRAME < fills[-1] + FRAME <= 6 * SECOND


def test_a_segment_a_pause_put_no_audio_in_gets_filler_up_to_its_cut_less_the_interleave() -> None:
    gaps = filler(batch=16)
    written(gaps, 0, 0)
    assert gaps.closing(SECOND // 2) == []  # the segment carried the real frame
    assert gaps.closing(SECOND + FRAME * 2) == []  # audio within the interleave and 2 frames: no pause
    fills = gaps.closing(SECOND + FRAME * 3 + 10)  # none since the last cut, 3 frames past it
    assert fills == [FRAME, 2 * FRAME]  # from the audio's end up to the cut less INTERLEAVE_S
    assert gaps.closing(SECOND + FRAME * 4 + 20) == []  # that segment carried filler
    assert gaps.closing(2 * SECOND) == [FRAME * k for k in range(3, SECOND // FRAME)]  # whole frames
    assert gaps.due(2 * SECOND + FRAME) == []  # filled 1 s behind: due waits for its lag
    # The pause is being filled: the muxer's late unit follows the filler where it fits.
    assert gaps.late(FRAME) and gaps.retime(FRAME, 3 * SECOND) == SECOND // FRAME * FRAME
    assert gaps.closing(3 * SECOND) == []  # the late unit went into this segment


def test_a_segment_with_real_audio_or_after_a_reset_gets_no_filler_at_its_cut() -> None:
    gaps = filler()
    assert gaps.closing(5 * SECOND) == []  # no audio yet: nothing says where it would be
    written(gaps, 0, 0)
    gaps.reset()
    assert gaps.closing(5 * SECOND) == [] and gaps.closing(6 * SECOND) == []
    written(gaps, 6 * SECOND, 6 * SECOND)
    assert gaps.closing(9 * SECOND) == []  # carried the real frame
    assert gaps.closing(9 * SECOND + 1) != []  # then none


def test_a_track_yet_to_send_when_the_program_begins_is_filled_from_there_up_to_its_first_frame() -> None:
    early = filler()
    early.begin(SECOND)
    assert early.due(SECOND + LAG) == []
    assert written(early, SECOND + 3 * FRAME, SECOND + LAG) == []  # within the lag: starts as it starts
    gaps = filler(batch=16)
    gaps.begin(SECOND)
    gaps.begin(2 * SECOND)  # the first start counts
    assert gaps.due(SECOND + LAG + 2 * FRAME) == []  # 2 frames behind: not yet
    fills = gaps.due(3 * SECOND + LAG)
    assert fills[0] == SECOND and len(fills) == 2 * SECOND // FRAME
    assert not gaps.late(SECOND)  # no real audio before: nothing is a late unit
    first = 4 * SECOND + 100  # the track's first frame, 100 ticks off the filler's grid
    rest = written(gaps, first, first + SECOND)
    assert rest[0] == fills[-1] + FRAME and first - FRAME < rest[-1] + FRAME <= first


def test_a_track_yet_to_send_gets_filler_in_the_first_segment_at_its_cut() -> None:
    gaps = filler(batch=16)
    gaps.begin(SECOND)
    assert gaps.closing(3 * SECOND) == [SECOND + FRAME * k for k in range(SECOND // FRAME)]  # up to 2 s


def test_a_track_yet_to_send_gets_one_frame_in_a_first_segment_shorter_than_the_interleave() -> None:
    # 1-s GOPs cut at 1 s: the cut less INTERLEAVE_S is where the segment starts. Without a frame
    # of audio in segment 1, hls.js sets up no audio buffer (bufferAppendError later).
    gaps = filler(batch=16)
    gaps.begin(SECOND)
    assert gaps.closing(SECOND + FRAME - 1) == []  # shorter than one frame: none fits
    assert gaps.closing(2 * SECOND) == [SECOND]  # one frame, where the pause began
    assert gaps.closing(3 * SECOND) == [SECOND + FRAME * k for k in range(1, SECOND // FRAME)]  # on as a pause
    # The first frame comes after the filler's end: the hole up to it is filled before it.
    first = gaps.end + 5 * FRAME  # type: ignore[operator]
    assert not gaps.overlapped(first)
    assert written(gaps, first, 3 * SECOND) == [first - FRAME * k for k in range(5, 0, -1)]
    assert not gaps.overlapped(first + FRAME)  # real audio: nothing is filled under it
    assert gaps.closing(4 * SECOND) == []  # it carried real audio


def test_a_first_frame_inside_the_frame_a_track_began_with_is_overlapped_and_the_next_follows_it() -> None:
    gaps = filler()
    gaps.begin(SECOND)
    assert gaps.closing(2 * SECOND) == [SECOND]
    assert gaps.overlapped(SECOND) and gaps.overlapped(SECOND + FRAME - 1) and not gaps.overlapped(SECOND + FRAME)
    gaps.reset()  # the shell leaves it out (and drops it, which resets the track's filling)
    assert not gaps.overlapped(SECOND + FRAME)
    assert written(gaps, SECOND + FRAME, 2 * SECOND) == []


def test_a_first_segment_exactly_one_frame_long_gets_the_frame_of_a_track_yet_to_send() -> None:
    gaps = filler()
    gaps.begin(SECOND)
    assert gaps.closing(SECOND + FRAME) == [SECOND]  # the frame fits, ending at the cut


def test_only_filler_written_for_a_pause_can_be_overlapped_by_real_audio() -> None:
    # Real audio that starts before the audio written ends (an encoder's jitter) plays as it
    # comes: there is no silence under it to leave it out for.
    gaps = filler()
    written(gaps, 0, 0)
    assert not gaps.overlapped(FRAME // 2) and not gaps.overlapped(0)
    gaps.begin(SECOND)  # it sent: nothing changes
    assert gaps.closing(SECOND + FRAME) == []  # it carried real audio
    assert not gaps.overlapped(FRAME // 2)


def test_at_44_1_khz_a_first_frame_is_overlapped_only_inside_the_frame_its_track_began_with() -> None:
    frame = aac_format(AacConfig(2, 4, 2)).frame_ticks(TICKS)  # 102400/49 ticks: 2089.8
    gaps = PauseFiller(frame, TICKS)
    gaps.begin(SECOND)
    assert gaps.closing(2 * SECOND) == [SECOND]
    assert gaps.overlapped(SECOND + 2089) and not gaps.overlapped(SECOND + 2090)  # the frame ends at 2089.8


def test_only_a_track_whose_start_is_unknown_gets_the_frame_at_a_short_first_segment() -> None:
    known = filler()
    assert known.begin(SECOND, SECOND + FRAME) == []  # the fast path read its first frame ahead
    assert known.closing(2 * SECOND) == []
    sent = filler()
    written(sent, SECOND, SECOND)
    sent.begin(SECOND)
    assert sent.closing(SECOND + FRAME) == [] and sent.closing(2 * SECOND) == []  # it carried audio, then
    # none: a pause within the interleave of the cut
    again = filler()
    again.begin(SECOND)
    again.reset()  # a new timeline: nothing from before it counts
    assert again.closing(2 * SECOND) == []


def test_a_track_whose_first_frame_is_known_ahead_is_filled_up_to_it_at_once() -> None:
    assert filler().begin(SECOND, SECOND + 2 * FRAME) == []  # two frames late: jitter, as it starts
    assert filler().begin(SECOND, SECOND - FRAME) == []  # before the start: nothing to fill
    gaps = filler(batch=16)
    fills = gaps.begin(SECOND, SECOND + 3 * FRAME + 100)  # past 2 frames, off the grid by 100 ticks
    assert fills == [SECOND, SECOND + FRAME, SECOND + 2 * FRAME]  # less than a frame is left
    assert gaps.begin(0, 9 * SECOND) == []  # the first start counts
    assert written(gaps, SECOND + 3 * FRAME + 100, SECOND + LAG) == []


def test_at_44_1_khz_a_first_frame_known_ahead_is_filled_up_to_at_once_on_the_frame_grid() -> None:
    frame = aac_format(AacConfig(2, 4, 2)).frame_ticks(TICKS)  # 102400/49 ticks: 2089.8
    gaps = PauseFiller(frame, TICKS)
    first = SECOND + 10 * 2090  # 10.002 frames late
    assert gaps.begin(SECOND, first) == [round(SECOND + k * frame) for k in range(10)]
    # More than MIN_GAP_FRAMES (2) frames late, compared exactly: 2 frames are 4179.6 ticks.
    assert PauseFiller(frame, TICKS).begin(SECOND, SECOND + 4179) == []
    assert PauseFiller(frame, TICKS).begin(SECOND, SECOND + 4180) == [SECOND, SECOND + 2090]


def test_a_track_that_sent_before_the_program_begins_is_not_moved_back() -> None:
    gaps = filler()
    written(gaps, 2 * SECOND, 2 * SECOND)
    gaps.begin(SECOND)
    assert gaps.due(5 * SECOND)[0] == 2 * SECOND + FRAME  # filled on from its own end, not from the begin
    later = filler()
    later.begin(SECOND)
    later.reset()  # a discontinuity: nothing from before it counts
    assert later.due(9 * SECOND) == []


def test_a_track_yet_to_send_on_a_new_timeline_is_filled_from_its_start_as_at_the_program_start() -> None:
    gaps = filler(batch=16)
    written(gaps, 0, 0)
    assert gaps.begin(0) == []  # it sent: nothing changes
    written(gaps, 9 * SECOND, 9 * SECOND)  # carried audio in the segment before the new timeline
    gaps.reset()  # a new timeline starting at 100 s
    gaps.begin(100 * SECOND)
    fills = gaps.closing(102 * SECOND)  # the audio carried before the reset counts for nothing
    assert fills == [100 * SECOND + FRAME * k for k in range(SECOND // FRAME)]
    first = 103 * SECOND
    rest = written(gaps, first, first)
    assert rest[0] == fills[-1] + FRAME and first - FRAME < rest[-1] + FRAME <= first


def test_a_first_frame_within_the_lag_of_the_start_is_left_as_it_starts_after_audio_left_out_before_it() -> None:
    # The fast path: the track's PES before the first segment are not written (reset), then the program begins.
    gaps = filler()
    gaps.reset()
    gaps.begin(SECOND)
    assert written(gaps, SECOND + 3 * FRAME, SECOND + LAG) == []


def test_a_cut_two_frames_past_the_audio_less_the_interleave_is_no_pause_as_for_due() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    assert gaps.closing(SECOND // 2) == []  # carried the real frame
    assert gaps.closing(FRAME + SECOND + 2 * FRAME) == []  # two frames: MIN_GAP_FRAMES, jitter
    assert gaps.closing(FRAME + SECOND + 2 * FRAME + 1) == [FRAME, 2 * FRAME]


def test_each_segment_cut_in_a_pause_gets_filler_when_due_gives_none() -> None:
    gaps = filler(batch=16)
    written(gaps, 0, 0)
    assert gaps.closing(SECOND // 2) == []
    first = gaps.closing(2 * SECOND)
    assert first == [FRAME * k for k in range(1, SECOND // FRAME)]
    second = gaps.closing(3 * SECOND)  # the segment before carried filler, this one none yet
    assert second == [FRAME * k for k in range(SECOND // FRAME, 2 * SECOND // FRAME)]
    assert gaps.closing(4 * SECOND)[0] == 2 * SECOND // FRAME * FRAME


def test_filler_due_wrote_into_a_segment_is_its_audio_its_cut_adds_none_and_a_late_unit_keeps_its_room() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    assert gaps.closing(SECOND // 2) == []
    fills = gaps.due(6 * SECOND)
    assert fills and fills[-1] + FRAME <= 6 * SECOND - LAG
    assert gaps.closing(6 * SECOND) == []
    assert gaps.late(FRAME) and gaps.retime(12 * FRAME, 6 * SECOND) == fills[-1] + FRAME  # FFmpeg's 12 frames


def test_time_bases_other_than_90_khz_and_sample_rates_that_do_not_divide() -> None:
    config = AacConfig(2, 4, 2)  # 44.1 kHz: a frame is 1024/44100 s, 23.2 ms
    frame = aac_format(config).frame_ticks(Fraction(1, 1000))
    gaps = PauseFiller(frame, Fraction(1, 1000))
    gaps.resume(0, 0)
    gaps.ended(frame)
    fills = gaps.due(2000 + 1500)  # FILL_LAG_S behind: (2000 - 23.22) / 23.22 whole frames
    assert len(fills) == 85
    assert fills[1] == 46 and fills[-1] == round(frame * 85)


def test_at_44_1_khz_in_90_khz_ticks_the_frames_are_counted_exactly_and_rounded_only_on_output() -> None:
    frame = aac_format(AacConfig(2, 4, 2)).frame_ticks(TICKS)  # 102400/49 ticks: 2089.8
    by_frames, by_ticks = PauseFiller(frame, TICKS), PauseFiller(frame, TICKS)
    for gaps in (by_frames, by_ticks):
        gaps.resume(SECOND, SECOND)
    by_frames.ended(SECOND, 49)  # a PES of 49 frames: 102400 ticks exactly
    by_ticks.ended(SECOND + 49 * frame)
    clock = SECOND + 102400 + LAG + 40 * 2090  # 40 frames of 2090 ticks: 40.02 frames behind
    want = [round(SECOND + (49 + k) * frame) for k in range(40)]
    assert by_frames.due(clock) == by_ticks.due(clock) == want
    assert {b - a for a, b in zip(want, want[1:])} == {2089, 2090}  # no rounding carried forward
    real_end = SECOND + 102400
    assert by_frames.late(real_end + 1044) and not by_frames.late(real_end + 1045)  # half a frame: 1044.9
    assert by_frames.late(real_end - 1044) and not by_frames.late(real_end - 1045)
    assert by_frames.retime(3 * frame, clock) == round(SECOND + 89 * frame)


def test_a_clock_between_two_ticks_is_compared_exactly() -> None:
    # The PyAV shell gives the reference's clock in the track's ticks: a fraction when the time bases differ.
    gaps = filler()
    written(gaps, 0, 0)
    assert gaps.due(FRAME + LAG + 2 * FRAME) == []  # two frames behind: MIN_GAP_FRAMES
    assert gaps.due(FRAME + LAG + 2 * FRAME + Fraction(1, 2)) == [FRAME, 2 * FRAME]
    assert gaps.finish(4 * FRAME - Fraction(1, 2)) == []  # the next frame not whole by half a tick
    assert gaps.finish(4 * FRAME + Fraction(1, 2)) == [3 * FRAME]


def test_filler_timestamps_are_rounded_half_to_even_only_on_output() -> None:
    gaps = PauseFiller(Fraction(3, 2), TICKS)  # a frame of 1.5 ticks: every other one ends half-way
    assert gaps.frame_ticks == Fraction(3, 2)  # as given: the PyAV shell's duration of a filler packet
    gaps.resume(0, 0)
    gaps.ended(0, 1)
    assert gaps.finish(LAG) == []
    assert gaps.due(LAG + 6) == [2, 3, 4]  # 1.5, 3, 4.5
    assert gaps.finish(11) == [6, 8, 9]  # 6, 7.5, 9


def test_nothing_is_filled_across_a_discontinuity_or_towards_a_stream_that_jumped_alone() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    gaps.reset()
    assert gaps.due(6 * SECOND) == []
    assert written(gaps, 6 * SECOND, 6 * SECOND) == []
    # 20 s ahead of the clock: the cutter keeps it on the stream's own timeline; no filler.
    assert written(gaps, 26 * SECOND, 6 * SECOND) == []
    assert written(gaps, 26 * SECOND + FRAME * 10, 26 * SECOND) != []


def test_audio_ending_two_frames_before_the_lagging_clock_is_no_pause_yet_then_each_frame_comes_when_due() -> None:
    gaps = PauseFiller(FRAME, TICKS)  # the default: a frame at a time
    written(gaps, 0, 0)
    assert gaps.due(FRAME + LAG + 2 * FRAME) == []  # two frames: MIN_GAP_FRAMES, jitter
    assert gaps.due(FRAME + LAG + 2 * FRAME + 1) == [FRAME, 2 * FRAME]
    assert gaps.due(FRAME + LAG + 3 * FRAME - 1) == []
    assert gaps.due(FRAME + LAG + 3 * FRAME) == [3 * FRAME]  # filling: one frame is enough


def test_a_batch_is_written_as_soon_as_it_is_all_due() -> None:
    gaps = filler(batch=16)
    written(gaps, 0, 0)
    assert gaps.due(FRAME + LAG + 16 * FRAME - 1) == []
    assert gaps.due(FRAME + LAG + 16 * FRAME) == [FRAME * (k + 1) for k in range(16)]


def test_a_packet_within_half_a_frame_of_where_the_audio_stopped_is_the_late_unit() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    gaps.due(6 * SECOND)
    assert gaps.late(FRAME + FRAME // 2) and gaps.late(FRAME - FRAME // 2)
    assert not gaps.late(FRAME + FRAME // 2 + 1) and not gaps.late(FRAME - FRAME // 2 - 1)


def test_late_units_follow_one_another_and_one_ending_at_the_interleave_limit_is_kept() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    fills = gaps.due(6 * SECOND)
    first = gaps.retime(3 * FRAME, 6 * SECOND)
    assert first == fills[-1] + FRAME
    assert gaps.late(4 * FRAME) and not gaps.late(FRAME)  # the next one continues the first
    limit = 6 * SECOND - SECOND  # the clock less INTERLEAVE_S
    assert gaps.retime(limit - (first + 3 * FRAME), 6 * SECOND) == first + 3 * FRAME
    assert gaps.retime(1, 6 * SECOND) is None


def test_resumed_audio_less_than_two_frames_after_the_filler_still_gets_the_frame_between() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    fills = gaps.due(6 * SECOND)
    resume = fills[-1] + FRAME + FRAME * 3 // 2
    assert written(gaps, resume, 6 * SECOND) == [fills[-1] + FRAME]


def test_audio_exactly_the_discontinuity_gap_ahead_of_the_clock_is_still_filled_towards() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    resume = 60 * FRAME
    assert len(written(gaps, resume, resume - DISCONTINUITY_GAP_S * SECOND)) == 59
    assert written(gaps, 200 * FRAME, 200 * FRAME - DISCONTINUITY_GAP_S * SECOND - 1) == []  # jumped alone


def test_until_its_end_is_told_a_resumed_packet_ends_where_it_starts() -> None:
    gaps = filler()
    gaps.resume(0, 0)
    assert gaps.due(LAG + 3 * FRAME) == [0, FRAME, 2 * FRAME]


# -- MPEG-TS ------------------------------------------------------------------------------------

def pes_units(packets: list[bytes]) -> list[bytes]:
    """The PES packets carried by ``packets`` (one PID), each reassembled from its packets' payloads."""
    units: list[bytes] = []
    for p in packets:
        payload = p[4 + (1 + p[4] if p[3] & 0x20 else 0) :]
        if p[1] & 0x40:
            units.append(payload)
        else:
            units[-1] += payload
    return units


def test_filler_packets_are_a_multiple_of_16_so_the_next_continuity_counter_follows_on() -> None:
    for config in (STEREO_48K, AacConfig(2, 3, 1)):
        frame = adts_frame(config, silent_aac_frame(config))
        for count in (1, 2, 5, 16, 17, 40):
            pts = [2**33 - FRAME + k * FRAME for k in range(count)]  # across the 33-bit wrap
            data = filler_packets(0x101, 9, 0xC0, frame, pts)
            packets = pid_packets(data, 0x101)
            assert len(data) == len(packets) * TS_PACKET_BYTES and len(packets) % 16 == 0
            assert [p[3] & 0x0F for p in packets] == [(10 + k) % 16 for k in range(len(packets))]
            assert all(p[3] & 0x10 for p in packets)  # every packet carries payload: counted
            units = pes_units(packets)
            assert [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in units] == [t % 2**33 for t in pts]
            assert all(unit[14:] == frame and unit[:4] == b"\x00\x00\x01\xc0" for unit in units)
    assert filler_packets(0x101, 0, 0xC0, frame, []) == b""


def packet_payload(packet: bytes) -> bytes:
    """The payload of a packet, read by ISO/IEC 13818-1 2.4.3.2: a packet with
    adaptation_field_control '10' has none; with '11' the field's length comes first."""
    control = packet[3] >> 4 & 3
    assert control in (1, 3)
    if control == 1:
        return packet[4:]
    assert packet[4] <= 182  # 2.4.3.5: at most 182 when a payload follows
    return packet[5 + packet[4] :]


@pytest.mark.parametrize("raw_bytes", [7, 8, 161, 162, 163, 164, 293, 362])
@pytest.mark.parametrize("count", [1, 16, 17])
def test_filler_packets_are_conforming_packets_each_carrying_part_of_one_pes_for_any_frame_size(
    raw_bytes: int, count: int
) -> None:
    frame = adts_frame(STEREO_48K, bytes(raw_bytes))  # 14..369 bytes: one packet's PES to three packets' frame
    pts = [0x1_5555_5555 + k * 0x0_8421_0842 for k in range(count)]  # every bit of the PTS in use
    data = filler_packets(0x200, 15, 0xC0, frame, pts)
    packets = [data[i : i + TS_PACKET_BYTES] for i in range(0, len(data), TS_PACKET_BYTES)]
    assert all(len(p) == TS_PACKET_BYTES and p[0] == 0x47 and (p[1] & 0x1F) << 8 | p[2] == 0x200 for p in packets)
    assert [p[3] & 0x0F for p in packets] == [k % 16 for k in range(len(packets))]
    # One packet for a PES that fits one, else one for the PES header and the frame in
    # 184-byte parts; as many more, each with a byte at least, as make a multiple of 16.
    least = count * (1 if len(frame) + 14 <= 184 else 1 + -(-len(frame) // 184))
    assert len(packets) == -(-least // 16) * 16
    payloads = [packet_payload(p) for p in packets]
    assert all(payloads)
    starts = [k for k, p in enumerate(packets) if p[1] & 0x40]
    units = [b"".join(payloads[a:b]) for a, b in zip(starts, [*starts[1:], len(packets)])]
    assert len(units) == count
    for unit, expected in zip(units, pts):
        assert unit[:6] == b"\x00\x00\x01\xc0" + (len(unit) - 6).to_bytes(2, "big")  # PES_packet_length
        # '10', data_alignment_indicator; PTS only ('10' prefix), no other field; header length 5.
        assert unit[6:9] == b"\x84\x80\x05" and unit[9:14] == pts_field(0x2, expected)
        assert unit[14:] == frame
    if len(frame) < 15:
        return  # a single frame too short to split into 15 parts: its PES header is split too
    assert all(len(payloads[k]) >= 14 for k in starts)  # else the PES header is whole in one packet
    counter = FrameCounter(Adts)  # the frames as the fast path counts them: one whole frame per PES
    for k, packet in enumerate(packets):
        counter.packet(packet)
        if k + 1 in (*starts[1:], len(packets)):
            assert counter.complete and counter.frames == 1


def test_retimed_pes_changes_the_pts_and_dts_and_nothing_else() -> None:
    frame = adts_frame(STEREO_48K, silent_aac_frame(STEREO_48K))
    data = filler_packets(0x101, 3, 0xC0, frame, [FRAME] * 16)
    first, second = data[:TS_PACKET_BYTES], data[TS_PACKET_BYTES : 2 * TS_PACKET_BYTES]
    offset = 4 + 1 + first[4]  # past the adaptation field's stuffing
    moved = retimed_pes(first + second, 2**33 + 5)
    assert moved is not None
    assert pes_pts(moved) == 5 and moved[TS_PACKET_BYTES:] == second
    assert {i for i in range(TS_PACKET_BYTES) if moved[i] != first[i]} <= set(range(offset + 9, offset + 14))
    # With a DTS too ('11' in PTS_DTS_flags): both set, each with its own prefix.
    both = bytearray(b"\x47\x41\x01\x10\x00\x00\x01\xc0\x00\x00\x80\xc0\x0a" + bytes(175))
    both[13:23] = b"\x31\x00\x01\x00\x01\x11\x00\x01\x00\x01"
    out = retimed_pes(bytes(both), 7)
    assert out is not None and len(out) == TS_PACKET_BYTES
    assert pes_pts(out) == 7 and out[13] >> 4 == 0x3 and out[18] >> 4 == 0x1
    assert pes_pts(out[:4] + out[9:]) == 7  # the DTS, read where a PTS would be
    later = bytes((0x47, 0x01, 0x01)) + second[3:]  # no payload_unit_start_indicator
    assert retimed_pes(later, 7) is None


def pts_field(prefix: int, pts: int) -> bytes:
    """A PES PTS or DTS field as ISO/IEC 13818-1 2.4.3.7 lays it out: 4-bit prefix, PTS[32..30],
    marker, PTS[29..15], marker, PTS[14..0], marker."""
    pts %= 2**33
    bits = prefix << 36 | (pts >> 30) << 33 | 1 << 32 | (pts >> 15 & 0x7FFF) << 17 | 1 << 16 | (pts & 0x7FFF) << 1 | 1
    return bits.to_bytes(5, "big")


def ts_packet(payload: bytes, cc: int, *, start: bool, pid: int = 0x101) -> bytes:
    """A packet of ``pid`` with ``payload``, stuffed with an adaptation field up to 188 bytes."""
    room = 184 - len(payload)
    field = b"" if not room else bytes((room - 1,)) + (b"\x00" + b"\xff" * (room - 2) if room > 1 else b"")
    return bytes((0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF, (0x30 if room else 0x10) | cc % 16)) + field + payload


def pes_packets(payload: bytes, pts: int = 0, *, cc: int = 0, sized: bool = True) -> list[bytes]:
    """One audio PES with a PTS over packets of PID 0x101 as FFmpeg writes it (the last packet
    stuffed); PES_packet_length 0 (unbounded) unless ``sized``."""
    pes = (b"\x00\x00\x01\xc0" + ((len(payload) + 8) if sized else 0).to_bytes(2, "big") + b"\x84\x80\x05"
           + pts_field(0x2, pts) + payload)
    return [ts_packet(pes[start : start + 184], cc + k, start=k == 0) for k, start in enumerate(range(0, len(pes), 184))]


def first_packet(pes_header: bytes, *, stuffing: int = 0, control: int = 3) -> bytes:
    """A packet with payload_unit_start_indicator, an adaptation field of ``stuffing`` bytes past its
    length byte, then ``pes_header`` and payload bytes 0xAA up to 188 bytes."""
    field = bytes((stuffing,)) + (b"\x00" + b"\xff" * (stuffing - 1) if stuffing else b"")
    packet = bytes((0x47, 0x41, 0x01, control << 4)) + field + pes_header
    return packet + b"\xaa" * (TS_PACKET_BYTES - len(packet))


def test_retimed_pes_needs_a_pes_start_with_its_timestamps_whole_in_the_first_packet() -> None:
    with_pts = b"\x00\x00\x01\xc0\x00\x00\x84\x80\x05" + pts_field(0x2, 0)
    with_dts = b"\x00\x00\x01\xc0\x00\x00\x84\xc0\x0a" + pts_field(0x3, 0) + pts_field(0x1, 0)
    assert retimed_pes(first_packet(with_pts, control=2), 7) is None  # no payload: starts no PES
    assert retimed_pes(first_packet(b"\x00\x00\x02" + with_pts[3:]), 7) is None  # no start code
    for flags in (0x00, 0x01):  # no PTS (the second with a PES extension)
        assert retimed_pes(first_packet(with_pts[:7] + bytes((flags, 0)) + bytes(5)), 7) is None
    for header, room in ((with_pts, 174), (with_dts, 169)):  # the header ending at the packet's end
        packet = first_packet(header, stuffing=room - 5)
        moved = retimed_pes(packet + bytes(TS_PACKET_BYTES), 7)
        assert moved is not None and len(moved) == 2 * TS_PACKET_BYTES
        assert moved[:room] == packet[:room] and moved[TS_PACKET_BYTES:] == bytes(TS_PACKET_BYTES)
        assert moved[room + 9 : room + len(header)] == (pts_field(0x2, 7) if header is with_pts else
                                                       pts_field(0x3, 7) + pts_field(0x1, 7))
        assert retimed_pes(first_packet(header, stuffing=room - 4), 7) is None  # one byte more: not whole
    # A PTS and a PES extension after it: only the PTS changes.
    extended = b"\x00\x00\x01\xc0\x00\x00\x84\x81\x07" + pts_field(0x2, 0) + b"\x01\x8e"
    packet = first_packet(extended)  # the PES header from byte 5, its PTS at 14..18
    moved = retimed_pes(packet, 7)
    assert moved is not None and moved[:14] == packet[:14] and moved[19:] == packet[19:] and pes_pts(moved) == 7


def test_adts_counter_counts_whole_frames_across_packets_and_knows_an_unfinished_pes() -> None:
    frame = adts_frame(STEREO_48K, bytes(range(200)))  # frames straddle packets
    packets = pes_packets(frame * 5)
    counter = FrameCounter(Adts)
    for packet in packets[:-1]:
        counter.packet(packet)
    assert not counter.complete and counter.frames < 5
    counter.packet(packets[-1])
    assert counter.complete and counter.frames == 5 and counter.cc == len(packets) - 1
    assert counter.format == aac_format(STEREO_48K) and counter.stream_id == 0xC0


def counted(packets: list[bytes], counter: FrameCounter | None = None) -> FrameCounter:
    counter = counter or FrameCounter(Adts)
    for packet in packets:
        counter.packet(packet)
    return counter


SMALL = adts_frame(STEREO_48K, bytes(39))  # 46 bytes: four fill a packet's payload


def test_a_counter_joining_a_pid_in_the_middle_of_a_pes_waits_for_the_next_pes() -> None:
    counter = FrameCounter(Adts)
    assert counter.cc is None and counter.frames == 0 and counter.format is None and not counter.complete
    counted([ts_packet(SMALL * 4, 3, start=False)], counter)
    assert counter.cc == 3 and counter.frames == 0 and counter.format is None and not counter.complete
    counted(pes_packets(SMALL * 2, cc=4), counter)
    assert counter.frames == 2 and counter.complete and counter.format == aac_format(STEREO_48K)


def test_a_counter_reads_a_pes_to_its_packet_length_or_to_the_next_pes_when_it_is_unbounded() -> None:
    assert counted(pes_packets(SMALL * 7, sized=False)).frames == 7
    header_and_frames = b"".join(packet_payload(p) for p in pes_packets(SMALL * 7))
    padded = header_and_frames + b"\xff" * (-len(header_and_frames) % 184)  # stuffing bytes in the payload
    packets = [ts_packet(padded[i : i + 184], i // 184, start=i == 0) for i in range(0, len(padded), 184)]
    counter = counted(packets)
    assert counter.complete and counter.frames == 7
    counted([ts_packet(b"\xff" * 184, len(packets), start=False)], counter)  # a stray packet after its end
    assert counter.complete and counter.frames == 7


def test_a_counter_given_packets_in_runs_ends_as_one_given_them_one_by_one() -> None:
    first, second = pes_packets(SMALL * 9, cc=0), pes_packets(SMALL * 5, FRAME, cc=3)  # 3 and 2 packets
    no_payload = bytes((0x47, 0x01, 0x01, 0x27, 183, 0x00)) + b"\xff" * 182  # its counter is not counted (2.4.3.3)
    unbounded = pes_packets(SMALL * 6, 2 * FRAME, cc=5, sized=False)
    stream = [*first[:1], no_payload, *first[1:], *second, *unbounded, no_payload]
    data = b"".join(stream)
    views = [memoryview(data)[k * TS_PACKET_BYTES : (k + 1) * TS_PACKET_BYTES] for k in range(len(stream))]

    def state(counter: FrameCounter) -> tuple:
        return counter.cc, counter.frames, counter.complete, counter.format, counter.stream_id

    for cut in range(len(stream) + 1):
        one_by_one, in_runs = counted(stream[:cut]), FrameCounter(Adts)
        in_runs.packets(views[:cut])
        assert state(in_runs) == state(one_by_one), cut
        in_runs.packets(views[cut:])
        assert state(in_runs) == state(counted(stream)) == (6, 6, True, aac_format(STEREO_48K), 0xC0), cut


def test_a_counter_counts_frames_of_2048_bytes_and_more() -> None:
    large = adts_frame(AacConfig(2, 3, 6), bytes(2993))  # 3000 bytes: 5.1 at a high bit rate
    counter = counted(pes_packets(large * 3))
    assert counter.complete and counter.frames == 3


def test_what_is_not_an_adts_pes_is_not_counted_and_does_not_change_what_was() -> None:
    counter = counted(pes_packets(SMALL * 3))
    assert counter.complete and counter.cc == 0
    counted([bytes((0x47, 0x01, 0x01, 0x27, 183, 0x00)) + b"\xff" * 182], counter)  # adaptation field only
    assert counter.complete and counter.frames == 3 and counter.cc == 0  # no payload: not counted (2.4.3.3)
    not_pes = ts_packet(b"\x00\x00\x02\xc1" + SMALL * 3, 1, start=True)  # a start with no start code
    counted([not_pes], counter)
    assert not counter.complete and counter.frames == 0 and counter.stream_id == 0xC0
    broken = b"\xfe" + SMALL[1:]  # the syncword one bit off
    counter = counted(pes_packets(SMALL + broken + SMALL))
    assert not counter.complete and counter.frames == 1


def test_a_pes_header_ending_with_its_first_packet_is_read_and_one_split_across_two_is_not() -> None:
    frames = SMALL * 8
    header = b"\x00\x00\x01\xc0" + (len(frames) + 3).to_bytes(2, "big") + b"\x84\x00\x00"  # no PTS
    first = bytes((0x47, 0x41, 0x01, 0x30, 174, 0x00)) + b"\xff" * 173 + header
    rest = [ts_packet(frames[i : i + 184], 1 + i // 184, start=False) for i in range(0, len(frames), 184)]
    counter = counted([first, *rest])
    assert counter.complete and counter.frames == 8
    split = bytes((0x47, 0x41, 0x01, 0x30, 178, 0x00)) + b"\xff" * 177 + header[:5]
    counter = counted([split, ts_packet(header[5:] + frames[:180], 1, start=False)])
    assert not counter.complete and counter.frames == 0


# -- the fast path --------------------------------------------------------------------------------

def split(data: bytes, *, silence: bool, codec: str = "aac", segment_seconds: Fraction = Fraction(2),
          look_ahead: int = 0) -> tuple[dict[int, bytes], list[tuple]]:
    """``data`` (video, then audio of ``codec``) through the fast path's splitter cutting at
    ``segment_seconds``, its first ``look_ahead`` bytes read ahead as the probe reads them:
    segment number -> bytes, and DROPPED events."""
    program = find_program(data)
    pids = [pid for pid, _ in program.streams]
    tracks = [Track(pids[0], 0, True, False, 3600), Track(pids[1], 1, False, False, None, codec=codec)]
    cutter = Cutter([StreamInfo(0, StreamKind.VIDEO, TICKS, True), StreamInfo(1, StreamKind.AUDIO, TICKS, True)],
                    segment_seconds)
    splitter = TsSplitter(program, tracks, cutter, silent_frame=silent_frame_or_none if silence else None,
                          look_ahead=data[:look_ahead])
    events = []
    for start in range(0, len(data), 50000):
        events += splitter.feed(data[start : start + 50000])
    events += splitter.finish()
    files: dict[int, bytearray] = {}
    for event in events:
        if event[0] == OPEN:
            files[event[1]] = bytearray(event[2])
        elif event[0] == DATA:
            files[event[1]] += event[2]
    return {number: bytes(data) for number, data in files.items()}, [e for e in events if e[0] == DROPPED]


def audio_pes(files: dict[int, bytes], pid: int) -> list[tuple[int, int, bytes]]:
    """(segment, pts, payload) of each audio PES, in order; and the continuity counters run on."""
    packets = [(number, p) for number in sorted(files) for p in pid_packets(files[number], pid)]
    counters = [p[3] & 0x0F for _, p in packets]
    assert all((b - a) % 16 == 1 for a, b in zip(counters, counters[1:])), "continuity counter broken"
    numbers = [number for number, p in packets if p[1] & 0x40]
    units = pes_units([p for _, p in packets])
    return [(number, pes_pts(b"\x47\x00\x00\x10" + unit), unit[9 + unit[8] :]) for number, unit in zip(numbers, units)]


def test_fast_path_without_a_pause_writes_the_same_bytes_as_without_filling(media: MediaCache) -> None:
    data = media.encoder_ts(seconds=8).read_bytes()
    assert split(data, silence=True) == split(data, silence=False)


def test_fast_path_fills_a_pause_in_the_segments_it_covers_and_moves_the_late_unit(media: MediaCache) -> None:
    data = media.encoder_ts(seconds=12, audio_gap=(3, 9)).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    plain, _ = split(data, silence=False)
    filled, dropped = split(data, silence=True)
    assert sorted(plain) == sorted(filled) and not dropped
    before, after = audio_pes(plain, audio_pid), audio_pes(filled, audio_pid)
    inputs = Counter(payload for _, _, payload in before)
    real = [(n, pts, p) for n, pts, p in after if p in inputs]
    silent = [(n, pts, p) for n, pts, p in after if p not in inputs]
    assert Counter(p for _, _, p in real) == inputs  # every input PES, whole, once
    # All at their own pts but FFmpeg's PES before the pause, written when the audio resumed.
    moved = [(n, pts) for n, pts, p in real if (pts, p) not in {(t, q) for _, t, q in before}]
    assert len(moved) == 1
    # The filler: one PES per silent frame, in every segment whose time the pause covers.
    assert len({p for _, _, p in silent}) == 1 and adts_frames(silent[0][2]) == 1
    assert len(silent) >= 5 * SECOND // FRAME
    assert len({n for n, _, _ in silent}) >= 3
    # Sorted by pts, the audio is one ADTS frame after the other: no hole, no overlap.
    ends = sorted((pts, pts + FRAME * adts_frames(p)) for _, pts, p in after)
    assert all(abs(b[0] - a[1]) <= 1 for a, b in zip(ends, ends[1:])), [
        (a, b) for a, b in zip(ends, ends[1:]) if abs(b[0] - a[1]) > 1][:3]


def test_fast_path_with_segments_shorter_than_the_lag_puts_silence_in_every_segment_of_a_pause(
        media: MediaCache) -> None:
    # Segments of 1 s (the clip's keyframes make 1.48 s and 0.52 s): filled only FILL_LAG_S
    # behind the clock, some segments of the pause would carry no audio, where hls.js stalls.
    data = media.encoder_ts(seconds=12, audio_gap=(3, 9)).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    files, dropped = split(data, silence=True, segment_seconds=Fraction(1))
    assert not dropped
    carrying = Counter(number for number, _, _ in audio_pes(files, audio_pid))
    assert sorted(carrying) == sorted(files), [n for n in sorted(files) if n not in carrying]
    plain, _ = split(data, silence=False, segment_seconds=Fraction(1))
    assert sorted(plain) == sorted(files)
    assert set(files) - set(Counter(n for n, _, _ in audio_pes(plain, audio_pid)))  # without: holes
    after = audio_pes(files, audio_pid)
    ends = sorted((pts, pts + FRAME * adts_frames(p)) for _, pts, p in after)
    assert all(abs(b[0] - a[1]) <= 1 for a, b in zip(ends, ends[1:]))  # no hole, no overlap


@pytest.mark.parametrize("codec", ["aac", "mp2"])
def test_fast_path_fills_audio_starting_after_the_video_from_the_first_segment_when_read_ahead(
        media: MediaCache, codec: str) -> None:
    data = media.encoder_ts(seconds=8, audio_gap=(0, 3), audio_codec=codec).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    video_pid = find_program(data).streams[0][0]
    first_video = next(pes_pts(p) for p in pid_packets(data, video_pid) if p[1] & 0x40)
    first_audio = next(pes_pts(p) for p in pid_packets(data, audio_pid) if p[1] & 0x40)
    # Its first frame 3 s in is not in the bytes read ahead: its format is not known, no filler.
    files, _ = split(data, silence=True, codec=codec, look_ahead=100 * TS_PACKET_BYTES)
    assert audio_pes(files, audio_pid)[0][:2] == (2, first_audio)
    files, dropped = split(data, silence=True, codec=codec, look_ahead=len(data) // 2)
    assert not dropped
    units = audio_pes(files, audio_pid)  # and the continuity counters run on into the input's own
    assert units[0][:2] == (1, first_video)  # from the first segment's start
    real = [(n, pts) for n, pts, _ in units if pts >= first_audio]
    assert real[0] == (2, first_audio) and len(units) - len(real) >= (first_audio - first_video) // 3000
    fills = [pts for _, pts, _ in units if pts < first_audio]
    frame = fills[1] - fills[0]
    assert fills == [first_video + k * frame for k in range(len(fills))]
    assert first_audio - frame < fills[-1] + frame <= first_audio


@pytest.mark.parametrize("late", [1.2, 3])
def test_fast_path_fills_audio_read_ahead_from_the_first_segment_of_one_second(media: MediaCache, late: float) -> None:
    # 1-s GOPs cut at 1 s: segment 1 ends before any filler is due by the clock, and before the
    # cut's own bar (the cut less INTERLEAVE_S) passes where it starts. Its first frame's PTS,
    # read ahead, says how far to fill at once.
    data = media.encoder_ts(seconds=8, gop_frames=25, audio_gap=(0, late)).read_bytes()
    audio_pid, video_pid = find_program(data).streams[1][0], find_program(data).streams[0][0]
    start = next(pes_pts(p) for p in pid_packets(data, video_pid) if p[1] & 0x40)
    first = next(pes_pts(p) for p in pid_packets(data, audio_pid) if p[1] & 0x40)
    files, dropped = split(data, silence=True, segment_seconds=Fraction(1), look_ahead=len(data) // 2)
    assert not dropped and len(files) == 8
    units = audio_pes(files, audio_pid)
    fills = [pts for n, pts, _ in units if n == 1]
    assert fills == [start + FRAME * k for k in range(len(fills))]
    assert first - FRAME < fills[-1] + FRAME <= first
    ends = sorted((pts, pts + FRAME * adts_frames(p)) for _, pts, p in units)
    assert all(abs(b[0] - a[1]) <= FRAME for a, b in zip(ends, ends[1:]))


def adts_frames(payload: bytes) -> int:
    count = position = 0
    while position + 7 <= len(payload):
        assert adts_config(payload[position:]) is not None
        position += ((payload[position + 3] & 3) << 11) | (payload[position + 4] << 3) | (payload[position + 5] >> 5)
        count += 1
    return count


# -- the fast path's fill, driven as its splitter drives it ------------------------------------

SILENT = adts_frame(STEREO_48K, silent_aac_frame(STEREO_48K))


class AudioPid:
    """An ADTS audio PID as FFmpeg writes it, given to a ``TsPauseFill`` the way ``TsSplitter``
    gives it: each PES announced (``unit``) before its packets, the video's clock (``due``)."""

    def __init__(self) -> None:
        self.fill = TsPauseFill(0x101, Adts, silent_or_none)
        self.cc = 0
        self.filler: list[bytes] = []  # what the fill returned, each non-empty piece
        self.packets: list[bytes] = []  # the last PES's packets

    def pes(self, pts: int, payload: bytes = SILENT, *, clock: int | None, written: bool = True) -> bool:
        """A PES at ``pts``; whether the fill called it a late unit (``fill.late_unit`` then takes
        ``packets``, as the splitter hands it over once whole)."""
        data, late = self.fill.unit(pts, written, clock)
        self._out(data)
        self.packets = pes_packets(payload, pts, cc=self.cc)
        self.cc += len(self.packets)
        for packet in self.packets:
            self.fill.packet(packet)
        return late

    def video(self, clock: int) -> None:
        self._out(self.fill.due(clock))

    def play(self, audio: range, video: range) -> None:
        """Frames at ``audio`` pts (one PES each) and video at ``video`` clocks, in time order."""
        frames = iter(audio)
        pts = next(frames, None)
        for clock in video:
            while pts is not None and pts <= clock:
                self.pes(pts, clock=clock)
                pts = next(frames, None)
            self.video(clock)

    def _out(self, data: bytes) -> None:
        if data:
            packets = pid_packets(data, 0x101)
            assert len(packets) * TS_PACKET_BYTES == len(data) and len(packets) % 16 == 0
            self.filler.append(data)

    def filler_pts(self) -> list[int]:
        return [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in pes_units(pid_packets(b"".join(self.filler), 0x101))]


VIDEO = 3600  # 25 fps


def test_the_fast_path_fills_a_pause_behind_the_clock_in_batches_and_to_the_end_of_input() -> None:
    assert TsPauseFill(0x101, Adts, silent_or_none).finish(SECOND) == b""  # no audio seen: nothing
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, 8 * SECOND, VIDEO))
    assert audio.filler
    clock = 8 * SECOND - VIDEO
    for data in audio.filler:  # batches of FAST_BATCH_FRAMES frames at least
        assert sum(p[1] & 0x40 != 0 for p in pid_packets(data, 0x101)) >= 16
    due = audio.filler_pts()
    assert due[-1] + FRAME <= clock - LAG
    audio.filler.append(audio.fill.finish(8 * SECOND))
    fills = audio.filler_pts()
    last_real = (SECOND - 1) // FRAME * FRAME
    assert fills == [last_real + FRAME * (k + 1) for k in range(len(fills))]
    assert 8 * SECOND - FRAME < fills[-1] + FRAME <= 8 * SECOND


def test_the_fast_path_fills_nothing_across_a_discontinuity_or_a_pes_left_out() -> None:
    TsPauseFill(0x101, Adts, silent_or_none).reset()  # before any audio
    for end in ("discontinuity", "left out"):
        audio = AudioPid()
        audio.play(range(0, SECOND, FRAME), range(0, 4 * SECOND, VIDEO))
        before = len(audio.filler)
        assert before
        if end == "discontinuity":
            audio.fill.reset()
        else:
            assert not audio.pes(5 * SECOND, clock=5 * SECOND, written=False)
        audio.play(range(8 * SECOND, 9 * SECOND, FRAME), range(5 * SECOND, 9 * SECOND, VIDEO))
        assert len(audio.filler) == before, end


def test_the_fast_path_fills_nothing_towards_audio_that_jumped_alone() -> None:
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, 4 * SECOND, VIDEO))
    before = len(audio.filler)
    assert not audio.pes(4 * SECOND + DISCONTINUITY_GAP_S * SECOND + 1, clock=4 * SECOND)
    assert len(audio.filler) == before


def test_the_fast_path_fills_nothing_after_a_pes_whose_end_it_cannot_count() -> None:
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, SECOND, VIDEO))
    audio.pes(SECOND, SILENT * 2 + SILENT[:5], clock=SECOND)  # ends in the middle of a frame
    audio.play(range(3 * SECOND, 4 * SECOND, FRAME), range(SECOND, 4 * SECOND, VIDEO))
    assert audio.filler == []


def test_the_fast_path_moves_a_late_unit_after_the_filler_and_fills_on() -> None:
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, 6 * SECOND, VIDEO))
    end = audio.filler_pts()[-1] + FRAME
    last_real = (SECOND - 1) // FRAME * FRAME
    assert audio.pes(last_real + FRAME, SILENT * 12, clock=6 * SECOND)
    moved = audio.fill.late_unit(b"".join(audio.packets), 6 * SECOND)
    assert moved is not None and pes_pts(moved) == end and moved[TS_PACKET_BYTES:] == b"".join(audio.packets[1:])
    before = len(audio.filler)
    audio.play(range(0), range(6 * SECOND, 8 * SECOND, VIDEO))
    assert len(audio.filler) > before and audio.filler_pts()[-1] + FRAME <= 8 * SECOND - LAG


@pytest.mark.parametrize("payload", [b"", SILENT * 2 + SILENT[:5]])
def test_the_fast_path_keeps_a_late_unit_whose_frames_it_cannot_count_as_it_came(payload: bytes) -> None:
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, 6 * SECOND, VIDEO))
    last_real = (SECOND - 1) // FRAME * FRAME
    assert audio.pes(last_real + FRAME, payload, clock=6 * SECOND)
    packets = b"".join(audio.packets)
    assert audio.fill.late_unit(packets, 6 * SECOND) == packets


def test_the_fast_path_leaves_out_a_late_unit_that_would_reach_the_resumed_audio() -> None:
    audio = AudioPid()
    audio.play(range(0, SECOND, FRAME), range(0, 6 * SECOND, VIDEO))
    last_real = (SECOND - 1) // FRAME * FRAME
    assert audio.pes(last_real + FRAME, SILENT * 40, clock=6 * SECOND)  # 0.85 s
    assert audio.fill.late_unit(b"".join(audio.packets), 6 * SECOND) is None


@pytest.mark.parametrize("first_cc", [0, 5])
def test_filler_before_a_tracks_first_frame_leads_on_to_the_continuity_counter_of_its_first_packet(first_cc: int) -> None:
    fill = TsPauseFill(0x101, Adts, silent_or_none)
    first = pes_packets(SILENT, 4 * SECOND, cc=first_cc)  # read ahead by the probe, given again later
    fill.look_ahead(first)
    data = fill.begin(SECOND)  # up to the first frame at once: its pts was read ahead too
    assert fill.due(3 * SECOND + LAG) == b""
    before, late = fill.unit(4 * SECOND, True, 4 * SECOND)
    assert not late
    packets = pid_packets(data + before, 0x101) + first
    assert [p[3] & 0x0F for p in packets] == [(first_cc - len(packets) + 1 + k) % 16 for k in range(len(packets))]
    fills = [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in pes_units(pid_packets(data + before, 0x101))]
    assert fills == [SECOND + FRAME * k for k in range(len(fills))]
    assert 4 * SECOND - FRAME < fills[-1] + FRAME <= 4 * SECOND


def test_a_track_no_silent_frame_is_made_for_is_named_once_and_left_unfilled(caplog: pytest.LogCaptureFixture) -> None:
    fill = TsPauseFill(0x101, Adts, silent_or_none)
    pce = adts_frame(AacConfig(2, 3, 0), bytes(39))  # channels in a PCE: no silent frame
    out = []
    with caplog.at_level(logging.INFO, logger="segmenter.silentframe"):
        for k, pts in enumerate((0, SECOND, 5 * SECOND)):
            out.append(fill.unit(pts, True, pts)[0])
            for packet in pes_packets(pce, pts, cc=k):
                fill.packet(packet)
            out += [fill.due(pts + SECOND * 3), fill.closing(pts + SECOND * 3)]
        out.append(fill.finish(8 * SECOND))
    assert b"".join(out) == b""
    assert len([r for r in caplog.records if "pauses are not filled" in r.getMessage()]) == 1


def test_a_read_ahead_ending_right_after_the_first_frame_header_gives_the_tracks_format() -> None:
    header = b"\x00\x00\x01\xc0\x00\x00\x84\x80\x05" + pts_field(0x2, 4 * SECOND)
    fill = TsPauseFill(0x101, Adts, silent_or_none)
    fill.look_ahead([ts_packet(header + SILENT[:7], 0, start=True)])  # the ADTS header, none of the frame
    fills = [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in pes_units(pid_packets(fill.begin(SECOND), 0x101))]
    assert fills == [SECOND + FRAME * k for k in range(len(fills))] and len(fills) == 3 * SECOND // FRAME


def test_a_first_frame_header_split_over_the_first_two_packets_of_its_pes_is_filled_up_to_at_once() -> None:
    # The PES's first packet carries its header and 3 bytes of the ADTS header (a large adaptation
    # field before it), the second the rest: the format comes with the second packet, the PTS
    # with the first.
    pes = b"\x00\x00\x01\xc0" + (len(SILENT) * 2 + 8).to_bytes(2, "big") + b"\x84\x80\x05"
    pes += pts_field(0x2, 4 * SECOND) + SILENT * 2
    fill = TsPauseFill(0x101, Adts, silent_or_none)
    fill.look_ahead([ts_packet(pes[:17], 0, start=True), ts_packet(pes[17:], 1, start=False)])
    fills = [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in pes_units(pid_packets(fill.begin(SECOND), 0x101))]
    assert fills == [SECOND + FRAME * k for k in range(len(fills))] and len(fills) == 3 * SECOND // FRAME


def test_a_first_pes_without_a_pts_read_ahead_gives_the_format_and_the_track_is_filled_once_due() -> None:
    # ISO/IEC 13818-1 2.4.3.7: PTS_DTS_flags 00, no PTS in this PES (one comes at least every 0.7 s).
    pes = b"\x00\x00\x01\xc0" + (len(SILENT) + 3).to_bytes(2, "big") + b"\x80\x00\x00" + SILENT
    fill = TsPauseFill(0x101, Adts, silent_or_none)
    fill.look_ahead([ts_packet(pes, 3, start=True)])
    assert fill.begin(SECOND) == b""  # where its first frame starts is not known: nothing at once
    fills = [pes_pts(b"\x47\x00\x00\x10" + unit) for unit in pes_units(pid_packets(fill.due(3 * SECOND + LAG), 0x101))]
    assert fills == [SECOND + FRAME * k for k in range(2 * SECOND // FRAME)]


def test_a_pause_just_before_zero_on_an_unwrapped_timeline_is_filled_as_the_clock_goes_on() -> None:
    # An input starting at a 33-bit wrap: the cutter puts audio from just before it below zero.
    # The splitter asks for filler at a video PES only when the fill says it is behind.
    audio = AudioPid()
    for pts in (-SECOND - FRAME, -SECOND):
        assert not audio.pes(pts, clock=-SECOND)
        audio.fill.begin(-SECOND)  # the first segment opens
    due: dict[int, int] = {}
    for clock in range(-SECOND, 2 * SECOND, VIDEO):
        if audio.fill.behind(clock):
            audio.video(clock)
        due[clock] = len(audio.filler_pts())
    assert due[SECOND + VIDEO * 3] >= (SECOND + VIDEO * 3 - LAG + SECOND) // FRAME - 16  # written as it falls due
