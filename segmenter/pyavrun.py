"""The PyAV path's run: demux, ask the cutter, write segments, queue one message per segment.

This is the I/O shell around ``cutter.Cutter`` for every input the MPEG-TS fast path
(``fastrun.py``) does not take: PyAV reads and writes, the cutter decides. Nothing here grows
with the length of the stream: packets are written as they come, except a bounded few held
back at a discontinuity.
"""

from __future__ import annotations

import logging

import av
import av.container

from .cutter import Action, SegmentTiming
from .input import InputDescription
from .randomaccess import SegmentStart, VideoCodec, codec_by_name, nal_length_size
from .run import RunContext, SegmentRun
from .writer import SegmentWriter

log = logging.getLogger(__name__)

# Read errors in a row (garbage the demuxer cannot resync on) after which the input is given up
# as ended; one bad spot in a live stream produces a handful at most.
MAX_READ_ERRORS_IN_A_ROW = 50


def _judged(stream: av.stream.Stream) -> tuple[VideoCodec | None, int]:
    """A video stream's codec as ``randomaccess`` judges it, and its NAL length size."""
    codec = codec_by_name(stream.codec_context.name)
    return codec, nal_length_size(codec, stream.codec_context.extradata)


class PyAVRun(SegmentRun):
    """One pass over the input on the PyAV path: PyAV demuxes and muxes, the cutter decides.

    ``container`` is the probed input; ``packets_read`` counts the packets demuxed so far (what
    the stall monitor watches when FFmpeg reads the input itself).
    """

    def __init__(self, context: RunContext, description: InputDescription, first: int,
                 container: av.container.InputContainer) -> None:
        super().__init__(context, description, first)
        self.container = container
        self.streams = [container.streams[info.index] for info in description.streams]
        self.writer: SegmentWriter | None = None
        # Every video stream's codec and NAL length size, for judging where each segment starts.
        self._video = {s.index: _judged(s) for s in self.streams if s.type == "video"}
        self.start = SegmentStart(self._video)  # the open segment's
        self.held: dict[int, tuple[int, av.Packet]] = {}  # by the cutter's held id, in order
        self._segment_dropped = self._segment_corrupt = 0  # in the open segment
        self.packets_read = 0

    def _read_input(self) -> None:
        self._read_all()
        timing = self.cutter.finish()
        self._settle()
        if self.writer is not None:
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
        while True:
            try:
                for packet in self.container.demux(self.streams):
                    if stop.is_set():
                        return
                    if not packet.size:
                        continue  # end-of-stream marker
                    self.packets_read += 1
                    errors_in_a_row = 0
                    index = packet.stream_index
                    pts = packet.pts
                    dts = packet.dts
                    action = feed(index, packet.is_keyframe, pts, dts, packet.duration)
                    if cutter.dts != dts:
                        packet.dts = cutter.dts
                    if cutter.pts != pts:
                        packet.pts = cutter.pts
                    if packet.is_corrupt:
                        self._segment_corrupt += 1
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

    def _write(self, index: int, packet: av.Packet) -> None:
        # Read before muxing: the muxer takes the packet's data.
        data = bytes(packet) if self.start.wants(index) else None
        try:
            self.writer.write(index, packet)  # type: ignore[union-attr]
        except av.error.FFmpegError as error:
            self._drop(index, f"the muxer refused it: {error}")
            return
        if data is not None:
            self.start.feed(index, data)

    def _drop(self, index: int, reason: str) -> None:
        super()._drop(index, reason)
        self._segment_dropped += 1

    def _settle(self) -> None:
        """Write or drop the held packets the cutter has decided (cutter.Cutter.settled)."""
        for held_id, reason in self.cutter.settled:
            index, packet = self.held.pop(held_id)
            if reason is None:
                self._write(index, packet)
            else:
                self._drop(index, reason)

    def _cut(self, index: int, packet: av.Packet) -> None:
        if self.writer is not None:
            self._finish_segment(self.cutter.finished, last=False)
        number = self._next_number(self.cutter.discontinuity)
        self.writer = SegmentWriter(self.config.output_dir, self.config.output_prefix, number, self.streams,
                                    program_number=self.description.program)
        self.start = SegmentStart(self._video)
        if self.cutter.settled:
            self._settle()
        self._write(index, packet)

    def _finish_segment(self, timing: SegmentTiming | None, *, last: bool) -> None:
        writer = self.writer
        assert writer is not None
        self.writer = None
        size = writer.close()
        self._finished(writer, size, timing, self.start, last=last, dropped=self._segment_dropped,
                       corrupt=self._segment_corrupt)
        self._segment_dropped = self._segment_corrupt = 0
        self._last_drop_reason = ""
