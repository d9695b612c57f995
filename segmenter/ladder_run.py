"""hls-ladder's I/O shell: runs the decoder, one encoder and one hls-segment per rendition, relays
bytes between them, restarts an encoder that dies, and ends every rendition together.

Threads: per rendition, a feeder (the decoder's Matroska pipe -> the encoder's stdin) and a
drain per encoder (its MPEG-TS stdout -> the segmenter's stdin, whole 188-byte packets only, so
a killed encoder's last part packet never reaches the segmenter). The segmenter's stdin is a
pipe the ladder keeps open across encoders: it sees one byte stream, and its end only when the
ladder ends the stream. The main thread supervises (``Ladder.run``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from .ladder import (
    CLUSTER_ID,
    EBML_ID,
    SEGMENT_ID,
    Cluster,
    Rendition,
    decoder_command,
    element_header,
    encoder_command,
    grid_point_after,
    keyframe_pts,
    read_cluster,
    service_id,
)
from .psi import TS_PACKET_BYTES

log = logging.getLogger(__name__)

READ_BYTES = 188 * 349  # about 64 KiB of whole packets
# An encoder that dies within SETTLED_S of its start waits before the next try, doubling up to
# RESTART_DELAY_MAX_S: a setting it refuses does not become a busy loop; after MAX_FAILURES such
# deaths in a row the ladder gives up (its supervisor starts it again).
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
SETTLED_S = 10.0
MAX_FAILURES = 5
# An encoder that takes no bytes for this long while the relay has some for it is hung: it is
# killed and replaced.
STUCK_S = 10.0
# An hls-segment that takes no input for this long is killed (it ends the ladder).
SEGMENTER_STUCK_S = 3 * STUCK_S
# After the source ended: how long encoders may take to flush, and segmenters to send their
# last messages (hls-segment's own --drain-timeout is 10 s).
ENCODER_FLUSH_S = 15.0
DECODER_STOP_S = 5.0  # from SIGINT to SIGKILL for a decoder that does not stop
SEGMENTER_END_S = 40.0
POLL_S = 0.2
# A segmenter that exits with code 2 (bad settings or input) this soon after its start refused
# its options; later, code 2 is about its input, which a restart may mend.
REFUSAL_S = 10.0
# The clusters a rung keeps for an encoder's successor, ms of the source: more than an encoder's
# lag between a frame in and its bytes out (libx264 -tune zerolatency: a frame or two). After a
# death, the frames from the successor's join point are kept up to HOLD_MS while it starts.
BACKLOG_MS = 1000
HOLD_MS = 3000
PTS_WRAP = 1 << 33  # MPEG-TS timestamps: 33 bits of 90 kHz, 26.5 hours


class SourceEnded(Exception):
    """The decoder's pipe ended (the source ended, or the decoder stopped)."""


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SourceEnded
    return data


def read_element(stream: BinaryIO) -> tuple[int, int | None, bytes]:
    """The next EBML element header of ``stream`` (a buffered reader): (id, size or None, its
    bytes). Raises SourceEnded at the end, ValueError for bytes that are no EBML."""
    header = element_header(stream.peek(12)[:12])  # type: ignore[attr-defined]
    if header is not None:
        head = _read_exact(stream, header.length)
        return header.id, header.size, head
    head = b""  # fewer bytes buffered than the header has
    while True:
        header = element_header(head)
        if header is not None:
            return header.id, header.size, head
        if len(head) >= 12:
            raise ValueError("not EBML: an element header longer than 12 bytes")
        head += _read_exact(stream, 1)


def segment_children(stream: BinaryIO) -> Iterator[tuple[int, bytes, bytes]]:
    """The elements of a live Matroska stream's Segment, each as (id, header bytes, data), after
    yielding the bytes before them (EBML header and Segment header) as (EBML_ID, bytes, b"").
    Raises SourceEnded at the end, ValueError for what is not such a stream."""
    element_id, size, head = read_element(stream)
    if element_id != EBML_ID or size is None:
        raise ValueError("the decoder's output does not start with an EBML header")
    ebml = head + _read_exact(stream, size)
    element_id, _, head = read_element(stream)
    if element_id != SEGMENT_ID:
        raise ValueError("no Segment after the EBML header")
    yield EBML_ID, ebml + head, b""
    while True:
        element_id, size, head = read_element(stream)
        if size is None:
            raise ValueError("a Matroska element of unknown size inside the Segment")
        yield element_id, head, _read_exact(stream, size)


@dataclass
class Encoder:
    """One incarnation of a rendition's encoder: its process, where it joined the stream (the
    grid point, and the ms of its first frame), and the keyframes its drain has seen go out."""

    process: subprocess.Popen[bytes]
    started: float  # time.monotonic()
    incarnation: int
    grid_ms: int  # the grid point it joined at
    first_ms: int  # its first frame, ms of the stream (Matroska timecode)
    drain: threading.Thread | None = None
    last_key_pts: int | None = None  # 90 kHz, its latest keyframe out (None before the first)
    key_ticks: int = 0  # 90 kHz from its first keyframe out (at first_ms) to its latest, unwrapped

    def keyframes_out(self, pts: list[int]) -> None:
        """The drain saw keyframes with these PTS (90 kHz, 33 bits, in output order) go out.
        Each step is taken modulo 2^33, so the count survives any number of wraps (26.5 h each)."""
        for value in pts:
            if self.last_key_pts is not None:
                self.key_ticks += (value - self.last_key_pts) % PTS_WRAP
            self.last_key_pts = value

    def last_keyframe_ms(self) -> int | None:
        """The stream time (ms) of the last keyframe it put out, None before the first."""
        if self.last_key_pts is None:
            return None
        return self.first_ms + self.key_ticks // 90


class Rung:
    """A rendition's processes and relays: the decoder pipe it reads, its encoder (replaced as
    needed), its segmenter and the pipe into it.

    The feeder keeps the last BACKLOG_MS of clusters. An encoder that dies has put out the
    keyframes of some grid points (the drain reads their PTS); its successor joins at the grid
    point after the last of them, replayed from the backlog when that point has passed, so the
    rendition gets the same segments, and segment numbers, as the others from there on."""

    def __init__(self, rendition: Rendition, decoder_out: int, segment_seconds: Fraction) -> None:
        self.rendition = rendition
        self.segment_seconds = segment_seconds
        self._decoder_out = os.fdopen(decoder_out, "rb", buffering=1 << 20)
        self._lock = threading.Lock()
        self._encoder_in: BinaryIO | None = None
        self._spawn: Callable[[int, int, int], BinaryIO] | None = None  # starts the next encoder (arm)
        self._join_ms = 0  # the next encoder starts at the first video frame at or after this
        self._hold_ms: int | None = None  # after a death: keep the backlog from here (up to HOLD_MS)
        self._origin_ms: int | None = None  # the first video frame of the stream: the grid's origin
        self._header = b""  # the stream's bytes before its first Cluster
        self._started = False  # the first Cluster was read
        self._backlog: deque[tuple[Cluster | None, bytes, bytes]] = deque()
        self._last_ms: int | None = None  # the newest video frame read
        self.bytes_in = 0  # from the decoder, for the stall watch
        self.ended = threading.Event()  # the decoder's pipe ended, or could not be read
        self.encoder: Encoder | None = None
        self.incarnations = 0  # encoders armed so far
        self.failures = 0  # deaths in a row within SETTLED_S of a start
        self.spawn_failed = False  # the last armed encoder could not be started
        self.next_start = 0.0
        self.feeding_since: float | None = None  # a write to the encoder under way since (monotonic)
        self.draining_since: float | None = None  # a write to the segmenter under way since
        self.segmenter: subprocess.Popen[bytes] | None = None
        self.segmenter_started = 0.0  # time.monotonic()
        self.segmenter_in: BinaryIO | None = None
        self._segmenter_lock = threading.Lock()
        self.feeder = threading.Thread(target=self._feed, name=f"feed-{rendition.name}", daemon=True)

    # -- the feeder: decoder -> encoder ---------------------------------------------------

    def died(self, encoder: Encoder) -> None:
        """``encoder`` is gone (its drain finished): its successor joins at the grid point after
        the last keyframe it put out (at its own grid point when it put out none), and the
        frames from there are held while the successor starts."""
        with self._lock:
            last = encoder.last_keyframe_ms()
            self._join_ms = encoder.grid_ms if last is None else (
                grid_point_after(last, self.segment_seconds, self._origin_ms or 0))
            self._hold_ms = self._join_ms

    def arm(self, spawn: Callable[[int, int, int], BinaryIO]) -> None:
        """Have the next encoder started at the first video frame at or after the join point (the
        stream's first frame for the first encoder; see ``died``), replayed from the backlog when
        it has passed. ``spawn(shift_ms, grid_ms, first_ms)`` is called from the feeder's thread
        and returns the new encoder's stdin, which gets the Matroska header and the stream from
        that frame on. When the backlog no longer holds the join point, the encoder starts at
        the next grid point instead (logged: the rendition's segment numbers fall behind). Raises
        RuntimeError when an encoder is attached or armed already."""
        with self._lock:
            if self._encoder_in is not None or self._spawn is not None:
                raise RuntimeError(f"rendition {self.rendition.name}: an encoder is attached or armed already")
            self._spawn = spawn
            if self._origin_ms is None or self._last_ms is None or self._last_ms < self._join_ms:
                return  # the join point is still to come
            oldest = next((c.video_ms for c, _, _ in self._backlog if c is not None and c.video_ms is not None), None)
            if oldest is None or oldest > self._join_ms:
                later = grid_point_after(self._last_ms, self.segment_seconds, self._origin_ms)
                log.warning("rendition %s: the frames from %.3f s are gone; the new encoder starts at %.3f s"
                            " (this rendition's segment numbers fall one behind the others')", self.rendition.name,
                            (self._join_ms - self._origin_ms) / 1000, (later - self._origin_ms) / 1000)
                self._join_ms = later

    @property
    def armed(self) -> bool:
        return self._spawn is not None

    def detach(self) -> None:
        with self._lock:
            stdin, self._encoder_in = self._encoder_in, None
        if stdin is not None:
            _close_quietly(stdin)

    def _feed(self) -> None:
        stream = self._decoder_out
        try:
            for element_id, head, payload in segment_children(stream):
                self.bytes_in += len(head) + len(payload)
                if element_id != CLUSTER_ID:
                    if not self._started:  # Info, Tracks, Tags...: what a new encoder needs first
                        self._header += head + payload
                    continue
                self._started = True
                cluster = read_cluster(payload)
                self._keep(cluster, head, payload)
                self._pass(head, payload)
        except SourceEnded:
            pass
        except ValueError as error:
            log.error("rendition %s: the decoder's output cannot be read: %s", self.rendition.name, error)
        finally:
            self.ended.set()
            self.detach()  # the encoder sees its input end, flushes and exits
            _close_quietly(stream)

    def _keep(self, cluster: Cluster | None, head: bytes, payload: bytes) -> None:
        """Add a cluster to the backlog and drop what is older than it needs; under the lock,
        as ``arm`` reads the backlog from the supervisor's thread."""
        with self._lock:
            backlog = self._backlog
            backlog.append((cluster, head, payload))
            if cluster is None or cluster.video_ms is None:
                return
            self._last_ms = now = cluster.video_ms
            cutoff = now - BACKLOG_MS
            if self._hold_ms is not None:
                cutoff = max(min(cutoff, self._hold_ms), now - HOLD_MS)
            while backlog and (backlog[0][0] is None or backlog[0][0].timecode < cutoff):
                backlog.popleft()

    def _pass(self, head: bytes, payload: bytes) -> None:
        with self._lock:
            target, spawn = self._encoder_in, self._spawn
            if spawn is not None:
                start = next((i for i, (c, _, _) in enumerate(self._backlog)
                              if c is not None and c.video_ms is not None and c.video_ms >= self._join_ms), None)
                if start is None:
                    return
                joining = self._backlog[start][0]
                assert joining is not None and joining.video_ms is not None
                if self._origin_ms is None:
                    self._origin_ms = joining.video_ms
                grid_ms, first_ms = max(self._join_ms, self._origin_ms), joining.video_ms
                replay = [(h, p) for _, h, p in list(self._backlog)[start:]]
                self._hold_ms = None
        if spawn is not None:  # armed until the new encoder is attached: the supervisor waits
            try:
                target = spawn(first_ms - (self._origin_ms or 0), grid_ms, first_ms)
            except OSError as error:
                log.error("rendition %s: cannot start its encoder: %s", self.rendition.name, error)
                with self._lock:
                    self._spawn, self.spawn_failed = None, True
                return
            with self._lock:
                self._encoder_in, self._spawn = target, None
            self._write(target, [(self._header, b""), *replay])
            return
        if target is not None:
            self._write(target, [(head, payload)])

    def _write(self, target: BinaryIO, parts: list[tuple[bytes, bytes]]) -> None:
        self.feeding_since = time.monotonic()
        try:
            for head, payload in parts:
                target.write(head)
                target.write(payload)
            target.flush()
        except (OSError, ValueError):
            with self._lock:
                if self._encoder_in is target:
                    self._encoder_in = None  # dead: the supervisor arms another
                    # Keep what its successor may need from now on, before the feeder reads on
                    # (``died`` says exactly where, once the encoder's last bytes are read).
                    encoder = self.encoder
                    if encoder is not None:
                        self._hold_ms = encoder.last_keyframe_ms() or encoder.grid_ms
        finally:
            self.feeding_since = None

    # -- the drain: encoder -> segmenter --------------------------------------------------

    def drain(self, encoder: Encoder, stdout: BinaryIO) -> None:
        """Copy whole TS packets from ``encoder``'s ``stdout`` to the segmenter until it ends,
        noting the PTS of its keyframes; the part packet a killed encoder leaves is dropped."""
        held = b""
        try:
            while True:
                data = stdout.read1(READ_BYTES)
                if not data:
                    break
                data = held + data if held else data
                whole = len(data) - len(data) % TS_PACKET_BYTES
                held = data[whole:]
                if whole:
                    encoder.keyframes_out(keyframe_pts(data[:whole]))
                    self._to_segmenter(data[:whole])
        except (OSError, ValueError):
            pass
        finally:
            _close_quietly(stdout)
        if held:
            log.warning("rendition %s: dropped the encoder's last %d bytes (a part of a TS packet)",
                        self.rendition.name, len(held))

    def _to_segmenter(self, data: bytes) -> None:
        with self._segmenter_lock:
            target = self.segmenter_in
            if target is None:
                return
            self.draining_since = time.monotonic()
            try:
                target.write(data)
                target.flush()
            except (OSError, ValueError):
                self.segmenter_in = None
                _close_quietly(target)
            finally:
                self.draining_since = None

    def end_segmenter_input(self, hurry: Callable[[], bool]) -> None:
        """The segmenter reads the end of its input: it finishes its segment and ends the stream.
        When ``hurry()``, now or while the drain's write to it does not return, it gets SIGTERM,
        once (it ends its stream and exits; a second would abort it); once it has taken nothing
        for SEGMENTER_STUCK_S (hung: SIGSTOP, a dead disk), SIGKILL, which fails that write."""
        termed = killed = False
        while True:
            segmenter = self.segmenter
            alive = segmenter is not None and segmenter.poll() is None
            if alive and hurry() and not termed:
                termed = True
                _signal(segmenter, signal.SIGTERM)  # type: ignore[arg-type]
            if self._segmenter_lock.acquire(timeout=POLL_S):
                break
            since = self.draining_since
            if alive and not killed and since is not None and time.monotonic() - since > SEGMENTER_STUCK_S:
                killed = True
                log.error("rendition %s: hls-segment takes no input: killing it", self.rendition.name)
                _signal(segmenter, signal.SIGKILL)  # type: ignore[arg-type]
        try:
            target, self.segmenter_in = self.segmenter_in, None
        finally:
            self._segmenter_lock.release()
        if target is not None:
            _close_quietly(target)


def _close_quietly(stream: BinaryIO) -> None:
    try:
        stream.close()
    except (OSError, ValueError):
        pass


@dataclass(frozen=True, slots=True)
class LadderPlan:
    """What ``Ladder`` runs: the source, the renditions, and how to make hls-segment's command."""

    source: str
    renditions: tuple[Rendition, ...]
    segment_seconds: Fraction
    output_dir: Path
    segmenter: Callable[[Rendition, Path], list[str]]  # (rendition, its directory) -> the command
    ffmpeg: str = "ffmpeg"
    encoder: str = "libx264"
    encoder_preset: str | None = None
    frame_rate: Fraction | None = None
    audio: bool = True
    stall_warning_s: float = 10.0
    stall_end_s: float = 0.0  # 0: never
    source_options: tuple[str, ...] = ()  # ffmpeg's options for opening the source (ladder.decoder_command)


def _segmenter_env() -> dict[str, str]:
    """The segmenters' environment: this one's, but HLS_SEGMENT_INPUT_CA (the ladder's INPUT is
    its own; each segmenter reads stdin, where --input-ca is refused)."""
    return {name: value for name, value in os.environ.items() if name != "HLS_SEGMENT_INPUT_CA"}


@dataclass(frozen=True, slots=True)
class LadderResult:
    """How a ladder ended: each rendition's segmenter exit code (None: never started), and why
    it ended early, if it did (a segmenter that stopped, the decoder's failure)."""

    segmenter_codes: dict[str, int | None]
    failure: str | None
    refused: bool = False  # what ended it first: a segmenter that refused its options (exit 2)


class Ladder:
    """The process tree of one ladder, from ``run()`` until every rendition has ended.

    ``stop()`` (a signal handler may call it: it only counts) ends the stream: the decoder is
    asked to stop (SIGINT: it finishes its outputs), every encoder flushes, every segmenter reads
    the end of its input and ends its stream (ENDLIST). A second ``stop()`` stops at once: the
    ffmpegs are killed, the segmenters get SIGTERM (which still ends their streams)."""

    def __init__(self, plan: LadderPlan) -> None:
        self.plan = plan
        self.rungs: list[Rung] = []
        self.decoder: subprocess.Popen[bytes] | None = None
        self._stops = 0  # stop() calls (signals): 1 ends the stream, 2 stops at once
        self._ending = False  # the ladder ends the stream itself (_end): a failure, a stall
        self._failure: str | None = None
        self._refused = False

    def stop(self) -> None:
        self._stops += 1

    def _end(self) -> None:
        """End the stream as one stop() does, without counting as a signal: a later signal is
        the first, not the second."""
        self._ending = True

    @property
    def _stopping(self) -> bool:
        return self._stops >= 1 or self._ending

    @property
    def _hurry(self) -> bool:
        return self._stops >= 2

    def run(self) -> LadderResult:
        """Start everything, supervise until the stream ended, and say how it ended. Raises
        OSError when a rendition's directory cannot be made or a program cannot be started
        (what was started is stopped first)."""
        try:
            self._start()
            self._supervise()
        finally:
            self._finish()
        codes = {rung.rendition.name: (rung.segmenter.returncode if rung.segmenter else None) for rung in self.rungs}
        return LadderResult(codes, self._failure, self._refused)

    # -- starting -------------------------------------------------------------------------

    def _start(self) -> None:
        plan = self.plan
        pipes = [os.pipe() for _ in plan.renditions]
        self.rungs = [Rung(rendition, read_end, plan.segment_seconds)
                      for rendition, (read_end, _) in zip(plan.renditions, pipes, strict=True)]
        write_ends = tuple(write_end for _, write_end in pipes)
        try:
            for rung in self.rungs:
                directory = plan.output_dir / rung.rendition.name
                directory.mkdir(parents=True, exist_ok=True)
                read_end, write_end = os.pipe()
                try:
                    rung.segmenter = subprocess.Popen(plan.segmenter(rung.rendition, directory), stdin=read_end,
                                                      start_new_session=True, env=_segmenter_env())
                finally:
                    os.close(read_end)
                rung.segmenter_started = time.monotonic()
                # Buffered: a write interrupted by a signal is carried on, never cut short.
                rung.segmenter_in = os.fdopen(write_end, "wb")
            command = decoder_command(plan.ffmpeg, plan.source, plan.renditions, write_ends,
                                      frame_rate=plan.frame_rate, audio=plan.audio,
                                      source_options=plan.source_options)
            # The source "-" is this process's stdin, which the decoder inherits.
            self.decoder = subprocess.Popen(command, pass_fds=write_ends, start_new_session=True)
        finally:
            for fd in write_ends:
                os.close(fd)
        log.info("decoding %s once for %d renditions: %s", plan.source, len(plan.renditions),
                 ", ".join(f"{r.name} ({r.width or 'auto'}x{r.height}, {r.bitrate // 1000} kbit/s)"
                           for r in plan.renditions))
        for rung in self.rungs:
            self._arm_encoder(rung)  # before the feeder reads: it starts at the first video frame
            rung.feeder.start()

    def _arm_encoder(self, rung: Rung) -> None:
        """Have ``rung``'s next encoder started where the grid lets it join (``Rung.arm``)."""
        plan = self.plan
        incarnation = rung.incarnations
        rung.incarnations += 1

        def spawn(shift_ms: int, grid_ms: int, first_ms: int) -> BinaryIO:
            command = encoder_command(plan.ffmpeg, rung.rendition, plan.segment_seconds, encoder=plan.encoder,
                                      preset=plan.encoder_preset, service_id=service_id(incarnation),
                                      shift_ms=shift_ms)
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
            assert process.stdin is not None and process.stdout is not None
            encoder = Encoder(process, time.monotonic(), incarnation, grid_ms, first_ms)
            encoder.drain = threading.Thread(target=rung.drain, args=(encoder, process.stdout),
                                             name=f"drain-{rung.rendition.name}", daemon=True)
            encoder.drain.start()
            rung.encoder = encoder
            if incarnation:
                log.info("rendition %s: encoder %d joined at %.3f s of the source", rung.rendition.name,
                         incarnation + 1, shift_ms / 1000)
            return process.stdin

        rung.arm(spawn)

    # -- supervising ----------------------------------------------------------------------

    def _supervise(self) -> None:
        asked = 0.0  # when the decoder was asked to stop (time.monotonic())
        progress = (0, time.monotonic())
        warned = False
        while True:
            time.sleep(POLL_S)
            if self._hurry:
                return
            decoder = self.decoder
            assert decoder is not None
            now = time.monotonic()
            if self._stopping and not asked:
                asked = now
                _signal(decoder, signal.SIGINT)
            elif asked and decoder.poll() is None and now - asked > DECODER_STOP_S:
                # Blocked reading a source that sends nothing, it may never see the SIGINT.
                log.warning("the decoder did not stop within %.0f s of SIGINT: killing it", DECODER_STOP_S)
                _signal(decoder, signal.SIGKILL)
            for rung in self.rungs:  # before the end of the source: it may have ended them
                self._check_segmenter(rung, now)
            if all(rung.ended.is_set() for rung in self.rungs):
                if not self._wait(decoder, DECODER_STOP_S):
                    log.warning("the decoder did not exit within %.0f s of closing its outputs: killing it",
                                DECODER_STOP_S)
                    _signal(decoder, signal.SIGKILL)
                code = decoder.wait()
                if code and not asked:
                    self._fail(f"the decoder (ffmpeg) exited with code {code}; its messages are above")
                elif not asked:
                    log.info("the source ended")
                return
            for rung in self.rungs:
                if rung.ended.is_set() and decoder.poll() is None and not self._stopping:
                    self._fail(f"rendition {rung.rendition.name}: the decoder's output for it ended; ending the others")
                    self._end()
                self._check_encoder(rung, now)
            total = sum(rung.bytes_in for rung in self.rungs)
            if total != progress[0]:
                if warned:
                    log.warning("the source sends %s after %.0f s", "again" if progress[0] else "its first bytes",
                                now - progress[1])
                progress, warned = (total, now), False
                continue
            if any(rung.feeding_since is not None for rung in self.rungs):
                # A feeder waits on its encoder (a hung one until STUCK_S), which holds the
                # decoder: a silence now is not the source's.
                progress = (total, now)
                continue
            # Silent since the start (a listener waiting for its caller) or since its last bytes.
            silent, what = now - progress[1], "sent nothing" if total else "sent nothing yet"
            if not warned and silent >= self.plan.stall_warning_s:
                warned = True
                log.warning("the source has %s for %.0f s%s", what, silent,
                            f"; the stream ends at {self.plan.stall_end_s:g} s" if self.plan.stall_end_s else "")
            if self.plan.stall_end_s and silent >= self.plan.stall_end_s and not self._stopping:
                if total:
                    log.warning("the source has sent nothing for %.0f s: ending the stream", silent)
                else:
                    self._fail(f"the source sent nothing in {silent:.0f} s from the start (--stall-end)")
                self._end()

    def _check_segmenter(self, rung: Rung, now: float) -> None:
        segmenter = rung.segmenter
        if segmenter is None:
            return
        since = rung.draining_since
        if since is not None and now - since > SEGMENTER_STUCK_S and segmenter.poll() is None:
            log.error("rendition %s: hls-segment took no input for %.0f s: killing it", rung.rendition.name, now - since)
            _signal(segmenter, signal.SIGKILL)
        if segmenter.poll() is None or self._stopping:
            return
        self._refused = (segmenter.returncode == 2 and self._failure is None
                         and now - rung.segmenter_started < REFUSAL_S)
        self._fail(f"hls-segment of rendition {rung.rendition.name} exited with code {segmenter.returncode}"
                   " before the stream ended; ending the others")
        self._end()

    def _check_encoder(self, rung: Rung, now: float) -> None:
        encoder = rung.encoder
        if encoder is not None:
            since = rung.feeding_since
            if since is not None and now - since > STUCK_S and encoder.process.poll() is None:
                log.warning("rendition %s: the encoder took no input for %.0f s: killing it", rung.rendition.name,
                            now - since)
                _signal(encoder.process, signal.SIGKILL)
            code = encoder.process.poll()
            if code is None or rung.ended.is_set() or self._stopping:
                return
            rung.detach()
            if encoder.drain is not None and encoder.drain.is_alive():
                encoder.drain.join(POLL_S)
                if encoder.drain.is_alive():
                    return  # its last bytes still go to the segmenter: the successor waits for them
            rung.encoder = None
            rung.died(encoder)
            self._count_failure(rung, now, settled=now - encoder.started >= SETTLED_S,
                                why=f"the encoder exited with code {code}")
        elif rung.spawn_failed:
            rung.spawn_failed = False
            self._count_failure(rung, now, settled=False, why="the encoder could not be started")
        if (rung.encoder is None and not rung.armed and now >= rung.next_start and not rung.ended.is_set()
                and not self._stopping):
            self._arm_encoder(rung)

    def _count_failure(self, rung: Rung, now: float, *, settled: bool, why: str) -> None:
        rung.failures = 0 if settled else rung.failures + 1
        if rung.failures >= MAX_FAILURES:
            self._fail(f"rendition {rung.rendition.name}: {why}, {rung.failures} times in a row within"
                       f" {SETTLED_S:g} s of a start; ending every rendition")
            self._end()
            return
        delay = min(RESTART_DELAY_S * 2 ** (rung.failures - 1), RESTART_DELAY_MAX_S) if rung.failures else 0.0
        rung.next_start = now + delay
        log.warning("rendition %s: %s; %s (the rendition's next segment starts a discontinuity)",
                    rung.rendition.name, why, f"starting another in {delay:g} s" if delay else "starting another")

    def _fail(self, why: str) -> None:
        if self._failure is None:
            self._failure = why
            log.error("%s", why)

    # -- ending ---------------------------------------------------------------------------

    def _finish(self) -> None:
        """Bring every process down in order: decoder, encoders, then segmenters (end of input).
        Stuck ones are killed on the way; with a second stop(), every ffmpeg at once."""
        decoder = self.decoder
        encoders = [rung.encoder.process for rung in self.rungs if rung.encoder is not None]
        if self._hurry:
            for process in [decoder, *encoders]:
                if process is not None:
                    _signal(process, signal.SIGKILL)
        if decoder is not None:
            if decoder.poll() is None:
                _signal(decoder, signal.SIGINT)
            if not self._wait(decoder, DECODER_STOP_S):
                _signal(decoder, signal.SIGKILL)
                decoder.wait()
        for rung in self.rungs:
            deadline = time.monotonic() + ENCODER_FLUSH_S
            while rung.feeder.is_alive() and time.monotonic() < deadline and not self._hurry:
                rung.feeder.join(POLL_S)
            if rung.feeder.is_alive() and rung.encoder is not None:  # blocked on an encoder that takes nothing
                _signal(rung.encoder.process, signal.SIGKILL)
                rung.feeder.join(5)
            rung.detach()
        for rung in self.rungs:
            encoder = rung.encoder
            if encoder is None:
                continue
            if not self._wait(encoder.process, ENCODER_FLUSH_S):
                _signal(encoder.process, signal.SIGKILL)
                encoder.process.wait()
            if encoder.drain is not None:
                encoder.drain.join(ENCODER_FLUSH_S)  # its last bytes, while the segmenter reads
        for rung in self.rungs:
            rung.end_segmenter_input(lambda: self._hurry)
        deadline = time.monotonic() + SEGMENTER_END_S
        for rung in self.rungs:
            segmenter = rung.segmenter
            if segmenter is None:
                continue
            if not _wait(segmenter, max(0.0, deadline - time.monotonic())):
                log.warning("hls-segment of rendition %s did not end within %.0f s: SIGTERM",
                            rung.rendition.name, SEGMENTER_END_S)
                _signal(segmenter, signal.SIGTERM)
                if not _wait(segmenter, 15):
                    _signal(segmenter, signal.SIGKILL)
                    segmenter.wait()

    def _wait(self, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
        """Whether ``process`` exited within ``timeout_s``, cut short by a second stop()."""
        deadline = time.monotonic() + timeout_s
        while not _wait(process, min(POLL_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or self._hurry:
                return False
        return True


def _signal(process: subprocess.Popen[bytes], number: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(number)
        except ProcessLookupError:
            pass


def _wait(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether ``process`` exited within ``timeout_s``."""
    try:
        process.wait(timeout_s)
        return True
    except subprocess.TimeoutExpired:
        return False
