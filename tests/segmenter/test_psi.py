"""MPEG-TS program tables and the watch that stops the input where its programs change."""

from __future__ import annotations

import io
import random

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.psi import (
    PAT_PID,
    PUSI,
    RESYNC_PACKETS,
    SDT_PID,
    TS_PACKET_BYTES,
    PacketGrid,
    ProgramFilter,
    ProgramWatch,
    crc32_mpeg2,
    find_sync,
    packet_pid,
    pat_programs,
    pmt_pids,
    pids_without_pts,
    pmt_streams,
    reorder_leading_psi,
    section,
)
from tests.support.media import MediaCache

from .ts_surgery import AUDIO_PID, VIDEO_PID, strip_pts

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


def with_crc(body: bytes) -> bytes:
    """A section: ``body`` (table_id up to the byte before CRC_32), then its CRC_32."""
    return body + crc32_mpeg2(body).to_bytes(4, "big")


def pat_section(programs: tuple[tuple[int, int], ...], *, transport_stream_id: int = 1,
                section_length: int | None = None, tail: bytes = b"") -> bytes:
    """A PAT section listing (program_number, PID) pairs, ``tail`` after them; program 0 is the
    network PID. ``section_length`` overrides the one the bytes make."""
    entries = b"".join(number.to_bytes(2, "big") + (0xE000 | pid).to_bytes(2, "big") for number, pid in programs)
    entries += tail
    length = 5 + len(entries) + 4 if section_length is None else section_length
    header = bytes([0x00, 0xB0 | length >> 8, length & 0xFF, *transport_stream_id.to_bytes(2, "big"), 0xC1, 0, 0])
    return with_crc(header + entries)


def pmt_section(streams: tuple[tuple[int, int, bytes], ...], *, pcr_pid: int, program_info: bytes = b"") -> bytes:
    """A PMT section of program 1: (elementary PID, stream_type, ES descriptors) per stream."""
    entries = b"".join(
        bytes([kind]) + (0xE000 | pid).to_bytes(2, "big") + (0xF000 | len(info)).to_bytes(2, "big") + info
        for pid, kind, info in streams
    )
    after_length = (bytes([0, 1, 0xC1, 0, 0]) + (0xE000 | pcr_pid).to_bytes(2, "big")
                    + (0xF000 | len(program_info)).to_bytes(2, "big") + program_info + entries)
    return with_crc(bytes([0x02]) + (0xB000 | len(after_length) + 4).to_bytes(2, "big") + after_length)


def psi_packet(pid: int, table: bytes, *, pointer: int = 0, control: int = 0b01, start: bool = True) -> bytes:
    """One packet carrying ``table`` after a pointer field of ``pointer`` (stuffing before it),
    with adaptation_field_control ``control``; padded with 0xFF."""
    header = bytes([0x47, (PUSI if start else 0) | pid >> 8, pid & 0xFF, control << 4])
    return (header + bytes([pointer]) + b"\xff" * pointer + table).ljust(TS_PACKET_BYTES, b"\xff")


def remux(data: bytes, **options: str) -> bytes:
    """``data`` through PyAV's MPEG-TS muxer again, with the muxer ``options``."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data), "r", format="mpegts") as source, \
            av.open(out, "w", format="mpegts", options={"mpegts_copyts": "1", **options}) as target:
        streams = {stream.index: target.add_stream_from_template(stream) for stream in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                target.mux(packet)
    return out.getvalue()


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


OTHER_PAT = pat_section(((1, 0x1100),))  # program 1's PMT on another PID than the clips'
GARBAGE = random.Random(7).randbytes(4000).replace(b"\x47", b"\x48")  # no sync byte anywhere


def packet_of(data: bytes, pid: int) -> bytes:
    at = first_packet_of(data, pid)
    return data[at : at + TS_PACKET_BYTES]


@pytest.mark.parametrize("packet", [
    psi_packet(PAT_PID, OTHER_PAT, control=0b00),  # reserved adaptation_field_control: discarded
    bytes([0x47, PUSI, 0, 0x30, 183]).ljust(TS_PACKET_BYTES, b"\xff"),  # adaptation field fills it
    bytes([0x47, PUSI, 0, 0x20, 183]).ljust(TS_PACKET_BYTES, b"\xff"),  # adaptation field only
    psi_packet(PAT_PID, b"", pointer=182),  # the section would start too close to the end
    psi_packet(PAT_PID, pat_section(((1, 0x1100),), section_length=0x100 + 13)),  # goes on in the next packet
    psi_packet(PAT_PID, pat_section(((1, 0x1100),), section_length=200, tail=bytes(167))),  # same, CRC to the end
    psi_packet(PAT_PID, with_crc(b"\x01" + OTHER_PAT[1:-4])),  # a CAT's table_id on the PAT PID
    psi_packet(PMT_PID, with_crc(b"\xc0" + OTHER_PAT[1:-4])),  # another table on the PMT PID
    psi_packet(PAT_PID, pat_section(((1, PMT_PID),), transport_stream_id=7)),  # same programs, new TS id
], ids=["reserved-control", "full-adaptation", "adaptation-only", "pointer-past-end", "spans-packets",
        "spans-packets-crc-to-end", "not-a-pat", "not-a-pmt", "same-programs"])
def test_a_packet_that_holds_no_other_program_is_no_change(h264: bytes, packet: bytes) -> None:
    data = h264 + packet + h264
    passed, rest, watch = watch_all(data, 65536)
    assert watch.change is None and passed == data


@pytest.mark.parametrize("table, pointer", [
    (OTHER_PAT, TS_PACKET_BYTES - 5 - len(OTHER_PAT)),  # the section ends on the packet's last byte
    (pat_section(()), 0),  # no programs at all
])
def test_a_pat_anywhere_in_its_packet_that_lists_other_programs_is_a_change(
    h264: bytes, table: bytes, pointer: int
) -> None:
    data = h264 + psi_packet(PAT_PID, table, pointer=pointer) + h264
    passed, rest, watch = watch_all(data, 65536)
    assert watch.change is not None and passed == h264 and rest == data[len(h264):]


def test_a_packet_that_starts_no_section_has_none() -> None:
    assert section(psi_packet(PAT_PID, OTHER_PAT)) == OTHER_PAT
    assert section(psi_packet(PAT_PID, OTHER_PAT, start=False)) is None


def test_every_program_of_a_pat_is_read_but_the_network_pid() -> None:
    pat = pat_section(((1, 0x1000), (0, 0x0010), (0x0102, 0x0101)))
    assert pat_programs(pat) == ((1, 0x1000), (0x0102, 0x0101))


def test_descriptors_of_any_length_are_skipped_in_a_pmt() -> None:
    language = b"\x0a\x04eng\x00"  # ISO_639_language_descriptor
    long_descriptors = (b"\x80\xff" + bytes(255)) + (b"\x80\x05" + bytes(5))  # 264 bytes, user private
    pmt = pmt_section(((0x100, 0x1B, long_descriptors), (0x101, 0x0F, language), (0x102, 0x15, b"")),
                      pcr_pid=0x100, program_info=long_descriptors)
    assert pmt_streams(pmt) == (0x100, ((0x100, 0x1B), (0x101, 0x0F), (0x102, 0x15)))
    assert pmt_streams(pmt_section(((0x101, 0x0F, b""),), pcr_pid=0x101, program_info=language)) == (
        0x101, ((0x101, 0x0F),))


def test_each_program_of_a_pat_is_compared_with_its_own_pmt(h264: bytes, mpeg2: bytes) -> None:
    """Two programs with other streams each, both repeated: no change."""
    second_pmt = psi_packet(0x1001, section(packet_of(mpeg2, PMT_PID)))
    two_programs = psi_packet(PAT_PID, pat_section(((1, PMT_PID), (2, 0x1001))))
    data = b"".join(
        two_programs if packet_pid(packet) == PAT_PID else packet + second_pmt if packet_pid(packet) == PMT_PID
        else packet
        for packet in packets(h264)
    )
    passed, _, watch = watch_all(data, 4096)
    assert watch.change is None and passed == data


@pytest.fixture(scope="module")
def pmt_1001(h264: bytes, mpeg2: bytes) -> tuple[bytes, bytes]:
    """The two clips remuxed with their PMT on PID 0x1001."""
    return remux(h264, mpegts_pmt_start_pid="0x1001"), remux(mpeg2, mpegts_pmt_start_pid="0x1001")


def test_only_the_pmts_the_pat_lists_are_followed(h264: bytes, mpeg2: bytes, pmt_1001: tuple[bytes, bytes]) -> None:
    first, second = pmt_1001
    # PMTs on PID 0x1000, which the PAT does not list: one of each program.
    stray = packet_of(h264, PMT_PID) + packet_of(mpeg2, PMT_PID)
    head = first[: 100 * TS_PACKET_BYTES] + stray + first[100 * TS_PACKET_BYTES :]
    data = head + second
    passed, rest, watch = watch_all(data, 65536)
    assert watch.change is not None and "MPEG-2 video" in watch.change
    cut = len(head) + first_packet_of(second, 0x1001)
    assert passed == data[:cut] and rest == data[cut:]


def test_a_change_between_stretches_of_garbage_is_found(h264: bytes, mpeg2: bytes) -> None:
    """A new PMT between garbage, with the old PMT again before and after it, in one read."""
    video = b"".join(packet for packet in packets(h264) if packet_pid(packet) == 0x100)[: 4 * TS_PACKET_BYTES]
    old, new = packet_of(h264, PMT_PID) + video, packet_of(mpeg2, PMT_PID) + video
    burst = old + GARBAGE[:50] + new + GARBAGE[50:100] + old
    watch = ProgramWatch()
    assert watch.feed(h264) == h264
    assert watch.feed(burst) == burst[: len(old) + 50]
    assert watch.change is not None and watch.rest() == burst[len(old) + 50 :]


def test_a_change_in_the_last_packet_of_the_first_read_is_found(h264: bytes, mpeg2: bytes) -> None:
    head = h264[: 50 * TS_PACKET_BYTES]
    watch = ProgramWatch()
    assert watch.feed(head + packet_of(mpeg2, PMT_PID)) == head
    assert watch.change is not None


def test_after_a_change_every_later_byte_goes_to_the_rest(h264: bytes, mpeg2: bytes) -> None:
    data = h264 + mpeg2
    cut = len(h264) + first_packet_of(mpeg2, PMT_PID)
    watch = ProgramWatch()
    assert watch.feed(data[: cut + 100]) == data[:cut]
    assert watch.feed(data[cut + 100 : cut + 5000]) == b""
    assert watch.feed(data[cut + 5000 :]) == b""
    assert watch.flush() == b""
    assert watch.rest() == data[cut:]


def test_reads_of_the_aligned_size_end_on_a_packet_boundary(h264: bytes) -> None:
    """``aligned(size)`` is at most ``size``, and held bytes plus that many end a packet if any size can."""
    for held in (0, 60, 187):
        for size in (1, 50, 100, 188, 189, 4096):
            watch = ProgramWatch()
            assert watch.feed(h264[: 10 * TS_PACKET_BYTES + held]) == h264[: 10 * TS_PACKET_BYTES]
            aligned = watch.aligned(size)
            fits = TS_PACKET_BYTES - held if held else TS_PACKET_BYTES
            assert 0 < aligned <= size
            if size >= fits:
                assert (held + aligned) % TS_PACKET_BYTES == 0
            else:
                assert aligned == size
    assert ProgramWatch().aligned(4096) == 4096 - 4096 % TS_PACKET_BYTES


def test_a_stray_sync_byte_before_the_grid_is_not_read_as_a_packet(h264: bytes) -> None:
    """Garbage at the start that begins like a PAT packet, but is not in step with what follows."""
    data = psi_packet(PAT_PID, OTHER_PAT) + GARBAGE[:100] + h264
    passed, _, watch = watch_all(data, 65536)
    assert watch.change is None and passed == data


def test_the_grid_is_where_five_sync_bytes_line_up() -> None:
    data = bytearray(GARBAGE[: 10 * TS_PACKET_BYTES])
    for k in (0, 2, 3, 4):  # four of five, the byte before the grid: no grid
        data[6 + k * TS_PACKET_BYTES] = 0x47
    for k in range(RESYNC_PACKETS):
        data[7 + k * TS_PACKET_BYTES] = 0x47
    assert find_sync(data, 0) == 7


def test_the_packet_grid_tells_garbage_from_runs_of_whole_packets(h264: bytes) -> None:
    six = h264[: 6 * TS_PACKET_BYTES]
    data = GARBAGE[:100] + six + GARBAGE[100:150] + six + GARBAGE[150:1150]
    grid = PacketGrid(synced=False)
    second = 100 + len(six) + 50
    tail = len(data) - RESYNC_PACKETS * TS_PACKET_BYTES  # a grid may still start after it
    assert list(grid.runs(data)) == [(100, 100, 6), (50, second, 6), (tail - second - len(six), tail, 0)]
    assert grid.end == tail
    # In step already: a single packet is read at once.
    grid = PacketGrid(synced=True)
    assert list(grid.runs(h264[:TS_PACKET_BYTES])) == [(0, 0, 1)] and grid.end == TS_PACKET_BYTES


def test_the_muxers_leading_psi_is_reordered_to_pat_pmt_then_the_rest(h264: bytes) -> None:
    sdt, pat, pmt, *rest = packets(h264)[:8]
    assert [packet_pid(packet) for packet in (sdt, pat, pmt)] == [SDT_PID, PAT_PID, PMT_PID]
    assert reorder_leading_psi([sdt, pat, pmt, *rest]) == [pat, pmt, sdt]
    assert reorder_leading_psi([sdt, pmt, pat]) == [pat, pmt, sdt]


def test_the_pmt_pids_are_those_of_the_first_pat_that_starts_a_section(h264: bytes) -> None:
    pat = packet_of(h264, PAT_PID)
    assert pmt_pids([psi_packet(PAT_PID, OTHER_PAT, start=False), pat]) == {PMT_PID}
    assert pmt_pids([psi_packet(PAT_PID, pat_section(((1, 0x1100),), section_length=269)), pat]) == set()


def renumbered(pmt: bytes, program_number: int) -> bytes:
    """The PMT section ``pmt`` for program ``program_number``, with a new CRC_32."""
    return with_crc(pmt[:3] + program_number.to_bytes(2, "big") + pmt[5:-4])


def as_program(data: bytes, program_number: int) -> bytes:
    """``data`` (one program, PMT on PMT_PID) with its PAT and PMTs saying ``program_number``."""
    pat = psi_packet(PAT_PID, pat_section(((program_number, PMT_PID),)))
    pmt = psi_packet(PMT_PID, renumbered(section(packet_of(data, PMT_PID)), program_number))
    return b"".join(
        pat if packet_pid(packet) == PAT_PID else pmt if packet_pid(packet) == PMT_PID else packet
        for packet in packets(data)
    )


def test_a_followed_program_numbered_above_255_has_its_pmt_change_found(h264: bytes, mpeg2: bytes) -> None:
    """program_number is 16 bits (ISO/IEC 13818-1 2.4.4.8): its high byte counts too."""
    first, second = as_program(h264, 0x1234), as_program(mpeg2, 0x1234)
    watch = ProgramWatch()
    watch.follow(0x1234)
    passed = watch.feed(first + second)
    assert watch.change is not None and "MPEG-2 video" in watch.change
    assert passed == first + second[: first_packet_of(second, PMT_PID)]


def test_a_pat_that_drops_the_followed_program_is_a_change(h264: bytes) -> None:
    both = psi_packet(PAT_PID, pat_section(((1, PMT_PID), (2, 0x1001))))
    other_only = psi_packet(PAT_PID, pat_section(((2, 0x1001),)))
    head = b"".join(both if packet_pid(packet) == PAT_PID else packet for packet in packets(h264))
    data = head + b"".join(other_only if packet_pid(packet) == PAT_PID else packet for packet in packets(h264))
    watch = ProgramWatch()
    watch.follow(1)
    passed = watch.feed(data)
    assert watch.change is not None
    assert passed == head + h264[: first_packet_of(h264, PAT_PID)]


def es_packet(pid: int) -> bytes:
    return bytes([0x47, pid >> 8, pid & 0xFF, 0x10]).ljust(TS_PACKET_BYTES, b"\x00")


def with_counter(packet: bytes, continuity_counter: int) -> bytes:
    return packet[:3] + bytes([packet[3] | continuity_counter]) + packet[4:]


def test_the_filter_keeps_its_program_under_a_pat_that_lists_it_alone() -> None:
    """The PAT keeps its header (continuity_counter), transport_stream_id and version; 0xFF
    stuffing follows the section (ISO/IEC 13818-1 2.4.4); packets on the PAT PID that hold no
    whole PAT, and the other program's PMT and streams, go."""
    pmt = pmt_section(((0x100, 0x1B, b""),), pcr_pid=0x100)
    pat = with_counter(psi_packet(PAT_PID, pat_section(((0x1234, 0x1001), (2, 0x1002)), transport_stream_id=7)), 5)
    ours, theirs = psi_packet(0x1001, pmt), psi_packet(0x1002, pmt)
    not_a_pat = psi_packet(PAT_PID, pmt)  # a whole section with its CRC, but a PMT's table_id
    no_section = psi_packet(PAT_PID, b"", start=False)
    chunk = [pat, ours, es_packet(0x100), theirs, es_packet(0x200), not_a_pat, no_section, es_packet(0x100)]
    program = ProgramFilter(0x1234, 0x1001, [0x100])
    kept, count = program.keep(b"".join(chunk), len(chunk))
    alone = with_counter(psi_packet(PAT_PID, pat_section(((0x1234, 0x1001),), transport_stream_id=7)), 5)
    assert packets(kept) == [alone, ours, es_packet(0x100), es_packet(0x100)] and count == 4
    assert program.keep(kept, count) == (kept, count)  # what it kept goes through again unchanged


def test_pids_whose_pes_packets_carry_no_pts_are_found_from_the_first_sync_byte(media: MediaCache) -> None:
    data = media.encoder_ts(seconds=2).read_bytes()
    assert pids_without_pts(data, (VIDEO_PID, AUDIO_PID)) == set()
    assert pids_without_pts(strip_pts(data, AUDIO_PID, 3), (VIDEO_PID, AUDIO_PID)) == set()  # some have one
    stripped = strip_pts(data, AUDIO_PID)
    assert pids_without_pts(stripped, (VIDEO_PID, AUDIO_PID)) == {AUDIO_PID}
    assert pids_without_pts(b"junk" + stripped[:-100], (VIDEO_PID, AUDIO_PID)) == {AUDIO_PID}  # off the grid
    assert pids_without_pts(stripped, (VIDEO_PID,)) == set()  # only the PIDs asked about
    assert pids_without_pts(stripped, (VIDEO_PID, AUDIO_PID, 0x1FF0)) == {AUDIO_PID}  # 0x1FF0 sends nothing
    assert pids_without_pts(b"", (AUDIO_PID,)) == set()


def pes_start_packet(pid: int, flags: int, *, at: int = 4, last: int = 0xFF) -> bytes:
    """A packet of ``pid`` starting a PES whose PTS_DTS_flags byte (the second flags byte) is
    ``flags``, its payload at ``at`` (after an adaptation field of stuffing), the PES header cut
    where the packet ends; its other bytes 0xFF but the last, ``last``."""
    fields = {  # a PTS of 0, a DTS of 0 after it, a PES_extension with no field of its own
        0x80: b"\x21\x00\x01\x00\x01", 0xC0: b"\x31\x00\x01\x00\x01\x11\x00\x01\x00\x01", 0x01: b"\x0e", 0x00: b"",
    }[flags]
    header = b"\x00\x00\x01\xc0\x00\x00\x80" + bytes((flags, len(fields))) + fields
    field = b"" if at == 4 else bytes((at - 5,)) + (b"\x00" + b"\xff" * (at - 6) if at > 5 else b"")
    control = 0x30 if at > 4 else 0x10
    packet = bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, control)) + field + header
    return (packet[:TS_PACKET_BYTES].ljust(TS_PACKET_BYTES - 1, b"\xff") + bytes((last,)))[:TS_PACKET_BYTES]


def continuation_packet(pid: int, payload: bytes) -> bytes:
    return bytes((0x47, pid >> 8, pid & 0xFF, 0x10)) + payload.ljust(TS_PACKET_BYTES - 4, b"\xff")


def test_a_pes_start_is_timed_by_its_pts_dts_flags_alone() -> None:
    for flags, untimed in ((0x80, set()), (0xC0, set()), (0x00, {0x101}), (0x01, {0x101})):  # 0x01: a PES extension
        assert pids_without_pts(pes_start_packet(0x101, flags), (0x101,)) == untimed, hex(flags)


def test_the_last_whole_packet_is_read_and_a_part_packet_after_it_is_not() -> None:
    timed, untimed = pes_start_packet(0x101, 0x80), pes_start_packet(0x102, 0x00)
    assert pids_without_pts(timed + untimed, (0x101, 0x102)) == {0x102}
    assert pids_without_pts(timed + untimed[:100], (0x101, 0x102)) == set()  # the probe's read ends in it


def test_packets_after_bytes_off_the_grid_are_read_from_the_next_sync_byte() -> None:
    before = pes_start_packet(0x101, 0x80, last=0x47)  # a payload byte that looks like a sync byte
    after = pes_start_packet(0x101, 0x80)
    untimed = pes_start_packet(0x102, 0x00)
    for stray in (b"\x00", b"\x00\x01\x02"):
        assert pids_without_pts(before + stray + untimed + after, (0x101, 0x102)) == {0x102}, stray


def test_a_pes_header_is_read_up_to_the_last_byte_of_its_first_packet() -> None:
    assert pids_without_pts(pes_start_packet(0x101, 0x00, at=180), (0x101,)) == {0x101}  # its flags byte last
    assert pids_without_pts(pes_start_packet(0x101, 0x00, at=181), (0x101,)) == set()  # its flags in the next packet


def test_packets_that_start_no_pes_make_no_pid_untimed() -> None:
    # A packet continuing a PES whose payload begins as a PES start does (an H.264 start code),
    # and sections on a PID asked about: no PES starts, so nothing to carry a PTS.
    nal = continuation_packet(0x100, b"\x00\x00\x01\x65\x88\x84\x00\x00")
    pat = bytes((0x47, 0x40 | 0x102 >> 8, 0x102 & 0xFF, 0x10)) + b"\x00" + pat_section(((1, 0x1000),))
    pat = pat.ljust(TS_PACKET_BYTES, b"\xff")
    assert pids_without_pts(pes_start_packet(0x100, 0x80) + nal + pat, (0x100, 0x102)) == set()
    assert pids_without_pts(nal + pat, (0x100, 0x102)) == set()
