"""``--log-format json`` (issue 16): every line either program writes to stderr is one JSON
object with time, level, logger and message, and the stream, segment and error kind where the line
is about one; the program's last words too."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.media import MediaCache
from tests.support.s3_errors import S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from tests.uploader.test_correctable import s3_error
from tests.uploader.test_daemon import ext_message
from tests.uploader.test_faults import assert_published, send_all


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as JSON, each checked for the fields every line has."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert datetime.fromisoformat(str(line["time"])).utcoffset() is not None, line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
    return lines


def daemon_log(daemon: UploaderDaemon) -> list[dict[str, object]]:
    return json_lines("\n".join(line for line in daemon.log().splitlines() if not line.startswith("=== ")))


def test_the_daemon_writes_json_lines_with_the_stream_segment_and_error_kind(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str, media: MediaCache,
) -> None:
    segments = tmp_path / "segments"
    source = media.ts(seconds=1.0)
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--bucket", bucket,
                                                       "--endpoint-url", proxy.url, "--log-format", "json"])
        segments.mkdir()
        daemon.start()
        try:
            proxy.fail_next(2, s3_error(403, "AccessDenied"), path_ends="seg-00002.ts")
            for number in (1, 2):
                place_segment(source, segments, "seg", number)
            send_all(daemon, segments, bucket, range(1, 3), end_at=2)
            with daemon.connect() as client:
                client.send(ext_message(segments, "elsewhere-" + bucket, 1))
            assert_published(seaweed, bucket, 2)

            def logged() -> list[dict[str, object]] | None:
                # The published line comes once the spool has recorded it, after the playlist is out.
                found = daemon_log(daemon)
                refused = any("refused" in str(line["message"]) and line.get("error_kind") == "scope" for line in found)
                done = any(" published" in str(line["message"]) and line.get("segment") == "seg-00002.ts"
                           for line in found)
                return found if refused and done else None

            lines = wait_for(logged, message="the refusal's line and seg-00002.ts's published line")
        finally:
            daemon.kill()
    stream = f"{bucket}/live/one/index.m3u8"
    published = [line for line in lines if " published" in str(line["message"])]
    assert [line["segment"] for line in published] == ["seg-00001.ts", "seg-00002.ts"]
    assert all(line["stream"] == stream and line["logger"] == "uploader.publisher" for line in published)
    held = [line for line in lines if " held: upload of " in str(line["message"])]
    assert held and held[0]["level"] == "ERROR" and held[0]["error_kind"] == "correctable"
    assert held[0]["stream"] == stream and held[0]["segment"] == "seg-00002.ts"
    refused = next(line for line in lines if line.get("error_kind") == "scope")
    assert refused["stream"] == f"elsewhere-{bucket}/live/one/index.m3u8" and refused["level"] == "WARNING"
    # A line about no stream has no stream field (not null).
    assert any("stream" not in line for line in lines)


def test_the_segmenter_writes_json_lines_naming_its_stream_and_each_segment(
    tmp_path: Path, bucket: str, media: MediaCache,
) -> None:
    out = tmp_path / "out"
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path), "--bucket", bucket]).start()
    try:
        done = subprocess.run([sys.executable, "-m", "segmenter", str(media.ts(seconds=6.0)), "2", str(out), "seg",
                               "index.m3u8", "", bucket, "show", "--uploader", f"127.0.0.1:{daemon.port}",
                               "--log-format", "json"], capture_output=True, text=True, timeout=120)
    finally:
        daemon.kill()
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert all(line["stream"] == f"{bucket}/show/index.m3u8" for line in lines)
    cut = [line["segment"] for line in lines if line["logger"] == "segmenter.progress"]
    assert cut == ["seg-00001.ts", "seg-00002.ts", "seg-00003.ts"]


def test_the_segmenter_s_last_words_are_json_too(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "segmenter", str(tmp_path / "missing.ts"), "2", str(tmp_path / "o"),
                           "seg", "index.m3u8", "", "some-bucket", "show", "--log-format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    last = json_lines(done.stderr)[-1]  # after the warnings that no daemon answers
    assert last["level"] == "ERROR" and str(last["message"]).endswith("missing.ts: No such file or directory")


@pytest.mark.parametrize("program", ["uploader", "segmenter"])
def test_a_log_format_that_is_neither_is_a_configuration_error(program: str, tmp_path: Path) -> None:
    args = (["--bucket", "some-bucket", "--spool-dir", str(tmp_path)] if program == "uploader" else
            ["-", "2", str(tmp_path), "seg", "index.m3u8", "", "some-bucket", "show"])
    done = subprocess.run([sys.executable, "-m", program, *args, "--log-format", "xml"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("--log-format 'xml' is not text or json")
