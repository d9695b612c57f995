"""Several --store at once: each destination has its own queue, retries and retention, gets every
segment (its own link to the bytes), and one that is down delays no other."""

from __future__ import annotations

import hashlib
import os
import resource
import time
from types import SimpleNamespace
from pathlib import Path

import pytest

from protocol import Ack, IndexMessage, Reject, encode_message
from tests.reliability.test_faults_live import fill, tmpfs
from tests.support.daemon import DaemonError, UploaderDaemon, place_segment
from tests.support.file_servers import FtpServer, SftpServer
from tests.support.rfc8216 import History
from tests.support.scrape import check, endpoint_of, scrape
from tests.support.viewer import wait_for
from tests.uploader.conftest import stop_all
from uploader.daemon import destination_spool_dir
from uploader.files import AllowedDirs
from uploader.intake import Intake
from uploader.payloads import PayloadError, PayloadStore

from .test_cli import run_cli

BUCKET = "site"
STREAM = Path(BUCKET) / "live" / "one"


def message(directory: Path, last: int, *, end: bool = False, **fields: object) -> IndexMessage:
    return IndexMessage(
        index="index.m3u8", output_directory=str(directory), segment_duration=1, output_prefix="seg",
        http_prefix="", first_segment=1, last_segment=last, end=end, bucket=BUCKET, key_prefix="live/one",
        duration=1.0, **fields,  # type: ignore[arg-type]
    )


class Watched:
    """One destination's root directory, its playlist's versions read as they change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.history = History()
        self._last = ""

    def lists(self, number: int) -> bool:
        """Whether the playlist there names segment ``number``; each new version is checked, and
        every segment it names must be there already."""
        try:
            text = (self.root / STREAM / "index.m3u8").read_text()
        except FileNotFoundError:
            return False
        if text != self._last:
            self._last = text
            self.history.add(text)
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    assert (self.root / STREAM / line).is_file(), f"{line} listed before it is at {self.root}"
        return f"seg-{number:05d}.ts" in text

    def segments(self) -> list[str]:
        return sorted(path.name for path in (self.root / STREAM).glob("seg-*.ts"))


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    made = (tmp_path / "files", tmp_path / "ftp", tmp_path / "segments")
    for path in made:
        path.mkdir()
    return made


def payload_files(spool_dir: Path) -> list[str]:
    directory = spool_dir / "payloads"
    return sorted(path.name for path in directory.iterdir()) if directory.is_dir() else []


def test_every_destination_gets_every_segment_and_the_files_go_once_all_have_them(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    files, ftp_root, segments = roots
    with FtpServer(ftp_root) as ftp:
        daemon = UploaderDaemon(tmp_path / "uploadd", [
            "--allow-dir", str(segments), "--allow-unsigned-inline", "--window", "3",
            "--store", f"file://{files}", "--store", ftp.url, "--metrics-listen", "127.0.0.1:0"])
        try:
            daemon.start()
            assert f"store file://{files}; store ftp://hls@127.0.0.1:{ftp.port}/;" in daemon.startup_line
            watched = [Watched(files), Watched(ftp_root)]
            data = segment_source.read_bytes()
            with daemon.connect() as client:
                for number in range(1, 7):
                    if number % 2:  # a segment file under --allow-dir
                        place_segment(segment_source, segments, "seg", number)
                        assert client.send(message(segments, number, end=number == 6)) == Ack(number)
                    else:  # an inline payload
                        client.send_only(encode_message(message(Path("/nowhere"), number, end=number == 6,
                                                                size=len(data),
                                                                payload_sha256=hashlib.sha256(data).hexdigest()),
                                                        newline=True) + data)
                        assert client.reply() == Ack(number)
                    for one in watched:
                        wait_for(lambda: one.lists(number), timeout=30, message=f"segment {number} at {one.root}")
            for one in watched:
                assert one.history.problems == []
                assert one.history.last is not None and one.history.last.endlist
                assert one.history.last.media_sequence == 4
            # Each file went once every destination had it; each destination's own links went too.
            replica_spool = destination_spool_dir(daemon.spool_dir, f"ftp://hls@127.0.0.1:{ftp.port}/")
            wait_for(lambda: not list(segments.iterdir()), timeout=10, message="the segment files removed")
            wait_for(lambda: payload_files(daemon.spool_dir) == payload_files(replica_spool) == [], timeout=10,
                     message="the payloads removed")
            metrics = scrape(endpoint_of(daemon.log()))
            for destination in (f"file://{files}", f"ftp://hls@127.0.0.1:{ftp.port}/"):
                labels = {"destination": destination, "bucket": BUCKET, "key_prefix": "live/one",
                          "index": "index.m3u8"}
                assert metrics.value("hls_uploadd_segments_published_total", **labels) == 6
                assert metrics.value("hls_uploadd_stream_media_sequence", **labels) == 6
        finally:
            stop_all([daemon])


def test_a_destination_down_delays_no_other_and_catches_up(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    files, sftp_root, segments = roots
    with SftpServer(sftp_root) as sftp:
        url = f"{sftp.url}?key={sftp.client_key}&known_hosts={sftp.known_hosts}"
        daemon = UploaderDaemon(tmp_path / "uploadd", [
            "--allow-dir", str(segments), "--window", "3", "--store", f"file://{files}", "--store", url,
            "--metrics-listen", "127.0.0.1:0", "--not-ready-after", "2"])
        try:
            daemon.start()
            up, down = Watched(files), Watched(sftp_root)
            with daemon.connect() as client:
                place_segment(segment_source, segments, "seg", 1)
                assert client.send(message(segments, 1)) == Ack(1)
                wait_for(lambda: up.lists(1) and down.lists(1), timeout=30, message="segment 1 at both")
                sftp.stop()
                for number in range(2, 7):
                    place_segment(segment_source, segments, "seg", number)
                    assert client.send(message(segments, number, end=number == 6)) == Ack(number)
                    wait_for(lambda: up.lists(number), timeout=15, message=f"segment {number} at the one up")
                base = endpoint_of(daemon.log())
                reason = wait_for(lambda: check(base, "/readyz")[0] == 503 and check(base, "/readyz")[1],
                                  timeout=30, message="not ready while a destination is down")
                assert reason.startswith(f"destination sftp://hls@127.0.0.1:{sftp.port}/"), reason
                assert down.segments() == ["seg-00001.ts"]
                assert f"[sftp://hls@127.0.0.1:{sftp.port}/" in daemon.log()  # its retries name it
                sftp.restart()
                wait_for(lambda: down.lists(6), timeout=60, message="the one that was down caught up")
            for one in (up, down):
                assert one.history.problems == []
                assert one.history.last is not None and one.history.last.endlist
            assert up.segments()[-3:] == down.segments()[-3:] == [f"seg-{n:05d}.ts" for n in (4, 5, 6)]
            wait_for(lambda: check(base, "/readyz") == (200, "ok"), timeout=30, message="ready again")
        finally:
            stop_all([daemon])


def test_a_destination_that_refuses_holds_only_its_own_streams(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # The second destination's user may not write there (a plain file where the bucket's
    # directory goes: the FTP server answers 550): it is held with the fix; the first goes on.
    files, ftp_root, segments = roots
    (ftp_root / BUCKET).write_bytes(b"")
    with FtpServer(ftp_root) as ftp:
        daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--store", f"file://{files}",
                                                       "--store", ftp.url])
        try:
            daemon.start()
            up = Watched(files)
            with daemon.connect() as client:
                for number in range(1, 4):
                    place_segment(segment_source, segments, "seg", number)
                    assert client.send(message(segments, number)) == Ack(number)
                    wait_for(lambda: up.lists(number), timeout=15, message=f"segment {number} at the first")
            wait_for(lambda: "held: upload of" in daemon.log(), timeout=15, message="the second held")
            held = next(line for line in daemon.log().splitlines() if "held: upload of" in line)
            assert held.split("] ")[0].endswith(f"[ftp://hls@127.0.0.1:{ftp.port}/")
            assert "fix: let FTP user hls write and rename under" in held
            (ftp_root / BUCKET).unlink()  # the operator corrects it
            wait_for(lambda: Watched(ftp_root).lists(3), timeout=30, message="published once corrected")
        finally:
            stop_all([daemon])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "s3", "--store", "s3"], "--store s3 is given twice"),
        (["--store", "file:///a", "--store", "file:///a/"], "--store file:///a is given twice"),
        (["--store", "file:///x//a", "--store", "file:///x/a"], "--store file:///x/a is given twice"),
        (["--store", "sftp://u@h/d?key=/k1", "--store", "sftp://u@h/d?key=/k2"], "--store sftp://u@h:22/d is given twice"),
        (["--store", "s3", "--store", "file:///a", "--url-mode", "presigned"],
         "--url-mode presigned signs the URLs of one origin: give one --store"),
    ],
)
def test_several_stores_refused_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("--any-bucket", "--spool-dir", str(tmp_path / "spool"), *args)
    assert result.returncode == 2
    assert result.stderr == f"hls-uploadd: configuration error: {message}\n"
    assert not (tmp_path / "spool").exists()


def test_a_segment_another_destination_cannot_keep_is_answered_try_again_and_nothing_is_lost(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # The second destination's spool is on another, full file system: the segment can be neither
    # linked (another device) nor copied there, so the message is answered "try again" and queued
    # nowhere, its file kept; once space is freed the re-send is taken by both, each publishes it
    # once, and the file goes.
    files, ftp_root, segments = roots
    with FtpServer(ftp_root) as ftp:
        spool = tmp_path / "uploadd" / "spool"
        mounted = tmpfs(spool / "destinations", "size=4m")
        next(mounted)
        try:
            daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--store",
                                                           f"file://{files}", "--store", ftp.url])
            daemon.start()
            first, second = Watched(files), Watched(ftp_root)
            with daemon.connect() as client:
                place_segment(segment_source, segments, "seg", 1)
                assert client.send(message(segments, 1)) == Ack(1)
                wait_for(lambda: first.lists(1) and second.lists(1), timeout=30, message="segment 1 at both")
                filler = fill(spool / "destinations")
                place_segment(segment_source, segments, "seg", 2)
                reply = client.send(message(segments, 2))
                assert isinstance(reply, Reject) and reply.is_transient, reply
                assert "cannot keep the segment for every destination" in reply.reason
                assert (segments / "seg-00002.ts").is_file()
                filler.unlink()
                assert client.send(message(segments, 2, end=True)) == Ack(2)
                wait_for(lambda: first.lists(2) and second.lists(2), timeout=30, message="segment 2 at both")
                assert not (segments / "seg-00002.ts").exists()
            for one in (first, second):
                assert one.history.problems == [] and one.history.last is not None and one.history.last.endlist
                assert one.segments() == ["seg-00001.ts", "seg-00002.ts"]
            stop_all([daemon])
        finally:
            mounted.close()


def test_each_destination_keeps_its_spool_whatever_the_order_of_the_store_options(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # The second destination is held (a plain file where its bucket's directory goes) while the
    # first publishes; the daemon is restarted with the two --store options the other way round
    # and the second corrected: each goes on from its own spool, nothing lost, nothing numbered
    # again. A spool whose destination no --store gives any more stops the start.
    first_root, second_root, segments = roots
    (second_root / BUCKET).write_bytes(b"")
    first, second = f"file://{first_root}", f"file://{second_root}"
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--window", "3",
                                                   "--store", first, "--store", second])
    try:
        daemon.start()
        up, held = Watched(first_root), Watched(second_root)
        with daemon.connect() as client:
            for number in range(1, 5):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number)) == Ack(number)
            wait_for(lambda: up.lists(4), timeout=30, message="segment 4 at the first")
        daemon.stop()
        (second_root / BUCKET).unlink()
        daemon.args = ["--allow-dir", str(segments), "--window", "3", "--store", second, "--store", first]
        daemon.start()
        assert daemon.startup_line.index(f"store {first}") < daemon.startup_line.index(f"store {second}")
        with daemon.connect() as client:
            for number in range(5, 7):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number, end=number == 6)) == Ack(number)
        for one in (up, held):
            wait_for(lambda: one.lists(6), timeout=30, message=f"segment 6 at {one.root}")
            assert one.history.problems == []
            assert one.history.last is not None and one.history.last.endlist and one.history.last.media_sequence == 4
        assert held.segments() == [f"seg-{n:05d}.ts" for n in range(1, 7)]
        assert "no --store names now" not in daemon.log()
        daemon.stop()
        daemon.args = ["--allow-dir", str(segments), "--store", second]
        with pytest.raises(DaemonError, match=f"(?s)exited with 2 .*holds the queue and streams of --store {first},"
                                              " which no --store"):
            daemon.start()
    finally:
        stop_all([daemon])


def test_a_stream_is_forgotten_only_once_every_destination_is_done_with_it(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # The first destination publishes an ended stream and could forget it; the second, held,
    # still has it queued. A new run under the same name is refused by all until the second is
    # done, then taken afresh by all: no destination takes a segment the other refuses.
    first_root, second_root, segments = roots
    (second_root / BUCKET).write_bytes(b"")
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--forget-ended-after", "1",
                                                   "--store", f"file://{first_root}", "--store", f"file://{second_root}"])
    try:
        daemon.start()
        up = Watched(first_root)
        with daemon.connect() as client:
            for number in range(1, 3):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number, end=number == 2)) == Ack(number)
            wait_for(lambda: up.lists(2), timeout=30, message="the first run at the first")
            time.sleep(3)  # three times --forget-ended-after: the first alone would have forgotten it
            place_segment(segment_source, segments, "seg", 3)
            refused = client.send(message(segments, 3))
            assert isinstance(refused, Reject) and "has ended" in refused.reason, refused
            (second_root / BUCKET).unlink()  # corrected: the second publishes its backlog
            wait_for(lambda: Watched(second_root).lists(2), timeout=30, message="the first run at the second")
            wait_for(lambda: "ended and quiet" in daemon.log(), timeout=30, message="forgotten by all")
            for number in range(3, 6):
                place_segment(segment_source, segments, "seg", number)
                assert client.send(message(segments, number)) == Ack(number)
        # The new run continues the numbering; its playlist goes out once it lasts three target
        # durations (RFC 8216 6.2.2), as after any removal from the front.
        for root in (first_root, second_root):
            text = wait_for(lambda: (text := (root / STREAM / "index.m3u8").read_text()).endswith("seg-00005.ts\n")
                            and text, timeout=30, message=f"the new run at {root}")
            assert "#EXT-X-ENDLIST" not in text and "#EXT-X-MEDIA-SEQUENCE:1\n" not in text, text
    finally:
        stop_all([daemon])


def test_a_segment_file_that_cannot_be_opened_for_now_is_not_taken_for_gone(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # Out of file descriptors (this process's RLIMIT_NOFILE lowered to what it has open) is no
    # reason to take a segment for gone (every destination would fail it): PayloadError, which
    # the intake answers "try again". A file that is gone is None: each destination fails it.
    _, _, segments = roots
    payloads = PayloadStore(tmp_path / "spool", max_inflight_bytes=1 << 20)
    payloads.directory.mkdir(parents=True)
    place_segment(segment_source, segments, "seg", 1)
    reader = SimpleNamespace(_payloads=payloads, _allowed=AllowedDirs((segments.resolve(),)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The limit bounds descriptor numbers: at the lowest one free (the one an open gets), no file
    # can be opened.
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with pytest.raises(PayloadError, match="cannot read the segment to keep it for every destination"):
            Intake._adopt(reader, [payloads], message(segments, 1), None)  # type: ignore[arg-type]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    [name] = Intake._adopt(reader, [payloads], message(segments, 1), None)  # type: ignore[arg-type]
    assert name is not None and payloads.path(name).read_bytes() == segment_source.read_bytes()
    assert Intake._adopt(reader, [payloads], message(segments, 2), None) == [None]  # type: ignore[arg-type]


def test_a_destination_whose_spool_cannot_commit_leaves_no_link_behind(
    tmp_path: Path, roots: tuple[Path, Path, Path], segment_source: Path
) -> None:
    # The second destination's spool is full while its payload directory (another file system)
    # has room: its link is made, its commit fails, the message is answered "try again" and the
    # link goes; once the spool has room the re-send is taken.
    files, other, segments = roots
    spool = tmp_path / "uploadd" / "spool"
    second = destination_spool_dir(spool, f"file://{other}")
    spool_mount = tmpfs(second, "size=4m")
    next(spool_mount)
    payload_mount = tmpfs(second / "payloads", "size=8m")
    next(payload_mount)
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--store", f"file://{files}",
                                                   "--store", f"file://{other}"])
    try:
        daemon.start()
        with daemon.connect() as client:
            place_segment(segment_source, segments, "seg", 1)
            assert client.send(message(segments, 1)) == Ack(1)
            wait_for(lambda: Watched(other).lists(1), timeout=30, message="segment 1 at the second")
            filler = fill(second)
            place_segment(segment_source, segments, "seg", 2)
            reply = client.send(message(segments, 2))
            assert isinstance(reply, Reject) and reply.is_transient, reply
            assert f"cannot queue the message for destination file://{other}" in reply.reason
            assert payload_files(second) == []
            filler.unlink()
            assert client.send(message(segments, 2, end=True)) == Ack(2)
        for root in (files, other):
            wait_for(lambda: Watched(root).lists(2), timeout=30, message=f"segment 2 at {root}")
        wait_for(lambda: payload_files(second) == [], timeout=10, message="its links gone once published")
        assert daemon.running
    finally:
        stop_all([daemon])
        payload_mount.close()
        spool_mount.close()
