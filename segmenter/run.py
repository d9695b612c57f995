"""What a run of either path shares: numbering, the cutter, drops, each finished segment's index
message, and its commit (fsync, rename) and delivery, in order, off the read loop.

The two run kinds fill in ``SegmentRun``'s hooks: ``pyavrun.PyAVRun`` and ``fastrun.FastRun``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from common.durable import commit_file
from protocol import IndexMessage
from protocol.limits import MAX_SEGMENT_DURATION_S, MAX_SEGMENT_NUMBER

from . import metrics
from .config import SegmenterConfig
from .cutter import Cutter, SegmentTiming, StreamKind
from .errors import InputError
from .input import InputDescription
from .notifier import Notifier
from .progress import Progress
from .randomaccess import ParameterSet, ParameterWatch, SegmentStart

log = logging.getLogger(__name__)

# Closed segments waiting for their fsync and rename. The read loop never waits for the disk's
# flush unless this many are behind, which only a disk slower than the stream itself causes.
MAX_UNCOMMITTED_SEGMENTS = 4

# Segments cut without a keyframe are logged at the first and then every this many.
FORCED_CUT_WARNING_EVERY = 100


class ClosedSegment(Protocol):
    number: int
    name: str
    path: Path  # its real name
    temp_path: Path  # where it was written

    def abort(self) -> None: ...

    def close(self) -> int: ...


def close_segment(segment: ClosedSegment) -> int:
    """Finish writing ``segment`` and return its size in bytes. One that cannot be finished (a
    full disk) is removed before the error is raised: it is no longer among the run's open
    segments, which ``_abort_open`` removes."""
    try:
        return segment.close()
    except BaseException:
        segment.abort()
        raise


class Committer:
    """Makes closed segments durable and renames them, then queues their message: in order,
    on its own thread, so a slow fsync does not stall reading a live pipe."""

    def __init__(self, notifier: Notifier, directory_fd: int) -> None:
        self._notifier = notifier
        self._directory_fd = directory_fd
        self._queue: queue.Queue[tuple[ClosedSegment, IndexMessage] | None] = queue.Queue(MAX_UNCOMMITTED_SEGMENTS)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
        self._thread.start()

    def put(self, segment: ClosedSegment, message: IndexMessage) -> None:
        self._raise_error()
        self._queue.put((segment, message))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            segment, message = item
            if self._error is not None:
                segment.temp_path.unlink(missing_ok=True)  # never committed: no .part is left
                continue
            try:
                # Recorded as owed to the daemon before its file gets its real name: a run killed
                # between the two never leaves a visible segment that no run will announce.
                commit_file(segment.temp_path, segment.path, directory_fd=self._directory_fd,
                            before_rename=partial(self._notifier.record, message))
            except OSError as error:
                self._error = error
                # A record made before the failure is sent if the file got its name, else dropped.
                named = segment.path.exists()
                if not named:
                    segment.temp_path.unlink(missing_ok=True)
                self._notifier.settle_recorded(named=named)
                continue
            self._notifier.put(message, recorded=True)


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every run of one segmenter shares."""

    config: SegmenterConfig
    notifier: Notifier
    progress: Progress
    stop: threading.Event
    # Once the input stopped: whether another run follows (the program changed), so that the
    # last segment does not end the stream.
    continues: Callable[[], bool]
    # The stream's first segment number: FIRST_SEGMENT of every message, whichever run sends it.
    first_segment: int


class SegmentRun:
    """One pass over one program of the input, from segment ``first`` on. Subclasses read it
    (``_read_input``), remove what they left open when it fails (``_abort_open``), count drops
    per segment (``_drop``) and hand each closed segment to ``_finished``."""

    def __init__(self, context: RunContext, description: InputDescription, first: int) -> None:
        self.config = context.config
        self.notifier = context.notifier
        self.progress = context.progress
        self.stop = context.stop
        self.continues = context.continues
        self.first_segment = context.first_segment  # the stream's
        self.description = description
        self.first = first  # this run's
        self.number = first - 1  # last segment number used
        # Every run's first segment is flagged: to the daemon a new run is a new timeline, so a
        # segmenter restarted from segment 1 opens a new epoch instead of looking like re-sends.
        self.cutter = Cutter(list(description.streams), self.config.segment_seconds,
                             target_s=self.config.segment_duration_field, discontinuity=True)
        self._forced_cuts = 0
        # The reference video stream's encoding parameters, keyframe by keyframe (set by the run kind).
        self.watch: ParameterWatch | None = None
        self._last_drop_reason = ""
        self._said_dependent = False  # a segment that is not independent was logged
        self._said_without_reference = False  # a segment cut while the reference had not started was logged

    def loop(self) -> None:
        """Read the input until it ends, stops or changes program, committing every segment.

        Raises InputError when the input ended before a first segment could start (and no other
        run follows), and OSError when a segment cannot be written or committed.
        """
        directory_fd = os.open(self.config.output_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.committer = Committer(self.notifier, directory_fd)
        try:
            self._read_input()
            if self.number < self.first and not self.stop.is_set() and not self.continues():
                raise InputError("input ended before its first audio packet or video keyframe")
        except BaseException:
            self._abort_open()
            raise
        finally:
            try:
                self.committer.close()
            finally:
                os.close(directory_fd)

    def _read_input(self) -> None:
        """Read the input until it ends or ``stop`` is set, writing segments and handing each
        closed one to ``_finished`` (the last with ``last=True``)."""
        raise NotImplementedError

    def _abort_open(self) -> None:
        """Remove the segments still open (the run failed or was interrupted)."""
        raise NotImplementedError

    def _next_number(self, discontinuity: bool, forced: bool, changed: bool = False) -> int:
        """The number of the segment a cut opens; ``discontinuity`` and ``forced`` (cut without a
        keyframe) are the cutter's for that cut, ``changed`` says it starts with new encoding
        parameters; all are logged."""
        self.number += 1
        if self.number == MAX_SEGMENT_NUMBER:
            # The index message's numbers end here (protocol/limits.py): this segment ends the stream.
            log.warning("segment %d is the highest number an index message can carry: it ends the stream"
                        " (ENDLIST); go on with a new OUTPUT_DIR", self.number)
            self.stop.set()
        if discontinuity and self.number > self.first:
            log.warning("segment %d starts a new timeline (discontinuity)", self.number)
        elif changed and self.watch is not None and self.watch.current is not None:
            new = self.watch.current.parameters
            log.warning("segment %d starts with new video parameters (%s, %s, %s fps): marked as a discontinuity",
                        self.number, new.codec or "codec unknown", new.resolution, new.frame_rate or "?")
        if forced:
            self._forced_cuts += 1
            if self._forced_cuts == 1 or self._forced_cuts % FORCED_CUT_WARNING_EVERY == 0:
                log.warning(
                    "segment %d starts without a keyframe (%d so far): no video keyframe came within the"
                    " %d-s target duration; encode with a keyframe at least every %g s (ffmpeg -g or"
                    " -force_key_frames) or raise SEGMENT_DURATION",
                    self.number, self._forced_cuts, self.cutter.target_s, self.config.segment_seconds,
                )
        return self.number

    def _drop(self, index: int, reason: str) -> None:
        """One unit left out: logged once per reason (each path also counts it against the
        segment it belonged to)."""
        if reason != self._last_drop_reason:
            self._last_drop_reason = reason
            log.warning("stream #%d: dropping packets for segment %d: %s", index, self.number + 1, reason)

    def _finished(self, segment: ClosedSegment, size: int, timing: SegmentTiming | None, start: SegmentStart, *,
                  last: bool, dropped: int, video: tuple[ParameterSet | None, bool] = (None, False)) -> None:
        """A closed segment: log its losses, queue its commit and message, report progress.
        ``start`` judged its first video access units (``randomaccess``): its ``independent``;
        ``video``: its reference video's parameters, and whether they changed at its start."""
        timing = timing or SegmentTiming(None, None, False)
        if dropped:
            log.warning("segment %d (%s): %d packet(s) dropped", segment.number, segment.name, dropped,
                        extra={"segment": segment.name})
        if timing.without_reference and not self._said_without_reference:
            self._said_without_reference = True
            reference = self.cutter.reference
            awaited = "keyframe" if reference.kind is StreamKind.VIDEO else "timestamp"
            log.warning("segment %d was cut on the other streams' clock: stream #%d (%s), the one segments are cut"
                        " on, has sent no %s yet (is it missing from the input?); later ones are not logged",
                        segment.number, reference.index, reference.kind.value, awaited)
        independent = start.independent
        if not independent and not self._said_dependent:
            self._said_dependent = True
            log.info("segment %d is not independent: %s (later ones are not logged)",
                     segment.number, start.reason)
        message = self._index_message(segment.number, timing, end=last and not self.continues(),
                                      independent=independent, video=video)
        self.committer.put(segment, message)
        metrics.segment_written(size, message.duration, timing.discontinuity, dropped)
        self.progress.segment(segment.name, message.duration, message.start, size, timing.discontinuity,
                              len(self.notifier))

    def _index_message(self, number: int, timing: SegmentTiming, *, end: bool, independent: bool,
                       video: tuple[ParameterSet | None, bool] = (None, False)) -> IndexMessage:
        """The index message of finished segment ``number``; ``end`` when it ends the stream,
        ``independent`` when it is decodable alone; ``video`` as ``_finished`` takes it: a
        segment whose parameters changed at its start is a discontinuity (RFC 8216 4.3.2.3), and
        its codecs, resolution and frame rate are its parameters' (``_video_fields``).
        Durations are capped at the protocol's maximum and given in seconds to the microsecond."""
        duration = timing.duration_s
        if duration is not None:
            duration = round(min(duration, MAX_SEGMENT_DURATION_S), 6)
            if duration <= 0:
                duration = None
        start = round(timing.start_s, 6) if timing.start_s is not None and timing.start_s >= 0 else None
        codecs, resolution, frame_rate = self._video_fields(video[0])
        return self.config.message(
            first_segment=self.first_segment,
            last_segment=number,
            end=end,
            duration=duration,
            start=start,
            discontinuity=timing.discontinuity or video[1],
            codecs=codecs,
            resolution=resolution,
            frame_rate=frame_rate,
            independent=independent,
        )

    def _video_fields(self, parameters: ParameterSet | None) -> tuple[str | None, str | None, float | None]:
        """CODECS, RESOLUTION and FRAME-RATE of a segment whose reference video has ``parameters``:
        the probe's while they are the first ones seen (the ones it described), else the SPS's
        codec string in place of the first one's in the probe's list, its size and its frame
        rate (the VUI's, else measured from timestamps; None while unknown)."""
        description = self.description
        first = self.watch.first if self.watch is not None else None
        if parameters is None or first is None or parameters.parameters == first.parameters:
            return description.codecs, description.resolution, description.frame_rate
        new, old = parameters.parameters, first.parameters
        return _codecs_with(description.codecs, old.codec, new.codec), new.resolution, parameters.frame_rate


def _codecs_with(codecs: str | None, old: str | None, new: str | None) -> str | None:
    """The CODECS list ``codecs`` with ``old`` replaced by ``new``; None (no CODECS, players
    probe) when ``old`` is not in it or either is unknown: a wrong list is worse than none."""
    if old == new:
        return codecs
    entries = codecs.split(",") if codecs else []
    if old is None or new is None or old not in entries:
        return None
    return ",".join(dict.fromkeys(new if entry == old else entry for entry in entries))
