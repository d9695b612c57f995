"""Silence for a pause in an AAC track (segmenter/silence.py), and the fast path's use of it."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import av
import pytest

from segmenter.cutter import Cutter, StreamInfo, StreamKind
from segmenter.pyavrun import silent_aac_frame
from segmenter.silence import (
    FILL_LAG_S,
    AacConfig,
    AdtsCounter,
    PauseFiller,
    adts_config,
    adts_frame,
    asc_config,
    filler_packets,
    retimed_pes,
)
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


def test_audio_specific_config_is_read_and_only_aac_lc_1_to_6_channels_is_fillable() -> None:
    assert asc_config(bytes.fromhex("1190")) == STEREO_48K
    assert asc_config(bytes.fromhex("1188")) == AacConfig(2, 3, 1)
    assert asc_config(b"") is None and asc_config(None) is None
    assert asc_config(bytes.fromhex("f800")) is None  # escaped object type
    assert STEREO_48K.fillable and AacConfig(2, 4, 6).fillable
    assert not AacConfig(5, 3, 2).fillable  # HE-AAC signalled explicitly
    assert not AacConfig(2, 3, 0).fillable  # channels in a PCE
    assert not AacConfig(2, 3, 7).fillable
    with pytest.raises(ValueError, match="object type 5"):
        adts_frame(AacConfig(5, 3, 2), b"\x00")


@pytest.mark.parametrize("config", [STEREO_48K, AacConfig(2, 4, 1), AacConfig(2, 3, 6), AacConfig(2, 8, 2)])
def test_silent_frame_decodes_to_1024_samples_of_silence(config: AacConfig) -> None:
    frame = adts_frame(config, silent_aac_frame(config))
    decoded = decode_adts([frame, frame, frame])
    assert len(decoded) == 3
    for audio in decoded:
        assert audio.samples == 1024 and audio.sample_rate == config.sample_rate
        assert len(audio.layout.channels) == config.channels
        assert all(not any(bytes(plane)) for plane in audio.planes)
    with pytest.raises(ValueError):
        silent_aac_frame(AacConfig(2, 3, 7))


# -- when and what to fill ----------------------------------------------------------------------

SECOND = 90000
LAG = int(FILL_LAG_S * SECOND)


def filler(batch: int = 1) -> PauseFiller:
    return PauseFiller(STEREO_48K.frame_ticks(TICKS), TICKS, batch=batch)


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


def test_time_bases_other_than_90_khz_and_sample_rates_that_do_not_divide() -> None:
    config = AacConfig(2, 4, 2)  # 44.1 kHz: a frame is 1024/44100 s, 23.2 ms
    frame = config.frame_ticks(Fraction(1, 1000))
    gaps = PauseFiller(frame, Fraction(1, 1000))
    gaps.resume(0, 0)
    gaps.ended(frame)
    fills = gaps.due(2000 + 1500)  # FILL_LAG_S behind: (2000 - 23.22) / 23.22 whole frames
    assert len(fills) == 85
    assert fills[1] == 46 and fills[-1] == round(frame * 85)


def test_nothing_is_filled_across_a_discontinuity_or_towards_a_stream_that_jumped_alone() -> None:
    gaps = filler()
    written(gaps, 0, 0)
    gaps.reset()
    assert gaps.due(6 * SECOND) == []
    assert written(gaps, 6 * SECOND, 6 * SECOND) == []
    # 20 s ahead of the clock: the cutter keeps it on the stream's own timeline; no filler.
    assert written(gaps, 26 * SECOND, 6 * SECOND) == []
    assert written(gaps, 26 * SECOND + FRAME * 10, 26 * SECOND) != []


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
    assert out is not None
    assert pes_pts(out) == 7 and out[13] >> 4 == 0x3 and out[18] >> 4 == 0x1
    assert pes_pts(out[:4] + out[9:]) == 7  # the DTS, read where a PTS would be
    later = bytes((0x47, 0x01, 0x01)) + second[3:]  # no payload_unit_start_indicator
    assert retimed_pes(later, 7) is None


def test_adts_counter_counts_whole_frames_across_packets_and_knows_an_unfinished_pes() -> None:
    frame = adts_frame(STEREO_48K, bytes(range(200)))  # frames straddle packets
    payload = frame * 5
    header = b"\x00\x00\x01\xc0" + (len(payload) + 8).to_bytes(2, "big") + b"\x84\x80\x05" + b"\x21\x00\x01\x00\x01"
    pes = header + payload
    packets = []
    for k, start in enumerate(range(0, len(pes), 184)):
        part = pes[start : start + 184]
        stuffing = b"" if len(part) == 184 else bytes((183 - len(part), 0)) + b"\xff" * (182 - len(part))
        packets.append(bytes((0x47, (0x40 if k == 0 else 0) | 0x01, 0x01, (0x30 if stuffing else 0x10) | k))
                       + stuffing + part)
    counter = AdtsCounter()
    for packet in packets[:-1]:
        counter.packet(packet)
    assert not counter.complete and counter.frames < 5
    counter.packet(packets[-1])
    assert counter.complete and counter.frames == 5 and counter.cc == len(packets) - 1
    assert counter.config == STEREO_48K and counter.stream_id == 0xC0


# -- the fast path --------------------------------------------------------------------------------

def split(data: bytes, *, silence: bool) -> tuple[dict[int, bytes], list[tuple]]:
    """``data`` through the fast path's splitter at 2 s: segment number -> bytes, and DROPPED events."""
    program = find_program(data)
    pids = [pid for pid, _ in program.streams]
    tracks = [Track(pids[0], 0, True, False, 3600), Track(pids[1], 1, False, False, None)]
    cutter = Cutter([StreamInfo(0, StreamKind.VIDEO, TICKS, True), StreamInfo(1, StreamKind.AUDIO, TICKS, True)],
                    Fraction(2))
    splitter = TsSplitter(program, tracks, cutter, silent_frame=silent_aac_frame if silence else None)
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


def adts_frames(payload: bytes) -> int:
    count = position = 0
    while position + 7 <= len(payload):
        assert adts_config(payload[position:]) is not None
        position += ((payload[position + 3] & 3) << 11) | (payload[position + 4] << 3) | (payload[position + 5] >> 5)
        count += 1
    return count
