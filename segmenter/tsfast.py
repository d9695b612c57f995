"""MPEG-TS fast path: cut the input at 188-byte packet level, without demuxing through PyAV. Pure.

Sans-IO: ``TsSplitter.feed(bytes)`` returns events (open a segment, bytes for a segment, close
it, a unit dropped, sync lost), the shell (``segmenter/fastrun.py``) does the file I/O. The cut
decisions are ``cutter.Cutter``'s, fed exactly as the PyAV path feeds it, one PES packet (an
access unit, what FFmpeg's demuxer calls a packet) at a time, from the PES header's PTS/DTS.

What a segment holds:

- first, the input's latest PAT and PMT packets, verbatim. To a player that reads the segments
  one after another they are legal duplicates (same continuity counter as the copy it already
  saw), and the next PAT/PMT of the input continues their counters; a reader that starts at the
  segment learns the program at once;
- then every input packet in input order, with one exception: a PES that started before a cut
  keeps its remaining packets in the segment it started in (an audio PES is still arriving when
  the video keyframe that cuts arrives). So every PES is whole in exactly one segment, as with
  the PyAV path, and the elementary streams' continuity counters run on unchanged across segments.
- other packets (PAT/PMT repeats, SDT, PCR-only, null packets) go where they come, into the
  newest segment.

A keyframe is a video PES whose first packet has the adaptation field's random_access_indicator
set, or whose payload begins with an IDR, SPS (H.264) or IRAP, VPS, SPS (HEVC) NAL unit.

Speed: Python never loops over every packet. For each chunk of the input, the PID and PUSI flag
of every packet are classified with ``bytes.translate`` over strided slices (C speed), and only
PES starts are visited in Python (about 50 per second of media). The bytes between two PES
starts go to one segment in one slice, except close to a cut, where runs of packets are routed
by PID.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .cutter import Action, Cutter, SegmentTiming
from .errors import SegmenterError
from .psi import (
    NOT_SYNC,
    PAT_PID,
    PUSI,
    SYNC_BYTE,
    TS_PACKET_BYTES,
    PacketGrid,
    Streams,
    find_sync,
    mark_packets,
    packet_pid,
    pat_programs,
    payload_offset,
    pid_tables,
    pmt_streams,
    section,
)

# Elementary streams the fast path can route (class ids 1..30 fit in the classification byte).
MAX_STREAMS = 28

# Units held back at a timestamp jump; the cutter bounds it (MAX_HELD_PACKETS) per stream.

# Stream types (ISO/IEC 13818-1 table 2-34) whose keyframes the fast path can find.
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24

_PUSI_EVENT = re.compile(rb"[\x80-\xff]")
_RUN = re.compile(rb"(.)\1*", re.S)
_START_CODE = b"\x00\x00\x01"

# Class ids of the two PSI PIDs (their packets are remembered for the next segment start).
_PAT_CLASS = 0x1F
_PMT_CLASS = 0x1E
_STRIP = bytes(b & 0x1F for b in range(256))


class NotEligible(SegmenterError):
    """The input cannot take the fast path (the reason says why); the PyAV path is used. A
    signal to ``fastrun.plan_fast_path``, not an error the operator sees."""


# -- PSI ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProgramMap:
    pat_packet: bytes
    pmt_packet: bytes
    pmt_pid: int
    pcr_pid: int
    streams: Streams  # (pid, stream_type) in PMT order


def _whole_section(packet: bytes) -> bytes:
    table = section(packet)
    if table is None:
        raise NotEligible("a PSI section that spans packets")
    return table


def find_program(data: bytes) -> ProgramMap:
    """The first program's PAT and PMT packets and elementary streams, from the input's head."""
    start = find_sync(data, 0)
    if start is None:
        raise NotEligible("no MPEG-TS packet grid in the input's first bytes")
    pat: bytes | None = None
    pmt_pid: int | None = None
    for offset in range(start, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        packet = data[offset : offset + TS_PACKET_BYTES]
        if packet[0] != SYNC_BYTE:
            break
        pid = packet_pid(packet)
        if pat is None:
            if pid != PAT_PID or not packet[1] & PUSI:
                continue
            programs = pat_programs(_whole_section(packet))
            if len(programs) != 1:
                raise NotEligible(f"{len(programs)} programs in the PAT (the fast path takes one)")
            pat, pmt_pid = packet, programs[0][1]
        elif pid == pmt_pid and packet[1] & PUSI:
            table = _whole_section(packet)
            if table[0] != 0x02:
                raise NotEligible("the PMT PID carries no PMT")
            pcr_pid, streams = pmt_streams(table)
            return ProgramMap(pat, packet, pmt_pid, pcr_pid, streams)
    raise NotEligible("no PAT and PMT in the input's first bytes")


# -- PES ----------------------------------------------------------------------------------------

def _timestamp(b: bytes, i: int) -> int:
    return ((b[i] & 0x0E) << 29) | (b[i + 1] << 22) | ((b[i + 2] & 0xFE) << 14) | (b[i + 3] << 7) | (b[i + 4] >> 1)


def _key_nal(payload: bytes, hevc: bool) -> bool:
    """Whether the first NAL units in ``payload`` start a random-access point."""
    position = payload.find(_START_CODE)
    while position != -1 and position + 3 < len(payload):
        header = payload[position + 3]
        if hevc:
            kind = (header >> 1) & 0x3F
            if 16 <= kind <= 21 or kind in (32, 33):
                return True
            if kind < 16:
                return False  # a slice that is not IRAP
        else:
            kind = header & 0x1F
            if kind in (5, 7):
                return True
            if kind == 1:
                return False  # a non-IDR slice
        position = payload.find(_START_CODE, position + 3)
    return False


# -- events -------------------------------------------------------------------------------------

OPEN = 0  # (OPEN, segment, psi bytes, finished timing of the previous one or None, discontinuity)
DATA = 1  # (DATA, segment, bytes-like)
CLOSE = 2  # (CLOSE, segment, None, None, None): no more bytes will come for it
DROPPED = 3  # (DROPPED, stream index, reason): one unit left out
SKIPPED = 4  # (SKIPPED, bytes skipped, None): lost sync; garbage skipped


@dataclass(frozen=True, slots=True)
class Track:
    pid: int
    index: int  # the stream's index as the cutter knows it
    video: bool
    hevc: bool
    frame_ticks: int | None  # a video frame's duration in 90 kHz ticks, for the last segment's end


class _Segment:
    __slots__ = ("number", "open_units", "current")

    def __init__(self, number: int) -> None:
        self.number = number
        self.open_units = 0
        self.current = True


class TsSplitter:
    """Feeds PES starts to the cutter and routes every packet to its segment. See the module doc."""

    def __init__(self, program: ProgramMap, tracks: Iterable[Track], cutter: Cutter) -> None:
        tracks = list(tracks)
        if not 1 <= len(tracks) <= MAX_STREAMS:
            raise NotEligible(f"{len(tracks)} elementary streams")
        self.cutter = cutter
        self._psi = [program.pat_packet, program.pmt_packet]
        self._tracks: list[Track | None] = [None] * 32
        pid_class = {PAT_PID: _PAT_CLASS, program.pmt_pid: _PMT_CLASS}
        for number, track in enumerate(tracks, 1):
            self._tracks[number] = track
            pid_class[track.pid] = number
        self._classes = list(range(1, len(tracks) + 1))
        self._tables = pid_tables(pid_class, starts_only=False)
        # Where each class's current unit goes: a segment, a list (held back), or None (dropped).
        # Class 0 is every other packet: the newest segment.
        self._dest: list[_Segment | list[bytes] | None] = [None] * 32
        self._open: list[bool] = [False] * 32
        self._held: list[tuple[int, list[bytes]]] = []
        self._current: _Segment | None = None
        self._older: list[_Segment] = []  # cut, waiting for their units' last packets
        self._number = 0
        self._uniform = False
        self._buffer = bytearray()
        self._grid = PacketGrid(synced=True)  # looked for only once a packet is out of step
        self._events: list[tuple] = []
        self._pending: tuple[_Segment, memoryview, int, int] | None = None

    # -- input --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[tuple]:
        """Take the next bytes of the input; returns the events they complete."""
        buffer = self._buffer
        events = self._events = []
        if not buffer and self._grid.synced and data[:1] == b"\x47":
            # The usual case: whole packets, in step with the grid; no copy.
            whole = len(data) - len(data) % TS_PACKET_BYTES
            if whole and NOT_SYNC.search(data[:whole:TS_PACKET_BYTES]) is None:
                self._chunk(data[:whole] if whole < len(data) else data, whole // TS_PACKET_BYTES)
                buffer += data[whole:]
                return events
        buffer += data
        for skipped, start, count in self._grid.runs(buffer):
            if skipped:
                events.append((SKIPPED, skipped, None))
            if count:
                self._chunk(bytes(buffer[start : start + count * TS_PACKET_BYTES]), count)
        del buffer[: self._grid.end]
        return events

    def finish(self) -> list[tuple]:
        """End of input: close every unit and segment; the last segment's timing is the cutter's."""
        events = self._events = []
        if self._buffer:
            events.append((SKIPPED, len(self._buffer), None))
            self._buffer.clear()
        for cls in self._classes:
            if self._open[cls]:
                self._end_unit(cls)
        for segment in self._older:
            events.append((CLOSE, segment.number, None, None, None))
        self._older = []
        if self._current is not None:
            events.append((CLOSE, self._current.number, None, None, None))
            self._current = None
        if self._held:
            events.append((DROPPED, -1, f"{len(self._held)} unit(s) held at a timestamp jump the video never followed"))
        return events

    # -- one chunk of whole packets -----------------------------------------------------------

    def _chunk(self, chunk: bytes, count: int) -> None:
        classes = mark_packets(chunk, 0, count, self._tables)  # class id, plus 0x80 at a PES or section start
        view = memoryview(chunk)
        runs: bytes | None = None
        start = 0
        for match in _PUSI_EVENT.finditer(classes):
            at = match.start()
            if at > start:
                pending = self._pending
                if (self._uniform and pending is not None and pending[0] is self._current and pending[1] is view
                        and pending[3] == start):
                    self._pending = (pending[0], view, pending[2], at)  # the same write, longer
                else:
                    runs = self._route(view, classes, runs, start, at)
            cls = classes[at] & 0x1F
            packet = chunk[at * TS_PACKET_BYTES : (at + 1) * TS_PACKET_BYTES]
            if cls >= _PMT_CLASS:
                self._psi[0 if cls == _PAT_CLASS else 1] = packet
            else:
                self._unit_start(cls, packet)
            start = at
        if start < count:
            self._route(view, classes, runs, start, count)
        self._flush()

    def _route(self, view: memoryview, classes: bytes, runs: bytes | None, start: int, end: int) -> bytes | None:
        """Send packets [start, end) of the chunk where their units go."""
        if self._uniform:
            self._write(self._current, view, start, end)  # type: ignore[arg-type]
            return runs
        if runs is None:
            runs = classes.translate(_STRIP)
        dest = self._dest
        for match in _RUN.finditer(runs, start, end):
            cls = runs[match.start()]
            target = dest[cls] if 0 < cls < _PMT_CLASS else self._current  # class 0: any other PID
            if target is None:
                continue
            if type(target) is list:
                target.append(bytes(view[match.start() * TS_PACKET_BYTES : match.end() * TS_PACKET_BYTES]))
            else:
                self._write(target, view, match.start(), match.end())  # type: ignore[arg-type]
        return runs

    def _write(self, segment: _Segment, view: memoryview, start: int, end: int) -> None:
        pending = self._pending
        if pending is not None:
            if pending[0] is segment and pending[1] is view and pending[3] == start:
                self._pending = (segment, view, pending[2], end)
                return
            self._flush()
        self._pending = (segment, view, start, end)

    def _flush(self) -> None:
        pending = self._pending
        if pending is not None:
            segment, view, start, end = pending
            self._events.append((DATA, segment.number, view[start * TS_PACKET_BYTES : end * TS_PACKET_BYTES]))
            self._pending = None

    # -- units --------------------------------------------------------------------------------

    def _end_unit(self, cls: int) -> None:
        self._open[cls] = False
        target = self._dest[cls]
        self._dest[cls] = None
        if type(target) is _Segment:
            target.open_units -= 1
            if not target.current and not target.open_units:
                self._flush()
                self._older.remove(target)
                self._events.append((CLOSE, target.number, None, None, None))

    def _unit_start(self, cls: int, packet: bytes) -> None:
        if self._open[cls]:
            self._end_unit(cls)
        track = self._tracks[cls]
        assert track is not None
        pts = dts = None
        key = not track.video
        offset = payload_offset(packet)
        if track.video and packet[3] & 0x20 and packet[4] and packet[5] & 0x40:
            key = True  # random_access_indicator
        if offset is not None and packet[offset : offset + 3] == _START_CODE and offset + 9 <= TS_PACKET_BYTES:
            flags = packet[offset + 7]
            if flags & 0x80 and offset + 14 <= TS_PACKET_BYTES:
                pts = dts = _timestamp(packet, offset + 9)
                if flags & 0x40 and offset + 19 <= TS_PACKET_BYTES:
                    dts = _timestamp(packet, offset + 14)
            if not key:
                key = _key_nal(packet[offset + 9 + packet[offset + 8] :], track.hevc)
        cutter = self.cutter
        action = cutter.feed(track.index, key, pts, dts, track.frame_ticks)
        self._open[cls] = True
        if action is Action.WRITE:
            self._assign(cls, self._current)
        elif action is Action.CUT:
            self._cut(cutter.finished, cutter.discontinuity)
            self._assign(cls, self._current)
        elif action is Action.DROP:
            self._assign(cls, None)
            self._events.append((DROPPED, track.index, cutter.dropped_reason))
        elif action is Action.HOLD:
            parts: list[bytes] = []
            self._held.append((cls, parts))
            self._assign(cls, parts)
        else:  # RELEASE: this stream's held units are dropped, the new one is written
            kept = [item for item in self._held if item[0] != cls]
            for _ in range(len(self._held) - len(kept)):
                self._events.append((DROPPED, track.index, "timestamps jumped without the video"))
            self._held = kept
            self._assign(cls, self._current)

    def _assign(self, cls: int, target: _Segment | list[bytes] | None) -> None:
        self._dest[cls] = target
        if type(target) is _Segment:
            target.open_units += 1
            if self._uniform and target is self._current:
                return  # the usual case: still every unit in the newest segment
        # Every unit still arriving goes to the newest segment: bytes can go there in bulk. (Stray
        # packets of a stream with no unit started are written too: a reader drops them.)
        current = self._current
        dest, is_open = self._dest, self._open
        self._uniform = current is not None and all(dest[c] is current for c in self._classes if is_open[c])

    def _cut(self, finished: SegmentTiming | None, discontinuity: bool) -> None:
        self._flush()
        self._uniform = False  # units still arriving now belong to the older segment
        previous = self._current
        self._number += 1
        segment = _Segment(self._number)
        # A segment still waiting for its units two cuts later belongs to a stream that stopped.
        for stale in self._older:
            for cls in self._classes:
                if self._dest[cls] is stale:
                    self._dest[cls] = None
            self._events.append((CLOSE, stale.number, None, None, None))
        self._older = []
        self._events.append((OPEN, segment.number, self._psi[0] + self._psi[1], finished, discontinuity))
        if previous is not None:
            previous.current = False
            if previous.open_units:
                self._older.append(previous)
            else:
                self._events.append((CLOSE, previous.number, None, None, None))
        self._current = segment
        if discontinuity and self._held:
            for cls, parts in self._held:
                if parts:
                    self._events.append((DATA, segment.number, b"".join(parts)))
                    parts.clear()
                if self._dest[cls] is parts:  # still arriving: the rest goes straight in
                    self._dest[cls] = segment
                    segment.open_units += 1
            self._held = []
