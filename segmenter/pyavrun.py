"""The PyAV path's run: demux, ask the cutter, write segments, queue one message per segment.

This is the I/O shell around ``cutter.Cutter`` for every input the MPEG-TS fast path
(``fastrun.py``) does not take: PyAV reads and writes, the cutter decides. Nothing here grows
with the length of the stream: packets are written as they come, except a bounded few held
back at a discontinuity.

Timed ID3 metadata is copied into the segment being written when its packet comes (never fed to
the cutter). SCTE-35 is not: FFmpeg's MPEG-TS muxer has no SCTE-35 stream type and would write
the sections as private-data PES packets (stream_type 0x06) that no reader takes for SCTE-35; the
run says so once. Continuity errors are what FFmpeg's demuxer reports: it marks the PES packet it
was assembling when a continuity_counter broke (or that came out shorter than declared) corrupt.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from fractions import Fraction

import av
import av.container

from .audioframes import AAC_SAMPLES, FAMILIES, AudioFormat, aac_format, asc_config
from .cutter import TS_WRAP_TICKS, Action, SegmentTiming
from .input import SCTE_35, TIMED_ID3, InputDescription, log_continuity
from .randomaccess import ParameterSet, ParameterWatch, SegmentStart, VideoCodec, codec_by_name, nal_length_size
from .run import RunContext, SegmentRun, close_segment
from .silence import AUDIO_OVER_FILLER, LATE_UNIT_DROPPED, PauseFiller
from .silentframe import fillable_streams, probed_format, silent_frame_or_none
from .writer import SegmentWriter

log = logging.getLogger(__name__)

# Read errors in a row (garbage the demuxer cannot resync on) after which the input is given up
# as ended; one bad spot in a live stream produces a handful at most.
MAX_READ_ERRORS_IN_A_ROW = 50

# Metadata packets kept for the first segment while none is open yet (before the first video
# keyframe: at most a GOP's worth, a few per second); more are dropped and logged.
MAX_EARLY_DATA_PACKETS = 64


class _Silence:
    """An audio stream's pause filler (silence.PauseFiller) and its silent frame, as its packets
    carry frames (with their headers; AAC raw from MP4, FLV, RTMP)."""

    def __init__(self, filler: PauseFiller, payload: bytes, time_base: Fraction, probed: AudioFormat | None = None) -> None:
        self.filler = filler
        self.payload = payload
        self.time_base = time_base
        self.duration = round(filler.frame_ticks)
        self.probed = probed  # made from the probe's description, until the track's first frame


def _judged(stream: av.stream.Stream) -> tuple[VideoCodec | None, int]:
    """A video stream's codec as ``randomaccess`` judges it, and its NAL length size."""
    codec = codec_by_name(stream.codec_context.name)
    return codec, nal_length_size(codec, stream.codec_context.extradata)


def _frame_ticks(stream: av.stream.Stream) -> int:
    """An audio stream's frame duration in ticks of its time base: the codec's frame size (AAC:
    1024 samples, ISO/IEC 14496-3 4.5.1.1) over its sample rate; 0 where either is unknown."""
    context = stream.codec_context
    samples = context.frame_size or (AAC_SAMPLES if context.name == "aac" else 0)
    if not samples or not context.sample_rate or stream.time_base is None:
        return 0
    return round(Fraction(samples, context.sample_rate) / stream.time_base)


# Why a stream is left out of every segment of a run (PyAVRun.silent).
LEFT_OUT_UNPROBED = "sent no packet while the input was probed, so its sample rate is unknown"
LEFT_OUT_UNTIMED = "carries no PTS while the other streams do, so nothing places it in time"


class PyAVRun(SegmentRun):
    """One pass over the input on the PyAV path: PyAV demuxes and muxes, the cutter decides.

    ``container`` is the probed input; ``packets_read`` counts the packets demuxed so far and
    ``packet_bytes`` their bytes (what the stall monitor and the metrics watch when FFmpeg reads
    the input itself).
    """

    def __init__(self, context: RunContext, description: InputDescription, first: int,
                 container: av.container.InputContainer, untimed: frozenset[int] = frozenset()) -> None:
        """``untimed``: PIDs whose PES packets carry no PTS in what the probe read
        (``psi.pids_without_pts``; empty when the probe's bytes are not at hand)."""
        listed = [container.streams[info.index] for info in description.streams]
        # Streams left out of the segments, and out of the cutter's choice of the stream segments
        # are cut on: index -> why. An audio stream the probe saw no packet of has no sample
        # rate: FFmpeg's muxer refuses every packet of a program holding it. A stream without
        # PTS beside streams with them: FFmpeg dates its packets from 0 (when it reads a pipe),
        # seconds away from the others, and segments cut on it overlap.
        self.silent = {s.index: LEFT_OUT_UNPROBED for s in listed
                       if s.type == "audio" and not s.codec_context.sample_rate}
        if any(s.id not in untimed for s in listed):
            self.silent.update({s.index: LEFT_OUT_UNTIMED for s in listed
                                if s.id in untimed and s.index not in self.silent})
        super().__init__(context, dataclasses.replace(description, streams=tuple(
            info for info in description.streams if info.index not in self.silent)), first)
        self.container = container
        self.streams = [s for s in listed if s.index not in self.silent]
        for stream in listed:
            if stream.index in self.silent:
                log.warning("stream #%d (PID 0x%x, %s) %s: left out of the segments; packets it sends later are "
                            "dropped", stream.index, stream.id, stream.codec_context.name, self.silent[stream.index])
        self._read = [*self.streams, *(container.streams[i] for i in sorted(self.silent))]
        self.data_streams = [container.streams[d.index] for d in description.data if d.codec == TIMED_ID3]
        self._data_indexes = {s.index for s in self.data_streams}
        self._data_last: dict[int, int] = {}  # data stream index -> its last dts, unwrapped
        self._early_data: list[av.Packet] = []  # metadata before the first segment
        for data in description.data:
            if data.codec == SCTE_35:
                log.warning("stream #%d (SCTE-35, PID 0x%x) is not copied on the PyAV path: FFmpeg's MPEG-TS "
                            "muxer cannot write SCTE-35 sections (the MPEG-TS fast path copies them)",
                            data.index, data.pid)
        if self.data_streams:
            log.info("copied, never cut on: %s", ", ".join(
                f"PID 0x{s.id:x} {description.data_kind(s.index)}" for s in self.data_streams))
        self.writer: SegmentWriter | None = None
        # Every video stream's codec and NAL length size, for judging where each segment starts.
        self._video = {s.index: _judged(s) for s in self.streams if s.type == "video"}
        self.start = SegmentStart(self._video)  # the open segment's
        reference = self.cutter.reference.index
        if reference in self._video:
            codec, length_size = self._video[reference]
            self.watch = ParameterWatch(codec, container.streams[reference].time_base, length_size)
        self.video: tuple[ParameterSet | None, bool] = (None, False)  # the open segment's parameters
        # New parameters came at a reference keyframe and no segment has started with them yet.
        self._changed = False
        self.held: dict[int, tuple[int, av.Packet]] = {}  # by the cutter's held id, in order
        self._segment_dropped = 0  # in the open segment
        self._corrupt: dict[int, int] = {}  # in the open segment: PID -> packets marked corrupt
        self.packets_read = 0
        self.packet_bytes = 0  # their sizes, summed
        # Pauses in audio tracks filled with silence (silence.py): per stream index, made at its
        # first packet; None where the track cannot be filled.
        # The reference is the clock: an audio-only input's gaps are its own timeline (cutter.py).
        audio = [s.index for s in self.streams if s.type == "audio" and s.index != self.cutter.reference.index]
        self._codecs = {i: container.streams[i].codec_context.codec.canonical_name for i in audio}
        self._fillable = fillable_streams(self._codecs)
        self._silence: dict[int, _Silence | None] = {}
        self._begun = False  # the first segment was opened
        self._clock: int | None = None  # the reference's latest dts: the program's clock
        # Per audio stream: its latest packet's dts and duration (None until its first timed one).
        self._audio_next: dict[int, tuple[int, int] | None] = {
            s.index: None for s in self.streams if s.type == "audio"}
        self._frame_ticks = {s.index: _frame_ticks(s) for s in self.streams if s.type == "audio"}
        self._clock_end: int | None = None  # and the end of its packet
        self._shift_ticks: dict[int, int] = {}  # per stream: what _shift adds, in its ticks

    def _read_input(self) -> None:
        self._read_all()
        timing = self.cutter.finish()
        self._settle()
        if self.writer is not None:
            if self._clock_end is not None:
                for index, silence in self._silence.items():
                    if silence is not None:
                        self._write_silence(index, silence.filler.finish(self._in(index, self._clock_end)))
            self._finish_segment(timing, last=True)

    def _abort_open(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def _read_all(self) -> None:
        errors_in_a_row = 0
        feed = self.cutter.feed
        cutter = self.cutter
        stop = self.stop
        write, cut, drop = Action.WRITE, Action.CUT, Action.DROP
        watch, reference = self.watch, self.cutter.reference.index
        data_indexes = self._data_indexes
        silent = self.silent
        audio_next = self._audio_next
        # Seconds every timestamp is moved later (_shift), decided at the first timed packet; 0 for
        # MPEG-TS, whose timestamps are never below 0 (a value just below the wrap is the wrap's).
        shift: Fraction | int | None = 0 if self.container.format.name == "mpegts" else None
        while True:
            try:
                for packet in self.container.demux(self._read + self.data_streams):
                    if stop.is_set():
                        return
                    if not packet.size:
                        continue  # end-of-stream marker
                    self.packets_read += 1
                    self.packet_bytes += packet.size
                    errors_in_a_row = 0
                    index = packet.stream_index
                    if shift is None and packet.dts is not None:
                        shift = -packet.dts * packet.time_base if packet.dts < 0 else 0
                        if shift:
                            log.info("timestamps start %s s below 0 (B-frames, an encoder's priming): all are "
                                     "moved %s s later", float(shift), float(shift))
                    if shift:
                        self._shift(packet, shift)
                    if packet.is_corrupt:
                        pid = packet.stream.id
                        self._corrupt[pid] = self._corrupt.get(pid, 0) + 1
                    if index in data_indexes:
                        self._write_data(index, packet)
                        continue
                    if index in silent:
                        self._drop(index, f"a stream left out of the segments (it {silent[index]})")
                        continue
                    pts = packet.pts
                    dts = packet.dts
                    if dts is None and pts is None:
                        untimed = self._untimed(index, packet)
                        if untimed is None:
                            continue
                        pts = dts = untimed
                    elif index in audio_next:
                        last = audio_next[index]
                        audio_next[index] = (dts if dts is not None else pts, packet.duration
                                             or (last[1] if last is not None else self._frame_ticks[index]))
                    cut_here = False
                    if index == reference and watch is not None:
                        if packet.is_keyframe and watch.keyframe(bytes(packet)):
                            self._changed = True
                        watch.frame(dts)
                        cut_here = packet.is_keyframe and self._changed
                    action = feed(index, packet.is_keyframe, pts, dts, packet.duration, cut_here=cut_here)
                    if cutter.dts != dts:
                        packet.dts = cutter.dts
                    if cutter.pts != pts:
                        packet.pts = cutter.pts
                    if action is write:
                        if cutter.settled:
                            self._settle()
                        self._write(index, packet)
                    elif action is cut:
                        self._cut(index, packet)
                    elif action is drop:
                        self._drop(index, cutter.dropped_reason)
                    else:
                        if cutter.settled:
                            self._settle()
                        self.held[cutter.held_id] = (index, packet)
                return
            except av.error.ExitError:  # FFmpeg's read timeout: --stall-end for an input it reads
                log.warning("no input for %g s (--stall-end): ending the stream", self.config.stall_end_s)
                return
            except av.error.FFmpegError as error:
                errors_in_a_row += 1
                log.warning("input: skipped unreadable data in segment %d: %s", self.number + 1, error)
                if errors_in_a_row >= MAX_READ_ERRORS_IN_A_ROW:
                    log.error("input: %d read errors in a row, treating it as ended", errors_in_a_row)
                    return

    def _shift(self, packet: av.Packet, seconds: Fraction | int) -> None:
        """``packet``'s timestamps ``seconds`` later. An input whose first decoding times are below
        0 (an MP4 with B-frames or an audio encoder's priming: FFmpeg's demuxers give the first
        packets negative DTS, the packets being read in DTS order, the lowest first) is moved
        later as a whole: FFmpeg's MPEG-TS muxer would otherwise move each segment's timestamps
        on its own (``avoid_negative_ts``), the first segment's by that much, and it would end
        after the second one starts."""
        ticks = self._shift_ticks.get(packet.stream_index)
        if ticks is None:
            ticks = self._shift_ticks[packet.stream_index] = math.ceil(seconds / packet.time_base)
        if packet.pts is not None:
            packet.pts += ticks
        if packet.dts is not None:
            packet.dts += ticks

    def _untimed(self, index: int, packet: av.Packet) -> int | None:
        """The timestamp of a packet the demuxer gave none (a PES packet without PTS): an audio
        frame's is its predecessor's plus that one's duration, stamped on ``packet``. None where
        nothing tells it (video; audio before the stream's first timestamp): the packet is
        dropped, counted. FFmpeg's muxer would time it from 0, seconds away from the other
        streams, and the segments cut around it would lose their durations."""
        last = self._audio_next.get(index)
        if last is None or not last[1]:
            self._drop(index, "no timestamp, none before it in its stream to count from")
            return None
        dts = last[0] + last[1]
        packet.pts = packet.dts = dts
        self._audio_next[index] = (dts, last[1])
        return dts

    def _write(self, index: int, packet: av.Packet) -> None:
        if index in self._fillable and packet.pts is not None:
            silence = self._silence[index] if index in self._silence else self._new_silence(index, bytes(packet))
            if silence is not None and silence.probed is not None:
                silence = self._first_frame(index, silence, bytes(packet))
            if silence is not None and not self._place(index, silence, packet):
                return
        elif index == self.cutter.reference.index and packet.dts is not None:
            self._clock = packet.dts
            self._clock_end = packet.dts + (packet.duration or 0)
            for audio, silence in self._silence.items():
                if silence is not None:
                    self._write_silence(audio, silence.filler.due(self._in(audio, packet.dts)))
        # Read before muxing: the muxer takes the packet's data.
        data = bytes(packet) if self.start.wants(index) else None
        if not self._mux(index, packet):
            return
        if data is not None:
            self.start.feed(index, data)

    def _place(self, index: int, silence: _Silence, packet: av.Packet) -> bool:
        """Silence before an audio packet that ends a pause, or the muxer's late unit moved to where
        the filler has got to (silence.PauseFiller). Whether the packet is to be written (False:
        dropped, said)."""
        filler = silence.filler
        clock = None if self._clock is None else self._in(index, self._clock)
        # One packet is one frame of the codec, whatever the container says it lasts (an MP4
        # sample before a pause lasts up to the next one: the whole pause).
        duration = silence.duration
        if clock is not None and filler.late(packet.pts):
            pts = filler.retime(duration, clock)
            if pts is None:
                self._drop(index, LATE_UNIT_DROPPED, late=True)
                return False
            packet.pts = packet.dts = pts
            return True
        if filler.overlapped(packet.pts):
            self._drop(index, AUDIO_OVER_FILLER)
            return False
        self._write_silence(index, filler.resume(packet.pts, clock))
        filler.ended(packet.pts + duration)
        return True

    def _in(self, index: int, ticks: int) -> Fraction:
        """The reference's ``ticks`` in ticks of stream ``index``."""
        streams = self.container.streams
        return ticks * streams[self.cutter.reference.index].time_base / streams[index].time_base

    def _new_silence(self, index: int, frame: bytes) -> _Silence | None:
        """The pause filler of audio stream ``index``, from the header of its first ``frame`` (AAC
        without one: its AudioSpecificConfig), or None (said once, with why). Before its first
        frame (b""): from what the probe says of the track, or None and nothing recorded when
        that format cannot be filled (its first frame decides then); ``_first_frame`` checks it."""
        stream = self.container.streams[index]
        family = FAMILIES[self._codecs[index]]
        audio = family.format(frame, 0) if frame else None
        framed = audio is not None
        context = stream.codec_context
        if audio is None and self._codecs[index] == "aac" and (config := asc_config(context.extradata)):
            audio = aac_format(config)  # raw AAC, from MP4, FLV, RTMP
        elif audio is None and not frame:  # as the probe describes it (AAC: ADTS, from MPEG-TS)
            audio = probed_format(self._codecs[index], context.profile, context.sample_rate,
                                  context.layout.name if context.layout else "", context.bit_rate or 0)
            framed = True
        # An E-AC-3 track's dependent substreams (7.1 and up) are in no header the fast path
        # reads: its decoder's channels tell. (An AAC decoder gives stereo for a mono HE-AAC
        # track, in case of parametric stereo: its ADTS header tells.)
        channels = context.channels
        if audio is not None and audio.codec == "eac3" and not audio.unfillable and audio.channels != channels:
            audio = dataclasses.replace(audio, unfillable=f"{channels} channels decoded, {audio.channels} in its frame header")
        raw = None
        if audio is None or (not frame and audio.unfillable):
            if not frame:
                return None  # nothing says a format to fill before its first frame: asked again then
            log.info("stream #%d: pauses are not filled with silence (%s of unknown format)", index, self._codecs[index])
        elif (raw := silent_frame_or_none(index, audio, quiet=not frame)) is None and not frame:
            return None
        silence = None
        if raw is not None:
            filler = PauseFiller(audio.frame_ticks(stream.time_base), stream.time_base)
            silence = _Silence(filler, family.framed(audio, raw) if framed else raw, stream.time_base,
                               None if frame else audio)
        self._silence[index] = silence
        return silence

    def _first_frame(self, index: int, silence: _Silence, frame: bytes) -> _Silence | None:
        """The track's first frame, after filler made from the probe's description: from now on
        its own header's format is filled, the filler going on where it got to (an MP3 track in
        plain stereo where the encoder made joint stereo); None, said once, when that format
        cannot be filled or its frames last otherwise."""
        probed, silence.probed = silence.probed, None
        assert probed is not None
        family = FAMILIES[self._codecs[index]]
        audio = family.format(frame, 0)
        if audio is None or audio.mode == probed.mode:
            return silence
        raw = silent_frame_or_none(index, audio)
        if raw is None or audio.frame_ticks(silence.time_base) != silence.filler.frame_ticks:
            if raw is not None:
                log.info("stream #%d: pauses are not filled with silence (%s: frames of another length than "
                         "the probe's %s)", index, audio.name, probed.name)
            self._silence[index] = None
            return None
        silence.payload = family.framed(audio, raw)
        return silence

    def _write_silence(self, index: int, pts_list: list[int]) -> None:
        """Silent frames at ``pts_list`` (ticks of stream ``index``) into the open segment; the
        first one the muxer refuses ends this pause's filling (``_mux``)."""
        silence = self._silence[index]
        assert silence is not None
        for pts in pts_list:
            packet = av.Packet(silence.payload)
            packet.pts = packet.dts = pts
            packet.duration = silence.duration
            packet.time_base = silence.time_base
            if not self._mux(index, packet):
                return

    def _mux(self, index: int, packet: av.Packet) -> bool:
        """``packet`` to the open segment's muxer. One it refuses (a timestamp not after the
        stream's last one) is left out, said once per segment, and counted, and the stream's pause
        filling stops there (``_drop``); False then. A failure to write the file
        (av.error.OSError: a full disk) is raised: the segment cannot be completed."""
        try:
            self.writer.write(index, packet)  # type: ignore[union-attr]
        except av.error.FFmpegError as error:
            if isinstance(error, OSError):
                raise
            self._drop(index, f"the muxer refused it ({error.strerror})")
            return False
        return True

    def _write_data(self, index: int, packet: av.Packet) -> None:
        """A timed metadata packet: into the open segment (kept for the first one until it opens),
        its timestamps unwrapped as the cutter unwraps the others' (33-bit MPEG-TS values)."""
        if packet.dts is not None and packet.time_base == Fraction(1, 90000):
            last = self._data_last.get(index)
            if last is not None:
                delta = (packet.dts - last + TS_WRAP_TICKS // 2) % TS_WRAP_TICKS - TS_WRAP_TICKS // 2
                shift = last + delta - packet.dts
                packet.dts += shift
                if packet.pts is not None:
                    packet.pts += shift
            self._data_last[index] = packet.dts
        if self.writer is not None:
            self._mux(packet.stream_index, packet)
        elif len(self._early_data) < MAX_EARLY_DATA_PACKETS:
            self._early_data.append(packet)
        else:
            self._drop(index, f"metadata before the first segment, beyond {MAX_EARLY_DATA_PACKETS} packets")


    def _drop(self, index: int, reason: str, *, late: bool = False) -> None:
        """``late``: the muxer's late unit over a pause, whose filling goes on."""
        super()._drop(index, reason)
        self._segment_dropped += 1
        if not late and (silence := self._silence.get(index)):
            silence.filler.reset()  # nothing is filled across a packet left out

    def _settle(self) -> None:
        """Write or drop the held packets the cutter has decided (cutter.Cutter.settled)."""
        for held_id, reason in self.cutter.settled:
            index, packet = self.held.pop(held_id)
            if reason is None:
                self._write(index, packet)
            else:
                self._drop(index, reason)

    def _cut(self, index: int, packet: av.Packet) -> None:
        if self.cutter.discontinuity:
            for silence in self._silence.values():
                if silence is not None:
                    silence.filler.reset()  # nothing is filled across a new timeline
            self._clock = self._clock_end = None
        elif self.writer is not None and packet.dts is not None:
            # Silence into the segment closing for a pause that put no audio in it.
            at = packet.dts * packet.time_base
            for audio, silence in self._silence.items():
                if silence is not None:
                    self._write_silence(audio, silence.filler.closing(at / silence.time_base))
        start = packet.pts if packet.pts is not None else packet.dts
        if start is not None and (self.cutter.discontinuity or self.writer is None and not self._begun):
            # The first segment, or a new timeline's: a track yet to send is filled from its
            # presentation start (PauseFiller.begin).
            self._begun = True
            at = start * packet.time_base
            for audio in self._fillable:
                silence = self._silence[audio] if audio in self._silence else self._new_silence(audio, b"")
                if silence is not None:
                    silence.filler.begin(at / silence.time_base)
        if self.writer is not None:
            self._finish_segment(self.cutter.finished, last=False)
        self.video = (self.watch.current if self.watch is not None else None, self._changed)
        number = self._next_number(self.cutter.discontinuity, self.cutter.forced, self._changed)
        self._changed = False
        self.writer = SegmentWriter(self.config.output_dir, self.config.output_prefix, number,
                                    self.streams + self.data_streams, program_number=self.description.program)
        self.start = SegmentStart(self._video)
        for early in self._early_data:
            self._mux(early.stream_index, early)
        self._early_data.clear()
        if self.cutter.settled:
            self._settle()
        self._write(index, packet)

    def _finish_segment(self, timing: SegmentTiming | None, *, last: bool) -> None:
        writer = self.writer
        assert writer is not None
        self.writer = None
        size = close_segment(writer)
        log_continuity(writer.number, self._corrupt, "corrupt PES packet")
        self._finished(writer, size, timing, self.start, last=last, dropped=self._segment_dropped, video=self.video)
        self._segment_dropped = 0
        self._corrupt = {}
        self._last_drop_reason = ""
