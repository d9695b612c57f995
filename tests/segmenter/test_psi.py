"""MPEG-TS program tables and the watch that stops the input where its programs change."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.psi import (
    PAT_PID,
    TS_PACKET_BYTES,
    ProgramWatch,
    crc32_mpeg2,
    packet_pid,
    pat_programs,
    pmt_streams,
    section,
)
from tests.support.media import MediaCache

PMT_PID = 0x1000  # where PyAV's and ffmpeg's muxers put the PMT


def packets(data: bytes) -> list[bytes]:
    return [data[i : i + TS_PACKET_BYTES] for i in range(0, len(data), TS_PACKET_BYTES)]


def first_packet_of(data: bytes, pid: int) -> int:
    return next(i * TS_PACKET_BYTES for i, packet in enumerate(packets(data)) if packet_pid(packet) == pid)


def watch_all(data: bytes, chunk: int) -> tuple[bytes, bytes, ProgramWatch]:
    """Feeds ``data`` in chunks until the watch sees a change: (bytes passed on, the rest, watch)."""
    watch = ProgramWatch()
    passed = bytearray()
    for offset in range(0, len(data), chunk):
        passed += watch.feed(data[offset : offset + chunk])
        if watch.change is not None:
            return bytes(passed), watch.rest() + data[offset + chunk :], watch
    passed += watch.flush()
    return bytes(passed), b"", watch


@pytest.fixture(scope="module")
def h264(media: MediaCache) -> bytes:
    return media.ts(seconds=2).read_bytes()


@pytest.fixture(scope="module")
def mpeg2(media: MediaCache) -> bytes:
    return media.mpeg2_ts(seconds=2, pts_offset_seconds=2.0).read_bytes()


def test_real_sections_pass_their_crc_and_parse(h264: bytes, mpeg2: bytes) -> None:
    pat = section(packets(h264)[first_packet_of(h264, PAT_PID) // TS_PACKET_BYTES])
    pmt = section(packets(mpeg2)[first_packet_of(mpeg2, PMT_PID) // TS_PACKET_BYTES])
    assert pat is not None and pmt is not None
    assert crc32_mpeg2(pat) == 0 and crc32_mpeg2(pmt) == 0
    assert crc32_mpeg2(pat[:-1] + bytes([pat[-1] ^ 1])) != 0
    assert pat_programs(pat) == ((1, PMT_PID),)
    assert pmt_streams(pmt) == (0x100, ((0x100, 0x02), (0x101, 0x03)))  # MPEG-2 video, MPEG-1 audio (MP2)


@pytest.mark.parametrize("chunk", [61, 188, 997, 65536, 1 << 30])
def test_a_codec_change_stops_the_bytes_at_its_pmt(h264: bytes, mpeg2: bytes, chunk: int) -> None:
    data = h264 + mpeg2
    cut = len(h264) + first_packet_of(mpeg2, PMT_PID)
    passed, rest, watch = watch_all(data, chunk)
    assert watch.change is not None
    assert "MPEG-2 video" in watch.change and "H.264" in watch.change
    assert passed == data[:cut]
    assert rest == data[cut:]
    # A watch started on the rest takes the new program as its baseline.
    again, left, next_watch = watch_all(rest, chunk)
    assert next_watch.change is None and again == rest and left == b""


def test_the_same_program_again_is_no_change(media: MediaCache, h264: bytes) -> None:
    data = h264 + media.ts(seconds=2, pts_offset_seconds=2.0, seed=1).read_bytes()
    passed, rest, watch = watch_all(data, 4096)
    assert watch.change is None and passed == data and rest == b""


def test_garbage_before_the_change_is_passed_on(h264: bytes, mpeg2: bytes) -> None:
    garbage = random.Random(3).randbytes(50_000)
    data = h264 + garbage + mpeg2
    passed, rest, watch = watch_all(data, 10_000)
    assert watch.change is not None
    assert passed == data[: len(h264) + len(garbage) + first_packet_of(mpeg2, PMT_PID)]


def test_a_pmt_failing_its_crc_is_not_a_change(h264: bytes, mpeg2: bytes) -> None:
    damaged = bytearray(mpeg2)
    for offset in range(0, len(damaged), TS_PACKET_BYTES):
        if packet_pid(damaged[offset : offset + TS_PACKET_BYTES]) == PMT_PID:
            damaged[offset + 20] ^= 0xFF  # inside the section, CRC left as it was
    data = h264 + bytes(damaged)
    passed, rest, watch = watch_all(data, 65536)
    assert watch.change is None and passed == data


def test_a_pat_pointing_at_another_pmt_is_a_change(h264: bytes) -> None:
    at = first_packet_of(h264, PAT_PID)
    packet = bytearray(h264[at : at + TS_PACKET_BYTES])
    table_start = 5 + packet[4]
    length = ((packet[table_start + 1] & 0x0F) << 8) | packet[table_start + 2]
    packet[table_start + 8 + 2 : table_start + 8 + 4] = (0xE000 | 0x1100).to_bytes(2, "big")  # PMT PID 0x1100
    body = bytes(packet[table_start : table_start + 3 + length - 4])
    packet[table_start + 3 + length - 4 : table_start + 3 + length] = crc32_mpeg2(body).to_bytes(4, "big")
    data = h264 + bytes(packet) + h264
    passed, _, watch = watch_all(data, 65536)
    assert watch.change is not None and "0x1100" in watch.change
    assert passed == h264


def test_a_trailing_part_packet_waits_for_its_rest(h264: bytes) -> None:
    watch = ProgramWatch()
    assert watch.feed(h264[:1000]) == h264[: 5 * TS_PACKET_BYTES]
    assert watch.feed(h264[1000:1128]) == h264[5 * TS_PACKET_BYTES : 6 * TS_PACKET_BYTES]
    assert watch.feed(h264[1128:1130]) == b""
    assert watch.flush() == h264[1128:1130]


def test_input_that_is_not_mpeg_ts_is_passed_on() -> None:
    data = b"FLV\x01" + random.Random(1).randbytes(20_000).replace(b"\x47", b"\x48")
    passed, _, watch = watch_all(data, 3000)
    assert watch.change is None and passed == data


@pytest.fixture(scope="module")
def pieces(h264: bytes, mpeg2: bytes) -> list[bytes]:
    """Whole programs, part packets and garbage to build inputs from."""
    return [h264[:40 * TS_PACKET_BYTES], mpeg2[:40 * TS_PACKET_BYTES], h264[1000:3000], b"\x47" * 300,
            random.Random(5).randbytes(2000)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.integers(0, 4), min_size=1, max_size=8), cuts=st.lists(st.integers(1, 5000), max_size=20))
def test_no_byte_is_lost_or_repeated_whatever_the_input_and_its_reads(
    pieces: list[bytes], order: list[int], cuts: list[int]
) -> None:
    """Bytes passed on, then (after a change) the rest, are the input exactly, in order."""
    data = b"".join(pieces[i] for i in order)
    watch = ProgramWatch()
    out = bytearray()
    offset = 0
    for size in [*cuts, len(data)]:
        chunk = data[offset : offset + size]
        offset += len(chunk)
        out += watch.feed(chunk)
        if watch.change is not None:
            out += watch.rest() + data[offset:]
            break
    else:
        out += watch.flush()
    assert bytes(out) == data
