"""A live stream through the real pipeline, and what a viewer and an auditor see of it.

- ``Feeder`` pipes a TS file into a real ``hls-segment`` at real-time pace (bytes spread evenly
  over the clip's duration), like an encoder's pipe; it can pause (a stalled input) and stop.
  Into its stdin, or into a ``TcpSource`` that hls-segment reads as a ``tcp://`` URL.
- ``PlaylistPoller`` reads the live playlist as a player does, every 50 ms, checks each new
  version against RFC 8216 (tests/support/rfc8216.py), GETs every segment it names, and GETs
  each segment that slid out again before RFC 8216 6.2.2 lets it go.
- ``audit`` compares what the segmenter produced on disk with what is in S3 and returns the
  figures (produced / published / lost).
- ``process_figures`` reads a daemon's RSS, peak RSS and open files from /proc.
- ``record`` appends one JSON line of figures to ``$RELIABILITY_FIGURES`` (docs/reliability.md
  is written from that file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import m3u8
from botocore.client import BaseClient

from uploader.cli import s3_pool_connections
from uploader.config import OPTIONS

from . import process_logs
from .rfc8216 import History, resource
from .viewer import http_get, wait_for

HLS_SEGMENT = [sys.executable, "-m", "segmenter"]
TS_PACKET = 188
FEED_CHUNK = TS_PACKET * 16
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CONTENT_TYPE = "video/MP2T"


def segmenter_command(
    seconds: str, out_dir: Path, port: int, bucket: str, key_prefix: str, *options: str,
    prefix: str = "live", index: str = "live.m3u8", input: str = "-",
) -> list[str]:
    """hls-segment's positional arguments in the original's order; relative URIs (HTTP_PREFIX '')."""
    return [*HLS_SEGMENT, input, seconds, str(out_dir), prefix, index, "", bucket, key_prefix,
            "--uploader", f"127.0.0.1:{port}", *options]


class TcpSource:
    """A stream server hls-segment reads as ``url`` (FFmpeg's tcp protocol); ``stdin`` is the
    connection, once hls-segment made it, to write the stream into (what ``Feeder`` needs)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(30)
        self.url = f"tcp://127.0.0.1:{self._server.getsockname()[1]}"
        self._connection: socket.socket | None = None
        self.closed = False

    @property
    def stdin(self) -> TcpSource:
        if self._connection is None:
            self._connection, _ = self._server.accept()
            self._server.close()
        return self

    def write(self, data: bytes) -> None:
        assert self._connection is not None
        self._connection.sendall(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        if self._connection is not None:
            self._connection.close()
        self._server.close()


class Segmenter:
    """hls-segment as a subprocess reading a pipe; its stderr goes to ``log_path``."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_path = log_path
        process_logs.watch(log_path)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=log,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self.close_stdin()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close_stdin()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # unflushed bytes into a dead pipe
                pass


class Feeder(threading.Thread):
    """Writes ``source`` into ``sink`` at ``duration_s`` worth of bytes per second."""

    def __init__(self, source: Path, sink: subprocess.Popen[bytes], duration_s: float, *,
                 close_at_end: bool = True, speed: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.data = source.read_bytes()
        self.sink = sink
        self.bytes_per_s = len(self.data) / duration_s * speed
        self.close_at_end = close_at_end
        self.fed = 0
        self.running = threading.Event()
        self.running.set()
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopped.set()
        self.running.set()

    @property
    def fed_seconds(self) -> float:
        return self.fed / self.bytes_per_s

    def run(self) -> None:
        assert self.sink.stdin is not None
        began = time.monotonic()
        paused_s = 0.0
        try:
            while self.fed < len(self.data) and not self.stopped.is_set():
                if not self.running.is_set():
                    pause_began = time.monotonic()
                    self.running.wait()
                    paused_s += time.monotonic() - pause_began
                    continue
                due = began + paused_s + self.fed / self.bytes_per_s
                wait = due - time.monotonic()
                if wait > 0:
                    self.stopped.wait(wait)
                    continue
                chunk = self.data[self.fed : self.fed + FEED_CHUNK]
                self.sink.stdin.write(chunk)
                self.sink.stdin.flush()
                self.fed += len(chunk)
            if self.close_at_end and not self.stopped.is_set():
                self.sink.stdin.close()
        except (BrokenPipeError, ValueError, OSError) as error:  # the segmenter was killed
            self.error = error
        finally:
            self.finished.set()


class PlaylistPoller(threading.Thread):
    """Reads ``playlist_url`` every ``interval_s`` as a player does, and checks what it reads.

    Each new version goes through the RFC 8216 checker (``history``), and every segment it names
    is fetched once: it must answer 200 with ``video/MP2T``. Each segment that slides out of the
    window is fetched again at once and just before the end of the time it must stay
    downloadable (RFC 8216 6.2.2). A read that fails (S3 down) is counted, not a problem: a
    player retries. ``stop_at_endlist`` ends the polling at the first version with ENDLIST.
    ``every_version``: every segment of every new version is fetched, not only the new ones: a
    segment lost by the store or deleted while still listed is then caught. ``signed``: a private
    stream's playlist of signed URLs (``History.signed``), each fetched as last listed.
    """

    def __init__(self, playlist_url: str, segment_base: str, interval_s: float = 0.05, *,
                 playlist_type: str = "live", stop_at_endlist: bool = False, every_version: bool = False,
                 signed: bool = False) -> None:
        super().__init__(daemon=True)
        self.playlist_url = playlist_url
        self.segment_base = segment_base  # URL that relative segment URIs are joined to
        self.interval_s = interval_s
        self.stop_at_endlist = stop_at_endlist
        self.every_version = every_version
        self.history = History(playlist_type, signed=signed)
        self.latest: dict[str, str] = {}  # a segment's URI as the history knows it -> as last listed
        self.texts: list[str] = []
        self.problems: list[str] = []  # what a player met: a missing segment, a wrong type
        self.unreachable = 0
        self.first_seen: dict[str, float] = {}  # URI -> wall clock of the first version naming it
        self.durations: dict[str, float] = {}  # URI -> EXTINF, seconds
        self._due: list[tuple[float, str]] = []  # (monotonic time, URI): availability re-checks
        self._listed_at = 0.0  # monotonic time of the last read: what it listed was still listed then
        self._halt = threading.Event()

    @property
    def conformance(self) -> list[str]:
        """What the versions read so far break of RFC 8216 (tests/support/rfc8216.py)."""
        return self.history.problems

    def add_version(self, text: str) -> None:
        """A version read some other way (the final one, straight from S3), if it is new."""
        if not self.texts or self.texts[-1] != text:
            self.texts.append(text)
            self.history.add(text)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                reply = http_get(self.playlist_url, timeout=5)
            except OSError:
                self.unreachable += 1
                self._halt.wait(self.interval_s)
                continue
            if reply.status == 200 and (not self.texts or reply.text != self.texts[-1]):
                if reply.headers.get("Content-Type") != PLAYLIST_CONTENT_TYPE:
                    self.problems.append(f"playlist served as {reply.headers.get('Content-Type')}")
                self._version(reply.text)
                if self.stop_at_endlist and "#EXT-X-ENDLIST" in reply.text:
                    return
            if reply.status == 200:
                self._listed_at = time.monotonic()
            self._recheck_due()
            self._halt.wait(self.interval_s)

    def _version(self, text: str) -> None:
        now = time.time()
        self.texts.append(text)
        for removed in self.history.add(text):
            self._fetch(removed.uri, "slid out of the playlist")
            # Again a little before the end of the time it must stay downloadable, counted from the
            # last read that still listed it: the removal happened after that read, never before.
            self._due.append((self._listed_at + float(removed.available_s) - 0.5, removed.uri))
        for segment in m3u8.loads(text).segments:
            uri = resource(segment.uri) if self.history.signed else segment.uri
            self.latest[uri] = segment.uri
            self.durations[uri] = segment.duration
            if uri not in self.first_seen:
                self.first_seen[uri] = now
                self._fetch(uri, "listed")
            elif self.every_version:
                self._fetch(uri, "listed again")

    def _recheck_due(self) -> None:
        now = time.monotonic()
        for entry in [entry for entry in self._due if entry[0] <= now]:
            self._due.remove(entry)
            self._fetch(entry[1], "removed, within the time RFC 8216 6.2.2 keeps it downloadable")

    def _fetch(self, uri: str, why: str) -> None:
        try:
            got = http_get(self.segment_base + self.latest.get(uri, uri), timeout=5)
        except OSError:
            self.unreachable += 1  # S3 went down between the two reads
            return
        if got.status != 200 or got.headers.get("Content-Type") != SEGMENT_CONTENT_TYPE:
            self.problems.append(f"{uri} {why}, but GET gave {got.status} {got.headers.get('Content-Type')}")


@dataclass(frozen=True, slots=True)
class Audit:
    produced: list[str]  # segment file names on the segmenter's disk
    published: list[str]  # segment objects in S3 under the key prefix
    mismatched: list[str]  # published with bytes other than the file's
    stray: list[str]  # published but never produced (a partial, another run's bytes...)

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.produced) - set(self.published))

    @property
    def ok(self) -> bool:
        return not self.lost and not self.mismatched and not self.stray

    def figures(self) -> dict[str, int]:
        return {"segments_produced": len(self.produced), "segments_published": len(self.published),
                "segments_lost": len(self.lost)}


def audit(s3: BaseClient, bucket: str, key_prefix: str, out_dirs: list[Path], prefix: str = "live") -> Audit:
    """Every segment file produced in ``out_dirs`` against the objects under ``key_prefix``."""
    files: dict[str, Path] = {}
    for directory in out_dirs:
        for path in directory.iterdir():
            if path.name.startswith(prefix + "-") and path.suffix == ".ts":
                files[path.name] = path
    objects: dict[str, str] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix + "/"):
        for item in page.get("Contents", []):
            name = item["Key"][len(key_prefix) + 1 :]
            if name.startswith(prefix + "-") and name.endswith(".ts"):
                objects[name] = item["Key"]
    mismatched = []
    for name, key in objects.items():
        if name in files:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if hashlib.sha256(body).digest() != hashlib.sha256(files[name].read_bytes()).digest():
                mismatched.append(name)
    return Audit(
        produced=sorted(files),
        published=sorted(objects),
        mismatched=sorted(mismatched),
        stray=sorted(set(objects) - set(files)),
    )


# What a daemon with the default --max-inflight may keep open to its S3 store: botocore's pool and
# object_store's idle pool, each of s3_pool_connections.
STORE_CONNECTIONS_BOUND = 2 * s3_pool_connections(next(o.default for o in OPTIONS if o.name == "max_inflight"))


def process_figures(pid: int, store_port: int | None = None) -> dict[str, int]:
    """Resident memory now and at its peak (kB), open file descriptors, and of those the TCP
    connections to ``store_port`` (the store's pooled connections, 0 without a port), of ``pid``."""
    figures: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0])
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    figures["fds"] = len(links)
    to_store: set[str] = set()
    if store_port is not None:
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as sockets:
                for line in list(sockets)[1:]:
                    fields = line.split()  # sl local_address rem_address st ... uid timeout inode
                    if int(fields[2].rpartition(":")[2], 16) == store_port:
                        to_store.add(f"socket:[{fields[9]}]")
    figures["store_connections"] = sum(link in to_store for link in links)
    return figures


def figures_in_service(pid: int, store_port: int, playlist_url: str, first_segment: str) -> dict[str, int]:
    """``process_figures`` once the playlist at ``playlist_url`` lists ``first_segment``: the
    daemon's S3 client runtime and first pooled connections are part of the daemon in service,
    not growth a later figure should be blamed for."""
    wait_for(lambda: first_segment in http_get(playlist_url).text, timeout=30, message=f"{first_segment} published")
    return process_figures(pid, store_port)


def peer_fds(figures: dict[str, int]) -> int:
    """``process_figures``' open descriptors but the pooled connections to the store (bounded on
    their own, by ``STORE_CONNECTIONS_BOUND``)."""
    return figures["fds"] - figures["store_connections"]


def record(case: str, **figures: object) -> None:
    """Append the figures of one case to $RELIABILITY_FIGURES (one JSON object a line), if set."""
    path = os.environ.get("RELIABILITY_FIGURES")
    if not path:
        return
    line = json.dumps({"case": case, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write: lines from xdist workers do not interleave
    finally:
        os.close(fd)
