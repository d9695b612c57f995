"""hls-uploadd's lifetime as an operator and systemd see it: every signal has a logged meaning
(none kills it silently), and systemd's notification protocol (READY, WATCHDOG, STOPPING)
arrives on a real unix datagram socket, as the service manager would receive it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Ack
from tests.reliability.test_faults_live import fill, tmpfs
from tests.support.daemon import UploaderDaemon, legit_message, place_segment
from tests.support.viewer import wait_for

NOTIFY_TIMEOUT_S = 30.0


@pytest.fixture
def daemon(tmp_path: Path, segments_dir: Path) -> Iterator[UploaderDaemon]:
    started = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments_dir),
                                                    "--store", f"file://{tmp_path / 'www'}"])
    yield started
    started.kill()
    assert "Traceback" not in started.log(all_runs=True)


def test_hup_usr1_usr2_are_logged_and_the_daemon_keeps_serving(
    daemon: UploaderDaemon, segments_dir: Path, segment_source: Path
) -> None:
    daemon.start()
    for number, name in ((signal.SIGHUP, "SIGHUP"), (signal.SIGUSR1, "SIGUSR1")):
        daemon.signal(number)
        wait_for(lambda: f"{name}: status: listening on" in daemon.log(), message=f"the status after {name}")
    assert "SIGHUP received: nothing to reload" in daemon.log()
    status = next(line for line in daemon.log().splitlines() if "SIGUSR1: status:" in line)
    assert "0 message(s) queued" in status and str(daemon.spool_dir) in status and "log level INFO" in status
    daemon.signal(signal.SIGUSR2)
    wait_for(lambda: "SIGUSR2 received: log level now DEBUG" in daemon.log(), message="debug logging on")
    daemon.signal(signal.SIGUSR2)
    wait_for(lambda: "SIGUSR2 received: log level now INFO" in daemon.log(), message="debug logging off")
    place_segment(segment_source, segments_dir, "legit", 1)
    with daemon.connect() as client:
        assert client.send(legit_message(segments_dir, "bucket", 1)) == Ack(1)
    assert daemon.running


def test_sigquit_stops_like_sigterm(daemon: UploaderDaemon) -> None:
    daemon.start()
    daemon.signal(signal.SIGQUIT)
    assert daemon.proc is not None and daemon.proc.wait(60) == 0
    log = daemon.log()
    assert "SIGQUIT received: stopping" in log and "message(s) left queued for the next start" in log


def test_systemd_gets_ready_watchdog_pings_and_stopping_on_its_socket(
    daemon: UploaderDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.settimeout(NOTIFY_TIMEOUT_S)
        daemon.env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        daemon.start()

        def receive() -> str:
            return manager.recv(4096).decode()

        assert receive() == "READY=1"
        assert [receive() for _ in range(3)] == ["WATCHDOG=1"] * 3
        assert daemon.stop() == 0
        rest = []
        while (state := receive()) != "STOPPING=1":
            rest.append(state)
        assert set(rest) <= {"WATCHDOG=1"}


def test_a_watchdog_for_another_process_is_not_pinged(daemon: UploaderDaemon, tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.settimeout(NOTIFY_TIMEOUT_S)
        # WATCHDOG_PID names another process: the watchdog is not this daemon's (sd_watchdog_enabled(3)).
        daemon.env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        daemon.start()
        assert manager.recv(4096) == b"READY=1"
        assert daemon.stop() == 0
        assert manager.recv(4096) == b"STOPPING=1"


def test_the_watchdog_is_not_pinged_while_the_spool_takes_no_write(
    daemon: UploaderDaemon, tmp_path: Path
) -> None:
    """The watchdog follows /healthz: a spool whose file system is full stops the pings (systemd
    restarts the daemon after WatchdogSec), and they resume once space is freed."""
    mounted = tmpfs(daemon.spool_dir, "size=8m,mode=0700")
    spool = next(mounted)
    path = tmp_path / "notify"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind(str(path))
            manager.settimeout(NOTIFY_TIMEOUT_S)
            daemon.env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
            daemon.start()
            assert manager.recv(4096) == b"READY=1"
            assert manager.recv(4096) == b"WATCHDOG=1"
            filler = fill(spool)
            wait_for(lambda: "not healthy, no watchdog ping: spool: the file system of spool" in daemon.log(),
                     message="the missed ping's ERROR")
            manager.settimeout(0.05)
            with contextlib.suppress(TimeoutError):  # pings sent before the fill was seen
                while True:
                    manager.recv(4096)
            manager.settimeout(1.0)  # ten watchdog intervals
            with pytest.raises(TimeoutError):
                manager.recv(4096)
            filler.unlink()
            manager.settimeout(NOTIFY_TIMEOUT_S)
            assert manager.recv(4096) == b"WATCHDOG=1"
            assert daemon.stop() == 0
    finally:
        mounted.close()
