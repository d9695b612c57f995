"""The segmenting loop: demux, ask the cutter, write segments, queue one message per segment.

This is the I/O shell around ``cutter.Cutter``: PyAV reads and writes, the cutter decides.
Nothing here grows with the length of the stream: packets are written as they come, except a
bounded few held back at a discontinuity.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import av.container

from protocol import IndexMessage
from protocol.limits import MAX_SEGMENT_DURATION_S
from protocol.settings import ConfigError

from .config import SegmenterConfig, WireMode
from .cutter import Action, Cutter, SegmentTiming
from .fastrun import FastPlan, FastRun, plan_fast_path
from .input import InputDescription, InputError, StdinSource, describe, open_input
from .notifier import DeliveryReport, Notifier
from .progress import Progress
from .writer import SegmentWriter, highest_segment_number, remove_stale_parts

log = logging.getLogger("segmenter")

# Read errors in a row (garbage the demuxer cannot resync on) after which the input is given up
# as ended; one bad spot in a live stream produces a handful at most.
MAX_READ_ERRORS_IN_A_ROW = 50

# Closed segments waiting for their fsync and rename. The read loop never waits for the disk's
# flush unless this many are behind, which only a disk slower than the stream itself causes.
MAX_UNCOMMITTED_SEGMENTS = 4


class _Committer:
    """Makes closed segments durable and renames them, then queues their message: in order,
    on its own thread, so a slow fsync does not stall reading a live pipe."""

    def __init__(self, notifier: Notifier, directory_fd: int) -> None:
        self._notifier = notifier
        self._directory_fd = directory_fd
        self._queue: queue.Queue[tuple[SegmentWriter, IndexMessage] | None] = queue.Queue(MAX_UNCOMMITTED_SEGMENTS)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
        self._thread.start()

    def put(self, writer: SegmentWriter, message: IndexMessage) -> None:
        self._raise_error()
        self._queue.put((writer, message))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            writer, message = item
            if self._error is not None:
                continue
            try:
                writer.commit(directory_fd=self._directory_fd)
            except OSError as error:
                self._error = error
                continue
            self._notifier.put(message)


@dataclass(frozen=True, slots=True)
class RunSummary:
    first_segment: int
    last_segment: int  # first_segment - 1 when no segment was written
    dropped_packets: int
    delivery: DeliveryReport


def journal_path(config: SegmenterConfig) -> Path:
    return config.output_dir / f".{config.output_prefix}.journal"


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
            journal_path=journal_path(config),
            secret=config.secret,
            send_segments=config.send_segments,
            **self._notifier_options,
        )
        notifier.start()
        last = first - 1
        dropped = 0
        try:
            container, source = open_input(config.input, probe_timeout_s=config.probe_timeout_s, stop=self._stop,
                                           stall_warning_s=config.stall_warning_s, stall_end_s=config.stall_end_s)
            try:
                description = describe(container)
                self._log_input(description)
                fast = self._fast_plan(container, description, source)
                run: _Run | FastRun
                if fast is not None:
                    container.close()  # the probe's buffers and decoders are not needed any more
                    run = FastRun(config, description, fast, notifier, self._progress, self._stop, first,
                                  partial(segment_message, config, description, first),
                                  partial(_Committer, notifier))
                else:
                    run = _Run(config, container, description, notifier, self._progress, self._stop, first)
                run.loop()
                last, dropped = run.number, run.dropped
            finally:
                container.close()
        finally:
            self._progress.done()
            waiting = len(notifier)
            if waiting:
                log.info("waiting up to %g s for the daemon to acknowledge %d message(s)",
                         config.drain_timeout_s, waiting)
            report = notifier.close(config.drain_timeout_s if waiting else 0.0, abort=self._abort)
        return RunSummary(first, last, dropped, report)

    def _fast_plan(
        self, container: av.container.InputContainer, description: InputDescription, source: StdinSource | None
    ) -> FastPlan | None:
        """The MPEG-TS fast path's plan (fastrun.py), or None for the PyAV path, with the reason logged."""
        fast, reason = plan_fast_path(self.config, container, description, source, self._stop,
                                      enabled=fast_path_enabled(self.config))
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


class _Run:
    """One pass over the input. Holds the open segment and the per-segment counters."""

    def __init__(
        self,
        config: SegmenterConfig,
        container: av.container.InputContainer,
        description: InputDescription,
        notifier: Notifier,
        progress: Progress,
        stop: threading.Event,
        first: int,
    ) -> None:
        self.config = config
        self.container = container
        self.description = description
        self.notifier = notifier
        self.progress = progress
        self.stop = stop
        self.first = first
        self.number = first - 1  # last segment number used
        self.streams = [container.streams[info.index] for info in description.streams]
        # Every run's first segment is flagged: to the daemon a new run is a new timeline, so a
        # segmenter restarted from segment 1 opens a new epoch instead of looking like re-sends.
        self.cutter = Cutter(list(description.streams), config.segment_seconds, discontinuity=True)
        self.writer: SegmentWriter | None = None
        self.held: collections.deque[tuple[int, av.Packet]] = collections.deque()
        self.dropped = 0
        self._segment_dropped = 0
        self._segment_corrupt = 0
        self._last_drop_reason = ""

    def loop(self) -> None:
        directory_fd = os.open(self.config.output_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.committer = _Committer(self.notifier, directory_fd)
        try:
            self._read_all()
            if self.writer is not None:
                self._finish_segment(self.cutter.finish(), end=True)
            elif not self.stop.is_set():
                raise InputError("input ended before its first audio packet or video keyframe")
            if self.held:
                log.warning("dropped %d packet(s) held at a timestamp jump the video never followed", len(self.held))
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        finally:
            try:
                self.committer.close()
            finally:
                os.close(directory_fd)

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
        self.dropped += 1
        self._segment_dropped += 1
        if reason != self._last_drop_reason:
            self._last_drop_reason = reason
            log.warning("stream #%d: dropping packets for segment %d: %s", index, self.number + 1, reason)

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
            self._finish_segment(self.cutter.finished, end=False)
        self.number += 1
        self.writer = SegmentWriter(self.config.output_dir, self.config.output_prefix, self.number, self.streams)
        if self.cutter.discontinuity:
            if self.number > self.first:
                log.warning("segment %d starts a new timeline (discontinuity)", self.number)
            while self.held:
                self._write(*self.held.popleft())
        self._write(index, packet)

    def _finish_segment(self, timing: SegmentTiming | None, *, end: bool) -> None:
        writer = self.writer
        assert writer is not None
        self.writer = None
        size = writer.close()
        timing = timing or SegmentTiming(None, None, False)
        if self._segment_dropped or self._segment_corrupt:
            log.warning(
                "segment %d (%s): %d packet(s) dropped, %d marked corrupt by the demuxer",
                writer.number, writer.name, self._segment_dropped, self._segment_corrupt,
            )
        self._segment_dropped = self._segment_corrupt = 0
        self._last_drop_reason = ""
        message = self._message(writer.number, timing, end=end)
        self.committer.put(writer, message)
        self.progress.segment(writer.name, message.duration, message.start, size, timing.discontinuity, len(self.notifier))

    def _message(self, number: int, timing: SegmentTiming, *, end: bool) -> IndexMessage:
        return segment_message(self.config, self.description, self.first, number, timing, end)


def fast_path_enabled(config: SegmenterConfig) -> bool:
    """--fast-path/--no-fast-path; HLS_SEGMENT_FAST_PATH=0 turns it off."""
    value = getattr(config, "fast_path", None)
    if value is None:
        value = os.environ.get("HLS_SEGMENT_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


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
