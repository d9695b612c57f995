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
import math
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
    keyframes_in,
    read_cluster,
    service_id,
)
from .psi import TS_PACKET_BYTES

log = logging.getLogger(__name__)

READ_BYTES = 188 * 349  # about 64 KiB of whole packets
# An encoder that dies within this long of its start waits before the next try, doubling up to
# RESTART_DELAY_MAX_S: a setting it refuses does not become a busy loop.
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0
SETTLED_S = 10.0
# After the source ended: how long encoders may take to flush, and segmenters to send their
# last messages (hls-segment's own --drain-timeout is 10 s).
ENCODER_FLUSH_S = 15.0
DECODER_STOP_S = 5.0  # from SIGINT to SIGKILL for a decoder that does not stop
SEGMENTER_END_S = 40.0
POLL_S = 0.2
# The clusters a rung keeps for an encoder's successor, ms of the source: more than an encoder's
# lag between a frame in and its bytes out (libx264 -tune zerolatency: a frame or two).
BACKLOG_MS = 1000


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
    """One incarnation of a rendition's encoder."""

    process: subprocess.Popen[bytes]
    started: float  # time.monotonic()
    incarnation: int
    drain: threading.Thread | None = None


class Rung:
    """A rendition's processes and relays: the decoder pipe it reads, its encoder (restarted as
    needed), its segmenter and the pipe into it.

    The feeder keeps the last BACKLOG_MS of clusters. An encoder that dies has put out the
    keyframes of some grid points (the drain counts them); its successor joins at the next grid
    point, replayed from the backlog when that point is already past, so the rendition gets the
    same segments, and segment numbers, as the others from there on."""

    def __init__(self, rendition: Rendition, decoder_out: int, segment_seconds: Fraction) -> None:
        self.rendition = rendition
        self.segment_seconds = segment_seconds
        self._decoder_out = os.fdopen(decoder_out, "rb", buffering=1 << 20)
        self._lock = threading.Lock()
        self._encoder_in: BinaryIO | None = None
        self._spawn: Callable[[Fraction], BinaryIO] | None = None  # starts the next encoder (arm)
        self._join_ms = 0  # the armed encoder starts at the first video frame at or after this
        self._origin_ms: int | None = None  # the first video frame of the stream: the grid's origin
        self._joined_ms = 0  # the grid point the current encoder started at
        self.keyframes_out = 0  # keyframes the current encoder has put out (the drain counts)
        self._header = b""  # the stream's bytes before its first Cluster
        self._started = False  # the first Cluster was read
        self._backlog: deque[tuple[Cluster | None, bytes, bytes]] = deque()
        self._last_ms: int | None = None  # the newest video frame read
        self.bytes_in = 0  # from the decoder, for the stall watch
        self.ended = threading.Event()  # the decoder's pipe ended
        self.encoder: Encoder | None = None
        self.incarnations = 0  # encoders started or armed so far
        self.failures = 0  # deaths in a row within SETTLED_S of a start
        self.next_start = 0.0
        self.segmenter: subprocess.Popen[bytes] | None = None
        self.segmenter_in: BinaryIO | None = None
        self._segmenter_lock = threading.Lock()
        self.feeder = threading.Thread(target=self._feed, name=f"feed-{rendition.name}", daemon=True)

    # -- the feeder: decoder -> encoder ---------------------------------------------------

    def arm(self, spawn: Callable[[Fraction], BinaryIO]) -> None:
        """Have the next encoder started where the grid lets it: at the first video frame (the
        first encoder), else at the grid point after the last keyframe the previous encoder put
        out. ``spawn(offset)`` is called from the feeder's thread with how far (seconds) the
        joining frame is from the stream's first, and returns the new encoder's stdin, which gets
        the Matroska header and the stream from that frame on. Raises RuntimeError when an
        encoder is attached or armed already."""
        with self._lock:
            if self._encoder_in is not None or self._spawn is not None:
                raise RuntimeError(f"rendition {self.rendition.name}: an encoder is attached or armed already")
            self._spawn = spawn
            if self._origin_ms is not None:
                step_ms = self.segment_seconds * 1000
                self._join_ms = self._joined_ms + math.ceil(self.keyframes_out * step_ms)
                oldest = next((c.video_ms for c, _, _ in self._backlog if c is not None and c.video_ms is not None),
                              None)
                if oldest is None or oldest > self._join_ms:
                    if self._last_ms is not None and self._last_ms >= self._join_ms:
                        later = grid_point_after(self._last_ms, self.segment_seconds, self._origin_ms)
                        log.warning("rendition %s: the frames from %.3f s are gone; the new encoder starts at %.3f s"
                                    " (this rendition's segment numbers fall behind the others')",
                                    self.rendition.name, (self._join_ms - self._origin_ms) / 1000,
                                    (later - self._origin_ms) / 1000)
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
        backlog = self._backlog
        backlog.append((cluster, head, payload))
        if cluster is not None and cluster.video_ms is not None:
            self._last_ms = cluster.video_ms
            while backlog and (backlog[0][0] is None or backlog[0][0].timecode < cluster.video_ms - BACKLOG_MS):
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
                self._joined_ms = max(self._join_ms, self._origin_ms)
                offset = Fraction(joining.video_ms - self._origin_ms, 1000)
                replay = [(h, p) for _, h, p in list(self._backlog)[start:]]
                self.keyframes_out = 0
        if spawn is not None:  # armed until the new encoder is attached: the supervisor waits
            try:
                target = spawn(offset)
            except OSError as error:
                log.error("rendition %s: cannot start its encoder: %s", self.rendition.name, error)
                with self._lock:
                    self._spawn = None
                return
            with self._lock:
                self._encoder_in, self._spawn = target, None
            self._write(target, [(self._header, b""), *replay])
            return
        if target is not None:
            self._write(target, [(head, payload)])

    def _write(self, target: BinaryIO, parts: list[tuple[bytes, bytes]]) -> None:
        try:
            for head, payload in parts:
                target.write(head)
                target.write(payload)
            target.flush()
        except (OSError, ValueError):
            with self._lock:
                if self._encoder_in is target:
                    self._encoder_in = None  # dead: the supervisor arms another

    # -- the drain: encoder -> segmenter --------------------------------------------------

    def drain(self, stdout: BinaryIO) -> None:
        """Copy whole TS packets from an encoder's ``stdout`` to the segmenter until it ends; the
        part packet a killed encoder leaves is dropped."""
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
                    self.keyframes_out += keyframes_in(data[:whole])
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
            try:
                target.write(data)
                target.flush()
            except (OSError, ValueError):
                self.segmenter_in = None
                _close_quietly(target)

    def end_segmenter_input(self) -> None:
        """The segmenter reads the end of its input: it finishes its segment and ends the stream."""
        with self._segmenter_lock:
            target, self.segmenter_in = self.segmenter_in, None
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


@dataclass(frozen=True, slots=True)
class LadderResult:
    """How a ladder ended: each rendition's segmenter exit code (None: never started), and why
    it ended early, if it did (a segmenter that stopped, the decoder's failure)."""

    segmenter_codes: dict[str, int | None]
    failure: str | None


class Ladder:
    """The process tree of one ladder, from ``run()`` until every rendition has ended.

    ``stop()`` (a signal handler may call it) ends the stream: the decoder is asked to stop
    (SIGINT: it finishes its outputs), every encoder flushes, every segmenter reads the end of
    its input and ends its stream (ENDLIST). A second ``stop()`` stops at once: the ffmpegs are
    killed, the segmenters get SIGTERM (which still ends their streams)."""

    def __init__(self, plan: LadderPlan) -> None:
        self.plan = plan
        self.rungs: list[Rung] = []
        self.decoder: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._wake = threading.Event()
        self._failure: str | None = None

    def stop(self) -> None:
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self._wake.set()

    def run(self) -> LadderResult:
        """Start everything, supervise until the stream ended, and say how it ended."""
        try:
            self._start()
            self._supervise()
        finally:
            self._finish()
        codes = {rung.rendition.name: (rung.segmenter.returncode if rung.segmenter else None) for rung in self.rungs}
        return LadderResult(codes, self._failure)

    # -- starting -------------------------------------------------------------------------

    def _start(self) -> None:
        plan = self.plan
        pipes = [os.pipe() for _ in plan.renditions]
        self.rungs = [Rung(rendition, read_end, plan.segment_seconds)
                      for rendition, (read_end, _) in zip(plan.renditions, pipes, strict=True)]
        for rung in self.rungs:
            directory = plan.output_dir / rung.rendition.name
            directory.mkdir(parents=True, exist_ok=True)
            read_end, write_end = os.pipe()
            try:
                rung.segmenter = subprocess.Popen(plan.segmenter(rung.rendition, directory), stdin=read_end,
                                                  start_new_session=True)
            finally:
                os.close(read_end)
            rung.segmenter_in = os.fdopen(write_end, "wb", buffering=0)
        write_ends = tuple(write_end for _, write_end in pipes)
        command = decoder_command(plan.ffmpeg, plan.source, plan.renditions, write_ends,
                                  frame_rate=plan.frame_rate, audio=plan.audio)
        try:
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

        def spawn(offset: Fraction) -> BinaryIO:
            command = encoder_command(plan.ffmpeg, rung.rendition, plan.segment_seconds, encoder=plan.encoder,
                                      preset=plan.encoder_preset, service_id=service_id(incarnation),
                                      grid_offset=offset)
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
            assert process.stdin is not None and process.stdout is not None
            drain = threading.Thread(target=rung.drain, args=(process.stdout,), name=f"drain-{rung.rendition.name}",
                                     daemon=True)
            drain.start()
            rung.encoder = Encoder(process, time.monotonic(), incarnation, drain)
            if incarnation:
                log.info("rendition %s: encoder %d joined at %.3f s of the source", rung.rendition.name,
                         incarnation + 1, float(offset))
            return process.stdin

        rung.arm(spawn)

    # -- supervising ----------------------------------------------------------------------

    def _supervise(self) -> None:
        asked = 0.0  # when the decoder was asked to stop (time.monotonic())
        progress = (0, time.monotonic())
        warned = False
        while True:
            self._wake.wait(POLL_S)
            self._wake.clear()
            if self._hurry.is_set():
                return
            decoder = self.decoder
            assert decoder is not None
            if self._stopping.is_set() and not asked:
                asked = time.monotonic()
                _signal(decoder, signal.SIGINT)
            elif asked and decoder.poll() is None and time.monotonic() - asked > DECODER_STOP_S:
                # Blocked reading a source that sends nothing, it may never see the SIGINT.
                log.warning("the decoder did not stop within %.0f s of SIGINT: killing it", DECODER_STOP_S)
                _signal(decoder, signal.SIGKILL)
            if all(rung.ended.is_set() for rung in self.rungs):
                code = decoder.wait()
                if code and not asked:
                    self._fail(f"the decoder (ffmpeg) exited with code {code}; its messages are above")
                elif not asked:
                    log.info("the source ended")
                return
            for rung in self.rungs:
                self._check_segmenter(rung)
                self._check_encoder(rung)
            total = sum(rung.bytes_in for rung in self.rungs)
            now = time.monotonic()
            if not total:  # still opening and probing the source: the segmenters' --probe-timeout
                progress = (0, now)
                continue
            if total != progress[0]:
                if warned:
                    log.warning("the source sends again after %.0f s", now - progress[1])
                progress, warned = (total, now), False
                continue
            silent = now - progress[1]
            if not warned and silent >= self.plan.stall_warning_s:
                warned = True
                log.warning("the source has sent nothing for %.0f s%s", silent,
                            f"; the stream ends at {self.plan.stall_end_s:g} s" if self.plan.stall_end_s else "")
            if self.plan.stall_end_s and silent >= self.plan.stall_end_s and not self._stopping.is_set():
                log.warning("the source has sent nothing for %.0f s: ending the stream", silent)
                self.stop()

    def _check_segmenter(self, rung: Rung) -> None:
        segmenter = rung.segmenter
        if segmenter is None or segmenter.poll() is None or self._stopping.is_set():
            return
        self._fail(f"hls-segment of rendition {rung.rendition.name} exited with code {segmenter.returncode}"
                   " before the stream ended; ending the others")
        self.stop()

    def _check_encoder(self, rung: Rung) -> None:
        now = time.monotonic()
        encoder = rung.encoder
        if encoder is not None:
            code = encoder.process.poll()
            if code is None or rung.ended.is_set() or self._stopping.is_set():
                return
            rung.detach()
            if encoder.drain is not None:
                encoder.drain.join(5)
            rung.encoder = None
            rung.failures = rung.failures + 1 if now - encoder.started < SETTLED_S else 0
            delay = min(RESTART_DELAY_S * 2 ** (rung.failures - 1), RESTART_DELAY_MAX_S) if rung.failures else 0.0
            rung.next_start = now + delay
            log.warning("rendition %s: the encoder exited with code %s; %s (the rendition's next segment starts"
                        " a discontinuity)", rung.rendition.name, code,
                        f"starting another in {delay:g} s" if delay else "starting another")
        if (rung.encoder is None and not rung.armed and now >= rung.next_start and not rung.ended.is_set()
                and not self._stopping.is_set()):
            self._arm_encoder(rung)

    def _fail(self, why: str) -> None:
        if self._failure is None:
            self._failure = why
            log.error("%s", why)

    # -- ending ---------------------------------------------------------------------------

    def _finish(self) -> None:
        """Bring every process down in order: decoder, encoders, then segmenters (end of input)."""
        hurry = self._hurry
        decoder = self.decoder
        if decoder is not None:
            if hurry.is_set():
                _signal(decoder, signal.SIGKILL)
            elif decoder.poll() is None:
                _signal(decoder, signal.SIGINT)
            if not _wait(decoder, ENCODER_FLUSH_S, hurry):
                _signal(decoder, signal.SIGKILL)
                decoder.wait()
        for rung in self.rungs:
            if rung.feeder.is_alive():
                rung.feeder.join(ENCODER_FLUSH_S)
            rung.detach()
        for rung in self.rungs:
            encoder = rung.encoder
            if encoder is None:
                continue
            if hurry.is_set() or not _wait(encoder.process, ENCODER_FLUSH_S, hurry):
                _signal(encoder.process, signal.SIGKILL)
                encoder.process.wait()
            if encoder.drain is not None:
                encoder.drain.join(5)
        for rung in self.rungs:
            rung.end_segmenter_input()
            if rung.segmenter is not None and hurry.is_set():
                _signal(rung.segmenter, signal.SIGTERM)
        deadline = time.monotonic() + SEGMENTER_END_S
        for rung in self.rungs:
            segmenter = rung.segmenter
            if segmenter is None:
                continue
            if not _wait(segmenter, max(0.0, deadline - time.monotonic()), None):
                log.warning("hls-segment of rendition %s did not end within %.0f s: SIGTERM",
                            rung.rendition.name, SEGMENTER_END_S)
                _signal(segmenter, signal.SIGTERM)
                if not _wait(segmenter, 15, None):
                    _signal(segmenter, signal.SIGKILL)
                    segmenter.wait()


def _signal(process: subprocess.Popen[bytes], number: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(number)
        except ProcessLookupError:
            pass


def _wait(process: subprocess.Popen[bytes], timeout_s: float, hurry: threading.Event | None) -> bool:
    """Whether ``process`` exited within ``timeout_s`` (cut short when ``hurry`` is set)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            process.wait(min(POLL_S, max(0.0, deadline - time.monotonic())))
            return True
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
                return False
