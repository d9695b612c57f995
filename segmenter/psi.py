"""MPEG-TS program tables (PAT, PMT) and a watch that finds a program change in the bytes. Pure.

An encoder that restarts with other settings, or a switcher that cuts to another source, can go
on in the same MPEG-TS with other codecs on the same PIDs. FFmpeg's demuxer keeps the codecs it
probed first (it hands H.264-labelled packets of MPEG-2 video on), so the change is found here,
in the PAT and PMT themselves, and the segmenter starts a new run (probe, codecs, discontinuity)
at the packet that announces it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

TS_PACKET_BYTES = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
SDT_PID = 0x0011
PUSI = 0x40  # payload_unit_start_indicator, in a packet's second byte

# Sync bytes in a row, 188 bytes apart, that count as having found the packet grid again after
# garbage: a random byte string passes 5 in a row with odds of 1 in 2^40 per position.
RESYNC_PACKETS = 5
_RESYNC_SPAN = TS_PACKET_BYTES * RESYNC_PACKETS

NOT_SYNC = re.compile(rb"[^\x47]")  # a byte that is no sync byte, searched in strided slices
_MARKED = re.compile(rb"[^\x00]")

# Stream types (ISO/IEC 13818-1 table 2-34) as logs name them.
STREAM_TYPE_NAMES = {
    0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x03: "MPEG-1 audio", 0x04: "MPEG-2 audio",
    0x06: "private data", 0x0F: "AAC", 0x11: "AAC (LATM)", 0x15: "metadata", 0x1B: "H.264",
    0x24: "HEVC", 0x81: "AC-3", 0x86: "SCTE-35", 0x87: "E-AC-3",
}

Streams = tuple[tuple[int, int], ...]  # (elementary PID, stream type), in PMT order


def packet_pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def payload_offset(packet: bytes) -> int | None:
    """Where the packet's payload starts, or None when it has none."""
    control = (packet[3] >> 4) & 0x3
    if not control & 0x1:
        return None  # adaptation field only
    offset = 4
    if control & 0x2:
        offset += 1 + packet[4]
    return offset if offset < TS_PACKET_BYTES else None


def pes_timestamp(data: bytes, at: int) -> int:
    """The 33-bit PTS or DTS (90 kHz) in the 5 bytes of a PES header at ``at`` (ISO/IEC 13818-1
    2.4.3.7: 3 + 15 + 15 bits, each part followed by a marker bit)."""
    return (((data[at] & 0x0E) << 29) | (data[at + 1] << 22) | ((data[at + 2] & 0xFE) << 14)
            | (data[at + 3] << 7) | (data[at + 4] >> 1))


def section(packet: bytes) -> bytes | None:
    """The PSI section that starts in this packet, or None if there is none or it spans packets."""
    offset = payload_offset(packet)
    if offset is None or not packet[1] & PUSI:
        return None
    start = offset + 1 + packet[offset]  # skip the pointer field
    if start + 3 > TS_PACKET_BYTES:
        return None
    end = start + 3 + (((packet[start + 1] & 0x0F) << 8) | packet[start + 2])
    return packet[start:end] if end <= TS_PACKET_BYTES else None


def pat_programs(pat: bytes) -> tuple[tuple[int, int], ...]:
    """(program_number, PMT PID) of every program in a PAT section (the NIT entry left out)."""
    body = pat[8:-4]
    return tuple(
        ((body[i] << 8) | body[i + 1], ((body[i + 2] & 0x1F) << 8) | body[i + 3])
        for i in range(0, len(body) - 3, 4)
        if body[i] or body[i + 1]
    )


def pmt_pids(packets: Iterable[bytes]) -> set[int]:
    """The PMT PIDs listed by the first PAT packet among ``packets`` that starts a section;
    empty when there is none (or its section spans packets)."""
    for packet in packets:
        if packet_pid(packet) == PAT_PID and packet[1] & PUSI:
            table = section(packet)
            return {pid for _, pid in pat_programs(table)} if table is not None else set()
    return set()


def reorder_leading_psi(packets: list[bytes]) -> list[bytes]:
    """The PSI packets (PAT, PMT, SDT) that ``packets`` start with, reordered to PAT, PMT, then
    the rest. Packets of one PID keep their order, so continuity counters stay valid."""
    pmts = pmt_pids(packets)
    psi = pmts | {PAT_PID, SDT_PID}
    leading = next((i for i, packet in enumerate(packets) if packet_pid(packet) not in psi), len(packets))
    rank = {PAT_PID: 0, **dict.fromkeys(pmts, 1)}
    return sorted(packets[:leading], key=lambda packet: rank.get(packet_pid(packet), 2))


def pmt_streams(pmt: bytes) -> tuple[int, Streams]:
    """The PCR PID and the elementary streams of a PMT section."""
    pcr_pid = ((pmt[8] & 0x1F) << 8) | pmt[9]
    position = 12 + (((pmt[10] & 0x0F) << 8) | pmt[11])
    streams = []
    while position + 5 <= len(pmt) - 4:
        es_pid = ((pmt[position + 1] & 0x1F) << 8) | pmt[position + 2]
        streams.append((es_pid, pmt[position]))
        position += 5 + (((pmt[position + 3] & 0x0F) << 8) | pmt[position + 4])
    return pcr_pid, tuple(streams)


def describe_streams(streams: Streams) -> str:
    return ", ".join(f"PID 0x{pid:x} {STREAM_TYPE_NAMES.get(kind, f'type 0x{kind:02x}')}" for pid, kind in streams)


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """The CRC of MPEG-TS sections; 0 over a whole section (its CRC_32 included) that is intact."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def pids_without_pts(data: bytes, pids: Iterable[int]) -> frozenset[int]:
    """Those of ``pids`` that start a PES packet in the MPEG-TS ``data`` (read from its first sync
    byte on; packets off the grid are skipped) and carry a PTS in none of them (PTS_DTS_flags 0:
    ISO/IEC 13818-1 2.7.4 asks for one at least every 0.7 s)."""
    wanted = set(pids)
    started: set[int] = set()
    timed: set[int] = set()
    position = data.find(b"\x47")
    while 0 <= position <= len(data) - TS_PACKET_BYTES:
        packet = data[position : position + TS_PACKET_BYTES]
        if packet[0] != SYNC_BYTE:
            position = data.find(b"\x47", position + 1)
            continue
        position += TS_PACKET_BYTES
        pid = packet_pid(packet)
        if pid not in wanted or not packet[1] & PUSI or (offset := payload_offset(packet)) is None:
            continue
        if packet[offset : offset + 3] == b"\x00\x00\x01" and offset + 7 < TS_PACKET_BYTES:
            started.add(pid)
            if packet[offset + 7] & 0x80:
                timed.add(pid)
    return frozenset(started - timed)


def find_sync(data: bytes | bytearray, start: int) -> int | None:
    """First offset >= start where RESYNC_PACKETS sync bytes lie 188 bytes apart."""
    span = TS_PACKET_BYTES * (RESYNC_PACKETS - 1)
    position = data.find(b"\x47", start)
    while position != -1 and position + span < len(data):
        if all(data[position + k * TS_PACKET_BYTES] == SYNC_BYTE for k in range(1, RESYNC_PACKETS)):
            return position
        position = data.find(b"\x47", position + 1)
    return None


class PacketGrid:
    """Finds the runs of whole packets in step with the 188-byte grid in bytes that may carry
    garbage; the grid is looked for again (``find_sync``) wherever a packet is out of step.

    ``runs(buffer)`` yields ``(skipped, start, count)``: ``skipped`` bytes of garbage were passed
    over just before ``start``, where ``count`` whole packets begin (0 for garbage alone at the
    end). Once it is exhausted, ``end`` is where the bytes it could not read yet begin (a part
    packet, or bytes a grid may still start in): the caller keeps them for the next buffer.
    """

    def __init__(self, *, synced: bool) -> None:
        self.synced = synced  # False: the grid is not known yet (or was lost)
        self.end = 0

    def runs(self, buffer: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
        position = skipped = 0
        while True:
            if not self.synced:
                found = find_sync(buffer, position)
                if found is None:
                    keep = max(position, len(buffer) - _RESYNC_SPAN)  # a grid may start in what is left
                    skipped += keep - position
                    position = keep
                    break
                skipped += found - position
                position, self.synced = found, True
            count = (len(buffer) - position) // TS_PACKET_BYTES
            if not count:
                break
            bad = NOT_SYNC.search(buffer[position : position + count * TS_PACKET_BYTES : TS_PACKET_BYTES])
            if bad is not None:
                count = bad.start()
                self.synced = False
            if count or skipped:
                yield skipped, position, count
                skipped = 0
            position += count * TS_PACKET_BYTES
            if self.synced:
                break
            # Lost sync at ``position`` (no sync byte there): look for the grid again from it.
        if skipped:
            yield skipped, position, 0
        self.end = position


def pid_tables(marks: dict[int, int], *, starts_only: bool) -> list[tuple[bytes, bytes]]:
    """Translate tables that mark the packets of some PIDs without a Python loop per packet.

    ``marks`` maps each PID to its mark (1..127). One (high, low) pair per distinct high PID bits:
    a packet's second byte through ``high`` gives 0x7F when its PID's high bits match (plus 0x80
    when it starts a PES or section), or with ``starts_only``, 0xFF for a matching start and 0
    for the rest; its third byte through ``low`` gives the PID's mark with 0x80 set. ANDed per
    packet (``mark_packets``), that leaves the packet's mark (and start flag), or 0.
    """
    tables = []
    for high in sorted({pid >> 8 for pid in marks}):
        if starts_only:
            hi = bytes(0xFF if (b & 0x1F) == high and b & PUSI else 0 for b in range(256))
        else:
            hi = bytes(((0x80 if b & PUSI else 0) | 0x7F) if (b & 0x1F) == high else 0 for b in range(256))
        lo = bytes(marks.get((high << 8) | b, 0) | (0x80 if (high << 8) | b in marks else 0) for b in range(256))
        tables.append((hi, lo))
    return tables


def mark_packets(data: bytes, start: int, count: int, tables: list[tuple[bytes, bytes]]) -> bytes:
    """One byte per packet of ``data[start:]`` (``count`` whole packets): its mark through ``tables``."""
    end = start + count * TS_PACKET_BYTES
    second = data[start + 1 : end : TS_PACKET_BYTES]
    third = data[start + 2 : end : TS_PACKET_BYTES]
    combined = 0
    for hi, lo in tables:
        combined |= int.from_bytes(second.translate(hi), "big") & int.from_bytes(third.translate(lo), "big")
    return combined.to_bytes(count, "big")


class ProgramWatch:
    """Reads an MPEG-TS byte stream as it passes and stops it where its programs change.

    ``feed(data)`` returns the bytes that may be passed on: everything up to the last whole
    packet (a trailing part packet waits for the rest, so a cut always falls between packets), or,
    when a PAT or PMT changes the programs (other PMT PIDs, other elementary PIDs or stream types),
    everything before that packet; ``change`` then says what changed and ``rest()`` gives the bytes
    from that packet on, for the next watch. The first PAT and PMTs seen are the baseline. A PAT or
    PMT repeated verbatim costs one comparison; a new one must pass its CRC to count. Sections
    longer than one packet are not read (PMTs of a few streams fit in one).

    Once ``follow(program_number)`` names the program being segmented (of a multi-program mux),
    only its changes count: its PMT PID in the PAT, its PMT; the other programs may come, go and
    change their own PMTs.
    """

    def __init__(self) -> None:
        self.change: str | None = None
        self._held = b""  # bytes not passed on yet: a part packet, or a possible resync point
        self._rest = b""
        self._grid = PacketGrid(synced=False)
        self._programs: tuple[tuple[int, int], ...] | None = None
        self._maps: dict[int, Streams] = {}  # PMT PID -> its streams
        self._payloads: dict[int, bytes] = {}  # PID -> the last PAT or PMT packet's payload
        self._tables = pid_tables({PAT_PID: 1}, starts_only=True)
        self._followed: int | None = None

    def follow(self, program_number: int | None) -> None:
        """Watch only program ``program_number`` from now on (None: every program)."""
        self._followed = program_number

    def feed(self, data: bytes) -> bytes:
        if self.change is not None:
            self._rest += data
            return b""
        buffer = self._held + data if self._held else data
        grid = self._grid
        for _, start, count in grid.runs(buffer):
            changed_at = self._scan(buffer, start, count)
            if changed_at is not None:
                self._held, self._rest = b"", buffer[changed_at:]
                return buffer[:changed_at]
        end = grid.end
        self._held = buffer[end:]
        return buffer[:end] if end < len(buffer) else buffer

    def aligned(self, size: int) -> int:
        """A read size up to ``size`` that ends the held bytes plus the read on a packet boundary
        (a file then reads in whole packets and nothing is copied to be held back)."""
        whole = size - (len(self._held) + size) % TS_PACKET_BYTES
        return whole if whole > 0 else size

    def flush(self) -> bytes:
        """End of input: the bytes still held."""
        held, self._held = self._held, b""
        return held

    def rest(self) -> bytes:
        """After a change: the bytes from the packet that announced it on."""
        rest, self._rest = self._rest, b""
        return rest

    def _scan(self, data: bytes, start: int, count: int) -> int | None:
        if not count:
            return None
        tables = self._tables
        marks = mark_packets(data, start, count, tables)
        marked = count - marks.count(0)
        if not marked:
            return None
        # The usual chunk: every PAT and PMT in it repeats the last ones seen (10 a second each),
        # which a count of their payloads in C tells without a Python step per packet.
        end = start + count * TS_PACKET_BYTES
        if marked == sum(data.count(payload, start, end) for payload in self._payloads.values()):
            return None
        for match in _MARKED.finditer(marks):
            at = start + match.start() * TS_PACKET_BYTES
            if self._changes(data[at : at + TS_PACKET_BYTES]):
                return at
            if self._tables is not tables:  # the first PAT named the PMTs: look again for them
                done = match.start() + 1
                return self._scan(data, at + TS_PACKET_BYTES, count - done)
        return None

    def _changes(self, packet: bytes) -> bool:
        """Whether this PAT or PMT packet changes the programs (else it may update the baseline)."""
        pid = packet_pid(packet)
        payload = packet[4:]  # what repeats verbatim: the header's continuity counter counts on
        if self._payloads.get(pid) == payload:
            return False
        self._payloads[pid] = payload
        table = section(packet)
        if table is None or len(table) < 12 or crc32_mpeg2(table):
            return False
        if pid == PAT_PID:
            if table[0] != 0x00:
                return False
            programs = pat_programs(table)
            if self._programs is None:
                self._programs = programs
                self._tables = pid_tables({PAT_PID: 1} | {pmt: 1 for _, pmt in programs}, starts_only=True)
                return False
            followed = self._followed
            if followed is not None and _pmt_pid_of(programs, followed) == _pmt_pid_of(self._programs, followed):
                self._programs = programs  # only other programs changed
                return False
            if programs != self._programs:
                self.change = f"the PAT now lists programs {_programs(programs)} instead of {_programs(self._programs)}"
                return True
            return False
        if table[0] != 0x02:
            return False
        if self._followed is not None and (table[3] << 8) | table[4] != self._followed:
            return False  # another program's PMT
        streams = pmt_streams(table)[1]
        before = self._maps.setdefault(pid, streams)
        if streams != before:
            self.change = f"the PMT now lists {describe_streams(streams)} instead of {describe_streams(before)}"
            return True
        return False


def _pmt_pid_of(programs: tuple[tuple[int, int], ...], program_number: int) -> int | None:
    return next((pid for number, pid in programs if number == program_number), None)


def single_program_pat(packet: bytes, program_number: int, pmt_pid: int) -> bytes | None:
    """A PAT packet that lists only ``program_number`` (at ``pmt_pid``), made from the input's PAT
    ``packet``: the same header (continuity counter), transport_stream_id and version, one program
    entry, a new CRC (ISO/IEC 13818-1 2.4.4.3). None when ``packet`` holds no whole PAT section."""
    table = section(packet)
    if table is None or len(table) < 12 or table[0] != 0x00 or crc32_mpeg2(table):
        return None
    body = bytes([0x00, 0xB0, 13]) + table[3:8] + bytes(
        [program_number >> 8, program_number & 0xFF, 0xE0 | (pmt_pid >> 8), pmt_pid & 0xFF])
    body += crc32_mpeg2(body).to_bytes(4, "big")
    header = packet[:3] + bytes([0x10 | (packet[3] & 0x0F)])  # payload only, the same counter
    return (header + b"\x00" + body).ljust(TS_PACKET_BYTES, b"\xff")


class ProgramFilter:
    """One program of a multi-program MPEG-TS: ``keep(chunk, count)`` returns the packets of
    ``chunk`` (``count`` whole packets) that belong to it, in order: its PMT, PCR and elementary
    PIDs (``pids``), and each PAT rewritten to list it alone (``single_program_pat``). Everything
    else goes: the other programs' PMTs and streams, and the service information that describes
    them (SDT, EIT, NIT), and null packets. Per chunk, Python visits runs of packets, not packets.
    """

    def __init__(self, program_number: int, pmt_pid: int, pids: Iterable[int]) -> None:
        self.program_number = program_number
        self.pmt_pid = pmt_pid
        self._tables = pid_tables({PAT_PID: 2} | {pid: 1 for pid in pids} | {pmt_pid: 1}, starts_only=False)
        self._pats: dict[bytes, bytes | None] = {}  # input PAT packet -> its rewrite

    def keep(self, chunk: bytes, count: int) -> tuple[bytes, int]:
        """The chunk's packets of the program, and how many they are."""
        marks = mark_packets(chunk, 0, count, self._tables).translate(_KIND)
        if marks.count(1) == count:
            return chunk, count  # the usual chunk of a single-program stretch: nothing to take out
        kept: list[bytes] = []
        for match in _RUNS.finditer(marks):
            kind = marks[match.start()]
            if kind == 1:
                kept.append(chunk[match.start() * TS_PACKET_BYTES : match.end() * TS_PACKET_BYTES])
            elif kind == 2:
                for at in range(match.start(), match.end()):
                    packet = chunk[at * TS_PACKET_BYTES : (at + 1) * TS_PACKET_BYTES]
                    if packet not in self._pats:
                        if len(self._pats) > 64:
                            self._pats.clear()
                        self._pats[packet] = single_program_pat(packet, self.program_number, self.pmt_pid)
                    rewritten = self._pats[packet]
                    if rewritten is not None:
                        kept.append(rewritten)
        data = b"".join(kept)
        return data, len(data) // TS_PACKET_BYTES


_KIND = bytes(b & 0x7F for b in range(256))  # a mark without its start flag
_RUNS = re.compile(rb"(.)\1*", re.S)


def _programs(programs: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{number} (PMT PID 0x{pid:x})" for number, pid in programs) or "none"
