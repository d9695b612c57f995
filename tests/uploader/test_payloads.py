"""Inline segment payloads (size=N): bytes on the wire, stored whole or not at all."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack, Reject, encode_message
from tests.support.daemon import place_segment
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for
from uploader.payloads import PayloadError, PayloadsBusy, PayloadStore

from .conftest import StartUploader
from .test_auth import SECRET
from .test_daemon import ext_message, fetch_playlist_or_none


def keys(s3: BaseClient, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def payload_files(spool_dir: Path) -> list[str]:
    return sorted(os.listdir(spool_dir / "payloads"))


def assert_published_as_on_disk(seaweed: SeaweedServer, bucket: str, key_prefix: str, out_dir: Path, count: int) -> None:
    """The stream at ``key_prefix`` (INDEX_NAME index.m3u8) ended listing exactly the ``count``
    segment files (OUTPUT_PREFIX cam) of ``out_dir``, each published with the same bytes."""
    url = seaweed.object_url(bucket, f"{key_prefix}/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    files = sorted(out_dir.glob("cam-*.ts"))
    assert [s.uri for s in final.segments] == [f.name for f in files] and len(files) == count
    for file in files:
        assert http_get(seaweed.object_url(bucket, f"{key_prefix}/{file.name}")).body == file.read_bytes()


def test_segments_travel_on_the_wire_to_a_daemon_that_cannot_read_the_segmenters_directory(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "daemon-may-read-only-this"
    elsewhere.mkdir()
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    daemon = start_uploader("--allow-dir", str(elsewhere), "--secret-file", str(secret_file))
    out_dir = tmp_path / "segmenter-out"
    source = media.ts(seconds=6.0, gop_seconds=1.0)
    with open(source, "rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "segmenter", "-", "2", str(out_dir), "cam", "index.m3u8", "", bucket, "live/remote",
             "--uploader", f"127.0.0.1:{daemon.port}", "--send-segments", "--secret-file", str(secret_file),
             "--keep-segments"],
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr
    assert_published_as_on_disk(seaweed, bucket, "live/remote", out_dir, 3)
    log = daemon.log()
    assert log.count("-byte payload") == 3 and "not allowed" not in log
    wait_for(lambda: payload_files(daemon.spool_dir) == [], message="payload files removed once published", timeout=30)


def test_a_payload_cut_off_mid_way_leaves_nothing_behind(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segment_source: Path,
    tmp_path: Path,
) -> None:
    daemon = start_uploader("--allow-unsigned-inline")  # no --allow-dir at all: only inline payloads can be published
    data = segment_source.read_bytes()
    message = ext_message(Path("/nowhere"), bucket, 1, end=True, size=len(data),
                          payload_sha256=hashlib.sha256(data).hexdigest())
    with socket.create_connection(daemon.address, timeout=10) as sock:
        sock.sendall(encode_message(message, newline=True) + data[: len(data) // 2])
        wait_for(lambda: len(payload_files(daemon.spool_dir)) == 1, message="the payload being written", timeout=30)
    wait_for(lambda: "payload cut off, nothing kept" in daemon.log(), message="the cut-off payload noticed", timeout=30)
    assert payload_files(daemon.spool_dir) == []  # not even a temp file
    assert keys(s3, bucket) == []

    with daemon.connect() as client:  # the same message, whole this time
        client.send_only(encode_message(message, newline=True) + data)
        assert client.reply() == Ack(1)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist, timeout=30)
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00001.ts")).body == data


def test_oversized_and_corrupted_payloads_are_refused_while_a_stream_goes_on(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    daemon = start_uploader("--allow-unsigned-inline", "--allow-dir", str(segments_dir), "--max-payload-size", "1000")
    place_segment(segment_source, segments_dir, "seg", 1)
    place_segment(segment_source, segments_dir, "seg", 2)
    other = {"key_prefix": "live/other"}
    with daemon.connect() as legit:
        assert legit.send(ext_message(segments_dir, bucket, 1)) == Ack(1)
        with daemon.connect() as client:
            client.send_only(ext_message(segments_dir, bucket, 1, size=5000, **other))
            assert client.reply() == Reject("payload of 5000 bytes is over the limit of 1000")
            assert client.sock.recv(100) == b""  # framing lost: the daemon closed the connection
        with daemon.connect() as client:
            message = ext_message(segments_dir, bucket, 1, size=10, payload_sha256="00" * 32, **other)
            client.send_only(encode_message(message, newline=True) + b"0123456789")
            assert client.reply() == Reject("payload does not match its sha256")
            message = ext_message(segments_dir, bucket, 0, size=3, **other)
            client.send_only(encode_message(message, newline=True) + b"abc")
            assert client.reply() == Reject("an inline payload needs a segment (LAST_SEGMENT > 0, size > 0)")
        assert legit.send(ext_message(segments_dir, bucket, 2, end=True)) == Ack(2)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert len(final.segments) == 2
    assert not any(key.startswith("live/other/") for key in keys(s3, bucket))
    assert payload_files(daemon.spool_dir) == []


def test_an_acknowledged_payload_survives_kill_9(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segment_source: Path, free_port: int,
) -> None:
    """OK means on disk: with S3 unreachable, kill -9, restart with S3 back: it is published."""
    daemon = start_uploader("--allow-unsigned-inline", "--endpoint-url", f"http://127.0.0.1:{free_port}")  # nothing listens there
    data = segment_source.read_bytes()
    message = ext_message(Path("/nowhere"), bucket, 1, end=True, size=len(data),
                          payload_sha256=hashlib.sha256(data).hexdigest())
    with daemon.connect() as client:
        client.send_only(encode_message(message, newline=True) + data)
        assert client.reply() == Ack(1)
    daemon.kill()
    assert len(payload_files(daemon.spool_dir)) == 1
    daemon.args = [arg for arg in daemon.args if arg not in ("--endpoint-url", f"http://127.0.0.1:{free_port}")]
    daemon.start()
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist, timeout=30)
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00001.ts")).body == data
    wait_for(lambda: payload_files(daemon.spool_dir) == [], timeout=30, message="the payload removed once published")


def test_leftovers_of_a_crash_are_swept_at_start(start_uploader: StartUploader, tmp_path: Path) -> None:
    payloads = tmp_path / "uploadd" / "spool" / "payloads"
    payloads.mkdir(parents=True)
    (payloads / "0123.ts.part").write_bytes(b"half")  # died mid-payload
    (payloads / "4567.ts").write_bytes(b"whole")  # died between rename and queueing
    daemon = start_uploader("--allow-unsigned-inline")
    assert payload_files(daemon.spool_dir) == []
    assert daemon.log().count("left by an earlier run") == 2


def test_the_payload_budget_is_given_back_exactly_once_whichever_way_a_payload_ends(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, max_inflight_bytes=100)
    store.open()
    committed, discarded = store.receive(40), store.receive(60)
    assert store.budget.used == 100
    with pytest.raises(PayloadsBusy, match=r"100 bytes .* 1 more would pass the daemon's limit of 100"):
        store.receive(1)
    committed.write(b"x" * 40)
    committed.commit()
    committed.discard()  # after a commit: nothing more to give back
    assert store.budget.used == 60
    discarded.discard()
    discarded.discard()
    assert store.budget.used == 0
    (store.directory / "gone").mkdir()
    store.directory = store.directory / "gone" / "missing"  # creating the file fails
    with pytest.raises(PayloadError):
        store.receive(100)
    assert store.budget.used == 0


def test_payloads_in_flight_are_capped_across_connections(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    """Budget of two payloads: two held mid-way on two connections, a third is put off ("try
    again") and its connection goes on; a finished or cut-off payload gives its share back."""
    data = segment_source.read_bytes()
    size = len(data)
    daemon = start_uploader("--allow-unsigned-inline", "--allow-dir", str(segments_dir), "--max-payload-size", str(size),
                            "--max-payload-inflight", str(2 * size))
    digest = hashlib.sha256(data).hexdigest()

    def payload_message(stream: str, number: int = 1) -> bytes:
        message = ext_message(Path("/nowhere"), bucket, number, key_prefix=f"live/{stream}", size=size,
                              payload_sha256=digest)
        return encode_message(message, newline=True)

    def being_received(count: int) -> None:
        wait_for(lambda: sum(name.endswith(".part") for name in payload_files(daemon.spool_dir)) == count,
                 message=f"{count} payload(s) being received", timeout=30)

    with daemon.connect() as first, daemon.connect() as second, daemon.connect() as third:
        first.send_only(payload_message("first") + data[: size // 2])
        second.send_only(payload_message("second") + data[: size // 2])
        being_received(2)

        third.send_only(payload_message("third") + data)
        refused = third.reply()
        assert isinstance(refused, Reject) and refused.is_transient, refused
        assert f"{2 * size} bytes of payloads are being received and {size} more" in refused.reason
        place_segment(segment_source, segments_dir, "seg", 1)
        assert third.send(ext_message(segments_dir, bucket, 1, key_prefix="live/third-file")) == Ack(1)
        log = daemon.log()
        assert log.count("payload put off") == 1
        assert f"WARNING uploader.intake: peer 127.0.0.1:{third.sock.getsockname()[1]} stream {bucket}/live/third/index.m3u8 segment seg-00001.ts: payload put off" in log

        first.send_only(data[size // 2 :])
        assert first.reply() == Ack(1)
        assert third.send(payload_message("third") + data) == Ack(1)  # the first one's share was given back

        second.sock.close()  # cut off mid-payload
        wait_for(lambda: "payload cut off, nothing kept" in daemon.log(), message="the cut-off payload noticed",
                 timeout=30)
        being_received(0)

    # Every share is back: two new payloads fit again, and a third does not.
    with daemon.connect() as fourth, daemon.connect() as fifth, daemon.connect() as sixth:
        fourth.send_only(payload_message("fourth") + data[:10])
        fifth.send_only(payload_message("fifth") + data[:10])
        being_received(2)
        refused = sixth.send(payload_message("sixth") + data)
        assert isinstance(refused, Reject) and refused.is_transient, refused
        fourth.send_only(data[10:])
        fifth.send_only(data[10:])
        assert (fourth.reply(), fifth.reply()) == (Ack(1), Ack(1))
    url = seaweed.object_url(bucket, "live/third/index.m3u8")
    wait_for(lambda: fetch_playlist_or_none(url) is not None, message="the put-off stream published", timeout=30)
    assert http_get(seaweed.object_url(bucket, "live/third/seg-00001.ts")).body == data


def test_a_trickled_payload_is_cut_off_and_its_share_given_back(
    start_uploader: StartUploader, bucket: str, segment_source: Path,
) -> None:
    """A peer sending a few bytes now and then is never idle, but its payload must come in at
    64 KiB/s after a grace of min(30 s, --idle-timeout): past that it is cut off."""
    data = segment_source.read_bytes()
    size = len(data)
    daemon = start_uploader("--allow-unsigned-inline", "--idle-timeout", "2", "--max-payload-inflight", str(size), "--max-payload-size", str(size))
    allowed_s = 2 + size / (64 * 1024)
    message = ext_message(Path("/nowhere"), bucket, 1, size=size, payload_sha256=hashlib.sha256(data).hexdigest())
    with daemon.connect() as slow:
        slow.send_only(encode_message(message, newline=True))
        sent = 0
        began = time.monotonic()
        with pytest.raises(OSError):
            while time.monotonic() - began < allowed_s + 15:
                slow.send_only(data[sent : sent + 100])  # 200 bytes/s: never idle, far too slow
                sent += 100
                time.sleep(0.5)
            pytest.fail("the connection stayed open")
        closed_after = time.monotonic() - began
    assert allowed_s - 0.5 <= closed_after <= allowed_s + 10, (closed_after, allowed_s)
    assert re.search(rf"segment seg-00001.ts: payload cut off, nothing kept: too slow: \d+ of {size} bytes in \d+ s",
                     daemon.log()), daemon.log()[-2000:]
    assert payload_files(daemon.spool_dir) == []
    with daemon.connect() as client:  # the whole budget is free again
        assert client.send(encode_message(message, newline=True) + data) == Ack(1)
