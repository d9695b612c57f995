"""Issue 15 point 1 as a hostile local user tries it: uid 65534 (nobody) talks to a daemon on
loopback that was set up without a secret, with a client of its own (the stdlib, no project
code), and must not write outside what the operator allowed explicitly."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack, IndexMessage, encode_message
from tests.support.daemon import UploaderDaemon, daemon_with_segments, place_segment
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer, bucket_name
from tests.support.viewer import wait_for

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# What any local user can run: send stdin's bytes to HOST PORT, print what comes back.
RAW_CLIENT = """
import socket, sys
data = sys.stdin.buffer.read()
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20) as sock:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
sys.stdout.buffer.write(reply)
"""


def as_nobody(address: tuple[str, int], data: bytes) -> bytes:
    """``data`` sent to the daemon by uid 65534; the daemon's reply lines."""
    result = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", RAW_CLIENT, address[0], str(address[1])],
                            input=data, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def message(bucket: str, key_prefix: str, number: int, directory: Path, **fields: object) -> IndexMessage:
    values: dict[str, object] = dict(
        index="cam.m3u8", output_directory=str(directory), segment_duration=1, output_prefix="cam", http_prefix="",
        first_segment=1, last_segment=number, end=False, bucket=bucket, key_prefix=key_prefix, duration=1.0)
    values.update(fields)
    return IndexMessage(**values)  # type: ignore[arg-type]


def keys(s3: BaseClient, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.fixture
def unrelated(seaweed: SeaweedServer, s3: BaseClient) -> Iterator[str]:
    """A bucket the credentials reach that no stream of the daemon is about."""
    name = seaweed.create_bucket(bucket_name("unrelated"))
    yield name
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def site(tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> Iterator[tuple[UploaderDaemon, Path]]:
    """The README's set-up: hls-uploadd --allow-dir DIR --bucket BUCKET, no secret; DIR is root's."""
    with daemon_with_segments(tmp_path, bucket) as (daemon, allowed):
        yield daemon, allowed
        assert "Traceback" not in daemon.log(all_runs=True)


def test_a_local_user_cannot_add_an_inline_segment_to_another_users_stream(
    site: tuple[UploaderDaemon, Path], s3: BaseClient, bucket: str, segment_source: Path, media: MediaCache,
    tmp_path: Path,
) -> None:
    daemon, allowed = site
    place_segment(segment_source, allowed, "cam", 1)
    with daemon.connect() as owner:
        assert owner.send(message(bucket, "victim", 1, allowed)) == Ack(1)
    wait_for(lambda: "victim/cam.m3u8" in keys(s3, bucket), timeout=30, message="the victim's playlist")
    before = s3.get_object(Bucket=bucket, Key="victim/cam.m3u8")["Body"].read()

    # Real MPEG-TS of the attacker's own, with its correct sha256: it passes every content check.
    forged = media.ts(seconds=1.0, video_bitrate=150_000).read_bytes()
    inline = message(bucket, "victim", 2, Path("/nowhere"), size=len(forged),
                     payload_sha256=hashlib.sha256(forged).hexdigest())
    reply = as_nobody(daemon.address, encode_message(inline, newline=True) + forged)
    assert reply.startswith(b"ERR inline payloads are not allowed for unsigned messages"), reply
    assert b"--allow-unsigned-inline" in reply

    # By path, the user's own directory is not an --allow-dir, and it cannot write into one.
    own = tmp_path / "nobody-home"
    own.mkdir()
    place_segment(segment_source, own, "cam", 2)
    reply = as_nobody(daemon.address, encode_message(message(bucket, "victim", 2, own), newline=True))
    assert reply.startswith(b"ERR output directory") and b"is not allowed" in reply, reply

    assert "victim/cam-00002.ts" not in keys(s3, bucket)
    assert s3.get_object(Bucket=bucket, Key="victim/cam.m3u8")["Body"].read() == before
    assert " queued" not in daemon.log().split("segment cam-00001.ts queued", 1)[1]


def test_a_local_user_cannot_write_into_a_bucket_not_allowed(
    site: tuple[UploaderDaemon, Path], s3: BaseClient, unrelated: str, segment_source: Path,
) -> None:
    daemon, allowed = site
    place_segment(segment_source, allowed, "cam", 1)
    reply = as_nobody(daemon.address, encode_message(message(unrelated, "x", 1, allowed, end=True), newline=True))
    assert reply == f"ERR bucket {unrelated} is not allowed for unsigned messages (add --bucket {unrelated})\n".encode()
    assert keys(s3, unrelated) == []


def test_with_the_default_configuration_nothing_reaches_an_unrelated_bucket(
    tmp_path: Path, s3: BaseClient, unrelated: str, segment_source: Path
) -> None:
    """Started as the original was, with only the directory given, the daemon does not serve; the
    one line says what to give. Had it served, the local user's message would be tried."""
    allowed = tmp_path / "segments"
    place_segment(segment_source, allowed, "cam", 1)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "uploader", "--listen", "127.0.0.1:0", "--spool-dir", str(tmp_path / "spool"),
         "--allow-dir", str(allowed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        startup = daemon.stdout.readline() if daemon.stdout is not None else ""
        if started := re.search(r"listening on (\S+):(\d+);", startup):
            attack = message(unrelated, "x", 1, allowed, end=True)
            reply = as_nobody(("127.0.0.1", int(started.group(2))), encode_message(attack, newline=True))
            assert reply.startswith(b"ERR "), f"the default configuration accepted it: {reply!r}"
        else:
            assert daemon.wait(60) == 2
            assert daemon.stderr is not None and daemon.stderr.read().strip().splitlines() == [
                "hls-uploadd: configuration error: no bucket is allowed: give --bucket NAME (repeatable) for the"
                " buckets messages may write, or --any-bucket for every bucket the store's credentials reach"]
    finally:
        daemon.kill()
        daemon.communicate()
    assert keys(s3, unrelated) == []
