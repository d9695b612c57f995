"""hls-uploadd as a real subprocess on a free loopback port, and a client that talks to it.

The daemon is started with ``--listen 127.0.0.1:0``; its one startup line on stdout names the
port it got. Nothing here sleeps for a fixed time: starting waits for that line, stopping waits
for the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from protocol import HELLO_REQUEST, Challenge, IndexMessage, Reply, ReplyDecoder, encode_message, sign
from tests.support import process_logs
from tests.support.net import LOOPBACK

_LIBC = ctypes.CDLL(None, use_errno=True)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 20.0

_STARTUP = re.compile(rb"listening on (\S+):(\d+);")
_SCOPE_OPTIONS = {"--bucket", "--any-bucket", "--peers-file"}


class DaemonError(RuntimeError):
    pass


class UploaderDaemon:
    """One hls-uploadd process; ``start()`` again after a stop or kill reuses spool and options."""

    def __init__(self, base_dir: Path, args: Sequence[str] = (), *, env: dict[str, str] | None = None,
                 any_bucket_unless_scoped: bool = True) -> None:
        self.base_dir = base_dir
        self.spool_dir = base_dir / "spool"
        self.log_path = base_dir / "uploadd.log"
        self.args = list(args)
        self.env = env
        self.any_bucket_unless_scoped = any_bucket_unless_scoped
        self.port: int | None = None
        self.startup_line = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def command(self) -> list[str]:
        """The daemon's command line. hls-uploadd allows no bucket by default; a test that gives
        none of --bucket, --any-bucket, --peers-file (it is about something else) gets
        --any-bucket, the explicit opt-in, so that it can write to its own new bucket, unless
        ``any_bucket_unless_scoped`` is False (the scope comes from a config file, say)."""
        scoped = not self.any_bucket_unless_scoped or any(arg.split("=")[0] in _SCOPE_OPTIONS for arg in self.args)
        return [
            sys.executable, "-m", "uploader",
            "--listen", f"{LOOPBACK}:0",
            "--spool-dir", str(self.spool_dir),
            "--retry-max-delay", "0.5",
            *(() if scoped else ("--any-bucket",)),
            *self.args,
        ]

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise DaemonError("the daemon was never started")
        return (LOOPBACK, self.port)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> UploaderDaemon:
        if self.running:
            raise DaemonError("already running")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        process_logs.watch(self.log_path)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"=== {' '.join(self.command)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
                cwd=self.base_dir,
            )
        line = self._read_startup_line(timeout_s)
        match = _STARTUP.search(line)
        if match is None:
            self.kill()
            raise DaemonError(f"unexpected startup line {line!r}; log:\n{self.log()}")
        self.startup_line = line.decode().strip()
        self.port = int(match.group(2))
        return self

    def _read_startup_line(self, timeout_s: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise DaemonError(f"no startup line within {timeout_s:g} s; log:\n{self.log()}")
                if selector.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        code = self.proc.wait()
                        self._close_pipe()
                        raise DaemonError(f"hls-uploadd exited with {code} before listening; log:\n{self.log()}")
                    buffer += chunk
        return buffer

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, number: int) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(number)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait for the exit code."""
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._close_pipe()

    def kill(self) -> None:
        """kill -9: no drain, no cleanup."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def log(self, *, all_runs: bool = False) -> str:
        with contextlib.suppress(FileNotFoundError), open(self.log_path, "rb") as log:
            if not all_runs:
                log.seek(self._log_offset)
            return log.read().decode(errors="replace")
        return ""

    # Talking to it.

    def send_v1(self, line: bytes, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
        """As the original C client: connect, send the bytes, close the sending side; then read
        whatever reply comes (the original never read it)."""
        with socket.create_connection(self.address, timeout=timeout_s) as sock:
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks)

    @contextlib.contextmanager
    def connect(self, timeout_s: float = REPLY_TIMEOUT_S) -> Iterator[Client]:
        with socket.create_connection(self.address, timeout=timeout_s) as sock:
            yield Client(sock)


class Client:
    """An extension client: newline-terminated messages on one connection, one reply each.
    ``hello`` asks the connection's challenge; ``signed`` then signs a message over it with the
    next ``n``, as hls-segment does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._replies = ReplyDecoder()
        self.challenge: Challenge | None = None
        self.counter = 0

    def hello(self) -> Reply:
        reply = self.send(HELLO_REQUEST + b"\n")
        if isinstance(reply, Challenge):
            self.challenge, self.counter = reply, 0
        return reply

    def signed(self, message: IndexMessage, secret: bytes, key_id: str | None = None) -> IndexMessage:
        assert self.challenge is not None, "hello() first"
        self.counter += 1
        return sign(message, secret, self.challenge.nonce, self.counter, key_id)

    def send(self, message: IndexMessage | bytes) -> Reply:
        self.send_only(message)
        return self.reply()

    def send_only(self, message: IndexMessage | bytes) -> None:
        data = encode_message(message, newline=True) if isinstance(message, IndexMessage) else message
        self.sock.sendall(data)

    def reply(self) -> Reply:
        while (reply := self._replies.next_reply()) is None:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self._replies.receive_data(chunk)
        return reply


@contextlib.contextmanager
def daemon_with_segments(base_dir: Path, bucket: str) -> Iterator[tuple[UploaderDaemon, Path]]:
    """hls-uploadd allowed to read ``base_dir/segments`` (made here) and write to ``bucket``;
    kill -9 at the end: nothing left to drain is worth waiting for."""
    directory = base_dir / "segments"
    directory.mkdir()
    daemon = UploaderDaemon(base_dir / "uploadd", ["--allow-dir", str(directory), "--bucket", bucket]).start()
    try:
        yield daemon, directory
    finally:
        daemon.kill()


def legit_message(directory: Path, bucket: str, number: int, *, end: bool = False, key_prefix: str = "legit",
                  index: str = "legit.m3u8", prefix: str = "legit") -> IndexMessage:
    """Segment ``number`` (1 s) of a valid stream: by default the legitimate one that the abuse tests
    keep publishing beside their attack."""
    return IndexMessage(
        index=index, output_directory=f"{directory}/", segment_duration=1, output_prefix=prefix,
        http_prefix="", first_segment=1, last_segment=number, end=end, bucket=bucket, key_prefix=key_prefix,
        duration=1.0,
    )


def place_segment(source: Path, directory: Path, output_prefix: str, number: int) -> Path:
    """Put a copy of ``source`` where a segmenter would: temp name, then the final name."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{output_prefix}-{number:05d}.ts"
    temp = directory / f".{target.name}.part"
    shutil.copyfile(source, temp)
    os.replace(temp, target)
    return target


def drop_from_page_cache(path: Path, *, attempts: int = 50) -> bool:
    """Write ``path`` to disk and drop its pages from the page cache, as a segment written long
    ago or on another host is: a read must then wait for storage. The drop (``fadvise``
    DONTNEED) is advice the kernel may not take at once, so it is asked again until ``mincore``
    finds none of the file's pages resident. False where the file system keeps its pages (tmpfs,
    /proc/self/mounts says). Raises AssertionError when the kernel kept them through every
    attempt."""
    mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
    real = os.path.realpath(path)
    under = [(point, kind) for point, kind in mounts if real == point or real.startswith(point.rstrip("/") + "/")]
    _, kind = max(under, key=lambda mount: len(mount[0]))
    if kind == "tmpfs":
        return False
    for _ in range(attempts):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if resident_pages(path) == 0:
            return True
        time.sleep(0.02)
    raise AssertionError(f"the kernel kept {resident_pages(path)} pages of {path} in its cache")


def resident_pages(path: Path) -> int:
    """How many of ``path``'s pages the page cache holds now (mincore(2) on a private mapping,
    which reads nothing)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    residency = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapping:
        start = ctypes.c_char.from_buffer(mapping)
        try:
            if _LIBC.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), residency) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path}: {os.strerror(ctypes.get_errno())}")
        finally:
            del start  # a buffer exported from the mapping keeps it from closing
    return sum(page & 1 for page in residency)
