"""End to end with real peers.

ffmpeg encodes a live test source in real time, hls-segment cuts it into 2-s segments, hls-uploadd
publishes them to SeaweedFS, and a second ffmpeg, as a viewer, records the live playlist over
HTTP. Meanwhile a poller reads every playlist snapshot as a player would and checks it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import m3u8
import pytest

from tests.support.browser import page_status
from tests.support.daemon import UploaderDaemon
from tests.support.media import probe
from tests.support.pipeline import PlaylistPoller
from tests.support.scrape import scrape
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import fetch_playlist, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]
LIVE_SECONDS = 24  # the encoder runs in real time (-re)
SEGMENT_SECONDS = 2
FPS = 25
FRAME_S = 1 / FPS
WINDOW = 5  # hls-uploadd --window, its default


def playing(engine: str = r"native HLS|hls\.js") -> str:
    """The player page's status while it plays with ``engine`` (a regular expression)."""
    return rf"Playing \(({engine}), [1-9]\d*x[1-9]\d*\)"


def encoder_command(seconds: float) -> list[str]:
    gop = SEGMENT_SECONDS * FPS
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "300k",
        "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-",
    ]


def segmenter_close_times(log: str) -> dict[str, float]:
    """When hls-segment logged each finished segment (its log lines carry local wall-clock times)."""
    times = {}
    for match in re.finditer(r"^(\S+ \S+) INFO segmenter\.progress: segment (\S+\.ts):", log, re.MULTILINE):
        times[match.group(2)] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return times


def video_frame_times(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return sorted(float(line.split(",")[0]) for line in out.split() if line.strip() and line != "N/A")


@pytest.mark.slow
def test_live_encoder_to_viewer_through_s3(tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments)]).start()
    playlist_url = seaweed.object_url(bucket, "e2e/live.m3u8")
    segment_base = seaweed.object_url(bucket, "e2e/")
    segmenter_log = tmp_path / "segmenter.log"
    viewer_log = tmp_path / "viewer.log"
    recording = tmp_path / "recording.ts"
    seen = PlaylistPoller(playlist_url, segment_base, interval_s=0.1, stop_at_endlist=True)
    encoder = subprocess.Popen(encoder_command(LIVE_SECONDS), stdout=subprocess.PIPE)
    viewer = None
    try:
        with open(segmenter_log, "wb") as log:
            segmenter = subprocess.Popen(
                [sys.executable, "-m", "segmenter", "-", str(SEGMENT_SECONDS), str(segments), "seg", "live.m3u8",
                 "", bucket, "e2e", "--uploader", f"127.0.0.1:{daemon.port}"],
                stdin=encoder.stdout, stderr=log,
            )
        assert encoder.stdout is not None
        encoder.stdout.close()
        seen.start()
        wait_for(lambda: seen.texts, timeout=30, message="the first live playlist")
        # The viewer joins the live stream at the first listed segment and records until ENDLIST.
        with open(viewer_log, "wb") as log:
            viewer = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-live_start_index", "0",
                 "-i", playlist_url, "-c", "copy", "-f", "mpegts", str(recording)],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        assert segmenter.wait(LIVE_SECONDS + 60) == 0, segmenter_log.read_text()
        assert encoder.wait(10) == 0
        assert viewer.wait(60) == 0, viewer_log.read_text()
        seen.join(30)
    finally:
        seen.stop()
        for process in (encoder, viewer):
            if process is not None and process.poll() is None:
                process.kill()
        daemon.kill()

    assert not seen.problems, seen.problems
    assert not seen.conformance, seen.conformance
    assert seen.texts and m3u8.loads(seen.texts[-1]).is_endlist
    assert "Traceback" not in daemon.log(all_runs=True)

    # The viewer covered every segment from the one it joined at to the end, with no gap.
    opened = re.findall(r"Opening '[^']*/(seg-\d+\.ts)' for reading", viewer_log.read_text())
    assert opened, viewer_log.read_text()
    numbers = [int(name[4:-3]) for name in opened]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"viewer skipped segments: {numbers}"
    assert f"seg-{numbers[-1]:05d}.ts" == sorted(seen.durations)[-1], "viewer stopped before the last segment"
    covered_s = sum(seen.durations[name] for name in opened)
    frames = video_frame_times(recording)
    steps = [later - earlier for earlier, later in zip(frames, frames[1:])]
    assert max(steps) < 1.5 * FRAME_S, f"a gap of {max(steps):.3f} s in the recording"
    recorded_s = frames[-1] - frames[0] + FRAME_S
    assert abs(recorded_s - covered_s) <= FRAME_S * len(opened), (recorded_s, covered_s)
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(recording), "-f", "null", "-"],
                            capture_output=True, text=True)
    assert decode.returncode == 0 and decode.stderr == "", decode.stderr
    assert probe(recording).kinds == ("video", "audio")

    # Segment closed -> listed in the playlist a viewer reads. A player keeps about three target
    # durations of buffer and a live playlist lists WINDOW segments: a segment that takes longer than
    # the window to appear has been skipped by every viewer. benchmarks/publish_latency.py measures
    # the figure itself; here only that bound is held.
    closed = segmenter_close_times(segmenter_log.read_text())
    delays = {name: seen.first_seen[name] - closed[name] for name in seen.first_seen if name in closed}
    assert len(delays) >= len(seen.first_seen) - 1, (sorted(closed), sorted(seen.first_seen))
    late = {name: round(delay, 2) for name, delay in delays.items() if delay > WINDOW * SEGMENT_SECONDS}
    assert not late, f"segments listed later than a live window after they were closed: {late}"


def _processes_marked(marker: str) -> dict[int, str]:
    """Live processes whose environment carries ``marker``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def start_demo(workdir: Path, marker: str) -> tuple[subprocess.Popen[bytes], list[str], threading.Thread]:
    """README's demo command (when the suite runs in the venv ./dev made; the same program
    otherwise), its environment marked with ``marker`` (NAME=VALUE): the process, the lines it
    has printed so far (stdout and stderr), and the thread that reads them."""
    in_dev_venv = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
    command = ["./dev", "demo"] if in_dev_venv else [sys.executable, "-m", "examples.demo"]
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    for name in [name for name in env if name.startswith("AWS_")]:
        del env[name]  # the demo brings its own S3
    demo = subprocess.Popen(
        [*command, "--workdir", str(workdir)], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(line.decode() for line in demo.stdout), daemon=True)
    reader.start()
    return demo, output, reader


def stop_demo(demo: subprocess.Popen[bytes], marker: str, reader: threading.Thread) -> None:
    """After a test: a demo still running (the test failed) is killed, with what it started, so
    that none outlives the test; its output is read to the end."""
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
        for pid in _processes_marked(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    reader.join(5)
    if demo.stdout is not None:
        demo.stdout.close()


@pytest.mark.slow
def test_demo_command_serves_a_live_stream_and_ends_it_on_ctrl_c(tmp_path: Path) -> None:
    marker = f"HLS_DEMO_TEST_RUN={uuid.uuid4().hex}"
    demo, output, reader = start_demo(tmp_path / "demo", marker)
    try:
        started = time.monotonic()
        try:
            url_line = wait_for(lambda: next((line for line in output if "playlist: http" in line), None)
                                or demo.poll() is not None, timeout=120, message="the demo's playlist URL")
        except AssertionError as error:
            raise AssertionError(f"{error}; the demo printed:\n{''.join(output)}") from None
        assert isinstance(url_line, str), f"the demo exited with {demo.returncode}:\n{''.join(output)}"
        time_to_live = time.monotonic() - started
        playlist_url = url_line.split("playlist:")[1].strip()
        page_url = next(line for line in output if "player:" in line).split("player:")[1].strip()
        live = fetch_playlist(playlist_url)
        assert live.segments and not live.is_endlist and live.target_duration == 2
        page = http_get(page_url)
        assert page.status == 200 and "stream.m3u8" in page.text
        # Opened as soon as it is printed, while the playlist is shorter than three target durations
        # (where Chromium's native HLS fails), the page plays: natively, or with hls.js after that.
        status = page_status(page_url, playing())
        assert re.fullmatch(playing(), status), f"{page_url} opened at once: {status}"
        newest = live.media_sequence + len(live.segments) - 1
        wait_for(lambda: fetch_playlist(playlist_url).media_sequence > newest, timeout=30,
                 message="the live window to move on past the first segments seen")
        # The run can be watched from /metrics and hls-uploadd status, as the demo prints them.
        metrics_url = next(line for line in output if "metrics:" in line).split()[1]
        published = scrape(metrics_url.removesuffix("/metrics")).value(
            "hls_uploadd_segments_published_total", bucket="live", key_prefix="demo", index="stream.m3u8")
        assert published is not None and published > newest
        status_command = next(line for line in output if "status:" in line).split("status:")[1].split()
        status = subprocess.run([sys.executable, "-m", "uploader", *status_command[1:]], capture_output=True,
                                text=True, timeout=60)
        assert status.stdout.startswith("live/demo/stream.m3u8: live; last demo-"), status.stdout + status.stderr
        # A real browser plays the live stream natively (Safari, some Chromium builds: forced here with
        # ?native, no fallback) and with hls.js, which the page uses everywhere else (?hls.js).
        for query, engine in (("?native", "native HLS"), (r"?hls.js", r"hls\.js")):
            status = page_status(page_url + query, playing(engine))
            assert re.fullmatch(playing(engine), status), f"{page_url + query}: {status}"
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(output)
    finally:
        stop_demo(demo, marker, reader)
    print(f"\ndemo: first playable playlist {time_to_live:.1f} s after the command started")
    text = "".join(output)
    assert re.search(r"segment demo-\d+\.ts published .*\(stream ended\)", text), "no ENDLIST published"
    # What it says at the end is true when read: no URL of a server it has stopped.
    assert output[-2:] == ["stream ended (segmenter exit 0): the playlist has #EXT-X-ENDLIST\n",
                           f"embedded S3 stopped; its data stays in {tmp_path / 'demo' / 's3'} until the next"
                           " ./dev demo\n"], text
    wait_for(lambda: not _processes_marked(marker), timeout=10, message="every process the demo started to exit")


@pytest.mark.slow
def test_ctrl_c_while_the_demo_starts_stops_what_it_started_in_one_line(tmp_path: Path) -> None:
    marker = f"HLS_DEMO_TEST_RUN={uuid.uuid4().hex}"
    demo, output, reader = start_demo(tmp_path / "demo", marker)
    try:
        wait_for(lambda: any("source:" in line for line in output), timeout=120,
                 message="the demo's source started")
        demo.send_signal(signal.SIGINT)  # before the first playlist: it once printed a traceback
        assert demo.wait(60) == 130, "".join(output)
        reader.join(5)
        assert not any("Traceback" in line for line in output), "".join(output)
        assert output[-1] == "interrupted before the stream was live\n", "".join(output)
    finally:
        stop_demo(demo, marker, reader)
    wait_for(lambda: not _processes_marked(marker), timeout=10, message="every process the demo started to exit")



def test_dev_s3_serves_a_bucket_that_the_printed_environment_and_command_publish_to(tmp_path: Path) -> None:
    # `./dev s3` (python -m examples.embedded_s3): an S3 to try against outside the demo. What it
    # prints is used as printed: the export line and the hls-uploadd command start a daemon whose
    # start-up write check passes, and anyone reads what it stores.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    s3 = subprocess.Popen([sys.executable, "-m", "examples.embedded_s3", "--dir", str(tmp_path / "s3"), "--bucket",
                           "tryout"], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert s3.stdout is not None
        lines = []
        while not lines or lines[-1] != "Ctrl-C stops it.\n":
            line = s3.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        exports = next(line for line in lines if line.startswith("  export "))
        daemon_line = next(line for line in lines if line.startswith("  hls-uploadd ")).split()
        printed = dict(pair.split("=", 1) for pair in exports.split()[1:])
        segments = tmp_path / "segments"
        segments.mkdir()
        args = [arg.replace("DIR", str(segments)) for arg in daemon_line[1:]]
        daemon = UploaderDaemon(tmp_path / "d", args, env={**env, **printed}).start()
        try:
            assert "hls-uploadd listening on" in daemon.startup_line
        finally:
            daemon.kill()
        url = next(line for line in lines if "readable by anyone at" in line).split()[-1].replace("KEY", "hello")
        client_env = {**env, **printed}
        subprocess.run([sys.executable, "-c", "import boto3; boto3.client('s3').put_object(Bucket='tryout',"
                        " Key='hello', Body=b'hi')"], env=client_env, check=True, timeout=60)
        assert http_get(url).text == "hi"
        s3.send_signal(signal.SIGINT)
        assert s3.wait(30) == 0
        assert s3.stdout.read().splitlines()[-1] == "stopped"
    finally:
        if s3.poll() is None:
            os.killpg(s3.pid, signal.SIGKILL)
            s3.wait()
        if s3.stdout is not None:
            s3.stdout.close()


@pytest.mark.slow
def test_the_demo_tries_another_metrics_port_when_its_first_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo picks a free port for the daemon's metrics; another process can bind it first (as
    a parallel test run did): the daemon then exits at start, and the demo tries another port."""
    from examples import demo

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        picks = iter([taken_port])
        free_port = demo.free_port
        monkeypatch.setattr(demo, "free_port", lambda: next(picks, None) or free_port())
        command, _ = demo.source_command(SEGMENT_SECONDS, "ffmpeg")
        with demo.live_pipeline(tmp_path / "demo", SEGMENT_SECONDS, command, metrics=True) as live:
            assert live.metrics_url is not None and f":{taken_port}/" not in live.metrics_url
            assert http_get(live.metrics_url).status == 200
    assert "trying another port for hls-uploadd's metrics" in capsys.readouterr().err
