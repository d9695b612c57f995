"""The MPEG-TS fast path's I/O shell: read the input, feed ``tsfast.TsSplitter``, write its segments.

Used for MPEG-TS inputs read through a ``ByteSource`` (stdin or a regular file) whose program PyAV described completely: the
chosen program (``InputDescription.program``; of a multi-program mux only its packets are kept,
under a PAT that names it alone: ``psi.ProgramFilter``), every elementary stream audio or video
with 90 kHz timestamps, or timed ID3 metadata or SCTE-35 (copied, never cut on), at most
``tsfast.MAX_STREAMS`` of them, and an H.264 or HEVC reference video stream. Anything else, or
``--no-fast-path``, takes the PyAV path. The files, messages, commit order, logs and guarantees are
the PyAV path's (``pyavrun.py``); continuity errors are counted per PID from the packets
themselves (``tsfast.ContinuityCheck``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av.container

from protocol import segment_file_name
from protocol.limits import MAX_SEGMENT_NUMBER

from .cutter import SegmentTiming, StreamKind
from .input import READ_CHUNK_BYTES, ByteSource, InputDescription, log_continuity
from .randomaccess import ParameterSet, ParameterWatch, TsSegmentStart, codec_by_stream_type
from .run import RunContext, SegmentRun, close_segment
from .silentframe import fillable_streams, silent_frame_or_none
from .tsfast import (
    CLOSE,
    CONTINUITY,
    DATA,
    DROPPED,
    OPEN,
    SKIPPED,
    STREAM_TYPE_H264,
    STREAM_TYPE_HEVC,
    NotEligible,
    ProgramMap,
    Track,
    TsSplitter,
    check_routable,
    find_program,
)

log = logging.getLogger(__name__)

TICKS_PER_SECOND = 90000


class FastPlan:
    """What the fast path needs to start: the program, the tracks, where the bytes come from, and
    the first of them, as the probe read them (``chunks`` gives them again)."""

    def __init__(self, program: ProgramMap, tracks: list[Track], chunks: Callable[[], Iterator[bytes]],
                 probed: bytes = b"") -> None:
        self.program = program
        self.tracks = tracks
        self.chunks = chunks
        self.probed = probed


def plan_fast_path(
    container: av.container.InputContainer,
    description: InputDescription,
    source: ByteSource | None,
    stop: threading.Event,
    *,
    enabled: bool,
    untimed: frozenset[int] = frozenset(),
) -> tuple[FastPlan | None, str]:
    """The fast path's plan, or None and the reason the PyAV path is used instead. ``untimed``:
    the PIDs whose PES packets carry no PTS in what the probe read (``psi.pids_without_pts``)."""
    if not enabled:
        return None, "turned off (--no-fast-path)"
    try:
        return plan(container, description, source, stop, untimed), ""
    except NotEligible as reason:
        return None, str(reason)
    except (IndexError, ValueError) as error:  # PSI too malformed to read: PyAV copes or says why
        return None, f"the input's PAT/PMT could not be read ({error})"


def plan(
    container: av.container.InputContainer,
    description: InputDescription,
    source: ByteSource | None,
    stop: threading.Event,
    untimed: frozenset[int] = frozenset(),
) -> FastPlan:
    """A plan for the fast path, or NotEligible with the reason the PyAV path is used instead."""
    if description.format_name != "mpegts":
        raise NotEligible(f"the input is {description.format_name}, not MPEG-TS")
    if description.skipped:
        raise NotEligible("the input has streams that are neither audio nor video")
    if source is None:
        raise NotEligible("the input is not stdin or a regular file")
    probed = source.recorded()
    program = find_program(probed, description.program)  # the probe found it in these bytes
    types = dict(program.streams)
    reference = next((s for s in description.streams if s.kind is StreamKind.VIDEO), None)
    if reference is None:
        raise NotEligible("no video stream to find keyframes in")
    tracks = []
    for info in description.streams:
        stream = container.streams[info.index]
        pid = stream.id
        if pid not in types:
            raise NotEligible(f"stream #{info.index} (PID {pid}) is not in the first PMT")
        if info.time_base != Fraction(1, TICKS_PER_SECOND):
            raise NotEligible(f"stream #{info.index} has time base {info.time_base}")
        video = info.kind is StreamKind.VIDEO
        frame_ticks = None
        if video:
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate and 0 < rate <= 1000:
                frame_ticks = round(Fraction(TICKS_PER_SECOND) / Fraction(rate))
        codec = "" if video else stream.codec_context.codec.canonical_name
        if info.kind is StreamKind.AUDIO and not stream.codec_context.sample_rate:
            # Players cannot take a track that joins a stream later (hls.js: bufferAppendError):
            # the PyAV path leaves it out, as it must (FFmpeg's muxer needs the sample rate).
            raise NotEligible(f"stream #{info.index} sent no packet while the input was probed")
        tracks.append(Track(pid, info.index, video, types[pid] == STREAM_TYPE_HEVC, frame_ticks, codec=codec))
    if types[container.streams[reference.index].id] not in (STREAM_TYPE_H264, STREAM_TYPE_HEVC):
        raise NotEligible("the video is neither H.264 nor HEVC")
    for data in description.data:
        pid = container.streams[data.index].id
        if pid not in types:
            raise NotEligible(f"stream #{data.index} (PID {pid}) is not in the first PMT")
        tracks.append(Track(pid, data.index, False, False, None, data=True))
    if len(tracks) != len(program.streams):
        raise NotEligible("the PMT lists streams the probe did not describe")
    if untimed:
        # Copied as they came, their packets would be placed nowhere: the PyAV path leaves them out.
        raise NotEligible(f"PID(s) {', '.join(f'0x{pid:x}' for pid in sorted(untimed))} carry no PTS")
    check_routable(tracks)

    def chunks() -> Iterator[bytes]:
        yield source.replay()
        while not stop.is_set() and (data := source.read(READ_CHUNK_BYTES)):
            yield data

    return FastPlan(program, tracks, chunks, probed)


class RawSegment:
    """One segment file being written as bytes under ``.NAME.part``; same life as SegmentWriter."""

    def __init__(self, directory: Path, prefix: str, number: int, psi: bytes) -> None:
        self.number = number
        self.name = segment_file_name(prefix, number)
        self.path = directory / self.name
        self.temp_path = directory / f".{self.name}.part"
        self._file = open(self.temp_path, "wb")
        self._file.write(psi)
        self.write = self._file.write

    def close(self) -> int:
        self._file.close()
        return self.temp_path.stat().st_size

    def abort(self) -> None:
        try:
            self._file.close()  # flushes: fails again on a full disk
        except OSError:
            pass
        finally:
            self.temp_path.unlink(missing_ok=True)


class FastRun(SegmentRun):
    """One pass over an MPEG-TS input with the fast path, as ``fast`` planned it. Same outputs
    as ``pyavrun.PyAVRun``."""

    def __init__(self, context: RunContext, description: InputDescription, first: int, fast: FastPlan) -> None:
        super().__init__(context, description, first)
        self.fast = fast
        types = dict(fast.program.streams)
        reference = next(t for t in fast.tracks if t.index == self.cutter.reference.index)
        self.watch = ParameterWatch(codec_by_stream_type(types[reference.pid]), Fraction(1, TICKS_PER_SECOND))
        self.splitter = TsSplitter(fast.program, fast.tracks, self.cutter, self.watch, silent_frame_or_none,
                                   look_ahead=fast.probed)
        self._files: dict[int, RawSegment] = {}
        self._timings: dict[int, SegmentTiming | None] = {}
        self._dropped_in: dict[int, int] = {}  # drops per open segment (several may be open at a cut)
        self._videos: dict[int, tuple[ParameterSet | None, bool]] = {}  # per open segment: its parameters
        self._breaks_in: dict[int, dict[int, int]] = {}  # per open segment: PID -> continuity errors
        self._early_breaks: dict[int, int] = {}  # before the first segment: counted in it
        data = [t for t in fast.tracks if t.data]
        if data:
            log.info("copied, never cut on: %s", ", ".join(
                f"PID 0x{t.pid:x} {description.data_kind(t.index)}" for t in data))
        # Said at the start: the audio tracks whose pauses stay holes (the splitter fills the others').
        fillable_streams({t.index: t.codec for t in fast.tracks if not t.video and not t.data})
        self._video = {t.pid: (codec_by_stream_type(types[t.pid]), 0) for t in fast.tracks if t.video}
        self._starts: dict[int, TsSegmentStart] = {}  # per open segment: where it starts
        self._numbers_exhausted = False  # segment MAX_SEGMENT_NUMBER was closed: the run is over

    def _read_input(self) -> None:
        handle = self._handle
        feed = self.splitter.feed
        for data in self.fast.chunks():
            handle(feed(data), end=False)
            if self._numbers_exhausted:
                return
        handle(self.splitter.finish(), end=True)

    def _abort_open(self) -> None:
        for writer in self._files.values():
            writer.abort()

    def _handle(self, events: list[tuple], *, end: bool) -> None:
        files = self._files
        for event in events:
            kind = event[0]
            if kind == DATA:
                writer = files.get(event[1])
                if writer is not None:
                    writer.write(event[2])
                    self._starts[event[1]].feed(event[2])
            elif kind == OPEN:
                if self.number >= MAX_SEGMENT_NUMBER:
                    self._end_at_limit(event[3])
                    return
                self._open(event[1], event[2], event[3], event[4], event[5], event[6])
            elif kind == CLOSE:
                self._close(event[1], event[2], last=end and len(files) == 1)
            elif kind == DROPPED:
                self._drop(event[1], event[2])
            elif kind == CONTINUITY:
                counts = self._breaks_in[max(files)] if files else self._early_breaks
                counts[event[1]] = counts.get(event[1], 0) + 1
            elif kind == SKIPPED:
                log.warning("input: lost MPEG-TS sync in segment %d; skipped %d byte(s) of garbage",
                            self.number + 1, event[1])

    def _open(self, key: int, psi: bytes, finished: SegmentTiming | None, discontinuity: bool,
              forced: bool, video: tuple[ParameterSet | None, bool]) -> None:
        if self._files:
            self._timings[max(self._files)] = finished
        number = self._next_number(discontinuity, forced, video[1])
        self._videos[key] = video
        self._files[key] = RawSegment(self.config.output_dir, self.config.output_prefix, number, psi)
        self._dropped_in[key] = 0
        self._breaks_in[key], self._early_breaks = self._early_breaks, {}
        self._starts[key] = TsSegmentStart(self._video)

    def _end_at_limit(self, finished: SegmentTiming | None) -> None:
        """A cut after segment MAX_SEGMENT_NUMBER (the chunk read before ``stop`` was seen held
        more): no segment opens; the open ones are closed, the highest ending the stream, whose
        timing is ``finished``; the rest of the input is left unread."""
        keys = sorted(self._files)
        if keys:
            self._timings[keys[-1]] = finished
        for key in keys:
            self._close(key, None, last=key == keys[-1])
        self._numbers_exhausted = True

    def _close(self, key: int, timing: SegmentTiming | None, *, last: bool) -> None:
        """Segment ``key`` is complete; ``timing`` is the cutter's for the last one (the others'
        came with the OPEN of the segment after them)."""
        writer = self._files.pop(key)
        size = close_segment(writer)
        timing = self._timings.pop(key, timing)
        start = self._starts.pop(key).finish()
        log_continuity(writer.number, self._breaks_in.pop(key), "continuity error")
        self._finished(writer, size, timing, start, last=last, dropped=self._dropped_in.pop(key, 0),
                       video=self._videos.pop(key))

    def _drop(self, index: int, reason: str) -> None:
        super()._drop(index, reason)
        if self._files:
            key = max(self._files)
            self._dropped_in[key] = self._dropped_in.get(key, 0) + 1
