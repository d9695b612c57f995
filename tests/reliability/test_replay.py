"""Issue 15 point 4: a captured signed message is worthless later and elsewhere, and a segmenter
whose clock is off loses nothing. The capture is what a real hls-segment sent, taken on the path
(a loopback proxy), so the attack does not depend on how the messages are signed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol import ProtocolError, Reject, Reply, ReplyDecoder, parse_message
from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache
from tests.support.viewer import wait_for

from .conftest import Live, live_clip
from .test_faults_live import finish, published, wait_ended

SECRET = b"replay-test-secret-0123456789"

# libfaketime (Debian package faketime): the thread-safe variant, since hls-segment runs threads.
FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def lines_up_to_segment(captured: bytes, number: int) -> list[bytes]:
    """The lines of one captured connection, from its first to the message naming segment ``number``."""
    lines = []
    for line in captured.split(b"\n"):
        lines.append(line)
        try:
            if parse_message(line).last_segment == number:
                return lines
        except ProtocolError:
            continue  # HELLO, or a blank line
    raise AssertionError(f"segment {number} is not in the capture")


def replay(address: tuple[str, int], lines: list[bytes]) -> Reply:
    """Send captured lines on a new connection, as they were; the reply to the last one."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        decoder = ReplyDecoder()
        replies: list[Reply] = []
        while len(replies) < len(lines):
            while (reply := decoder.next_reply()) is not None:
                replies.append(reply)
            if len(replies) < len(lines):
                chunk = sock.recv(4096)
                assert chunk, f"the daemon closed after {len(replies)} replies"
                decoder.receive_data(chunk)
    return replies[-1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_captured_first_message_is_refused_after_a_restart_and_by_a_second_daemon(
    live: Live, media: MediaCache, secret_file: Path
) -> None:
    clip = live_clip(media, 30)
    daemon = live.daemon("--secret-file", str(secret_file))
    link = live.proxy(("127.0.0.1", live.daemon_port))
    poller = live.poller()
    segmenter, feeder = live.segmenter(clip, 30, "--secret-file", str(secret_file), port=link.port)
    wait_for(lambda: published(live, "live-00004.ts"), timeout=60, message="segment 4 published")
    feeder.stop()
    segmenter.kill()  # the run stops without an end: its stream is open, as a live one is
    captured = lines_up_to_segment(bytes(link.sent[0]), 1)
    assert b"discontinuity=1" in captured[-1], captured[-1]  # the run's first segment

    daemon.stop()
    daemon.start()
    reply = replay(daemon.address, captured)
    assert isinstance(reply, Reject) and not reply.is_transient, reply

    second = UploaderDaemon(live.tmp_path / "second", [
        "--allow-dir", str(live.segments_root), "--bucket", live.bucket,
        "--endpoint-url", live.server.endpoint_url, "--secret-file", str(secret_file),
    ])
    live.daemons.append(second)
    second.start()
    reply = replay(second.address, captured)
    assert isinstance(reply, Reject) and not reply.is_transient, reply

    # Neither daemon queued anything for the replays; the stream's playlist lists segment 1
    # once, at its place, in every version the poller read.
    assert " queued" not in second.log()
    assert not re.search(r"segment live-00001\.ts (queued|already queued)", daemon.log())
    poller.stop()
    final = live.playlist_text()
    poller.add_version(final)
    assert final.count("live-00001.ts") <= 1
    assert not poller.problems, poller.problems
    assert not poller.conformance, poller.conformance
    assert "Traceback" not in second.log()


def clock_of(env: dict[str, str]) -> float:
    """time.time() of a Python started with ``env``."""
    result = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                            env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=30)
    return float(result.stdout)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_segmenter_whose_clock_is_40_s_behind_publishes_every_segment(
    live: Live, media: MediaCache, secret_file: Path
) -> None:
    assert FAKETIME_LIBRARY.exists(), "install libfaketime: apt-get install faketime"
    behind = {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": "-40s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    skew_s = time.time() - clock_of(behind)
    assert 39 < skew_s < 60, f"libfaketime did not move Python's clock ({skew_s:.1f} s)"
    clip = live_clip(media, 8)
    daemon = live.daemon("--secret-file", str(secret_file))
    poller = live.poller()
    segmenter, _ = live.segmenter(clip, 8, "--secret-file", str(secret_file), env=behind)
    finish(live)
    wait_ended(live)
    result = live.check(poller, segmenter_clock_behind_s=round(skew_s, 1))
    assert len(result.produced) >= 7
    warnings = [line for line in segmenter.log().splitlines() if "its clock is" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0] and "+4" in warnings[0], warnings
    assert "not authenticated" not in daemon.log()
