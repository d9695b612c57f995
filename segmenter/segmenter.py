"""The segmenting loop: demux, ask the cutter, write segments, queue one message per segment.

This is the I/O shell around ``cutter.Cutter``: PyAV reads and writes, the cutter decides.
Nothing here grows with the length of the stream: packets are written as they come, except a
bounded few held back at a discontinuity.
"""

from __future__ import annotations

import collections
import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import av.container

from protocol import IndexMessage
from protocol.limits import MAX_SEGMENT_DURATION_S
from common.settings import ConfigError

from .config import SegmenterConfig, WireMode
from .cutter import Action, SegmentTiming
from .fastrun import FastPlan, FastRun, plan_fast_path
from .input import (
    ByteSource,
    InputDescription,
    StallMonitor,
    StallWatch,
    describe,
    open_input,
    probe_source,
)
from .notifier import DeliveryReport, Notifier
from .progress import Progress
from .run import MessageMaker, RunContext, SegmentRun
from .writer import SegmentWriter, highest_segment_number, remove_stale_parts

log = logging.getLogger(__name__)

# Read errors in a row (garbage the demuxer cannot resync on) after which the input is given up
# as ended; one bad spot in a live stream produces a handful at most.
MAX_READ_ERRORS_IN_A_ROW = 50

@dataclass(frozen=True, slots=True)
class RunSummary:
    first_segment: int
    last_segment: int  # first_segment - 1 when no segment was written
    dropped_packets: int
    delivery: DeliveryReport


def outbox_path(config: SegmenterConfig) -> Path:
    """The file of the messages owed to the daemon, shared by every run of this stream."""
    return config.output_dir / f".{config.output_prefix}.outbox"


def first_number(config: SegmenterConfig) -> tuple[int, bool]:
    """The first segment number of this run, and whether it continues an earlier run's files.

    Without --start-number a run that finds PREFIX-N.ts files continues after the highest N
    (and flags a discontinuity) instead of overwriting segments a CDN may have cached.
    """
    if config.start_number is not None:
        return config.start_number, False
    highest = highest_segment_number(config.output_dir, config.output_prefix)
    return highest + 1, highest > 0


class Segmenter:
    def __init__(
        self,
        config: SegmenterConfig,
        *,
        stop: threading.Event,
        abort: threading.Event,
        progress: Progress,
        memory_limit: int | None = None,
    ) -> None:
        self.config = config
        self._stop = stop
        self._abort = abort
        self._progress = progress
        self._notifier_options = {} if memory_limit is None else {"memory_limit": memory_limit}

    def run(self) -> RunSummary:
        config = self.config
        try:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            for name in remove_stale_parts(config.output_dir, config.output_prefix):
                log.info("removed %s, left unfinished by an earlier run", name)
            first, restarted = first_number(config)
        except OSError as error:
            raise ConfigError(f"output directory {config.output_dir}: {error.strerror or error}") from None
        if restarted:
            log.warning(
                "%s already holds segments up to %s: continuing at %d, flagged as a discontinuity",
                config.output_dir, first - 1, first,
            )
        notifier = Notifier(
            (config.uploader_host, config.uploader_port),
            v1=config.wire is WireMode.V1,
            outbox_path=outbox_path(config),
            secret=config.secret,
            send_segments=config.send_segments,
        )
        notifier.start()
        last = first - 1
        dropped = 0
        try:
            container, source = open_input(config.input, probe_timeout_s=config.probe_timeout_s, stop=self._stop,
                                           stall_warning_s=config.stall_warning_s, stall_end_s=config.stall_end_s)
            try:
                while True:
                    run = self._start_run(container, source, notifier, first, last + 1)
                    with self._stall_monitor(run, source):
                        run.loop()
                    last, dropped = run.number, dropped + run.dropped
                    if source is None or source.program_change is None or self._stop.is_set():
                        break
                    # A new program in the same input (an encoder restarted with other codecs):
                    # probe it, and go on with a new run, whose first segment is a discontinuity.
                    log.warning("input: %s after segment %d: probing the new program", source.program_change, last)
                    container.close()
                    source.next_program()
                    container = probe_source(source)
            finally:
                container.close()
                if source is not None:
                    source.close()
        finally:
            self._progress.done()
            waiting = len(notifier)
            if waiting:
                log.info("waiting up to %g s for the daemon to acknowledge %d message(s)",
                         config.drain_timeout_s, waiting)
            report = notifier.close(config.drain_timeout_s if waiting else 0.0, abort=self._abort)
        return RunSummary(first, last, dropped, report)

    def _start_run(
        self, container: av.container.InputContainer, source: ByteSource | None, notifier: Notifier,
        first: int, number: int,
    ) -> _Run | FastRun:
        """A run over the input's current program, on the fast path when it can take it.

        ``first`` is the stream's first segment number (the messages' FIRST_SEGMENT), ``number``
        the run's: a run after a program change continues the numbering.
        """
        config = self.config
        description = describe(container)
        self._log_input(description)
        context = RunContext(config, notifier, self._progress, self._stop, partial(_program_changed, source))
        message = partial(segment_message, config, description, first)
        fast = self._fast_plan(container, description, source)
        if fast is None:
            return _Run(context, description, number, message, container)
        container.close()  # the probe's buffers and decoders are not needed any more
        return FastRun(context, description, number, message, fast)

    def _stall_monitor(self, run: _Run | FastRun, source: ByteSource | None) -> AbstractContextManager[object]:
        """The stale-input watchdog of an input FFmpeg reads (a ByteSource has its own)."""
        if source is not None or not isinstance(run, _Run):
            return nullcontext()
        watch = StallWatch(self.config.stall_warning_s, self.config.stall_end_s)
        return StallMonitor(watch, lambda: run.packets_read)

    def _fast_plan(
        self, container: av.container.InputContainer, description: InputDescription, source: ByteSource | None
    ) -> FastPlan | None:
        """The MPEG-TS fast path's plan (fastrun.py), or None for the PyAV path, with the reason logged."""
        fast, reason = plan_fast_path(container, description, source, self._stop,
                                      enabled=self.config.fast_path)
        if fast is None:
            log.info("MPEG-TS fast path not used: %s", reason)
            if source is not None:
                source.forget()
        else:
            log.info("MPEG-TS fast path: cutting at 188-byte packet level (PIDs %s)",
                     ", ".join(f"0x{t.pid:x}" for t in fast.tracks))
        return fast

    def _log_input(self, description: InputDescription) -> None:
        streams = ", ".join(f"#{s.index} {s.kind.value}" for s in description.streams)
        log.info(
            "input %s (%s): %s; codecs %s, resolution %s, %s fps",
            self.config.input, description.format_name, streams, description.codecs or "unknown",
            description.resolution or "-", description.frame_rate or "-",
        )
        if description.skipped:
            log.info("not copied (neither audio nor video): %s", ", ".join(description.skipped))


class _Run(SegmentRun):
    """One pass over the input on the PyAV path: PyAV demuxes and muxes, the cutter decides."""

    def __init__(self, context: RunContext, description: InputDescription, first: int, message: MessageMaker,
                 container: av.container.InputContainer) -> None:
        super().__init__(context, description, first, message)
        self.container = container
        self.streams = [container.streams[info.index] for info in description.streams]
        self.writer: SegmentWriter | None = None
        self.held: collections.deque[tuple[int, av.Packet]] = collections.deque()
        self._segment_dropped = self._segment_corrupt = 0  # in the open segment
        self.packets_read = 0  # what the stall monitor watches

    def _read_input(self) -> None:
        self._read_all()
        if self.writer is not None:
            self._finish_segment(self.cutter.finish(), last=True)
        if self.held:
            log.warning("dropped %d packet(s) held at a timestamp jump the video never followed", len(self.held))

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
                        self._write(index, packet)
                    elif action is cut:
                        self._cut(index, packet)
                    elif action is drop:
                        self._drop(index, cutter.dropped_reason)
                    else:
                        self._hold_or_release(action, index, packet)
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
        try:
            self.writer.write(index, packet)  # type: ignore[union-attr]
        except av.error.FFmpegError as error:
            self._drop(index, f"the muxer refused it: {error}")

    def _drop(self, index: int, reason: str) -> None:
        super()._drop(index, reason)
        self._segment_dropped += 1

    def _hold_or_release(self, action: Action, index: int, packet: av.Packet) -> None:
        if action is Action.HOLD:
            self.held.append((index, packet))
            return
        kept = collections.deque(item for item in self.held if item[0] != index)
        released = len(self.held) - len(kept)
        self.held = kept
        self.dropped += released
        log.warning(
            "stream #%d: timestamps jumped without the video in segment %d; dropped %d held packet(s)",
            index, self.number, released,
        )
        self._write(index, packet)

    def _cut(self, index: int, packet: av.Packet) -> None:
        if self.writer is not None:
            self._finish_segment(self.cutter.finished, last=False)
        number = self._next_number(self.cutter.discontinuity)
        self.writer = SegmentWriter(self.config.output_dir, self.config.output_prefix, number, self.streams)
        if self.cutter.discontinuity:
            while self.held:
                self._write(*self.held.popleft())
        self._write(index, packet)

    def _finish_segment(self, timing: SegmentTiming | None, *, last: bool) -> None:
        writer = self.writer
        assert writer is not None
        self.writer = None
        size = writer.close()
        self._finished(writer, size, timing, last=last, dropped=self._segment_dropped, corrupt=self._segment_corrupt)
        self._segment_dropped = self._segment_corrupt = 0
        self._last_drop_reason = ""


def _program_changed(source: ByteSource | None) -> bool:
    return source is not None and source.program_change is not None


def segment_message(
    config: SegmenterConfig, description: InputDescription, first: int, number: int, timing: SegmentTiming, end: bool
) -> IndexMessage:
    """The index message of a finished segment (both paths)."""
    duration = timing.duration_s
    if duration is not None:
        duration = round(min(duration, MAX_SEGMENT_DURATION_S), 6)
        if duration <= 0:
            duration = None
    start = round(timing.start_s, 6) if timing.start_s is not None and timing.start_s >= 0 else None
    return config.message(
        first_segment=first,
        last_segment=number,
        end=end,
        duration=duration,
        start=start,
        discontinuity=timing.discontinuity,
        codecs=description.codecs,
        resolution=description.resolution,
        frame_rate=description.frame_rate,
        independent=True,  # cut before a keyframe of the reference stream, always (cutter.py)
    )
