"""Helpers for segmenter tests: run hls-segment, look inside segment files, make odd inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from protocol import IndexMessage
from segmenter.outbox import Outbox

from .listener import Listener
from .media import TS_CLOCK_HZ

TS_PACKET_BYTES = 188
HLS_SEGMENT = [sys.executable, "-m", "segmenter"]

# The positional arguments after INPUT and SEGMENT_DURATION, in the original's order.
INDEX = "stream-128k.m3u8"
PREFIX = "sample"
HTTP_PREFIX = "http://cdn.example.net/stream0001/"
BUCKET = "ionlivestream"
KEY_PREFIX = "stream0001"


def segment_args(
    input: str, seconds: str, out_dir: Path | str, port: int, *options: str, prefix: str = PREFIX, bucket: str = BUCKET
) -> list[str]:
    return [
        *HLS_SEGMENT, input, seconds, str(out_dir), prefix, INDEX, HTTP_PREFIX, bucket, KEY_PREFIX,
        "--uploader", f"127.0.0.1:{port}", *options,
    ]


def run_segmenter(
    source: Path | bytes | None,
    seconds: str,
    out_dir: Path | str,
    port: int,
    *options: str,
    timeout_s: float = 120,
    prefix: str = PREFIX,
    bucket: str = BUCKET,
) -> subprocess.CompletedProcess[str]:
    """Run hls-segment with ``source`` on stdin (a file, bytes, or nothing at all)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = segment_args("-", seconds, out_dir, port, *options, prefix=prefix, bucket=bucket)
    if isinstance(source, Path):
        with open(source, "rb") as stdin:
            result = subprocess.run(args, stdin=stdin, capture_output=True, timeout=timeout_s, env=env)
    else:
        result = subprocess.run(args, input=source or b"", capture_output=True, timeout=timeout_s, env=env)
    return subprocess.CompletedProcess(
        args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    )


def segment_into_listener(source: Path, seconds: str, out_dir: Path, port: int, path: str
                          ) -> tuple[list[IndexMessage], list[Path], str]:
    """Run hls-segment on ``source`` against a listener that acknowledges everything; check it
    exits 0 on the cutting path ``path`` ("fast-path" or "pyav", as HLS_SEGMENT_FAST_PATH says)
    and that each message names one of the segment files, in order. The messages, the files and
    hls-segment's log."""
    with Listener(port) as listener:
        result = run_segmenter(source, seconds, out_dir, port)
    assert result.returncode == 0, result.stderr
    assert ("MPEG-TS fast path: cutting" in result.stderr) is (path == "fast-path"), result.stderr
    messages = listener.messages
    files = segment_files(out_dir)
    assert [f.name for f in files] == [f"{PREFIX}-{m.last_segment:05d}.ts" for m in messages]
    return messages, files, result.stderr


def segment_files(out_dir: Path, prefix: str = PREFIX) -> list[Path]:
    return sorted(p for p in out_dir.iterdir() if p.name.startswith(prefix + "-") and p.suffix == ".ts")


def owed_segments(out_dir: Path, prefix: str = PREFIX) -> list[int]:
    """The segment numbers of the messages hls-segment's outbox in ``out_dir`` still owes the
    daemon, oldest first."""
    outbox = Outbox.open(out_dir / f".{prefix}.outbox")
    try:
        return [message.last_segment for message in outbox.messages()]
    finally:
        outbox.close()


def first_pids(path: Path, count: int = 3) -> list[int]:
    with open(path, "rb") as file:
        head = file.read(TS_PACKET_BYTES * count)
    assert all(head[i] == 0x47 for i in range(0, len(head), TS_PACKET_BYTES)), "not 188-byte TS packets"
    return [((head[i + 1] & 0x1F) << 8) | head[i + 2] for i in range(0, len(head), TS_PACKET_BYTES)]


def concatenate(parts: list[Path], out: Path) -> Path:
    """Byte-wise concatenation of TS files: the second file's timestamps jump back."""
    with open(out, "wb") as target:
        for part in parts:
            target.write(part.read_bytes())
    return out


def seconds(ticks: int) -> float:
    return ticks / TS_CLOCK_HZ
