"""Fixtures for hls-uploadd tests: the daemon as a subprocess, segment files, messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache
from tests.support.s3_errors import S3ErrorProxy
from tests.support.seaweed import SeaweedServer


@pytest.fixture(scope="session")
def segment_source(media: MediaCache) -> Path:
    """A small real H.264+AAC TS file (1 s) copied under each segment's name."""
    return media.ts(seconds=1.0)


@pytest.fixture
def proxy(seaweed: SeaweedServer) -> Iterator[S3ErrorProxy]:
    """A loopback proxy in front of the session's SeaweedFS that answers with given errors."""
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as running:
        yield running


@pytest.fixture
def segments_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "segments"
    directory.mkdir()
    return directory


StartUploader = Callable[..., UploaderDaemon]


@pytest.fixture
def start_uploader(tmp_path: Path, seaweed: object) -> Iterator[StartUploader]:
    """start_uploader(*args, name="uploadd") -> a running daemon; every one is stopped at the end.

    Depends on ``seaweed`` so that AWS_ENDPOINT_URL and credentials are in the environment.
    """
    daemons: list[UploaderDaemon] = []

    def start(*args: str, name: str = "uploadd") -> UploaderDaemon:
        daemon = UploaderDaemon(tmp_path / name, args)
        daemons.append(daemon)
        return daemon.start()

    yield start
    stop_all(daemons)


LOG_TAIL_LINES = 200


def stop_all(daemons: list[UploaderDaemon]) -> None:
    """Kill each daemon a test started; a traceback in any of their logs fails the test. The last
    ``LOG_TAIL_LINES`` lines of each log go to stdout, which pytest shows with a failure."""
    for daemon in daemons:
        daemon.kill()
        log = daemon.log(all_runs=True)
        tail = log.splitlines()[-LOG_TAIL_LINES:]
        print(f"--- {daemon.log_path} (last {len(tail)} lines) ---", *tail, sep="\n")
        if "Traceback" in log:
            pytest.fail(f"traceback in the log of hls-uploadd:\n{log}")
