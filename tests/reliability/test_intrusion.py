"""Nobody gets in (issue 7): no byte outside the allowed directories is ever uploaded, nothing is
written outside allowed buckets and the stream's own key prefix, whatever a peer sends or plants.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack, IndexMessage, Reject
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.pipeline import record
from tests.support.proxy import DelayProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for

MESSAGES = 600
SECRET = b"TOP-SECRET-BYTES-OUTSIDE-THE-ALLOWED-DIRECTORIES\n" * 64


@dataclasses.dataclass
class Site:
    """An allowed directory, a forbidden one beside it full of secrets, and a daemon."""

    allowed: Path
    outside: Path
    daemon: UploaderDaemon
    bucket: str

    def message(self, directory: str, number: int, **changes: object) -> IndexMessage:
        fields: dict[str, object] = dict(
            index="cam.m3u8", output_directory=directory, segment_duration=1, output_prefix="cam",
            http_prefix="", first_segment=1, last_segment=number, end=False, bucket=self.bucket,
            key_prefix="cam", duration=1.0,
        )
        fields.update(changes)
        return IndexMessage(**fields)  # type: ignore[arg-type]

    def plant_secrets(self, *names: str) -> None:
        for name in names:
            (self.outside / name).write_bytes(SECRET)


def no_secret_in_bucket(s3: BaseClient, bucket: str) -> int:
    """Read back every object in the bucket; none may hold a byte of the secret files."""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            assert b"TOP-SECRET" not in body, f"{item['Key']} holds bytes from outside the allowed directories"
            count += 1
    return count


def start_site(tmp_path: Path, bucket: str, *extra: str) -> Site:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(allowed), "--bucket", bucket, *extra])
    daemon.start()
    return Site(allowed, outside, daemon, bucket)


@pytest.fixture
def site(tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> Iterator[Site]:
    site = start_site(tmp_path, bucket)
    try:
        yield site
    finally:
        site.daemon.kill()
        assert "Traceback" not in site.daemon.log(all_runs=True)


@pytest.mark.timeout(120)
def test_path_escapes_in_messages_are_refused(site: Site, s3: BaseClient, segment_source: Path) -> None:
    site.plant_secrets("cam-00001.ts", "x-00001.ts")
    (site.allowed / "link-out").symlink_to(site.outside, target_is_directory=True)
    (site.allowed / "sub").mkdir()
    place_segment(segment_source, site.allowed, "cam", 1)
    allowed, outside = str(site.allowed), str(site.outside)
    escapes = [
        site.message(f"{allowed}/../outside/", 1),
        site.message(f"{allowed}/sub/../../outside/", 1),
        site.message(f"{allowed}/link-out/", 1),  # a symlinked directory inside, pointing out
        site.message(f"{outside}/", 1),
        site.message("/etc/", 1),
        site.message("/proc/self/root" + outside + "/", 1),
    ]
    refused_lines = [
        # Index names with separators, absolute key prefixes, '..' in any name field.
        f"../cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, cam",
        f"a/cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, cam",
        f"cam.m3u8, {allowed}/, 1, ../outside/cam, , 1, 1, 0, {site.bucket}, cam",
        f"cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, /cam",
        f"cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, cam/../../other",
        f"cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, ..",
        f"cam.m3u8, relative/dir/, 1, cam, , 1, 1, 0, {site.bucket}, cam",
        f"cam\u2215..\u2215x.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, cam",
        f"cam.m3u8, {allowed}/, 1, cam, , 1, 1, 0, {site.bucket}, cam\uff0f\uff0e\uff0e\uff0fother",
    ]
    with site.daemon.connect() as client:
        for message in escapes:
            reply = client.send(message)
            assert isinstance(reply, Reject) and "not allowed" in reply.reason, (message.output_directory, reply)
        for line in refused_lines:
            reply = client.send(line.encode() + b"\n")
            assert isinstance(reply, Reject), (line, reply)
        assert client.send(site.message(f"{allowed}/", 1, end=True)) == Ack(1)
    wait_for(lambda: "cam-00001.ts published" in site.daemon.log(), timeout=20, message="the honest segment")
    assert no_secret_in_bucket(s3, site.bucket) >= 2
    record("path escapes in messages", refused=len(escapes) + len(refused_lines))


@pytest.mark.timeout(120)
def test_planted_symlinks_and_special_files_are_never_followed(
    site: Site, s3: BaseClient, segment_source: Path
) -> None:
    site.plant_secrets("cam-00001.ts", "cam-00002.ts")
    # A segment that is a symlink to a secret outside; one to a file inside (also refused: a
    # symlink is never followed); a FIFO that would block a naive reader; a directory.
    (site.allowed / "cam-00001.ts").symlink_to(site.outside / "cam-00001.ts")
    place_segment(segment_source, site.allowed, "real", 1)
    (site.allowed / "cam-00002.ts").symlink_to(site.allowed / "real-00001.ts")
    os.mkfifo(site.allowed / "cam-00003.ts")
    (site.allowed / "cam-00004.ts").mkdir()
    place_segment(segment_source, site.allowed, "cam", 5)
    with site.daemon.connect() as client:
        for number in range(1, 6):
            assert client.send(site.message(f"{site.allowed}/", number, end=number == 5)) == Ack(number)
    wait_for(lambda: "cam-00005.ts published" in site.daemon.log(), timeout=30, message="segment 5")
    log = site.daemon.log()
    for number in range(1, 5):
        assert f"segment cam-{number:05d}.ts failed permanently" in log, number
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=site.bucket).get("Contents", [])}
    assert keys >= {"cam/cam-00005.ts", "cam/cam.m3u8"}
    assert not keys & {f"cam/cam-{n:05d}.ts" for n in range(1, 5)}
    no_secret_in_bucket(s3, site.bucket)


@pytest.mark.timeout(120)
def test_directory_swapped_for_a_symlink_after_the_check(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str, s3: BaseClient, segment_source: Path
) -> None:
    # S3 is reached through a proxy that refuses service at first, so every upload is retried
    # and the directory can be swapped between the check (on arrival) and the read (on upload).
    with DelayProxy(("127.0.0.1", seaweed.s3_port)) as gate:
        gate.refuse = True
        site = start_site(tmp_path, bucket, "--endpoint-url", gate.url)
        try:
            sub = site.allowed / "sub"
            place_segment(segment_source, sub, "cam", 1)
            place_segment(segment_source, sub, "cam", 2)
            site.plant_secrets("cam-00001.ts", "cam-00002.ts")
            with site.daemon.connect() as client:
                assert client.send(site.message(f"{sub}/", 1)) == Ack(1)
                assert client.send(site.message(f"{sub}/", 2, end=True)) == Ack(2)
            wait_for(lambda: "failed (attempt 1)" in site.daemon.log(), timeout=20, message="a refused upload")
            # Time of use: the checked directory is now a symlink to the secrets.
            sub.rename(site.allowed / "sub.real")
            sub.symlink_to(site.outside, target_is_directory=True)
            gate.refuse = False
            wait_for(lambda: "cam-00002.ts failed permanently" in site.daemon.log(), timeout=30,
                     message="segment 2 refused at upload time")
            log = site.daemon.log()
            assert "cam-00001.ts failed permanently" in log and "symlink" in log
            no_secret_in_bucket(s3, bucket)
        finally:
            site.daemon.kill()
    assert "Traceback" not in site.daemon.log(all_runs=True)


@pytest.mark.timeout(180)
def test_directory_flipping_between_real_and_symlink_under_load(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str, s3: BaseClient, segment_source: Path
) -> None:
    """A race, not a staged swap: a thread flips sub/ between the real directory and a symlink
    to the secrets while 600 messages name files in it. No secret byte may ever be uploaded."""
    site = start_site(tmp_path, bucket)
    try:
        flip_under_load(site, s3, segment_source)
    finally:
        site.daemon.kill()
    log = site.daemon.log(all_runs=True)
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]


def flip_under_load(site: Site, s3: BaseClient, segment_source: Path) -> None:
    sub = site.allowed / "sub"
    real = site.allowed / "sub.real"
    for number in range(1, MESSAGES + 1):
        place_segment(segment_source, real, "cam", number)
        (site.outside / f"cam-{number:05d}.ts").write_bytes(SECRET)
    real.rename(sub)
    halt = threading.Event()
    flips = 0

    def flip() -> None:
        # sub/ is mostly a symlink to the secrets that comes and goes (each check and each open
        # races with it), now and then the real directory for a moment.
        nonlocal flips
        while not halt.is_set():
            sub.rename(real)
            for _ in range(20):
                sub.symlink_to(site.outside, target_is_directory=True)
                sub.unlink()
            real.rename(sub)
            flips += 1

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    outcomes = {"ok": 0, "refused": 0, "reconnects": 0}
    try:
        number = 1
        while number <= MESSAGES:
            # The daemon closes a connection after 20 refusals (MAX_BAD_MESSAGES): connect again.
            with site.daemon.connect() as client:
                while number <= MESSAGES:
                    try:
                        reply = client.send(site.message(f"{sub}/", number, end=number == MESSAGES))
                    except ConnectionError:
                        outcomes["reconnects"] += 1
                        break
                    outcomes["ok" if isinstance(reply, Ack) else "refused"] += 1
                    number += 1
    finally:
        halt.set()
        flipper.join(10)
    with contextlib.suppress(FileNotFoundError):
        if sub.is_symlink():
            sub.unlink()
            real.rename(sub)
    def settled() -> bool:
        log = site.daemon.log()
        return log.count(" published") + log.count("failed permanently") + log.count("given up after") >= outcomes["ok"]

    wait_for(settled, timeout=60, message="every accepted message published or failed")
    objects = no_secret_in_bucket(s3, site.bucket)
    record("directory flipped under load", flips=flips, messages=MESSAGES, accepted=outcomes["ok"],
           refused=outcomes["refused"], reconnects=outcomes["reconnects"], objects_checked=objects,
           failed_permanently=site.daemon.log().count("failed permanently"))


@pytest.mark.timeout(120)
def test_bucket_and_key_escapes(site: Site, s3: BaseClient, segment_source: Path) -> None:
    place_segment(segment_source, site.allowed, "cam", 1)
    allowed = f"{site.allowed}/"
    with site.daemon.connect() as client:
        # A bucket not on the --bucket list, even a real one.
        s3.create_bucket(Bucket=site.bucket + "-other")
        reply = client.send(site.message(allowed, 1, bucket=site.bucket + "-other"))
        assert isinstance(reply, Reject) and "not allowed" in reply.reason
        # Key prefixes that would leave the stream's prefix, and index names that would overwrite
        # a segment or another kind of object.
        for line in [
            f"cam.m3u8, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam/..",
            f"cam.m3u8, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, ../cam",
            f"cam.m3u8, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam//x",
            f"cam.m3u8, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam/%2e%2e",
            f"cam-00001.ts, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam",
            f"index.html, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam",
            f"hls.js, {allowed}, 1, cam, , 1, 1, 0, {site.bucket}, cam",
        ]:
            reply = client.send(line.encode() + b"\n")
            assert isinstance(reply, Reject), (line, reply)
        # A stream whose index is the master playlist's name would overwrite the master of
        # the program it shares a key prefix with.
        assert client.send(site.message(allowed, 1)) == Ack(1)
        reply = client.send(site.message(allowed, 1, index="master.m3u8", output_prefix="cam2"))
        assert isinstance(reply, Reject) and "master" in reply.reason, reply
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=site.bucket + "-other").get("Contents", [])}
    assert not keys
