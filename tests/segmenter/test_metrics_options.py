"""hls-segment's --metrics-listen when it cannot be served: one line, exit 2, before any input is
read (issue 16)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def segment(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segmenter", "-", "2", str(tmp_path / "out"), "seg", "index.m3u8", "",
                           "some-bucket", "show", *options], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("value", "reason"), [
    ("nowhere", "--metrics-listen 'nowhere' is not HOST:PORT or PORT"),
    ("127.0.0.1:http", "--metrics-listen: address '127.0.0.1:http': port 'http' is not a number"),
    ("70000", "--metrics-listen: address '127.0.0.1:70000': port 70000 is outside 0..65535"),
])
def test_a_metrics_address_that_is_no_address_is_one_line(tmp_path: Path, value: str, reason: str) -> None:
    done = segment(tmp_path, "--metrics-listen", value)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"hls-segment: {reason}"]


def test_a_metrics_address_in_use_is_one_line_before_any_input_is_read(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = segment(tmp_path, "--metrics-listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"hls-segment: cannot serve --metrics-listen 127.0.0.1:{port}: Address already in use"]
    assert not (tmp_path / "out").exists()
