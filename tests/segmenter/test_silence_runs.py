"""The fast path's pause filler read a run of packets at a time (FrameCounter.packets) and asked
for filler only when the audio is behind the clock (TsPauseFill.behind): the same results as
packet by packet and at every reference unit."""

from __future__ import annotations

from collections import Counter

import pytest

from segmenter.audioframes import AacConfig, Adts, adts_frame
from segmenter.silence import INTERLEAVE_S, TICKS_PER_SECOND, FrameCounter, TsPauseFill
from segmenter.tsfast import find_program
from tests.segmenter.test_silence import FRAME, STEREO_48K, adts_frames, audio_pes, pid_packets, silent_or_none, split
from tests.support.media import MediaCache

PID = 0x101


def pes_packets(pts: int, payload: bytes, *, cc: int = 0, bounded: bool = True) -> list[bytes]:
    """One PES (PTS ``pts``) carrying ``payload`` on PID, in 188-byte packets, the last one padded
    with adaptation-field stuffing; PES_packet_length 0 (unbounded) unless ``bounded``."""
    length = len(payload) + 8 if bounded else 0
    b = pts
    stamp = bytes((0x21 | ((b >> 29) & 0x0E), (b >> 22) & 0xFF, ((b >> 14) & 0xFE) | 1, (b >> 7) & 0xFF,
                   ((b << 1) & 0xFE) | 1))
    pes = b"\x00\x00\x01\xc0" + length.to_bytes(2, "big") + b"\x84\x80\x05" + stamp + payload
    packets = []
    for k, start in enumerate(range(0, len(pes), 184)):
        part = pes[start : start + 184]
        stuffing = b"" if len(part) == 184 else bytes((183 - len(part), 0))[: 184 - len(part)] + b"\xff" * (182 - len(part))
        packets.append(bytes((0x47, (0x40 if k == 0 else 0) | (PID >> 8), PID & 0xFF,
                              (0x30 if stuffing else 0x10) | ((cc + k) & 0x0F))) + stuffing + part)
    return packets


def state(counter: FrameCounter) -> tuple:
    return counter.cc, counter.stream_id, counter.frames, counter.format, counter.complete


def assert_runs_read_as_packets(packets: list[bytes]) -> None:
    """Every way of cutting ``packets`` into runs (of 1, 2, 3, 7 or all, as bytes and as views of
    one buffer) leaves the counter as reading them one by one does, after every run."""
    buffer = memoryview(b"".join(packets))
    views = [buffer[i * 188 : (i + 1) * 188] for i in range(len(packets))]
    for size in (1, 2, 3, 7, len(packets)):
        for source in (packets, views):
            one, runs = FrameCounter(Adts), FrameCounter(Adts)
            for start in range(0, len(packets), size):
                for packet in packets[start : start + size]:
                    one.packet(packet)
                runs.packets(source[start : start + size])
                assert state(runs) == state(one), (size, start)


def test_packets_read_a_run_at_a_time_count_what_they_count_one_by_one(media: MediaCache) -> None:
    data = media.encoder_ts(seconds=3).read_bytes()
    audio = pid_packets(data, find_program(data).streams[1][0])
    assert len(audio) > 50
    assert_runs_read_as_packets(audio)


@pytest.mark.parametrize("case", ["straddling", "unbounded", "not ADTS", "adaptation field only", "frame header split"])
def test_packets_read_a_run_at_a_time_count_odd_pes_as_one_by_one(case: str) -> None:
    frame = adts_frame(STEREO_48K, bytes(range(200)))  # frames straddle packets
    first = pes_packets(0, frame * 5, bounded=case != "unbounded")
    if case == "not ADTS":
        first = pes_packets(0, frame * 2 + b"\x00" * 300 + frame)
    elif case == "adaptation field only":
        first.insert(2, bytes((0x47, PID >> 8, PID & 0xFF, 0x20 | (first[1][3] & 0x0F), 183, 0)) + b"\xff" * 182)
    elif case == "frame header split":
        first = pes_packets(0, adts_frame(STEREO_48K, bytes(169)) * 3)  # the third header across packets
    second = pes_packets(5 * FRAME, frame * 3, cc=len(first), bounded=case != "unbounded")
    assert_runs_read_as_packets(first + second + [second[-1][:1] + bytes((PID >> 8, PID & 0xFF)) + second[-1][3:]])


def test_the_filler_is_asked_only_when_the_audio_is_behind_the_clock_by_more_than_the_interleave() -> None:
    frame = adts_frame(STEREO_48K, bytes(range(200)))
    fill = TsPauseFill(PID, Adts, silent_or_none)
    assert not fill.behind(10**9)  # the track's configuration is not known yet: nothing to fill
    start = 90000
    fill.unit(start, True, start)
    first = pes_packets(start, frame * 5)
    fill.packets(first)
    assert fill.unit(start + 5 * FRAME, True, start + 5 * FRAME) == (b"", False)
    fill.packets(pes_packets(start + 5 * FRAME, frame * 5, cc=len(first)))
    last = start + 5 * FRAME  # the PES last written starts here and ends 5 frames on
    interleave = INTERLEAVE_S * TICKS_PER_SECOND
    assert not fill.behind(last + interleave)
    assert fill.due(last + interleave) == b""  # what is left out would have given nothing
    assert fill.behind(last + interleave + 1)
    assert fill.due(last + interleave + 1) == b""  # behind, but by less than the lag: no pause yet
    assert fill.due(last + 5 * FRAME + 6 * TICKS_PER_SECOND)  # a pause: filler
    assert fill.behind(last)  # a pause is being filled: asked at every reference unit


def test_a_pause_shorter_than_the_lag_is_filled_on_the_fast_path(media: MediaCache) -> None:
    # Filled when the audio resumes, whether or not the filler was asked at the reference units.
    data = media.encoder_ts(seconds=8, audio_gap=(3, 3.4)).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    plain, _ = split(data, silence=False)
    filled, dropped = split(data, silence=True)
    assert not dropped
    before, after = audio_pes(plain, audio_pid), audio_pes(filled, audio_pid)
    inputs = Counter(payload for _, _, payload in before)
    silent = [pts for _, pts, payload in after if payload not in inputs]
    assert len(silent) >= 0.4 * TICKS_PER_SECOND // FRAME - 2
    ends = sorted((pts, pts + FRAME * adts_frames(p)) for _, pts, p in after)
    assert all(abs(b[0] - a[1]) <= 1 for a, b in zip(ends, ends[1:]))
    holes = sorted((pts, pts + FRAME * adts_frames(p)) for _, pts, p in before)
    assert any(b[0] - a[1] > 2 * FRAME for a, b in zip(holes, holes[1:]))  # the input has the hole


def test_a_configuration_that_cannot_be_filled_is_never_behind() -> None:
    explicit = AacConfig(2, 3, 0)  # channel configuration in a PCE: not fillable
    fill = TsPauseFill(PID, Adts, silent_or_none)
    fill.packets(pes_packets(0, adts_frame(explicit, bytes(100)) * 4))
    fill.unit(4 * FRAME, True, 4 * FRAME)
    assert not fill.behind(10 * TICKS_PER_SECOND) and fill.due(10 * TICKS_PER_SECOND) == b""
