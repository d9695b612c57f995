"""Playlists written as a chain of versions (stores.Store.put_version, get_version): a PUT replaces
only the version its writer names, against a real SeaweedFS and a real directory, with writers
racing in threads and in processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.seaweed import SeaweedServer
from uploader.stores import FileStore, S3Store, Store, VersionConflict, file_etag

KEY = "live/one/index.m3u8"
WRITERS = 8


@pytest.fixture(params=["s3", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    if request.param == "file":
        return FileStore(tmp_path / "root"), "media"
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    return S3Store(seaweed.client()), request.getfixturevalue("bucket")


def put(store: Store, bucket: str, body: bytes, replaces: str | None, **metadata: str) -> str:
    return store.put_version(bucket, KEY, body, content_type="application/vnd.apple.mpegurl",
                             cache_control="max-age=1", metadata=metadata, replaces=replaces)


def test_each_version_replaces_only_the_one_it_names(store: tuple[Store, str]) -> None:
    chain, bucket = store
    assert chain.get_version(bucket, KEY) is None
    first = put(chain, bucket, b"#EXTM3U\n1\n", None, **{"hls-state": '{"pending":true}'})
    with pytest.raises(VersionConflict, match="another writer"):
        put(chain, bucket, b"#EXTM3U\nsecond creator\n", None)
    second = put(chain, bucket, b"#EXTM3U\n2\n", first)
    assert second != first
    with pytest.raises(VersionConflict):
        put(chain, bucket, b"#EXTM3U\nstale\n", first)  # the version before: refused
    found = chain.get_version(bucket, KEY)
    assert found is not None and found.etag == second and found.body == b"#EXTM3U\n2\n"
    if isinstance(chain, S3Store):
        assert found.metadata == {}  # this version was written without any
        third = put(chain, bucket, b"#EXTM3U\n3\n", second, **{"hls-state": '{"peak_bps":5}'})
        assert chain.get_version(bucket, KEY).metadata == {"hls-state": '{"peak_bps":5}'}  # type: ignore[union-attr]
        assert third == chain.get_version(bucket, KEY).etag  # type: ignore[union-attr]


def test_a_version_named_after_the_object_was_deleted_is_refused(store: tuple[Store, str]) -> None:
    chain, bucket = store
    first = put(chain, bucket, b"#EXTM3U\n1\n", None)
    chain.delete(bucket, KEY)
    with pytest.raises(VersionConflict):
        put(chain, bucket, b"#EXTM3U\n2\n", first)
    assert chain.get_version(bucket, KEY) is None


def race(attempt: Callable[[int], bool]) -> list[int]:
    """``attempt(n)`` for n in 0..WRITERS-1 at once (threads released together); the winners."""
    start = threading.Barrier(WRITERS)
    won: list[int] = []

    def run(number: int) -> None:
        start.wait()
        if attempt(number):
            won.append(number)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return won


def test_of_writers_racing_from_one_version_exactly_one_wins_each_round(store: tuple[Store, str]) -> None:
    chain, bucket = store
    version = put(chain, bucket, b"#EXTM3U\n0\n", None)
    for round_number in range(1, 6):
        def attempt(number: int) -> bool:
            try:
                put(chain, bucket, f"#EXTM3U\n{round_number} by {number}\n".encode(), version)
            except VersionConflict:
                return False
            return True

        winners = race(attempt)
        assert len(winners) == 1, f"round {round_number}: {winners} all replaced version {version}"
        found = chain.get_version(bucket, KEY)
        assert found is not None and found.body == f"#EXTM3U\n{round_number} by {winners[0]}\n".encode()
        version = found.etag


def _file_writer(root: str, replaces: str, number: int, start: object, results: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        FileStore(Path(root)).put_version("media", KEY, f"#EXTM3U\nby {number}\n".encode(),
                                          content_type="", cache_control="", metadata={}, replaces=replaces)
        results.put(number)  # type: ignore[attr-defined]
    except VersionConflict:
        results.put(-1)  # type: ignore[attr-defined]


def test_file_store_writers_in_separate_processes_are_serialised_by_the_directory_lock(tmp_path: Path) -> None:
    root = tmp_path / "root"
    version = FileStore(root).put_version("media", KEY, b"#EXTM3U\n", content_type="", cache_control="",
                                          metadata={}, replaces=None)
    assert version == file_etag(b"#EXTM3U\n")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WRITERS), context.Queue()
    workers = [context.Process(target=_file_writer, args=(str(root), version, n, start, results))
               for n in range(WRITERS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    winners = [n for n in outcomes if n >= 0]
    assert len(winners) == 1, outcomes
    assert (root / "media" / KEY).read_bytes() == f"#EXTM3U\nby {winners[0]}\n".encode()
