"""Resource exhaustion against hls-uploadd (issue 7): slowloris, a client that never reads its
replies, a flood of 1,000 streams. Memory (RSS from /proc) and open files stay bounded, idle
connections are closed, past the cap new peers get a clear refusal, and a legitimate stream is
served throughout."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack, encode_message
from tests.support.daemon import UploaderDaemon, daemon_with_segments, place_segment
from tests.support.daemon import legit_message as message
from tests.support.pipeline import STORE_CONNECTIONS_BOUND, figures_in_service, peer_fds, process_figures, record
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for

MAX_CONNECTIONS = 512  # uploader/server.py
IDLE_CONNECTIONS = 500
RSS_GROWTH_LIMIT_KB = 96 * 1024  # what any of these floods may add to the daemon's resident memory


class Legit:
    """A legitimate stream on its own connection: a segment per call, which must be OK'd fast."""

    def __init__(self, daemon: UploaderDaemon, directory: Path, source: Path, bucket: str) -> None:
        self.daemon = daemon
        self.directory = directory
        self.source = source
        self.bucket = bucket
        self.number = 0
        self.latencies: list[float] = []

    def send(self, *, end: bool = False) -> None:
        self.number += 1
        place_segment(self.source, self.directory, "legit", self.number)
        began = time.monotonic()
        with self.daemon.connect(timeout_s=10) as client:
            assert client.send(message(self.directory, self.bucket, self.number, end=end)) == Ack(self.number)
        self.latencies.append(time.monotonic() - began)

    def published(self, seaweed: SeaweedServer) -> bool:
        text = http_get(seaweed.object_url(self.bucket, "legit/legit.m3u8")).text
        return f"legit-{self.number:05d}.ts" in text


@pytest.fixture
def daemon_setup(tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> Iterator[tuple[UploaderDaemon, Path]]:
    with daemon_with_segments(tmp_path, bucket) as (daemon, directory):
        yield daemon, directory
    assert "Traceback" not in daemon.log(all_runs=True)


def in_service(legit: Legit, seaweed: SeaweedServer, pid: int) -> dict[str, int]:
    """The daemon's figures once the legitimate stream's first segment is published."""
    legit.send()
    return figures_in_service(pid, seaweed.s3_port, seaweed.object_url(legit.bucket, "legit/legit.m3u8"),
                              "legit-00001.ts")


def pid_of(daemon: UploaderDaemon) -> int:
    assert daemon.proc is not None
    return daemon.proc.pid


@pytest.mark.timeout(180)
def test_500_idle_connections_then_the_cap_refuses_clearly(
    daemon_setup: tuple[UploaderDaemon, Path], seaweed: SeaweedServer, bucket: str, segment_source: Path
) -> None:
    daemon, directory = daemon_setup
    pid = pid_of(daemon)
    legit = Legit(daemon, directory, segment_source, bucket)
    before = in_service(legit, seaweed, pid)
    held: list[socket.socket] = []
    try:
        # Slowloris: each connection sends the start of a line and then nothing.
        for number in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(daemon.address, timeout=10)
            sock.sendall(b"stream.m3u8, /var/spool/hls/, 10, s" + str(number).encode())
            held.append(sock)
        wait_for(lambda: process_figures(pid)["fds"] >= before["fds"] + IDLE_CONNECTIONS, timeout=20,
                 message="the daemon holding every idle connection")
        during = process_figures(pid)
        # Legitimate traffic is still served while they hang on.
        for _ in range(3):
            legit.send()
        wait_for(lambda: legit.published(seaweed), timeout=20, message="the legitimate stream published")
        # Up to the cap, then one clear refusal line for each newcomer.
        refused_reply = b""
        while len(held) < MAX_CONNECTIONS + 10:
            sock = socket.create_connection(daemon.address, timeout=10)
            held.append(sock)
            sock.settimeout(0.5)
            try:
                refused_reply = sock.recv(200)
            except TimeoutError:
                continue
            break
        assert refused_reply == b"ERR try again: too many connections\n", refused_reply
        connections_held = len(held) - 1
        assert connections_held == MAX_CONNECTIONS, connections_held
        assert "refused: 512 connections open" in daemon.log()
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: peer_fds(process_figures(pid, seaweed.s3_port)) <= peer_fds(before) + 5, timeout=20,
             message="every connection closed again")
    legit.send(end=True)
    wait_for(lambda: "#EXT-X-ENDLIST" in http_get(seaweed.object_url(bucket, "legit/legit.m3u8")).text, timeout=20)
    after = process_figures(pid)
    assert after["VmHWM"] - before["VmRSS"] < RSS_GROWTH_LIMIT_KB, (before, after)
    record("500 idle connections and the cap", connections_held=connections_held, refused_after=MAX_CONNECTIONS,
           daemon_fds_during=during["fds"], daemon_fds_after=after["fds"], daemon_rss_kb_before=before["VmRSS"],
           daemon_peak_rss_kb=after["VmHWM"], legit_worst_ok_s=round(max(legit.latencies), 3))


@pytest.mark.timeout(120)
def test_idle_connections_are_closed_after_the_idle_timeout(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str
) -> None:
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--bucket", bucket, "--idle-timeout", "1"])
    daemon.start()
    try:
        silent = socket.create_connection(daemon.address, timeout=10)
        partial = socket.create_connection(daemon.address, timeout=10)
        partial.sendall(b"stream.m3u8, /tmp/, 10, s")
        began = time.monotonic()
        for sock in (silent, partial):
            assert sock.recv(100) == b""  # closed by the daemon, no reply
            sock.close()
        assert time.monotonic() - began < 5
        assert "closed after 1 s idle" in daemon.log()
    finally:
        daemon.kill()


@pytest.mark.timeout(120)
def test_a_client_that_never_reads_its_replies(
    daemon_setup: tuple[UploaderDaemon, Path], seaweed: SeaweedServer, bucket: str, segment_source: Path
) -> None:
    daemon, directory = daemon_setup
    pid = pid_of(daemon)
    legit = Legit(daemon, directory, segment_source, bucket)
    legit.send()
    before = process_figures(pid)
    # A client with a tiny receive buffer re-sends one valid message (each re-send is answered
    # OK) as fast as it can and never reads a reply: the daemon's replies pile up on its side.
    greedy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(daemon.address)
    greedy.setblocking(False)
    line = encode_message(message(directory, bucket, 1), newline=True) * 200
    pending = memoryview(b"")
    sent = 0
    stalled_at = None
    pushed_back = False
    # Flood for 8 s, or until the daemon stops reading from it (its replies fill the kernel's
    # buffers: several MB of "OK 1" lines on loopback, more than 8 s of re-sends usually make).
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            if not pending:
                pending = memoryview(line)
            try:
                count = greedy.send(pending)
                pending = pending[count:]
                sent += count
                stalled_at = None
            except BlockingIOError:
                # The daemon stopped reading from it: back-pressure, not an ever-growing buffer.
                stalled_at = stalled_at or time.monotonic()
                if time.monotonic() - stalled_at > 2:
                    pushed_back = True
                    break
                time.sleep(0.05)
        during = process_figures(pid)
        # Meanwhile everyone else is served.
        for _ in range(3):
            legit.send()
        wait_for(lambda: legit.published(seaweed), timeout=20)
    finally:
        greedy.close()
    after = process_figures(pid)
    assert during["VmHWM"] - before["VmRSS"] < RSS_GROWTH_LIMIT_KB, (before, during)
    record("client never reading replies", bytes_sent=sent, pushed_back=pushed_back,
           messages_sent=sent // len(encode_message(message(directory, bucket, 1), newline=True)),
           daemon_rss_kb_before=before["VmRSS"], daemon_peak_rss_kb=after["VmHWM"],
           legit_worst_ok_s=round(max(legit.latencies), 3))


@pytest.mark.timeout(240)
def test_a_flood_of_1000_streams(
    daemon_setup: tuple[UploaderDaemon, Path], seaweed: SeaweedServer, bucket: str, s3: BaseClient,
    segment_source: Path,
) -> None:
    daemon, directory = daemon_setup
    pid = pid_of(daemon)
    streams = 1000
    flood_dir = directory / "flood"
    place_segment(segment_source, flood_dir, "seed", 1)
    for number in range(streams):  # hard links: real regular files, one copy on disk
        os.link(flood_dir / "seed-00001.ts", flood_dir / f"s{number:04d}-00001.ts")
    legit = Legit(daemon, directory, segment_source, bucket)
    before = in_service(legit, seaweed, pid)
    errors: list[BaseException] = []
    acked = [0]
    lock = threading.Lock()

    def flood(part: range) -> None:
        try:
            with daemon.connect(timeout_s=60) as client:
                for number in part:
                    client.send_only(message(flood_dir, bucket, 1, key_prefix=f"ch{number:04d}", index="i.m3u8",
                                             prefix=f"s{number:04d}", end=True))
                for _ in part:
                    assert isinstance(client.reply(), Ack)
                    with lock:
                        acked[0] += 1
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    began = time.monotonic()
    threads = [threading.Thread(target=flood, args=(range(start, streams, 10),)) for start in range(10)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        legit.send()  # served while the flood comes in
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert acked[0] == streams
    queued_s = time.monotonic() - began
    wait_for(lambda: daemon.log().count("(stream ended)") >= streams, timeout=180, interval=0.5,
             message="every flooded stream published and ended")
    published_s = time.monotonic() - began
    legit.send(end=True)
    wait_for(lambda: "#EXT-X-ENDLIST" in http_get(seaweed.object_url(bucket, "legit/legit.m3u8")).text, timeout=30)
    after = process_figures(pid, seaweed.s3_port)
    for number in (0, 499, 999):
        assert http_get(seaweed.object_url(bucket, f"ch{number:04d}/s{number:04d}-00001.ts")).status == 200
    assert after["VmHWM"] - before["VmRSS"] < RSS_GROWTH_LIMIT_KB, (before, after)
    assert peer_fds(after) <= peer_fds(before) + 10, (before, after)
    assert after["store_connections"] <= STORE_CONNECTIONS_BOUND, (before, after)
    assert max(legit.latencies) < 10, legit.latencies
    record("flood of 1000 streams", streams=streams, queued_in_s=round(queued_s, 1),
           all_published_in_s=round(published_s, 1), daemon_rss_kb_before=before["VmRSS"],
           daemon_peak_rss_kb=after["VmHWM"], daemon_fds_after=after["fds"],
           daemon_store_connections_after=after["store_connections"], legit_messages=legit.number,
           legit_worst_ok_s=round(max(legit.latencies), 3))
