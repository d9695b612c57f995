"""Segmenter tests run against both ways of cutting MPEG-TS: the 188-byte fast path and PyAV."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["fast-path", "pyav"])
def segmenter_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """hls-segment subprocesses started by the test inherit HLS_SEGMENT_FAST_PATH: on for
    "fast-path", off for any other value a test parametrizes it with (indirect=...), such as
    "pyav" or "mp4" (the PyAV path's own inputs)."""
    monkeypatch.setenv("HLS_SEGMENT_FAST_PATH", "1" if request.param == "fast-path" else "0")
    return str(request.param)
