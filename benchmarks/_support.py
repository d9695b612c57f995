"""Shared pieces of the benchmarks: cached media, S3 clients, the daemon's /proc figures, its log."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.client import BaseClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol import Reply, ReplyDecoder  # noqa: E402
from tests.support.viewer import http_get  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"

# Distinct segment files per duration: the daemon reads a different file each time, as it would.
SEGMENT_VARIANTS = 6

BUCKET = "bench"


def segment_files(segment_seconds: float, video_bitrate: str = "2M") -> list[Path]:
    """Real 720p H.264 + AAC MPEG-TS segments of ``segment_seconds`` at ~2.1 Mbit/s, made once.

    One ffmpeg encode (1-s GOP, so any whole-second duration cuts exactly) split by ffmpeg's
    segment muxer; cached under benchmarks/.cache.
    """
    tag = f"{segment_seconds:g}s-{video_bitrate}"
    directory = CACHE / f"segments-{tag}"
    done = directory / "done"
    if done.exists():
        return sorted(directory.glob("seg-*.ts"))[:SEGMENT_VARIANTS]
    directory.mkdir(parents=True, exist_ok=True)
    seconds = math.ceil(segment_seconds * SEGMENT_VARIANTS)
    print(f"making {SEGMENT_VARIANTS} segments of {segment_seconds:g} s (once) ...", flush=True)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", *lavfi_source(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", video_bitrate, "-maxrate", video_bitrate,
            "-bufsize", "2M", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "128k",
            "-f", "segment", "-segment_time", f"{segment_seconds:g}", "-segment_format", "mpegts",
            "-reset_timestamps", "0", str(directory / "seg-%03d.ts"),
        ],
        check=True,
    )
    done.touch()
    return sorted(directory.glob("seg-*.ts"))[:SEGMENT_VARIANTS]


def lavfi_source(seconds: float) -> list[str]:
    """ffmpeg inputs for a moving 720p30 picture with a 1 kHz tone; the noise gives it
    real-looking entropy, so the encoder's bitrate is what was asked."""
    return [
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
        "-vf", "noise=alls=12:allf=t",
    ]


def make_source(seconds: int) -> Path:
    """The segmenter benchmarks' input: ``seconds`` of 720p30 2 Mbit/s H.264 + 128 kbit/s AAC in
    MPEG-TS, made once with ffmpeg and cached."""
    path = CACHE / f"source-720p-2M-{seconds}s.ts"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".part")
    print(f"making {path.name} (once) ...", flush=True)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", *lavfi_source(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-maxrate", "2M", "-bufsize", "4M",
            "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", str(temp),
        ],
        check=True,
    )
    temp.rename(path)
    return path


# -- talking to S3 and to the daemon ------------------------------------------------------------

def pooled_client(endpoint_url: str, pool: int, *, read_timeout_s: float) -> BaseClient:
    """A boto3 S3 client with ``pool`` connections for as many threads, and no retries: a failed
    PUT is a failed run, not a slower figure."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                    region_name="us-east-1")
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=pool, connect_timeout=5,
                    read_timeout=read_timeout_s, retries={"total_max_attempts": 1})
    return session.client("s3", endpoint_url=endpoint_url, config=config)


async def read_reply(reader: asyncio.StreamReader, replies: ReplyDecoder) -> Reply:
    """The daemon's next reply on this connection."""
    while (reply := replies.next_reply()) is None:
        data = await reader.read(4096)
        if not data:
            raise ConnectionError("the daemon closed the connection")
        replies.receive_data(data)
    return reply


def listed_segments(url: str, prefix: str) -> list[str]:
    """The segment names (``prefix-…``) the playlist at ``url`` lists now: none while it is missing."""
    reply = http_get(url)
    if reply.status != 200:
        return []
    return [line for line in reply.text.splitlines() if line.startswith(prefix + "-")]


# -- the daemon's process figures ---------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcFigures:
    cpu_s: float
    rss_kib: int
    hwm_kib: int
    # Thread id -> (name, user CPU s, system CPU s), from /proc/PID/task/TID/stat.
    threads: dict[int, tuple[str, float, float]] = field(default_factory=dict)


def _stat_of(path: str) -> tuple[str, float, float]:
    """A /proc stat file's command name, user and system CPU seconds (fields 2, 14 and 15)."""
    with open(path) as file:
        text = file.read()
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return name, int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def proc_figures(pid: int) -> ProcFigures:
    """CPU seconds (user + system, from /proc/PID/stat), VmRSS and VmHWM (peak RSS), and the CPU
    of each thread alive now."""
    _, user_s, system_s = _stat_of(f"/proc/{pid}/stat")
    cpu_s = user_s + system_s
    threads = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            threads[int(task)] = _stat_of(f"/proc/{pid}/task/{task}/stat")
    values = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return ProcFigures(cpu_s, values["VmRSS"], values["VmHWM"], threads)


def thread_cpu(pid: int, before: ProcFigures, after: ProcFigures, per: int) -> list[str]:
    """Lines of the CPU each kind of thread spent between ``before`` and ``after``, in ms per one
    of ``per`` (segments), user + system: the main thread (``pid``), then the others by name
    (threads that ended meanwhile are missing)."""
    kinds: dict[str, list[float]] = {}
    for tid, (name, user_s, system_s) in after.threads.items():
        _, user_0, system_0 = before.threads.get(tid, (name, 0.0, 0.0))
        kind = "main (event loop)" if tid == pid else name
        totals = kinds.setdefault(kind, [0.0, 0.0, 0])
        totals[0] += user_s - user_0
        totals[1] += system_s - system_0
        totals[2] += 1
    return [f"  {kind:24} x{int(count):<3} {user * 1000 / per:6.2f} user + {system * 1000 / per:5.2f} system ms"
            for kind, (user, system, count) in sorted(kinds.items(), key=lambda item: -(item[1][0] + item[1][1]))]


# -- the daemon's log: when each segment's playlist PUT completed ------------------------------

_PUBLISHED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO uploader\.publisher: stream (\S+) segment (\S+) published"
    r"(.*\(listed by the next playlist\))?"
)


class PublishedLog:
    """Follows the daemon's log file; ``poll()`` returns new {(stream label, segment): epoch s}.

    The daemon logs "stream B/P/I segment S published ..." after the playlist PUT and the spool
    commit; asctime has millisecond resolution (local time, as ``time.time`` is read here). A
    segment logged "(listed by the next playlist)" (the daemon was behind and skipped a playlist
    that a newer one superseded) counts as listed when the stream's next playlist went out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0  # this run's lines only
        self._partial = b""
        self._deferred: dict[str, list[str]] = {}

    def poll(self) -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
                self._offset = file.tell()
        except FileNotFoundError:
            return found
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            match = _PUBLISHED.match(raw.decode(errors="replace"))
            if match:
                stream, segment = match.group(2), match.group(3)
                if match.group(4):
                    self._deferred.setdefault(stream, []).append(segment)
                    continue
                stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                for earlier in self._deferred.pop(stream, []):
                    found[(stream, earlier)] = stamp
                found[(stream, segment)] = stamp
        return found


# -- figures ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> tuple[float, float, float, float]:
    return tuple(percentile(values, q) * 1000 for q in (50, 95, 99, 100))  # type: ignore[return-value]


def work_directory(keep: str | None, prefix: str) -> tuple[Path, object]:
    """A fresh work directory: ``keep`` (must be new or empty: an old spool would make every
    message a re-send), else a temporary one (the second value; call .cleanup())."""
    import tempfile

    if keep:
        path = Path(keep)
        if path.exists() and any(path.iterdir()):
            raise SystemExit(f"--keep {keep}: the directory must be new or empty")
        path.mkdir(parents=True, exist_ok=True)
        return path, None
    temp = tempfile.TemporaryDirectory(prefix=prefix)
    return Path(temp.name), temp


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    """The options of every benchmark that runs the daemon: its extra arguments, profiling, the work directory."""
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help="extra hls-uploadd argument (repeatable), e.g. --daemon-arg=--max-inflight=32")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the daemon with py-spy (collapsed stacks)")
    parser.add_argument("--py-spy-mode", choices=["active", "idle", "gil"], default="active",
                        help="py-spy samples: active threads, all (idle) or the GIL holder (CPU)")
    parser.add_argument("--keep", metavar="DIR", help="work directory to keep (daemon log, spool)")


def daemon_env(endpoint: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **endpoint, "PYTHONUNBUFFERED": "1"}


class PySpy:
    """``py-spy record`` attached to a process (pip install py-spy), collapsed stacks to ``path``."""

    def __init__(self, pid: int, path: str | None, *, mode: str = "active") -> None:
        """``mode``: "active" (threads not waiting), "idle" (all), "gil" (the GIL holder: CPU)."""
        self._proc: subprocess.Popen[bytes] | None = None
        if path:
            command = ["py-spy", "record", "-p", str(pid), "-o", path, "--format", "raw", "-r", "200", "--threads"]
            if mode in ("idle", "gil"):
                command.append(f"--{mode}")
            self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            self._proc.wait(timeout=60)
