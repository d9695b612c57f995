"""The live demo: a test source, hls-segment and hls-uploadd publishing to an embedded S3.

    ./dev demo                  # until Ctrl-C
    ./dev demo --seconds 60     # or for a minute

It starts SeaweedFS on loopback (data under .demo/), creates the bucket ``live``, runs the upload
daemon, and pipes a live test source (ffmpeg's testsrc2 + sine when ffmpeg is installed, else
frames and a tone made with PyAV) into the segmenter. It prints the playlist URL and a player
page URL. Ctrl-C ends the stream cleanly: the source stops, the segmenter finishes its segment
and sends END, the daemon publishes the ENDLIST and drains. Run from a terminal without
--seconds, the ended stream stays served until a second Ctrl-C; then everything it started stops.
Ctrl-C before the stream is live stops what was started, in one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from examples.embedded_s3 import EmbeddedS3

BUCKET = "live"
KEY_PREFIX = "demo"
PLAYLIST = "stream.m3u8"
SEGMENT_PREFIX = "demo"
# What the segmenter and daemon may take to wind down after the source stops.
SHUTDOWN_TIMEOUT_S = 30.0
# Ports tried for the daemon's --metrics-listen before the demo gives up.
METRICS_PORT_ATTEMPTS = 3


def free_port() -> int:
    """A port free on loopback now, for the daemon's --metrics-listen (printed before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bin_path(name: str) -> str:
    """A console script of this installation (the venv's, not whatever is on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def source_command(segment_seconds: float, kind: str, video_filter: str = "") -> tuple[list[str], str]:
    """The live test source's command line, writing MPEG-TS to stdout, and its description: ffmpeg
    (``kind`` "ffmpeg", or "auto" when it is installed) encoding testsrc2 at 25 fps, through
    ``video_filter`` if any, and a 440-Hz sine, one keyframe every ``segment_seconds``; else a
    PyAV pattern and tone (which takes no filter: ValueError)."""
    gop = round(segment_seconds * 25)
    if kind == "ffmpeg" or (kind == "auto" and shutil.which("ffmpeg")):
        return [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            *(["-vf", video_filter] if video_filter else []),
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "800k",
            "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-",
        ], "ffmpeg testsrc2 + sine"
    if video_filter:
        raise ValueError("the PyAV test source takes no video filter")
    return [sys.executable, "-m", "examples.live_source", "--gop-seconds", str(segment_seconds)], "PyAV test pattern + tone"


def wait_for_http(url: str, timeout_s: float, content: bytes = b"#EXTINF") -> bool:
    """Whether ``url`` answered 200 with ``content`` in its body within ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=2) as response:
                if response.status == 200 and content in response.read():
                    return True
        except (URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def wait_port_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"hls-uploadd exited with code {process.returncode}; see its log above")
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise SystemExit("hls-uploadd did not start listening in time")


def stop(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Pipeline:
    """A running demo pipeline (``live_pipeline``): its processes, the URLs of its stream on the
    embedded S3, and when the source was started (``time.time()``, seconds)."""

    s3: EmbeddedS3
    daemon: subprocess.Popen[bytes]
    source: subprocess.Popen[bytes]
    segmenter: subprocess.Popen[bytes]
    playlist_url: str
    page_url: str
    source_started: float
    metrics_url: str | None


@contextmanager
def live_pipeline(workdir: Path, segment_seconds: float, source: list[str], *, key_prefix: str = KEY_PREFIX,
                  metrics: bool = False, daemon_options: tuple[str, ...] = (),
                  segmenter_options: tuple[str, ...] = ()) -> Iterator[Pipeline]:
    """Start SeaweedFS (data under ``workdir``/s3) with bucket ``BUCKET``, hls-uploadd with its
    player page (and with ``metrics``, its --metrics-listen endpoint on a free loopback port), and
    the ``source`` command piped into hls-segment, which cuts ``segment_seconds`` segments into
    ``workdir``/segments and publishes them under ``key_prefix``. On leaving, what is still
    running is stopped (newest first, Ctrl-C ignored meanwhile) and SeaweedFS with it. Raises
    SystemExit when the daemon does not start."""
    segments = workdir / "segments"
    segments.mkdir(parents=True)
    s3 = EmbeddedS3(workdir / "s3")
    children: list[subprocess.Popen[bytes]] = []
    try:
        s3.start()
        s3.create_bucket(BUCKET)
        env = {**os.environ, **s3.client_environment()}
        port_file = workdir / "uploadd.port"
        # The metrics port was free a moment ago; another process may take it before the daemon
        # binds it, which ends that daemon at once: then another port is tried.
        for attempt in range(1, METRICS_PORT_ATTEMPTS + 1):
            metrics_port = free_port() if metrics else None
            # Own process groups: Ctrl-C reaches only this script, which stops the others in order.
            daemon = subprocess.Popen(
                [bin_path("hls-uploadd"), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
                 "--spool-dir", str(workdir / "spool"), "--allow-dir", str(segments), "--bucket", BUCKET,
                 "--endpoint-url", s3.endpoint_url, "--player-page",
                 *(("--metrics-listen", f"127.0.0.1:{metrics_port}") if metrics_port else ()), *daemon_options],
                env=env, start_new_session=True,
            )
            children.append(daemon)
            try:
                port = wait_port_file(port_file, daemon, 30)
                break
            except SystemExit:
                if daemon.poll() is None or not metrics or attempt == METRICS_PORT_ATTEMPTS:
                    raise
                children.remove(daemon)  # it exited
                print("trying another port for hls-uploadd's metrics", file=sys.stderr, flush=True)
        source_started = time.time()
        source_process = subprocess.Popen(source, stdout=subprocess.PIPE, start_new_session=True)
        children.append(source_process)
        segmenter = subprocess.Popen(
            [bin_path("hls-segment"), "-", f"{segment_seconds:g}", str(segments), SEGMENT_PREFIX, PLAYLIST, "",
             BUCKET, key_prefix, "--uploader", f"127.0.0.1:{port}", *segmenter_options],
            stdin=source_process.stdout, env=env, start_new_session=True,
        )
        children.append(segmenter)
        assert source_process.stdout is not None
        source_process.stdout.close()  # the segmenter owns the pipe now
        yield Pipeline(s3, daemon, source_process, segmenter, s3.object_url(BUCKET, f"{key_prefix}/{PLAYLIST}"),
                       s3.object_url(BUCKET, f"{key_prefix}/index.html"), source_started,
                       f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # another Ctrl-C must not cut the clean-up short
        for child in reversed(children):
            stop(child, signal.SIGTERM, 10)
        s3.stop()


def run(workdir: Path, seconds: float | None, segment_seconds: float, source_kind: str) -> int:
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh stream every run
    started = time.monotonic()
    print("starting the embedded S3 (SeaweedFS) ...", flush=True)
    command, description = source_command(segment_seconds, source_kind)
    try:
        with live_pipeline(workdir, segment_seconds, command, metrics=True) as live:
            print(f"source: {description}, {segment_seconds:g}-s segments", flush=True)
            # The player page goes up just after the first playlist: both are there before the URLs are.
            if not wait_for_http(live.playlist_url, 60):
                print("no playlist after 60 s; see the logs above", file=sys.stderr)
                return 1
            if not wait_for_http(live.page_url, 10, PLAYLIST.encode()):
                print("a playlist but no player page 10 s after it; see the logs above", file=sys.stderr)
                return 1
            print(
                f"\nlive after {time.monotonic() - started:.1f} s\n"
                f"  playlist: {live.playlist_url}\n"
                f"  player:   {live.page_url}\n"
                f"  ffplay {live.playlist_url}\n"
                f"  metrics:  {live.metrics_url} (health: /healthz, /readyz)\n"
                f"  status:   {bin_path('hls-uploadd')} status --spool-dir {workdir / 'spool'}\n"
                f"Ctrl-C ends the stream.\n",
                flush=True,
            )
            interrupted = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: interrupted.set())
            signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
            deadline = None if seconds is None else time.monotonic() + seconds
            while not interrupted.is_set() and live.segmenter.poll() is None:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                interrupted.wait(0.5)
            print("ending the stream ...", flush=True)
            stop(live.source, signal.SIGINT, 10)  # EOF on the segmenter's stdin: it ends the stream
            segmenter_code = live.segmenter.wait(SHUTDOWN_TIMEOUT_S)
            stop(live.daemon, signal.SIGTERM, SHUTDOWN_TIMEOUT_S)  # drains, then exits
            print(f"stream ended (segmenter exit {segmenter_code}): the playlist has #EXT-X-ENDLIST", flush=True)
            if seconds is None and sys.stdin.isatty():
                # Watched by a person: the ended stream stays watchable until they are done.
                interrupted.clear()
                print(f"  still served: {live.playlist_url}\n  player:       {live.page_url}\n"
                      "Ctrl-C stops the embedded S3.", flush=True)
                interrupted.wait()
            return 0 if segmenter_code == 0 else 1
    finally:
        print(f"embedded S3 stopped; its data stays in {workdir / 's3'} until the next ./dev demo", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Live HLS demo on an embedded S3.")
    parser.add_argument("--seconds", type=float, default=None, help="end the stream after this long")
    parser.add_argument("--segment-seconds", type=float, default=2.0, help="target segment duration")
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where data and segments go")
    parser.add_argument("--source", choices=("auto", "ffmpeg", "pyav"), default="auto",
                        help="test source: ffmpeg when installed (auto), or PyAV alone")
    args = parser.parse_args()
    try:
        code = run(args.workdir.absolute(), args.seconds, args.segment_seconds, args.source)
    except KeyboardInterrupt:  # Ctrl-C before the stream was live: what was started is stopped
        print("interrupted before the stream was live", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
