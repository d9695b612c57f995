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
- timed metadata (ID3, stream_type 0x15) and SCTE-35 (0x86) PIDs are copied, never cut on: each
  of their PES packets or sections goes whole into the segment where it started, by its position
  in the input, as an audio PES does (one that starts before the first segment goes into the
  first). The cutter never sees them: only audio and video decide cuts;
- other packets (PAT/PMT repeats, SDT, PCR-only, null packets) go where they come, into the
  newest segment.

Lost packets: the continuity_counter of every PID it routes (PAT, PMT, audio, video, metadata) is
checked (ISO/IEC 13818-1 2.4.3.3) and each break is reported as an event at its position, so the
shell counts them against the segment being written there (``ContinuityCheck``).

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from .audioframes import FAMILIES, AudioFormat
from .cutter import Action, Cutter, SegmentTiming
from .errors import SegmenterError
from .randomaccess import ParameterSet, ParameterWatch
from .psi import (
    NOT_SYNC,
    PAT_PID,
    PUSI,
    SYNC_BYTE,
    TS_PACKET_BYTES,
    PacketGrid,
    ProgramFilter,
    Streams,
    find_sync,
    mark_packets,
    packet_pid,
    pat_programs,
    payload_offset,
    pes_timestamp,
    pid_tables,
    pmt_streams,
    section,
    single_program_pat,
)
from .silence import AUDIO_OVER_FILLER, LATE_UNIT_DROPPED, TsPauseFill

# Elementary streams the fast path can route (class ids 1..30 fit in the classification byte).
MAX_STREAMS = 28

# Metadata packets kept for the first segment while none is open yet (before the first video
# keyframe): an ID3 tag or a SCTE-35 section per second is a few hundred bytes; this bounds memory.
MAX_EARLY_DATA_BYTES = 64 * TS_PACKET_BYTES

# Packets of a keyframe's PES read for its sequence parameter set: its first bytes hold it.
SPS_PACKETS = 8

# Stream types (ISO/IEC 13818-1 table 2-34) whose keyframes the fast path can find.
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24

_PUSI_EVENT = re.compile(rb"[\x80-\xff]")
_RUN = re.compile(rb"(.)\1*", re.S)
_START_CODE = b"\x00\x00\x01"

# Class ids of the two PSI PIDs (their packets are remembered for the next segment start).
NULL_PID = 0x1FFF
_PAT_CLASS = 0x1F
_PMT_CLASS = 0x1E
_STRIP = bytes(b & 0x1F for b in range(256))
_CLASS_MARK = [re.compile(re.escape(bytes((cls,)))) for cls in range(32)]  # a class's packets, stripped
_match_start = re.Match.start


class NotEligible(SegmenterError):
    """The input cannot take the fast path (the reason says why); the PyAV path is used. A
    signal to ``fastrun.plan_fast_path``, not an error the operator sees."""


# -- PSI ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProgramMap:
    pat_packet: bytes  # naming this program alone (rewritten when the input's PAT lists others)
    pmt_packet: bytes
    pmt_pid: int
    pcr_pid: int
    streams: Streams  # (pid, stream_type) in PMT order
    number: int = 0  # program_number
    others: bool = False  # the input's PAT lists other programs: their packets are taken out

    def program_filter(self) -> ProgramFilter | None:
        """What takes the other programs' packets out of the input (None: there are none)."""
        if not self.others:
            return None
        pcr = [self.pcr_pid] if self.pcr_pid != NULL_PID else []  # 0x1FFF: no PCR, not null packets
        return ProgramFilter(self.number, self.pmt_pid, [*pcr, *(pid for pid, _ in self.streams)])


def _whole_section(packet: bytes) -> bytes:
    table = section(packet)
    if table is None:
        raise NotEligible("a PSI section that spans packets")
    return table


def find_program(data: bytes, number: int | None = None) -> ProgramMap:
    """Program ``number``'s (None: the first's) PAT and PMT packets and elementary streams, from
    the input's head. When the PAT lists other programs too, the PAT packet is rewritten to list
    this one alone (``psi.single_program_pat``), and the map says so (``others``)."""
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
            if not programs:
                raise NotEligible("no program in the PAT")
            chosen = programs[0] if number is None else next((p for p in programs if p[0] == number), None)
            if chosen is None:
                raise NotEligible(f"program {number} is not in the PAT")
            number, pmt_pid = chosen
            if [p for _, p in programs].count(pmt_pid) > 1:
                raise NotEligible(f"programs share the PMT PID 0x{pmt_pid:x}")
            others = len(programs) > 1
            pat = single_program_pat(packet, number, pmt_pid) if others else packet
            if pat is None:
                raise NotEligible("a PAT that cannot be rewritten")
        elif pid == pmt_pid and packet[1] & PUSI:
            table = _whole_section(packet)
            if table[0] != 0x02:
                raise NotEligible("the PMT PID carries no PMT")
            pcr_pid, streams = pmt_streams(table)
            return ProgramMap(pat, packet, pmt_pid, pcr_pid, streams, number, others)
    raise NotEligible("no PAT and PMT in the input's first bytes")


# -- PES ----------------------------------------------------------------------------------------

def _pid_packets(data: bytes, pid: int) -> Iterator[bytes]:
    """The 188-byte packets of ``pid`` in ``data``, read from its first byte on while in step."""
    for at in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        if data[at] != 0x47:
            return
        if ((data[at + 1] & 0x1F) << 8) | data[at + 2] == pid:
            yield data[at : at + TS_PACKET_BYTES]


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

# (OPEN, segment, psi bytes, finished timing of the previous one or None, discontinuity, forced, video):
# video is (ParameterSet or None, changed): the reference video's parameters in the segment, and
# whether they changed at its first keyframe (only with a ParameterWatch; else (None, False)).
OPEN = 0
DATA = 1  # (DATA, segment, bytes-like)
CLOSE = 2  # (CLOSE, segment, timing, None, None): no more bytes will come for it; timing at the end
DROPPED = 3  # (DROPPED, stream index, reason): one unit left out
SKIPPED = 4  # (SKIPPED, bytes skipped, None): lost sync; garbage skipped
CONTINUITY = 5  # (CONTINUITY, PID, None): a continuity_counter break (lost packets) at this point


@dataclass(frozen=True, slots=True)
class Track:
    pid: int
    index: int  # the stream's index as the cutter knows it
    video: bool
    hevc: bool
    frame_ticks: int | None  # a video frame's duration in 90 kHz ticks, for the last segment's end
    data: bool = False  # a timed metadata or SCTE-35 PID: copied, never fed to the cutter
    codec: str = ""  # an audio track's codec, as FFmpeg names it ("aac", "mp3"): its pauses are filled


def check_routable(tracks: list[Track]) -> None:
    """Raise NotEligible unless the splitter can route ``tracks``: at least one audio or video
    stream, and at most MAX_STREAMS PIDs in all (each needs a class id)."""
    if len(tracks) > MAX_STREAMS:
        raise NotEligible(f"{len(tracks)} elementary streams (the fast path routes at most {MAX_STREAMS})")
    if all(track.data for track in tracks):
        raise NotEligible("no audio or video stream")


def _unit_fits(packet: bytes) -> bool:
    """Whether the PES packet or PSI section starting in ``packet`` ends in it too."""
    offset = payload_offset(packet)
    if offset is None:
        return False
    if packet[offset : offset + 3] == _START_CODE:
        if offset + 6 > TS_PACKET_BYTES:
            return False
        length = (packet[offset + 4] << 8) | packet[offset + 5]  # PES_packet_length; 0: unbounded
        return 0 < length <= TS_PACKET_BYTES - offset - 6
    return section(packet) is not None


_SELECT = [bytes(0xFF if b == cls else 0 for b in range(256)) for cls in range(32)]
# A packet's fourth byte -> 0x10 | continuity_counter when it carries a payload, else 0 (an
# adaptation-field-only packet does not count: its counter repeats the last one).
_COUNTER = bytes(0x10 | (b & 0x0F) if b & 0x10 else 0 for b in range(256))


class ContinuityCheck:
    """Finds continuity_counter breaks (lost or damaged packets) in the packets of some PIDs.

    ISO/IEC 13818-1 2.4.3.3: the 4-bit counter of a PID goes up by one with every packet that
    carries a payload; a packet with an adaptation field only repeats it; a packet may be sent
    twice (same counter) once; a discontinuity_indicator in the adaptation field allows a break.
    Anything else is an error, one per break, whatever the number of packets lost (which the 4-bit
    counter cannot tell). The first packet of a PID sets its counter.

    ``check(chunk, count, marks)`` takes whole packets and their class ids (``marks``: one byte
    per packet, the class id in its low 5 bits, 0 for PIDs not checked) and returns the breaks as
    (packet position in the chunk, PID), in input order. Python visits the packets of a PID only
    in a chunk where its counters do not simply count up (about never on a clean input).
    """

    def __init__(self, pids: dict[int, int]) -> None:
        self._pids = pids  # class id -> PID
        self._last: dict[int, int] = {}  # class id -> last counter seen
        self._repeated: dict[int, bool] = {}  # class id -> its last packet repeated the one before
        self._ramp = b""

    def check(self, chunk: bytes, count: int, marks: bytes) -> list[tuple[int, int]]:
        counters = int.from_bytes(chunk[3 : count * TS_PACKET_BYTES : TS_PACKET_BYTES].translate(_COUNTER), "big")
        marks = marks.translate(_STRIP)
        breaks: list[tuple[int, int]] = []
        for cls in self._pids:
            if marks.find(cls) == -1:
                continue
            selected = int.from_bytes(marks.translate(_SELECT[cls]), "big") & counters
            sequence = selected.to_bytes(count, "big").translate(None, b"\0")
            if not sequence:
                continue
            last = self._last.get(cls)
            first = sequence[0] & 0x0F if last is None else (last + 1) & 0x0F
            if len(self._ramp) < len(sequence) + 16:
                self._ramp = bytes(0x10 | (i & 0x0F) for i in range(2 * len(sequence) + 16))
            if sequence == self._ramp[first : first + len(sequence)]:
                self._last[cls] = sequence[-1] & 0x0F
                self._repeated[cls] = False
            else:
                self._walk(chunk, marks, cls, breaks)
        breaks.sort()
        return breaks

    def _walk(self, chunk: bytes, marks: bytes, cls: int, breaks: list[tuple[int, int]]) -> None:
        """The packets of class ``cls`` one by one: where its counter breaks."""
        last = self._last.get(cls)
        repeated = self._repeated.get(cls, False)
        for match in re.finditer(re.escape(bytes([cls])), marks):
            at = match.start() * TS_PACKET_BYTES
            flags = chunk[at + 3]
            if not flags & 0x10:
                continue  # adaptation field only
            counter = flags & 0x0F
            if last is not None and counter != (last + 1) & 0x0F:
                if counter == last and not repeated:
                    repeated = True  # a duplicate packet, allowed once
                    continue
                discontinuity = flags & 0x20 and chunk[at + 4] and chunk[at + 5] & 0x80
                if not discontinuity:
                    breaks.append((match.start(), self._pids[cls]))
            repeated = False
            last = counter
        if last is not None:
            self._last[cls] = last
        self._repeated[cls] = repeated


class _Segment:
    __slots__ = ("number", "open_units", "current")

    def __init__(self, number: int) -> None:
        self.number = number
        self.open_units = 0
        self.current = True


class TsSplitter:
    """Feeds audio and video PES starts to the cutter and routes every packet to its segment. See
    the module doc. Raises NotEligible when ``tracks`` cannot be routed (``check_routable``)."""

    def __init__(self, program: ProgramMap, tracks: Iterable[Track], cutter: Cutter,
                 watch: ParameterWatch | None = None,
                 silent_frame: Callable[[int, AudioFormat], bytes | None] | None = None,
                 look_ahead: bytes = b"") -> None:
        """``watch``: the reference video stream's parameters; a keyframe carrying new ones is
        cut at (``Cutter.feed``'s ``cut_here``) and its segment's OPEN says so. ``silent_frame``:
        makes the silent frame of a track (its stream index) in a format, or None; pauses in
        audio tracks whose ``codec`` has a frame family (``audioframes.FAMILIES``) are then filled
        with silence (silence.TsPauseFill). ``look_ahead``: the input's first bytes as the probe
        read them (``feed`` gets them again), in which those tracks' first frame headers are
        looked for: a track that starts after the video is then filled from the first segment's
        start."""
        tracks = list(tracks)
        check_routable(tracks)
        self.cutter = cutter
        self._only = program.program_filter()
        self._psi = [program.pat_packet, program.pmt_packet]
        self._tracks: list[Track | None] = [None] * 32
        pid_class = {PAT_PID: _PAT_CLASS, program.pmt_pid: _PMT_CLASS}
        for number, track in enumerate(tracks, 1):
            self._tracks[number] = track
            pid_class[track.pid] = number
        self._classes = list(range(1, len(tracks) + 1))
        self.watch = watch
        self._watched = next((number for number, track in enumerate(tracks, 1)
                              if track.video and track.index == cutter.reference.index), 0) if watch else 0
        self._video: tuple[ParameterSet | None, bool] = (None, False)
        # New parameters came at a keyframe the cutter could not cut at: the next cut marks them.
        self._change_pending = False
        self._data_classes = [number for number, track in enumerate(tracks, 1) if track.data]
        self._tables = pid_tables(pid_class, starts_only=False)
        self._continuity = ContinuityCheck({number: pid for pid, number in pid_class.items()})
        self._early: list[bytes] = []  # metadata packets before the first segment
        # Where each class's current unit goes: a segment, a list (held back), or None (dropped).
        # Class 0 is every other packet: the newest segment.
        self._dest: list[_Segment | list[bytes] | None] = [None] * 32
        self._open: list[bool] = [False] * 32
        self._held: dict[int, tuple[int, list[bytes]]] = {}  # by the cutter's held id, in order
        self._current: _Segment | None = None
        self._older: list[_Segment] = []  # cut, waiting for their units' last packets
        self._number = 0
        self._uniform = False
        self._buffer = bytearray()
        self._grid = PacketGrid(synced=True)  # looked for only once a packet is out of step
        self._events: list[tuple] = []
        self._pending: tuple[_Segment, memoryview, int, int] | None = None
        # Silence for pauses in audio tracks, by class, fed every packet of their PID (_feed_fill).
        self._fills = {number: TsPauseFill(track.pid, FAMILIES[track.codec], partial(silent_frame, track.index))
                       for number, track in enumerate(tracks, 1)
                       if silent_frame is not None and not track.video and track.codec in FAMILIES}
        self._fed = dict.fromkeys(self._fills, 0)  # packets of the chunk given to each fill so far
        self._fill_chunk = (memoryview(b""), b"")  # the chunk, and its packets' classes
        for number, fill in self._fills.items():
            fill.look_ahead(_pid_packets(look_ahead, fill.pid))
        self._begun = False  # the first segment was opened (TsPauseFill.begin)
        self._late: dict[int, list[bytes]] = {}  # late units kept back (TsPauseFill.unit), by class
        self._clock: int | None = None  # the reference's latest dts: the program's clock
        self._clock_end: int | None = None  # and the end of its unit

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
        timing = self.cutter.finish()
        self._settle()
        if self._fills:
            self._finish_fills()
        for segment in self._older:
            events.append((CLOSE, segment.number, None, None, None))
        self._older = []
        if self._current is not None:
            events.append((CLOSE, self._current.number, timing, None, None))
            self._current = None
        return events

    # -- one chunk of whole packets -----------------------------------------------------------

    def _chunk(self, chunk: bytes, count: int) -> None:
        if self._only is not None:  # one program of several: the others' packets go first
            chunk, count = self._only.keep(chunk, count)
            if not count:
                return
        classes = mark_packets(chunk, 0, count, self._tables)  # class id, plus 0x80 at a PES or section start
        breaks = self._continuity.check(chunk, count, classes)
        view = memoryview(chunk)
        if self._fills:
            self._fill_chunk = (view, classes.translate(_STRIP))
            self._fed = dict.fromkeys(self._fills, 0)
        runs: bytes | None = None
        start = 0
        for match in _PUSI_EVENT.finditer(classes):
            at = match.start()
            if breaks and breaks[0][0] <= at:
                # Reported before the unit starting here may cut: the packets lost came before it.
                self._report(breaks, at)
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
                self._unit_start(cls, packet, chunk, classes, at)
            start = at
        if start < count:
            self._route(view, classes, runs, start, count)
        if breaks:
            self._report(breaks, count)
        self._flush()
        for cls in self._fills:
            self._feed_fill(cls, count)

    def _report(self, breaks: list[tuple[int, int]], upto: int) -> None:
        """CONTINUITY events for the breaks at packet positions up to ``upto`` (removed)."""
        while breaks and breaks[0][0] <= upto:
            self._events.append((CONTINUITY, breaks.pop(0)[1], None))

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

    def _unit_start(self, cls: int, packet: bytes, chunk: bytes, classes: bytes, at: int) -> None:
        if self._open[cls]:
            self._end_unit(cls)
        track = self._tracks[cls]
        assert track is not None
        if track.data:
            self._data_start(cls, track, packet)
            return
        pts = dts = None
        key = not track.video
        offset = payload_offset(packet)
        if track.video and packet[3] & 0x20 and packet[4] and packet[5] & 0x40:
            key = True  # random_access_indicator
        if offset is not None and packet[offset : offset + 3] == _START_CODE and offset + 9 <= TS_PACKET_BYTES:
            flags = packet[offset + 7]
            if flags & 0x80 and offset + 14 <= TS_PACKET_BYTES:
                pts = dts = pes_timestamp(packet, offset + 9)
                if flags & 0x40 and offset + 19 <= TS_PACKET_BYTES:
                    dts = pes_timestamp(packet, offset + 14)
            if not key:
                key = _key_nal(packet[offset + 9 + packet[offset + 8] :], track.hevc)
        cut_here = False
        if cls == self._watched:
            watch = self.watch
            assert watch is not None
            if key and offset is not None and watch.keyframe(self._unit_head(cls, packet, offset, chunk, classes, at)):
                self._change_pending = True
            watch.frame(dts)
            cut_here = key and self._change_pending
        cutter = self.cutter
        action = cutter.feed(track.index, key, pts, dts, track.frame_ticks, cut_here=cut_here)
        self._open[cls] = True
        if action is Action.CUT:
            self._video = (self.watch.current if self.watch else None, self._change_pending)
            self._change_pending = False
            if self._fills and not cutter.discontinuity and cutter.dts is not None:
                self._close_fills(cutter.dts, at)
            elif self._late and cutter.discontinuity:
                self._end_late_units(at)
            self._cut(cutter.finished, cutter.discontinuity)
        if cutter.settled:
            self._settle()
        late = self._fill(cls, track, action, at) if self._fills else None
        if late is not None:
            self._assign(cls, late)
        elif action is Action.WRITE or action is Action.CUT:
            self._assign(cls, self._current)
        elif action is Action.DROP:
            self._assign(cls, None)
            self._events.append((DROPPED, track.index, cutter.dropped_reason))
        else:
            parts: list[bytes] = []
            self._held[cutter.held_id] = (cls, parts)
            self._assign(cls, parts)

    # -- silence for audio pauses (silence.TsPauseFill) ----------------------------------------

    def _feed_fill(self, cls: int, end: int) -> None:
        """Give the fill of class ``cls`` its packets of the chunk before packet ``end``."""
        chunk, classes = self._fill_chunk
        fed = self._fed[cls]
        if fed >= end:
            return
        self._fills[cls].packets([chunk[at * TS_PACKET_BYTES : (at + 1) * TS_PACKET_BYTES]
                                  for at in map(_match_start, _CLASS_MARK[cls].finditer(classes, fed, end))])
        self._fed[cls] = end

    def _insert(self, data: bytes) -> None:
        """Filler packets into the newest segment, here in the input's order."""
        if data and self._current is not None:
            self._flush()
            self._events.append((DATA, self._current.number, data))

    def _fill(self, cls: int, track: Track, action: Action, at: int) -> list[bytes] | None:
        """Silence due at a unit start (packet ``at`` of the chunk): at a reference unit, for the
        pauses still open; at an audio unit, before the unit that ends a pause. Returns the list
        that keeps the unit back when it is the muxer's late unit, or that takes the packets of
        one left out (None otherwise)."""
        cutter = self.cutter
        if action is Action.CUT and cutter.discontinuity:
            for audio, fill in self._fills.items():
                fill.reset()  # nothing is filled across a new timeline
                if (parts := self._late.pop(audio, None)) is not None:
                    self._insert(b"".join(parts))  # as it came; the rest of it follows
                    if self._dest[audio] is parts:
                        self._assign(audio, self._current)
            self._clock = self._clock_end = None
        if action is Action.CUT and (cutter.discontinuity or not self._begun) and cutter.pts is not None:
            # The first segment, or a new timeline's: a track yet to send is filled from its start.
            self._begun = True
            for audio, fill in self._fills.items():
                self._feed_fill(audio, at)
                self._insert(fill.begin(cutter.pts))
        fill = self._fills.get(cls)
        if fill is None:
            if track.index == cutter.reference.index and cutter.dts is not None:
                self._clock = cutter.dts
                self._clock_end = cutter.dts + (track.frame_ticks or 0)
                for audio, other in self._fills.items():
                    if other.behind(cutter.dts):
                        self._feed_fill(audio, at)
                        self._insert(other.due(cutter.dts))
            return None
        self._feed_fill(cls, at)
        if cls in self._late:
            self._end_late(cls, fill)
        # A unit the cutter holds back is written later, in order: the filler goes on up to it.
        data, late = fill.unit(cutter.pts, action is not Action.DROP, self._clock, held=action is Action.HOLD)
        self._insert(data)
        if fill.left_out:  # it would play over silence already written
            fill.left_out = False
            self._events.append((DROPPED, track.index, AUDIO_OVER_FILLER))
            return []  # its packets go into a list nothing writes
        if not late:
            return None
        self._late[cls] = []
        return self._late[cls]

    def _close_fills(self, clock: int, at: int) -> None:
        """The newest segment is cut at ``clock``, at packet ``at`` of the chunk: silence into it
        for a pause that put no audio in it (``TsPauseFill.closing``)."""
        for audio, fill in self._fills.items():
            self._feed_fill(audio, at)
            self._insert(fill.closing(clock))

    def _end_late(self, cls: int, fill: TsPauseFill) -> None:
        """A late unit kept back is whole: retimed into the newest segment, or dropped."""
        packets = b"".join(self._late.pop(cls))
        retimed = fill.late_unit(packets, self._clock) if self._clock is not None else packets
        if retimed is None:
            track = self._tracks[cls]
            self._events.append((DROPPED, track.index if track else -1, LATE_UNIT_DROPPED))
        else:
            self._insert(retimed)

    def _end_late_units(self, at: int) -> None:
        """A new timeline starts at packet ``at`` of the chunk: a late unit kept back that is
        whole ends on the old one, in its last segment (retimed or dropped, ``_end_late``), as
        the PyAV path writes it when it comes. One still arriving goes on as it came, in the new
        segment (``_fill``)."""
        for cls in list(self._late):
            fill = self._fills[cls]
            self._feed_fill(cls, at)
            if fill.counter.complete:
                self._end_late(cls, fill)
                self._dest[cls] = None

    def _finish_fills(self) -> None:
        """End of input: late units still kept back, then silence up to the reference's end for a
        pause still open."""
        for cls, fill in self._fills.items():
            if cls in self._late:
                self._end_late(cls, fill)
            if self._clock_end is not None:
                self._insert(fill.finish(self._clock_end))

    @staticmethod
    def _unit_head(cls: int, packet: bytes, offset: int, chunk: bytes, classes: bytes, at: int) -> bytes:
        """The first bytes of the PES payload starting in ``packet`` (chunk packet ``at``): its
        payload and that of the stream's next packets in the chunk, up to SPS_PACKETS."""
        start = offset + 9 + packet[offset + 8] if offset + 9 <= TS_PACKET_BYTES else TS_PACKET_BYTES
        parts = [packet[start:]]
        same, end = bytes((cls,)), classes.find(bytes((cls | 0x80,)), at + 1)
        position = at
        for _ in range(SPS_PACKETS - 1):
            position = classes.find(same, position + 1, len(classes) if end == -1 else end)
            if position == -1:
                break
            following = chunk[position * TS_PACKET_BYTES : (position + 1) * TS_PACKET_BYTES]
            payload = payload_offset(following)
            if payload is not None:
                parts.append(following[payload:])
        return b"".join(parts)

    def _data_start(self, cls: int, track: Track, packet: bytes) -> None:
        """A metadata PES or section starts: into the newest segment (before the first one opens,
        kept for it). One that ends in this packet leaves nothing open: its segment may close."""
        target: _Segment | list[bytes] | None = self._current
        if target is None:
            if sum(map(len, self._early)) < MAX_EARLY_DATA_BYTES:
                target = self._early
            else:
                self._events.append((DROPPED, track.index, "metadata before the first segment, beyond "
                                     f"{MAX_EARLY_DATA_BYTES} bytes"))
        if target is None or _unit_fits(packet):
            self._dest[cls] = target
        else:
            self._open[cls] = True
            self._assign(cls, target)

    def _settle(self) -> None:
        """Units the cutter held back and has now decided: into the newest segment (with the
        rest of a unit still arriving), or dropped."""
        segment = self._current
        for held_id, reason in self.cutter.settled:
            cls, parts = self._held.pop(held_id)
            keep = reason is None and segment is not None
            if keep and parts:
                self._events.append((DATA, segment.number, b"".join(parts)))  # type: ignore[union-attr]
            elif not keep:
                track = self._tracks[cls]
                self._events.append((DROPPED, track.index if track else -1, reason or "nothing open to write into"))
            parts.clear()
            if self._dest[cls] is parts:  # still arriving: the rest goes the same way
                self._dest[cls] = segment if keep else None
                if keep:
                    segment.open_units += 1  # type: ignore[union-attr]
        self._uniform = False

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
        self._events.append((OPEN, segment.number, self._psi[0] + self._psi[1], finished, discontinuity,
                             self.cutter.forced, self._video))
        if self._early:
            self._events.append((DATA, segment.number, b"".join(self._early)))
            self._early.clear()
        for cls in self._data_classes:
            # Metadata packets with no unit open (a stray continuation) go into the newest segment;
            # a unit kept for the first segment goes on in it.
            if not self._open[cls] or self._dest[cls] is self._early:
                self._dest[cls] = segment
                if self._open[cls]:
                    segment.open_units += 1
        if previous is not None:
            previous.current = False
            if previous.open_units:
                self._older.append(previous)
            else:
                self._events.append((CLOSE, previous.number, None, None, None))
        self._current = segment
