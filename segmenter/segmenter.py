"""The segmenter's orchestrator: one stream from its first segment to its last.

Prepares the output directory, opens the input, chooses and starts a run for each program of
the input (the MPEG-TS fast path, ``fastrun.py``, or the PyAV path, ``pyavrun.py``), goes on
with a new run where the program changes, and owns the notifier from start to drained close.
"""

from __future__ import annotations

import errno
import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av.container

from common.settings import ConfigError
from protocol.limits import MAX_SEGMENT_NUMBER

from .client import daemon_order
from .config import SegmenterConfig, WireMode
from .errors import NotTheWriter, OutputFull
from .fastrun import FastPlan, FastRun, plan_fast_path
from .input import (
    ByteSource,
    InputDescription,
    StallMonitor,
    StallWatch,
    describe,
    open_input,
    probe_source,
    shown_input,
)
from . import metrics
from .notifier import DeliveryReport, Notifier
from .outbox import legacy_owed
from .progress import Progress
from .psi import pids_without_pts
from .pyavrun import PyAVRun
from .run import RunContext, SegmentRun
from .writer import highest_segment_number, remove_stale_parts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished ``Segmenter.run`` reports: the segments written and their delivery."""

    first_segment: int
    last_segment: int  # first_segment - 1 when no segment was written
    delivery: DeliveryReport


def outbox_path(config: SegmenterConfig) -> Path:
    """The file of the messages owed to the daemon, shared by every run of this stream."""
    return config.output_dir / f".{config.output_prefix}.outbox"


def _adopt_legacy_files(config: SegmenterConfig, notifier: Notifier) -> None:
    """Move what the previous version's ``.PREFIX.journal`` and ``.PREFIX.unacked`` still owed into
    the outbox (ahead of this run's messages), then remove them: an upgrade loses nothing."""
    journal = config.output_dir / f".{config.output_prefix}.journal"
    record = config.output_dir / f".{config.output_prefix}.unacked"
    owed = legacy_owed(journal, record)
    for message in owed:
        notifier.put(message)
    if owed:
        log.warning("took %d owed message(s) from %s and %s of an earlier version into %s",
                    len(owed), journal.name, record.name, outbox_path(config).name)
    journal.unlink(missing_ok=True)
    record.unlink(missing_ok=True)


def first_number(config: SegmenterConfig, announced: int = 0) -> tuple[int, bool]:
    """The first segment number of this run, and whether it continues an earlier run's segments.

    Without --start-number a run that finds PREFIX-N.ts files, or whose outbox owes or once
    delivered segment N, or whose stream is at segment N on the daemon (``announced``, the
    highest of the last two: files may be removed once stored, or written by another writer),
    continues after the highest N (and flags a discontinuity) instead of overwriting segments a
    CDN may have cached.
    Raises ConfigError when that N is already the highest an index message can carry
    (MAX_SEGMENT_NUMBER): the stream cannot go on in this OUTPUT_DIR.
    """
    if config.start_number is not None:
        return config.start_number, False
    highest = max(highest_segment_number(config.output_dir, config.output_prefix), announced)
    if highest >= MAX_SEGMENT_NUMBER:
        raise ConfigError(
            f"{config.output_dir} holds segment {highest}, the highest number an index message can carry:"
            f" start the stream in a new OUTPUT_DIR (or with another OUTPUT_PREFIX and INDEX_NAME)"
        )
    return highest + 1, highest > 0


class Segmenter:
    """Segments one input as ``config`` says. ``stop`` ends the input at the next packet (the
    open segment is finished and announced); ``abort`` cuts the final drain short."""

    def __init__(
        self,
        config: SegmenterConfig,
        *,
        stop: threading.Event,
        abort: threading.Event,
        progress: Progress,
    ) -> None:
        self.config = config
        self._stop = stop
        self._abort = abort
        self._progress = progress

    def run(self) -> RunSummary:
        """Segment the whole input, then wait up to ``drain_timeout_s`` for the daemon's OKs.

        Raises ConfigError when the output directory cannot be prepared, InputError when the
        input cannot be segmented, and OSError when a segment cannot be written.
        """
        config = self.config
        try:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            unfinished = remove_stale_parts(config.output_dir, config.output_prefix)
            for name in unfinished:
                log.info("removed %s, left unfinished by an earlier run", name)
        except OSError as error:
            raise ConfigError(f"output directory {config.output_dir}: {error.strerror or error}") from None
        notifier = Notifier(
            daemon_order(config.uploaders, config.bucket, config.key_prefix),
            v1=config.wire is WireMode.V1,
            outbox_path=outbox_path(config),
            secret=config.secret,
            key_id=config.key_id,
            send_segments=config.send_segments,
            tls=config.tls_context,
            server_name=config.tls_server_name,
            remove_sent=not config.keep_segments,
            on_not_writer=self._stop.set,
        )
        _adopt_legacy_files(config, notifier)
        metrics.watch(owed=notifier.__len__)
        startup = None
        if notifier.writer is not None:
            startup = config.message(first_segment=1, last_segment=0, end=False, writer=notifier.writer,
                                     takeover=config.take_over)
        stream_last = notifier.start(startup, unfinished={name.removeprefix(".").removesuffix(".part")
                                                          for name in unfinished})
        if notifier.not_writer is not None:
            notifier.close(0.0)
            raise NotTheWriter(notifier.not_writer, notifier.writer)
        try:
            first, restarted = first_number(config, max(notifier.highest_number(), stream_last or 0))
        except OSError as error:
            notifier.close(0.0)
            raise ConfigError(f"output directory {config.output_dir}: {error.strerror or error}") from None
        if restarted:
            log.warning(
                "%s or its stream already holds or announced segments up to %s: continuing at %d, flagged as a"
                " discontinuity", config.output_dir, first - 1, first,
            )
        last = first - 1
        try:
            container, source = open_input(config.input, probe_timeout_s=config.probe_timeout_s, stop=self._stop,
                                           stall_warning_s=config.stall_warning_s, stall_end_s=config.stall_end_s,
                                           ca_file=config.input_ca)
            context = RunContext(config, notifier, self._progress, self._stop, partial(_program_changed, source),
                                 first)
            try:
                while True:
                    run = self._start_run(container, source, context, last + 1)
                    with self._stall_monitor(run, source):
                        run.loop()
                    last = run.number
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
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self._end_on_full_disk(notifier, first, error) from None
        finally:
            self._progress.done()
            waiting = len(notifier) if notifier.not_writer is None else 0
            if waiting:
                log.info("waiting up to %g s for the daemon to acknowledge %d message(s)",
                         config.drain_timeout_s, waiting)
            report = notifier.close(config.drain_timeout_s if waiting else 0.0, abort=self._abort)
        if report.not_writer is not None:
            raise NotTheWriter(report.not_writer, notifier.writer)
        return RunSummary(first, last, report)

    def _end_on_full_disk(self, notifier: Notifier, first: int, error: OSError) -> OutputFull:
        """OUTPUT_DIR is full (the open segments are removed by now): queue the stream's end after
        its last stored segment, so that its playlist gets EXT-X-ENDLIST with what was stored."""
        config = self.config
        reason = f"OUTPUT_DIR {config.output_dir} is full ({error.strerror or error}"
        reason += f", writing {Path(error.filename).name})" if error.filename else ")"
        last = notifier.last_announced
        if last is None:
            return OutputFull(f"{reason}: no segment was stored")
        end = config.message(first_segment=first, last_segment=last, end=True)
        try:
            notifier.put(end)
        except OSError:
            # Its outbox is on the full disk too: sent by this run, not recorded for the next.
            notifier.send_unrecorded(end)
        return OutputFull(f"{reason}: the stream was ended after segment {last} (EXT-X-ENDLIST); free space"
                          " (hls-uploadd removes stored segments unless --keep-segment-files) and run again")

    def _start_run(
        self, container: av.container.InputContainer, source: ByteSource | None, context: RunContext, number: int,
    ) -> SegmentRun:
        """A run over the input's current program from segment ``number`` on (a run after a
        program change continues the numbering), on the fast path when it can take it."""
        description = describe(container, self.config.program)
        if source is not None:
            source.follow(description.program)  # a change in another program is not ours
        self._log_input(description)
        # Streams without PTS, from the probe's bytes (read before the fast path's plan, which
        # forgets them when it is not used): the fast path declines them, the PyAV path leaves them out.
        untimed = frozenset() if source is None or description.format_name != "mpegts" else pids_without_pts(
            source.recorded(), (container.streams[s.index].id for s in description.streams))
        fast = self._fast_plan(container, description, source, untimed)
        if fast is None:
            return PyAVRun(context, description, number, container, untimed)
        container.close()  # the probe's buffers and decoders are not needed any more
        return FastRun(context, description, number, fast)

    def _stall_monitor(self, run: SegmentRun, source: ByteSource | None) -> AbstractContextManager[object]:
        """The stale-input watchdog of an input FFmpeg reads (a ByteSource has its own)."""
        if source is not None or not isinstance(run, PyAVRun):
            return nullcontext()
        watch = StallWatch(self.config.stall_warning_s, self.config.stall_end_s)
        metrics.watch(input_bytes=lambda: run.packet_bytes, silent_s=watch.silent_s)
        return StallMonitor(watch, lambda: run.packets_read)

    def _fast_plan(
        self, container: av.container.InputContainer, description: InputDescription, source: ByteSource | None,
        untimed: frozenset[int],
    ) -> FastPlan | None:
        """The MPEG-TS fast path's plan (fastrun.py), or None for the PyAV path, with the reason logged."""
        fast, reason = plan_fast_path(container, description, source, self._stop,
                                      enabled=self.config.fast_path, untimed=untimed)
        if fast is None:
            log.info("MPEG-TS fast path not used: %s", reason)
            if source is not None:
                source.forget()
        else:
            log.info("MPEG-TS fast path: cutting at 188-byte packet level (PIDs %s)",
                     ", ".join(f"0x{t.pid:x}" for t in fast.tracks))
        return fast

    def _log_input(self, description: InputDescription) -> None:
        if description.program_choice:
            log.info("input: copying %s", description.program_choice)
        streams = ", ".join(f"#{s.index} {s.kind.value}" for s in description.streams)
        log.info(
            "input %s (%s): %s; codecs %s, resolution %s, %s fps",
            shown_input(self.config.input), description.format_name, streams, description.codecs or "unknown",
            description.resolution or "-", description.frame_rate or "-",
        )
        if description.skipped:
            log.info("not copied (neither audio nor video): %s", ", ".join(description.skipped))


def _program_changed(source: ByteSource | None) -> bool:
    return source is not None and source.program_change is not None
