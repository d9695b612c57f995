"""hls-segment options for a remote, authenticated daemon: --send-segments, --secret-file, --bandwidth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.settings import ConfigError
from segmenter.config import SegmenterConfig


def build(tmp_path: Path, **options: Any) -> SegmenterConfig:
    return SegmenterConfig.from_settings(
        input="-", segment_duration="2", output_dir=str(tmp_path), output_prefix="cam", index_name="cam.m3u8",
        http_prefix="", bucket="live-bucket", key_prefix="cam1", settings=options,
    )


def test_send_segments_is_on_by_default_for_a_daemon_on_another_host(tmp_path: Path) -> None:
    assert not build(tmp_path).send_segments
    assert not build(tmp_path, uploader="[::1]:10234").send_segments
    assert build(tmp_path, uploader="10.1.2.3:10234").send_segments
    assert build(tmp_path, uploader="uploadd:10234").send_segments  # a name: not known to be loopback
    assert not build(tmp_path, uploader="10.1.2.3:10234", send_segments=False).send_segments
    assert build(tmp_path, send_segments=True).send_segments


def test_secret_and_bandwidth(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"  0123456789abcdef0123\n")
    config = build(tmp_path, secret_file=str(secret), bandwidth="364000")
    assert config.secret == b"0123456789abcdef0123"
    assert "0123456789abcdef" not in repr(config)
    assert config.message(first_segment=1, last_segment=1, end=False).bandwidth == 364_000
    assert config.key_id is None  # the daemon's --secret-file peer, "default"
    assert build(tmp_path, secret_file=str(secret), key_id="cam-east").key_id == "cam-east"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"wire": "v1", "send_segments": True}, "need --wire ext"),
        ({"bandwidth": 0}, "--bandwidth must be between"),
        ({"secret_file": "/no/such/secret"}, "cannot read --secret-file"),
        ({"key_id": "cam-east"}, "--key-id names the peer whose secret signs: give --secret-file too"),
        ({"key_id": "cam/east"}, "--key-id 'cam/east' is not a key id"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        build(tmp_path, **options)
