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
    # Run as README says, from anywhere, with no venv activated: it finds the checkout's .venv
    # (it once needed the venv's bin on PATH, and blamed the embedded S3 when it was not).
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(part for part in os.environ["PATH"].split(os.pathsep) if part != venv_bin)
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHON", "VIRTUAL_ENV")}
    env.update({"BUCKET": bucket, "TMPDIR": str(tmp_path), "PATH": path})
    result = subprocess.run([str(SCRIPT), "6"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    url = seaweed.object_url(bucket, "program/master.m3u8")
    assert f"master playlist: {url}" in result.stdout
    master = fetch_playlist(url)
    assert [p.uri for p in master.playlists] == ["low.m3u8", "mid.m3u8", "high.m3u8"]
    assert [p.stream_info.resolution for p in master.playlists] == [(320, 240), (480, 360), (640, 480)]


def test_three_renditions_without_the_programs_says_how_to_get_them_in_one_line(tmp_path: Path) -> None:
    # A checkout without .venv, and no hls-uploadd on PATH.
    copy = tmp_path / "checkout" / "examples" / SCRIPT.name
    copy.parent.mkdir(parents=True)
    shutil.copy2(SCRIPT, copy)
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("ffmpeg", "bash", "dirname", "mktemp"):
        if (found := shutil.which(tool)) is not None:
            (bare / tool).symlink_to(found)
    result = subprocess.run([str(copy)], capture_output=True, text=True, timeout=60,
                            env={"PATH": str(bare), "TMPDIR": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"three-renditions: hls-uploadd not found: run ./dev s3 once (it makes {copy.parent.parent}/.venv with it;"
        f" Ctrl-C it), or pip install -e '{copy.parent.parent}[embedded]'\n"), result.stderr
