"""Stores: the local directory store, and how S3 errors are classified."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uploader.stores import (
    FileStore,
    PermanentStoreError,
    TransientStoreError,
    classify_client_error,
)


def test_file_store_writes_bucket_and_key_atomically(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("bucket", "live/stream/index.m3u8", b"#EXTM3U\n", content_type="x", cache_control="y")
    assert (tmp_path / "bucket/live/stream/index.m3u8").read_bytes() == b"#EXTM3U\n"
    source = tmp_path / "source.ts"
    source.write_bytes(b"G" * 188 * 100)
    store.put("bucket", "live/stream/a-00001.ts", lambda: source.open("rb"), content_type="x", cache_control="y")
    assert (tmp_path / "bucket/live/stream/a-00001.ts").read_bytes() == source.read_bytes()
    store.put("bucket", "live/stream/index.m3u8", b"v2", content_type="x", cache_control="y")
    assert (tmp_path / "bucket/live/stream/index.m3u8").read_bytes() == b"v2"
    leftovers = [name for name in os.listdir(tmp_path / "bucket/live/stream") if name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize(("bucket", "key"), [("b", "../x"), ("b", "/abs"), ("..", "x"), ("b", "a//b"), ("b", "a/./b")])
def test_file_store_never_escapes_its_root(tmp_path: Path, bucket: str, key: str) -> None:
    with pytest.raises(PermanentStoreError):
        FileStore(tmp_path / "root").put(bucket, key, b"x", content_type="x", cache_control="y")
    assert not (tmp_path / "x").exists()


def test_file_store_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    def broken() -> object:
        raise OSError(5, "Input/output error")

    with pytest.raises(TransientStoreError):
        FileStore(tmp_path).put("b", "k.ts", broken, content_type="x", cache_control="y")  # type: ignore[arg-type]
    assert os.listdir(tmp_path / "b") == []


class FakeClientError(Exception):
    def __init__(self, code: str, status: int) -> None:
        self.response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("SlowDown", 503, TransientStoreError),
        ("InternalError", 500, TransientStoreError),
        ("RequestTimeout", 400, TransientStoreError),
        ("TooManyRequests", 429, TransientStoreError),
        ("NoSuchBucket", 404, PermanentStoreError),
        ("AccessDenied", 403, PermanentStoreError),
        ("InvalidAccessKeyId", 403, PermanentStoreError),
        ("SignatureDoesNotMatch", 403, PermanentStoreError),
        ("InvalidArgument", 400, PermanentStoreError),
    ],
)
def test_s3_error_classification(code: str, status: int, kind: type) -> None:
    error = classify_client_error(FakeClientError(code, status), "b", "k")
    assert type(error) is kind
    assert code in str(error) and "s3://b/k" in str(error)
