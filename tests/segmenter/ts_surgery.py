"""Packet surgery on MPEG-TS clips for segmenter tests: add timed ID3 and SCTE-35 PIDs to a clip
(a PMT entry each, PES packets or sections at chosen frames), remove packets of one PID or the
pictures of chosen frames, take the PTS out of PES packets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from segmenter.psi import crc32_mpeg2, packet_pid, payload_offset, section
from tests.support.segmenter_media import TS_PACKET_BYTES

PMT_PID = 0x1000  # the PMT PID of the clips tests/support/media.py makes
VIDEO_PID = 0x100
AUDIO_PID = 0x101
ID3_PID = 0x102
SCTE35_PID = 0x103

# FFmpeg's metadata_descriptor for timed ID3 (what its muxer writes; its demuxer reads it).
ID3_ES_INFO = bytes.fromhex("260dffff49443320ff49443320000f")
CUEI_REGISTRATION = b"\x05\x04CUEI"  # registration_descriptor, program level (ANSI/SCTE 35 8.1)


def packets(data: bytes) -> Iterator[bytes]:
    for offset in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        yield data[offset : offset + TS_PACKET_BYTES]


def pes_pts(packet: bytes) -> int | None:
    """The PTS of the PES that starts in ``packet``, if it carries one."""
    offset = payload_offset(packet)
    if offset is None or not packet[1] & 0x40 or packet[offset : offset + 3] != b"\x00\x00\x01":
        return None
    b = packet[offset + 9 : offset + 14]
    if not packet[offset + 7] & 0x80:
        return None
    return ((b[0] & 0x0E) << 29) | (b[1] << 22) | ((b[2] & 0xFE) << 14) | (b[3] << 7) | (b[4] >> 1)


def id3_tag(text: str, padding: int = 0) -> bytes:
    """An ID3v2.4 tag with one TXXX frame (``padding`` bytes of it to make it longer)."""
    frame = b"\x03" + text.encode() + b"\x00" + b"x" * padding
    body = b"TXXX" + _syncsafe(len(frame)) + b"\x00\x00" + frame
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def _syncsafe(size: int) -> bytes:
    return bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])


def splice_info_section(pts: int, event: int) -> bytes:
    """A splice_info_section (ANSI/SCTE 35 9.6) with a time_signal at ``pts`` and a
    segmentation_descriptor naming ``event``, its CRC_32 made."""
    command = bytes([0xFE | ((pts >> 32) & 1)]) + (pts & 0xFFFFFFFF).to_bytes(4, "big")  # splice_time()
    descriptor = b"CUEI" + event.to_bytes(4, "big") + b"\x7f\xbf\x00\x00\x30\x00\x00"  # program, ad start
    descriptors = bytes([0x02, len(descriptor)]) + descriptor
    body = (b"\x00" + b"\x00" * 5 + b"\x00" + bytes([0xFF, 0xF0 | (len(command) >> 8), len(command) & 0xFF])
            + b"\x06" + command + len(descriptors).to_bytes(2, "big") + descriptors)
    head = bytes([0xFC, 0x30 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF])
    table = head + body
    return table + crc32_mpeg2(table).to_bytes(4, "big")


def _pts_field(pts: int) -> bytes:
    return bytes([0x21 | (((pts >> 30) & 7) << 1), (pts >> 22) & 0xFF, (((pts >> 15) & 0x7F) << 1) | 1,
                  (pts >> 7) & 0xFF, ((pts & 0x7F) << 1) | 1])


def _packetize(pid: int, unit: bytes) -> list[bytes]:
    """``unit`` (a PES packet, or a pointer_field and section) in TS packets, the last one stuffed
    with an adaptation field; continuity counters are set later."""
    out = []
    for start in range(0, len(unit), 184):
        piece = unit[start : start + 184]
        first = 0x40 if start == 0 else 0
        header = bytes([0x47, first | (pid >> 8), pid & 0xFF])
        if len(piece) == 184:
            out.append(header + b"\x10" + piece)
        else:
            stuffing = 183 - len(piece)
            field = bytes([stuffing]) + (b"\x00" + b"\xff" * (stuffing - 1) if stuffing else b"")
            out.append(header + b"\x30" + field + piece)
    return out


def id3_packets(pts: int, tag: bytes) -> list[bytes]:
    """A PES (private_stream_1, data-aligned, PTS only) carrying ``tag``, in TS packets."""
    header = b"\x84\x80\x05" + _pts_field(pts)
    pes = b"\x00\x00\x01\xbd" + (len(header) + len(tag)).to_bytes(2, "big") + header + tag
    return _packetize(ID3_PID, pes)


def scte35_packets(table: bytes) -> list[bytes]:
    """A splice_info_section in TS packets (pointer_field 0, 0xFF stuffing after it)."""
    unit = b"\x00" + table
    packets = _packetize(SCTE35_PID, unit)
    last = packets[-1]
    if last[3] & 0x20:  # stuffing as 0xFF after the section, as PSI does (not an adaptation field)
        piece = unit[(len(packets) - 1) * 184 :]
        packets[-1] = last[:3] + b"\x10" + piece + b"\xff" * (184 - len(piece))
    return packets


def _with_metadata_pmt(table: bytes, *, id3: bool, scte35: bool) -> bytes:
    program_info_length = ((table[10] & 0x0F) << 8) | table[11]
    program_info = table[12 : 12 + program_info_length] + (CUEI_REGISTRATION if scte35 else b"")
    streams = table[12 + program_info_length : -4]
    if id3:
        streams += bytes([0x15, 0xE0 | (ID3_PID >> 8), ID3_PID & 0xFF, 0xF0, len(ID3_ES_INFO)]) + ID3_ES_INFO
    if scte35:
        streams += bytes([0x86, 0xE0 | (SCTE35_PID >> 8), SCTE35_PID & 0xFF, 0xF0, 0x00])
    body = table[3:10] + bytes([0xF0 | (len(program_info) >> 8), len(program_info) & 0xFF]) + program_info + streams
    head = bytes([table[0], 0xB0 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF])
    new = head + body
    return new + crc32_mpeg2(new).to_bytes(4, "big")


@dataclass
class Insertion:
    """Metadata packets put into the clip next to the first packet of one video frame."""

    frame: int  # the video frame (in presentation order from the first) they go beside
    kind: str  # "id3" or "scte35"
    payload: bytes  # the ID3 tag, or the splice_info_section
    before: int = 0  # how many of the packets go just before that frame's first packet
    pts_offset: int = 0  # ticks added to the frame's PTS for the ID3 PES's PTS
    pts: int = 0  # filled in: the ID3 PES's PTS
    packets: list[bytes] = field(default_factory=list)  # filled in: as written, counters set


def add_metadata(data: bytes, insertions: list[Insertion], *, fps: int = 25) -> bytes:
    """``data`` (a clip of tests/support/media.py) with a timed ID3 PID and/or a SCTE-35 PID in
    its PMT, and each insertion's packets beside its frame. Frames are found by their PTS
    (the first video PES's PTS + frame / fps)."""
    id3 = any(i.kind == "id3" for i in insertions)
    scte35 = any(i.kind == "scte35" for i in insertions)
    counters = {ID3_PID: 0, SCTE35_PID: 0}
    origin: int | None = None
    out: list[bytes] = []
    for packet in packets(data):
        pid = packet_pid(packet)
        if pid == PMT_PID and packet[1] & 0x40:
            table = section(packet)
            assert table is not None
            new = _with_metadata_pmt(table, id3=id3, scte35=scte35)
            packet = packet[:5] + new + b"\xff" * (183 - len(new))
        if pid != VIDEO_PID or (pts := pes_pts(packet)) is None:
            out.append(packet)
            continue
        if origin is None:
            origin = pts
        frame = round((pts - origin) * fps / 90000)
        after: list[bytes] = []
        for insertion in insertions:
            if insertion.frame != frame:
                continue
            insertion.pts = pts + insertion.pts_offset
            made = (id3_packets(insertion.pts, insertion.payload) if insertion.kind == "id3"
                    else scte35_packets(insertion.payload))
            for i, piece in enumerate(made):
                own = ID3_PID if insertion.kind == "id3" else SCTE35_PID
                piece = piece[:3] + bytes([(piece[3] & 0xF0) | counters[own]]) + piece[4:]
                counters[own] = (counters[own] + 1) & 0x0F
                insertion.packets.append(piece)
                (out if i < insertion.before else after).append(piece)
        out.append(packet)
        out += after
    missing = [i.frame for i in insertions if not i.packets]
    assert not missing, f"no video frames {missing} in the clip"
    return b"".join(out)


def remove_packets(data: bytes, pid: int, indexes: set[int]) -> bytes:
    """``data`` without the packets of ``pid`` whose ordinal (0-based, among that PID's) is in
    ``indexes``: packets lost on the way."""
    out = []
    seen = 0
    for packet in packets(data):
        if packet_pid(packet) == pid:
            seen += 1
            if seen - 1 in indexes:
                continue
        out.append(packet)
    return b"".join(out)


def remove_frames(data: bytes, pid: int, frames: set[int], *, fps: int = 25) -> bytes:
    """``data`` without every packet of the PES packets of ``pid`` that carry the frames numbered
    in ``frames`` (by PTS: the first PES's PTS + frame / fps): pictures lost on the way."""
    out = []
    origin: int | None = None
    dropping = False
    for packet in packets(data):
        if packet_pid(packet) == pid:
            if packet[1] & 0x40:
                pts = pes_pts(packet)
                assert pts is not None, "a PES without PTS"
                origin = pts if origin is None else origin
                dropping = round((pts - origin) * fps / 90000) in frames
            if dropping:
                continue
        out.append(packet)
    return b"".join(out)


def strip_pts(data: bytes, pid: int, count: int | None = None) -> bytes:
    """``data`` with the first ``count`` PES packets of ``pid`` (all when None) carrying no PTS
    (PTS_DTS_flags 0, its five bytes turned into PES header stuffing): PES packets whose
    timestamps the encoder left out."""
    out = []
    stripped = 0
    for packet in packets(data):
        if (count is None or stripped < count) and packet_pid(packet) == pid and packet[1] & 0x40:
            offset = payload_offset(packet)
            assert offset is not None and packet[offset + 7] == 0x80, "a PES with more than a PTS"
            header = bytearray(packet)
            header[offset + 7] = 0x00
            header[offset + 9 : offset + 14] = b"\xff" * 5
            packet = bytes(header)
            stripped += 1
        out.append(packet)
    return b"".join(out)


def shift_pts(data: bytes, pid: int, number: int, ticks: int) -> bytes:
    """``data`` with the PTS of the ``number``-th PES packet of ``pid`` (from 0; one with a PTS
    only) moved by ``ticks`` (90 kHz): an encoder's timestamp jitter."""
    out = []
    seen = 0
    for packet in packets(data):
        if packet_pid(packet) == pid and packet[1] & 0x40:
            if seen == number:
                offset = payload_offset(packet)
                assert offset is not None and packet[offset + 7] == 0x80, "a PES with more than a PTS"
                pts = pes_pts(packet)
                assert pts is not None
                header = bytearray(packet)
                header[offset + 9 : offset + 14] = _pts_field(pts + ticks)
                packet = bytes(header)
            seen += 1
        out.append(packet)
    assert seen > number, f"{seen} PES packets on PID 0x{pid:x}"
    return b"".join(out)


def renumbered(out: list[bytearray], pid: int) -> bytes:
    """``out`` joined, the continuity counters of ``pid`` numbered afresh from 0 (what a muxer
    writing these packets would have given them)."""
    counter = 0
    for packet in out:
        if packet_pid(packet) == pid:
            packet[3] = (packet[3] & 0xF0) | counter
            counter = (counter + 1) & 0x0F
    return b"".join(out)
