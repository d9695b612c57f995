"""examples/three-renditions.sh runs: three encoders, three segmenters, one daemon, one master."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.seaweed import SeaweedServer
from tests.support.viewer import fetch_playlist

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "three-renditions.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the example needs ffmpeg")
def test_three_renditions_example(seaweed: SeaweedServer, bucket: str, tmp_path: Path) -> None:
    env = {**os.environ, "BUCKET": bucket, "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(SCRIPT), "6"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    url = seaweed.object_url(bucket, "program/master.m3u8")
    assert f"master playlist: {url}" in result.stdout
    master = fetch_playlist(url)
    assert [p.uri for p in master.playlists] == ["low.m3u8", "mid.m3u8", "high.m3u8"]
    assert [p.stream_info.resolution for p in master.playlists] == [(320, 240), (480, 360), (640, 480)]
