"""hls-uploadd publishing to FTP, FTPS, SFTP and WebDAV servers on loopback: every playlist version
conformant and naming only segments already there, old segments deleted, an outage waited out,
and ffmpeg playing what a WebDAV server serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trustme

from protocol import Ack, IndexMessage
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.file_servers import DavServer, FileServer, FtpServer, new_file_server, store_url
from tests.support.rfc8216 import History
from tests.support.viewer import wait_for
from tests.uploader.conftest import stop_all

KINDS = ["ftp", "ftps", "sftp", "http", "https"]
BUCKET = "site"
PLAYLIST = Path(BUCKET) / "live" / "one" / "index.m3u8"


def message(directory: Path, last: int, *, end: bool = False) -> IndexMessage:
    return IndexMessage(
        index="index.m3u8", output_directory=str(directory), segment_duration=1, output_prefix="seg",
        http_prefix="", first_segment=1, last_segment=last, end=end, bucket=BUCKET, key_prefix="live/one",
        duration=1.0,
    )


def start_server(kind: str, root: Path, ca: trustme.CA) -> FileServer:
    server = new_file_server(kind, root, ca)
    server.start()
    return server


def daemon_for(server: FileServer, tmp_path: Path, ca: trustme.CA, segments: Path, *args: str) -> UploaderDaemon:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--store", store_url(server),
                                                 "--window", "3", *args],
                          env={**os.environ, "SSL_CERT_FILE": str(pem)})


def published(root: Path, history: History, last: int) -> str | None:
    """The playlist on the server once it lists segment ``last``, added to ``history``; every
    segment it names must already be there (a playlist reaches a destination only after them)."""
    path = root / PLAYLIST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if f"seg-{last:05d}.ts" not in text:
        return None
    history.add(text)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert (path.parent / line).is_file(), f"{line} is listed before it is on the server"
    return text


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_is_published_to_each_destination_and_old_segments_deleted(
    kind: str, tmp_path: Path, ca: trustme.CA, segment_source: Path
) -> None:
    root, segments = tmp_path / "root", tmp_path / "segments"
    root.mkdir()
    segments.mkdir()
    server = start_server(kind, root, ca)
    daemon = daemon_for(server, tmp_path, ca, segments, "--cdn-allowance", "0", "--bucket", BUCKET)
    try:
        daemon.start()
        assert f"store {kind}://" in daemon.startup_line
        assert not isinstance(server, (FtpServer, DavServer)) or server.password not in daemon.startup_line
        history = History()
        count = 7
        with daemon.connect() as client:
            for number in range(1, count + 1):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number, end=number == count)) == Ack(number)
                wait_for(lambda: published(root, history, number), timeout=30, message=f"segment {number} listed")
        assert history.problems == []
        final = history.last
        assert final is not None and final.endlist and final.media_sequence == count - 2
        # Segments that left the window are deleted once RFC 8216 6.2.2's time has passed.
        wait_for(lambda: not (root / BUCKET / "live/one/seg-00001.ts").exists(), timeout=30,
                 message="segment 1 deleted")
        names = sorted(path.name for path in (root / BUCKET / "live/one").iterdir())
        assert ".index.m3u8.part" not in names and not any(name.endswith(".part") for name in names)
        assert f"bucket {BUCKET} can be written" in daemon.log()
        # FTP alone has no create-only write: the start-up check says so.
        assert (f"bucket {BUCKET}: the store does not refuse a create-only write" in daemon.log()) is kind.startswith("ftp")
    finally:
        stop_all([daemon])
        server.stop()


@pytest.mark.parametrize("kind", ["ftp", "sftp", "http"])
def test_a_destination_down_for_a_while_is_caught_up_with_nothing_lost(
    kind: str, tmp_path: Path, ca: trustme.CA, segment_source: Path
) -> None:
    root, segments = tmp_path / "root", tmp_path / "segments"
    root.mkdir()
    segments.mkdir()
    server = start_server(kind, root, ca)
    daemon = daemon_for(server, tmp_path, ca, segments, "--keep-segment-objects")
    try:
        daemon.start()
        history = History()
        with daemon.connect() as client:
            place_segment(segment_source, segments, "seg", 1)
            assert client.send(message(segments, 1)) == Ack(1)
            wait_for(lambda: published(root, history, 1), timeout=30, message="segment 1 listed")
            server.stop()
            for number in range(2, 6):  # acknowledged while the destination is down
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number, end=number == 5)) == Ack(number)
            wait_for(lambda: "failed (attempt 1), retrying" in daemon.log(), timeout=30,
                     message="a retry logged")
            server.restart()
            wait_for(lambda: published(root, history, 5), timeout=60, message="caught up")
        assert history.problems == []
        assert history.last is not None and history.last.endlist
        assert sorted(p.name for p in (root / BUCKET / "live/one").glob("seg-*.ts")) == [
            f"seg-{n:05d}.ts" for n in range(1, 6)]
    finally:
        stop_all([daemon])
        server.stop()


def test_ffmpeg_plays_what_a_webdav_destination_serves(tmp_path: Path, ca: trustme.CA, segment_source: Path) -> None:
    root, segments = tmp_path / "root", tmp_path / "segments"
    root.mkdir()
    segments.mkdir()
    server = start_server("http", root, ca)
    daemon = daemon_for(server, tmp_path, ca, segments)
    try:
        daemon.start()
        history = History()
        with daemon.connect() as client:
            for number in range(1, 4):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number, end=number == 3)) == Ack(number)
                wait_for(lambda: published(root, history, number), timeout=30, message=f"segment {number} listed")
        # The same server the daemon PUT to serves GETs (Basic auth, as the daemon's PUTs).
        played = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", f"{server.url}{PLAYLIST}",
                                 "-map", "0", "-c", "copy", "-f", "mpegts", "-y", str(tmp_path / "played.ts")],
                                capture_output=True, text=True, timeout=120)
        assert played.returncode == 0, played.stderr
        assert (tmp_path / "played.ts").stat().st_size > 2 * segment_source.stat().st_size
    finally:
        stop_all([daemon])
        server.stop()
