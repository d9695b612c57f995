"""Silent audio for a pause in an audio track while the video goes on. Pure, no PyAV.

A player that feeds Media Source Extensions cannot play across a hole in an audio track while
the video goes on: Chromium's native HLS stops at it, hls.js stalls (its audio SourceBuffer ends
where the audio paused; it fills holes only inside a segment that carries audio). So where an
audio track pauses on the program's timeline (not at a discontinuity: ``cutter.Cutter`` decides
those), hls-segment fills the pause with silent frames of the track's own format (AAC, MP2, MP3,
AC-3, E-AC-3: ``audioframes.py``), in the segments whose time the pause covers, so that every
segment's audio reaches on to the next one's (docs/segmenter.md, "Audio pauses").

What is here:

- ``PauseFiller``: when to fill and the timestamps of the filler frames, in ticks of the track's
  time base (exact integer arithmetic in parts of a tick in which a frame is whole, rounded only
  on output), and where the muxer's late last unit before a pause goes.
- ``FrameCounter``: follows one MPEG-TS audio PID packet by packet (what the fast path copies
  verbatim): its continuity counter, the PES being received, how many whole frames of its codec
  family (``audioframes.Adts``, ``MpegAudio``, ``Ac3``, ``Eac3``) it holds.
- ``filler_packets``: MPEG-TS packets for the audio PID carrying one PES per silent frame,
  a multiple of 16 of them, so that the continuity counter of the input's next packet on that
  PID follows on (ISO/IEC 13818-1 2.4.3.3: it counts packets with payload modulo 16);
  ``retimed_pes`` gives a PES a new PTS.
- ``TsPauseFill``: the three together for one audio PID of the fast path.

The silent frame itself is made by the shell with FFmpeg's encoder of the codec (a frame of
zeros), once per track.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction

from .audioframes import AudioFormat, Family
from .cutter import DISCONTINUITY_GAP_S, INTERLEAVE_S
from .psi import TS_PACKET_BYTES, payload_offset, pes_timestamp

TICKS_PER_SECOND = 90000  # PES timestamps
PTS_WRAP = 2**33

# A hole longer than this many frames is a pause and is filled; shorter ones are jitter of the
# encoder or muxer (one lost frame), left as they are.
MIN_GAP_FRAMES = 2

# Muxers hold the audio frames of the PES being assembled until the next frame comes: the PES
# before a pause is written only when the audio resumes (FFmpeg's holds at most 0.35 s, its
# max_delay / 2). Such a late unit is moved to where the filler has got to, if it fits in this.
LATE_UNIT_S = Fraction(1, 2)

# While a pause is open, filler is written for time this far behind the program's clock: the
# resumed audio starts at most INTERLEAVE_S behind it, and a late unit of up to LATE_UNIT_S still
# fits between the filler and the resumed audio.
FILL_LAG_S = INTERLEAVE_S + LATE_UNIT_S

# The fast path writes filler for an open pause in batches of this many frames: with one MPEG-TS
# packet per silent frame (a small AAC frame), whole turns of the continuity counter; larger
# frames take more packets, and ``filler_packets`` pads the batch to a multiple of 16.
FAST_BATCH_FRAMES = 16


class PauseFiller:
    """Where an audio track pauses while the program's clock goes on: the timestamps of the silent
    frames that fill it, and where the muxer's late unit goes.

    All times are ticks of the track's ``time_base`` (seconds per tick); one frame lasts
    ``frame_ticks``. The shell tells it the program's clock (the reference stream's latest dts, in
    this track's ticks) at each reference packet (``due``) and cut (``closing``), each real packet
    it is about to write (``late``, then ``retime`` or ``resume``) and its end once known
    (``ended``), a discontinuity or a packet not written (``reset``: nothing is filled across them),
    and the end of the input (``finish``).

    The rule: once the real audio ends more than ``MIN_GAP_FRAMES`` frames before the clock less
    ``FILL_LAG_S``, the track has paused and ``due`` returns filler frames, a frame apart from the
    end of the real audio, up to the clock less ``FILL_LAG_S`` (at least ``batch`` at a time):
    written then, they land in the segments whose time they cover, behind the video as a muxer's
    interleave puts audio; a segment cut with none of the track's audio in it gets filler up to its
    cut less ``INTERLEAVE_S`` (``closing``). A unit that continues the real audio from before the
    pause (the muxer's late unit) is moved to where the filler has got to (``retime``), or left out
    when it would reach past the clock less ``INTERLEAVE_S``. The first other real packet ends the
    pause: filler up to it (``resume``). A pause that ends before any filler was due (shorter than
    the lag) is filled at once, before the packet that ends it, as is one left at the end of input.
    Packets more than ``DISCONTINUITY_GAP_S`` past the clock (a stream that jumped alone) end a
    pause unfilled.
    """

    def __init__(self, frame_ticks: Fraction | int, time_base: Fraction, *, batch: int = 1) -> None:
        """``batch``: the fewest frames ``due`` returns at a time (the fast path's 16).

        Inside, times are integers in units of 1/``scale`` tick, where ``scale`` is the
        denominator of ``frame_ticks`` (1 when a frame is a whole number of ticks: 1920 ticks of
        90 kHz at 48 kHz; 49 at 44.1 kHz): as exact as ``Fraction`` arithmetic, and as cheap as
        integers."""
        self.frame_ticks = frame_ticks
        self.batch = batch
        self.scale = Fraction(frame_ticks).denominator
        self.frame = self._units(frame_ticks)  # one frame, in units
        self.min_gap = MIN_GAP_FRAMES * self.frame
        self.lag = self._units(FILL_LAG_S / time_base)
        self.interleave = self._units(INTERLEAVE_S / time_base)
        self.jump = self._units(DISCONTINUITY_GAP_S / time_base)
        self.end: Fraction | int | None = None  # end of the audio written, real or filler, in units
        self.real_end: Fraction | int | None = None  # end of the real audio on the input's timeline, in units
        self.filling = False  # a pause is open and filler was written for it
        self.carried = False  # audio, real or filler, was written since the last ``closing``
        self.unknown_start = False  # began (``begin``) with the first frame's pts unknown, none sent yet

    def _units(self, ticks: Fraction | int) -> Fraction | int:
        """``ticks`` in units of 1/``scale`` tick: an int when whole (most often), else exact."""
        units = ticks * self.scale
        if type(units) is int:
            return units
        return units.numerator if units.denominator == 1 else units

    def _ticks(self, units: Fraction | int) -> int:
        """``units`` in whole ticks, rounded to the nearest (half to even, as ``round``)."""
        return round(units) if self.scale == 1 else round(Fraction(units, self.scale))

    def reset(self) -> None:
        """A discontinuity, or a packet not written: nothing is filled across it."""
        self.end = self.real_end = None
        self.filling = self.unknown_start = False

    def begin(self, clock: Fraction | int, first: int | None = None) -> list[int]:
        """The program starts at ``clock`` (its first segment's presentation start) before this
        track sent a frame: until its first frame, the track is in a pause that began there (an
        encoder whose audio starts after the video). Without audio in its first segment, hls.js
        sets up no audio buffer and fails at the first segment that brings some. ``first``: the
        pts of the track's first frame when it is known ahead (the fast path reads it in what the
        probe read); then the pts of the filler up to it, at once, when it is more than
        ``MIN_GAP_FRAMES`` frames late. Otherwise (none now) the track is filled once filler is
        due (``due``, ``closing``), and a first frame less than ``FILL_LAG_S`` late (an encoder's
        audio priming, a muxer's interleave) is left as it starts. Nothing changes for a track
        that already sent."""
        if self.end is not None:
            return []
        self.end = self._units(clock)
        self.unknown_start = first is None
        self.carried = False  # the segment starting here has no audio yet
        if first is None or first * self.scale - self.end <= self.min_gap:
            return []
        return self._frames((first * self.scale - self.end) // self.frame)

    def due(self, clock: Fraction | int) -> list[int]:
        """The program's clock reached ``clock``: the pts of filler frames to write now (often none)."""
        end = self.end
        if end is None:
            return []
        behind = self._units(clock) - self.lag - end
        if not self.filling and behind <= self.min_gap:
            return []
        count = behind // self.frame
        if count < self.batch:
            return []
        self.filling = True
        return self._frames(count)

    def closing(self, clock: Fraction | int) -> list[int]:
        """The segment being written ends at ``clock`` (its cut): the pts of filler frames to write
        into it before it closes (often none). A segment shorter than ``FILL_LAG_S`` may otherwise
        carry no audio of a track in a pause at all, and hls.js stalls at a segment without audio
        (it fills holes only inside a segment that carries some). So when none was written since
        the last ``closing`` and the audio written ends more than ``INTERLEAVE_S`` (plus
        ``MIN_GAP_FRAMES`` frames) before ``clock``, filler goes up to ``clock`` less
        ``INTERLEAVE_S``, and the pause is being filled: a late unit then has the room left
        between there and the resumed audio.

        A track that has sent nothing since ``begin`` without its first frame's pts (the PyAV
        path) gets one frame at least, where its pause began: in a first segment shorter than
        ``INTERLEAVE_S`` (1-s GOPs cut at 1 s), hls.js would otherwise set up no audio buffer.
        Its first frame, arriving after the cut, may then start inside that frame
        (``overlapped``)."""
        carried, self.carried = self.carried, False
        end = self.end
        if carried or end is None:
            return []
        behind = self._units(clock) - self.interleave - end
        if behind <= self.min_gap:
            if not self.unknown_start or self._units(clock) - end < self.frame:
                return []
            behind = self.frame
        self.filling = True
        frames = self._frames(behind // self.frame)
        self.carried = False  # this segment's: the next one starts with none
        return frames

    def finish(self, clock: Fraction | int) -> list[int]:
        """End of input at ``clock`` (the end of the reference's last packet): filler up to it for a
        pause still being filled (none otherwise: the audio of a whole stream ends as it ends)."""
        if not self.filling or self.end is None:
            return []
        return self._frames((self._units(clock) - self.end) // self.frame)

    def late(self, pts: int) -> bool:
        """Whether a real packet at ``pts`` is the muxer's late unit: a pause is being filled and
        the packet follows on from the real audio before it (within half a frame)."""
        return (self.filling and self.real_end is not None
                and 2 * abs(pts * self.scale - self.real_end) <= self.frame)

    def overlapped(self, pts: int) -> bool:
        """Whether a real packet at ``pts`` that is no late unit starts before the filler written
        for its pause ends (the track's first frame, after ``closing`` gave one frame where it
        might start): it would play over that silence, so it is left out."""
        return self.filling and self.end is not None and pts * self.scale < self.end

    def retime(self, duration: Fraction | int, clock: Fraction | int) -> int | None:
        """A late unit lasting ``duration``: the pts to write it at (where the audio written ends),
        or None when it would reach past ``clock`` less ``INTERLEAVE_S``, where the resumed audio
        may start (then it is not written)."""
        assert self.end is not None and self.real_end is not None
        length = self._units(duration)
        self.real_end += length
        start = self.end
        if start + length > self._units(clock) - self.interleave:
            return None
        self.end = start + length
        self.carried = True
        return self._ticks(start)

    def resume(self, pts: int, clock: Fraction | int | None) -> list[int]:
        """A real packet at ``pts`` that is no late unit is about to be written: the pts of the
        filler frames to write before it (often none). Until ``ended``, it ends at ``pts``."""
        fills: list[int] = []
        end = self.end
        at = pts * self.scale
        if (end is not None and at - end > (0 if self.filling else self.min_gap)
                and (self.filling or self.real_end is not None)  # not a start within the lag (begin)
                and (clock is None or at - self._units(clock) <= self.jump)):
            fills = self._frames((at - end) // self.frame)
        self.filling = self.unknown_start = False
        self.end = self.real_end = at
        self.carried = True
        return fills

    def ended(self, end: Fraction | int, frames: int = 0) -> None:
        """The real packet last written (``resume``) ends at ``end`` ticks plus ``frames`` frames
        (counted exactly where a frame is not a whole number of ticks)."""
        self.end = self.real_end = self._units(end) + frames * self.frame

    def _frames(self, count: int) -> list[int]:
        start = self.end
        assert start is not None
        if count <= 0:
            return []
        frame = self.frame
        self.end = start + count * frame
        self.carried = True
        return [self._ticks(start + k * frame) for k in range(count)]


class FrameCounter:
    """One MPEG-TS PID of audio frames of ``family`` (``audioframes.FAMILIES``), packet by packet:
    the continuity counter of its last packet with payload, and the PES being received
    (stream_id, whole frames so far).

    ``packet`` takes each 188-byte packet of the PID in order. ``complete`` tells whether the PES
    received so far ends at a frame boundary (and its PES_packet_length, when set, is reached),
    so that filler may follow it; ``format`` is the first frame header's. A PES whose payload
    stops being frames of the family (a header missing where a frame ends, one whose length is
    not in it) is not counted further: it is not ``complete``.
    """

    __slots__ = ("family", "cc", "stream_id", "frames", "format", "_skip", "_head", "_remaining", "_sync")

    def __init__(self, family: Family) -> None:
        self.family = family
        self.cc: int | None = None
        self.stream_id = 0xC0
        self.frames = 0  # whole frames in the current PES so far
        self.format: AudioFormat | None = None
        self._skip = 0  # bytes of the current frame still to come
        self._head = b""  # a frame header split across packets
        self._remaining: int | None = None  # PES payload bytes still to come, when the length is set
        self._sync = False  # in step with the frames of this PES

    def packet(self, packet: bytes) -> None:
        control = (packet[3] >> 4) & 3
        if not control & 1:
            return
        self.cc = packet[3] & 0x0F
        offset = 4 + (1 + packet[4] if control & 2 else 0)
        if offset >= TS_PACKET_BYTES:
            return
        if packet[1] & 0x40:
            self.frames, self._skip, self._head, self._sync, self._remaining = 0, 0, b"", False, None
            if packet[offset : offset + 3] != b"\x00\x00\x01" or offset + 9 > TS_PACKET_BYTES:
                return
            self.stream_id = packet[offset + 3]
            length = (packet[offset + 4] << 8) | packet[offset + 5]
            header = 9 + packet[offset + 8]
            self._remaining = length - (header - 6) if length else None
            offset += header
            self._sync = True
        if self._sync:
            self._frames(packet[offset:])

    def packets(self, packets: Iterable[bytes | memoryview]) -> None:
        """``packet`` for each of ``packets`` (188 bytes each, views of a larger buffer need not be
        copied) in turn, with the same result; the frames of the payloads between two PES starts
        are read once, joined, rather than packet by packet."""
        payloads: list[bytes | memoryview] = []
        for packet in packets:
            flags = packet[3]
            if not flags & 0x10:
                continue  # adaptation field only
            if packet[1] & 0x40:
                if payloads:
                    self._frames(b"".join(payloads))
                    payloads = []
                self.packet(bytes(packet))
                continue
            self.cc = flags & 0x0F
            if self._sync:
                offset = 5 + packet[4] if flags & 0x20 else 4
                if offset < TS_PACKET_BYTES:
                    payloads.append(packet[offset:])
        if payloads:
            self._frames(b"".join(payloads))

    def _frames(self, payload: bytes) -> None:
        if self._remaining is not None:
            payload = payload[: max(0, self._remaining)]  # what follows the PES is not audio
            self._remaining -= len(payload)
        data = self._head + payload if self._head else payload
        self._head = b""
        position = self._skip
        if position:
            if position > len(data):
                self._skip = position - len(data)
                return
            self.frames += 1  # the frame still arriving is whole
        family = self.family
        while position < len(data):
            if len(data) - position < family.HEADER_BYTES:
                self._head = data[position:]
                self._skip = 0
                return
            length = family.length(data, position)
            if not length:
                self._sync = False  # no frame of the family here: this PES is not counted further
                self._skip = 0
                return
            if self.format is None:
                self.format = family.format(data, position)
            if position + length > len(data):
                self._skip = position + length - len(data)
                return
            position += length
            self.frames += 1
        self._skip = 0

    @property
    def complete(self) -> bool:
        return (self._sync and not self._skip and not self._head
                and (self._remaining is None or self._remaining <= 0))


_PES_HEADER_BYTES = 14  # with a PTS only

# What the log says of a late unit left out (PauseFiller.retime).
LATE_UNIT_DROPPED = "audio the muxer held back over a pause, later than the silence that filled it"
# ... and of audio that starts inside the silence already written for its track (PauseFiller.overlapped): a
# first frame inside the frame its track began with, or, without a clock to tell a late unit, the muxer's late unit.
AUDIO_OVER_FILLER = "audio dated inside the silence already written for its track"


def _pts_bytes(prefix: int, pts: int) -> bytes:
    """A PES PTS or DTS field (ISO/IEC 13818-1 2.4.3.7): 4-bit ``prefix``, 33 bits, marker bits."""
    pts %= PTS_WRAP
    return bytes(((prefix << 4) | ((pts >> 29) & 0x0E) | 1, (pts >> 22) & 0xFF, ((pts >> 14) & 0xFE) | 1,
                  (pts >> 7) & 0xFF, ((pts << 1) & 0xFE) | 1))


def _pes(stream_id: int, pts: int, payload: bytes) -> bytes:
    length = 3 + 5 + len(payload)
    return bytes((0, 0, 1, stream_id, length >> 8, length & 0xFF,
                  0x84, 0x80, 5)) + _pts_bytes(0x2, pts) + payload  # data_alignment_indicator; PTS only


def _ts_packet(pid: int, cc: int, start: bool, payload: bytes) -> bytes:
    stuffing = TS_PACKET_BYTES - 4 - len(payload)
    head = bytes((0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, (0x30 if stuffing else 0x10) | cc))
    if not stuffing:
        return head + payload
    field = bytes((stuffing - 1,)) + (b"\x00" + b"\xff" * (stuffing - 2) if stuffing > 1 else b"")
    return head + field + payload


def filler_packets(pid: int, last_cc: int, stream_id: int, frame: bytes, pts_list: list[int]) -> bytes:
    """MPEG-TS packets on ``pid`` carrying one PES (``stream_id``, PTS from ``pts_list``, 90 kHz,
    wrapped to 33 bits) per copy of the audio ``frame``; the first packet's continuity counter
    follows ``last_cc``. The count of packets is a multiple of 16, so that the input's next packet
    on the PID still follows on: a PES is spread over more packets as needed, padded with
    adaptation-field stuffing, each packet at least one byte of it (the frame split first; the
    PES header too when a single frame needs it, as ISO/IEC 13818-1 allows: a PES is read whole).
    Empty for an empty ``pts_list``."""
    if not pts_list:
        return b""
    pes = [_pes(stream_id, pts, frame) for pts in pts_list]
    counts = [1 if len(p) <= 184 else 1 + -(-len(frame) // 184) for p in pes]
    extra = -(-sum(counts) // 16) * 16 - sum(counts)
    for i, p in enumerate(pes):
        more = min(extra, len(p) - counts[i])
        counts[i] += more
        extra -= more
    out = []
    cc = last_cc
    for p, count in zip(pes, counts):
        if count == 1:
            parts = [p]
        elif count <= 1 + len(frame):
            parts = [p[:_PES_HEADER_BYTES], *_split(p[_PES_HEADER_BYTES:], count - 1)]
        else:
            parts = _split(p, count)
        for number, part in enumerate(parts):
            cc = (cc + 1) & 0x0F
            out.append(_ts_packet(pid, cc, number == 0, part))
    return b"".join(out)


def _split(data: bytes, count: int) -> list[bytes]:
    """``data`` in ``count`` parts of nearly equal size, in order."""
    size, rest = divmod(len(data), count)
    parts, position = [], 0
    for part in range(count):
        end = position + size + (1 if part < rest else 0)
        parts.append(data[position:end])
        position = end
    return parts


def _pes_timestamps(packet: bytes | bytearray) -> int | None:
    """Where the PES header starting in ``packet`` is, when its PTS is whole in the packet."""
    offset = payload_offset(packet)
    if (offset is None or not packet[1] & 0x40 or offset + 14 > TS_PACKET_BYTES
            or packet[offset : offset + 3] != b"\x00\x00\x01" or not packet[offset + 7] & 0x80):
        return None
    return offset


def pes_pts(packet: bytes) -> int | None:
    """The PTS (90 kHz, 33 bits) of the PES starting in MPEG-TS ``packet``, or None when it starts
    none or its PTS is not whole in it (ISO/IEC 13818-1 2.4.3.7)."""
    offset = _pes_timestamps(packet)
    return None if offset is None else pes_timestamp(packet, offset + 9)


def retimed_pes(packets: bytes, pts: int) -> bytes | None:
    """The MPEG-TS packets of one PES (its first packet first) with its PTS, and its DTS if it has
    one, set to ``pts`` (90 kHz, wrapped to 33 bits); every other byte as it was. None when the
    first packet starts no PES, or the PES header's PTS (and DTS, if it has one) is not whole in it."""
    first = bytearray(packets[:TS_PACKET_BYTES])
    offset = _pes_timestamps(first)
    if offset is None:
        return None
    dts = first[offset + 7] & 0x40
    if dts and offset + 19 > TS_PACKET_BYTES:
        return None
    first[offset + 9 : offset + 14] = _pts_bytes(first[offset + 9] >> 4, pts)
    if dts:
        first[offset + 14 : offset + 19] = _pts_bytes(0x1, pts)
    return bytes(first) + packets[TS_PACKET_BYTES:]


class TsPauseFill:
    """``PauseFiller`` for one audio PID of an MPEG-TS input copied packet by packet (the fast
    path), its frames of ``family`` (``audioframes.FAMILIES``). Timestamps are unwrapped 90 kHz
    ticks (the cutter's); the PTS written are wrapped.

    The splitter gives it every packet of the PID in input order (``packet``), the packets the
    probe read ahead (``look_ahead``) and the start of the first segment (``begin``), tells it where a
    PES of the PID starts and what the cutter made of it (``unit``), the program's clock at each
    reference PES (``due``) and at each cut, before the segment closes (``closing``), a
    discontinuity (``reset``) and the end of input (``finish``). Each returns the MPEG-TS
    packets to insert there, on the PID, continuity counters following on
    (empty bytes most of the time). A PES that ``unit`` calls late is kept back by the splitter
    and handed to ``late_unit`` once whole, which returns it retimed (or None: left out).
    ``silent_frame`` gives the silent frame of the track's format as the codec's encoder makes it
    (raw AAC: ``family.framed`` adds the ADTS header), or None when none can be made (the shell
    says why); it is asked once, at the first frame header.
    """

    def __init__(self, pid: int, family: Family, silent_frame: Callable[[AudioFormat], bytes | None]) -> None:
        self.pid = pid
        self.counter = FrameCounter(family)
        self._silent_frame = silent_frame
        self._filler: PauseFiller | None = None
        self._frame_ticks = Fraction(0)
        self._frame = b""  # the silent frame, as the track carries it
        self._refused = False  # the track's format cannot be filled
        self._pts: int | None = None  # the current PES's unwrapped PTS
        self._open = False  # the current PES went into a segment and its end is not told yet
        self._late = False  # the current PES is a late unit, kept back until whole
        self._first_pts: int | None = None  # the PTS of the track's first frame, read ahead (33 bits)
        self.left_out = False  # ``unit`` left its PES out (cleared by the splitter, which drops it)

    def packet(self, packet: bytes) -> None:
        self.counter.packet(packet)

    def look_ahead(self, packets: Iterable[bytes]) -> None:
        """Packets of the PID ahead of those given to ``packet`` (what the probe read, given again
        later): the track's format from the first frame header there, so that it can be filled
        before its first frame (``begin``), its filler packets counted to lead on to the
        continuity counter of the PID's first packet and carrying the stream_id of its PES
        (0xBD, private_stream_1, for FFmpeg's AC-3 and E-AC-3); and the PTS of that frame's PES,
        so that ``begin`` fills up to it at once."""
        counter = FrameCounter(self.counter.family)
        first_cc = pts = None
        for packet in packets:
            counter.packet(packet)
            if first_cc is None:
                first_cc = counter.cc
            if packet[1] & 0x40:
                pts = pes_pts(packet)
            if counter.format is not None:
                self.counter.format = counter.format
                self._first_pts = pts
                if self.counter.cc is None and first_cc is not None:
                    self.counter.cc = (first_cc - 1) & 0x0F
                    self.counter.stream_id = counter.stream_id
                return

    def begin(self, clock: int) -> bytes:
        """The first segment's presentation, or a new timeline's (after ``reset``), starts at
        ``clock``: a track whose format is known (from a frame or ``look_ahead``) and that sent
        no frame since is filled from there (``PauseFiller.begin``): the packets to insert now,
        up to its first frame when ``look_ahead`` found it (the first segment only)."""
        filler = self._ready()
        if filler is None:
            return b""
        first, self._first_pts = self._first_pts, None
        if self._pts is not None:
            first = None
        elif first is not None:  # 33 bits, read ahead: on the unwrapped timeline, near the clock
            first = clock + (first - clock + PTS_WRAP // 2) % PTS_WRAP - PTS_WRAP // 2
        return self._packets(filler.begin(clock, first))

    def packets(self, packets: Iterable[bytes | memoryview]) -> None:
        """``packet`` for each of ``packets`` in turn (``FrameCounter.packets``)."""
        self.counter.packets(packets)

    def behind(self, clock: int) -> bool:
        """Whether ``due(clock)`` may have filler to give: a pause is being filled, or the PES of
        the PID last written starts more than ``INTERLEAVE_S`` before ``clock`` (or is not known).
        When False, ``due`` would give nothing (the audio ends within ``FILL_LAG_S`` of the clock)
        and need not be called: the end of that PES is then told to the filler at the next
        ``unit``, ``due`` or ``finish`` instead, the same once its PES_packet_length is reached."""
        filler = self._filler
        return filler is not None and (filler.filling or self._pts is None
                                       or clock - self._pts > INTERLEAVE_S * TICKS_PER_SECOND)

    def reset(self) -> None:
        if self._filler is not None:
            self._filler.reset()
        self._open = self._late = False

    def due(self, clock: int) -> bytes:
        return self._between_units(PauseFiller.due, clock)

    def closing(self, clock: int) -> bytes:
        """The segment being written is cut at ``clock``: filler to insert before it closes
        (``PauseFiller.closing``)."""
        return self._between_units(PauseFiller.closing, clock)

    def _between_units(self, fill: Callable[[PauseFiller, int], list[int]], clock: int) -> bytes:
        filler = self._ready()
        if filler is None or self._late or (self._open and not self.counter.complete):
            return b""  # a PES of the PID still arriving: nothing goes in its middle
        self._close()
        return self._packets(fill(filler, clock))

    def finish(self, clock: int) -> bytes:
        filler = self._ready()
        if filler is None:
            return b""
        self._close()
        return self._packets(filler.finish(clock))

    def unit(self, pts: int | None, written: bool, clock: int | None, *, held: bool = False) -> tuple[bytes, bool]:
        """A PES of the PID starts at ``pts`` (its packets not yet given to ``packet``), the
        cutter writing it or not, the program's clock at ``clock``: the packets to insert before
        it, and whether it is a late unit (kept back, then ``late_unit``). ``held``: the cutter
        keeps it back for the next segment (it is written, after what is inserted now); it is
        then never taken for a late unit. A PES written now that starts inside the silence
        already written (``PauseFiller.overlapped``; without a clock a late unit cannot be told)
        is left out, as the PyAV path leaves it: ``left_out`` says so."""
        filler = self._ready()
        if filler is None:
            return b"", False
        self._close()
        if not written or pts is None:
            filler.reset()
            return b"", False
        if clock is not None and not held and filler.late(pts):
            self._late = True
            return b"", True
        if not held and filler.overlapped(pts):
            filler.reset()
            self.left_out = True
            return b"", False
        fills = filler.resume(pts, clock)
        self._pts, self._open = pts, True
        return self._packets(fills), False

    def late_unit(self, packets: bytes, clock: int) -> bytes | None:
        """The late PES kept back, whole (all its packets given to ``packet``): its packets with
        the PTS where the filler has got to, or None when it does not fit (``PauseFiller.retime``).
        Unchanged, and nothing filled across it, when its frames cannot be counted or its PES
        header is not whole in its first packet."""
        filler = self._filler
        counter = self.counter
        assert filler is not None
        self._late = False
        if not counter.complete or not counter.frames or retimed_pes(packets, 0) is None:
            filler.reset()
            return packets
        pts = filler.retime(counter.frames * self._frame_ticks, clock)
        return None if pts is None else retimed_pes(packets, pts)

    def _close(self) -> None:
        """The end of the PES last written, once whole, is told to the filler."""
        if not self._open:
            return
        self._open = False
        counter, filler = self.counter, self._filler
        assert filler is not None and self._pts is not None
        if counter.complete and counter.frames:
            filler.ended(self._pts, counter.frames)
        else:
            filler.reset()  # where it ends is not known

    def _packets(self, pts_list: list[int]) -> bytes:
        if not pts_list or self.counter.cc is None:
            return b""
        return filler_packets(self.pid, self.counter.cc, self.counter.stream_id, self._frame, pts_list)

    def _ready(self) -> PauseFiller | None:
        if self._filler is None and not self._refused and self.counter.format is not None:
            audio = self.counter.format
            encoded = self._silent_frame(audio)
            if encoded is None:
                self._refused = True
                return None
            self._frame = self.counter.family.framed(audio, encoded)
            self._frame_ticks = audio.frame_ticks(Fraction(1, TICKS_PER_SECOND))
            self._filler = PauseFiller(self._frame_ticks, Fraction(1, TICKS_PER_SECOND), batch=FAST_BATCH_FRAMES)
        return self._filler
