"""Stores: the local directory store, and how S3 errors are classified."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.seaweed import SeaweedServer
from uploader.s3wire import S3ErrorReply
from uploader.stores import (
    WRITE_CHECK_KEY,
    CorrectableStoreError,
    DigestMismatchError,
    FileStore,
    PermanentStoreError,
    S3Store,
    TransientStoreError,
    check_writable,
    classify_s3_error,
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


# Who can make the same PUT succeed: time (transient), the operator (correctable: held and
# retried with the fix in the log; issue 14 A: these used to fail the segment for good), nobody
# (permanent: only that request fails).
@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("SlowDown", 503, TransientStoreError),
        ("InternalError", 500, TransientStoreError),
        ("RequestTimeout", 400, TransientStoreError),
        ("TooManyRequests", 429, TransientStoreError),
        ("NoSuchBucket", 404, CorrectableStoreError),
        ("AccessDenied", 403, CorrectableStoreError),
        ("InvalidAccessKeyId", 403, CorrectableStoreError),
        ("SignatureDoesNotMatch", 403, CorrectableStoreError),
        ("ExpiredToken", 400, CorrectableStoreError),
        ("InvalidToken", 400, CorrectableStoreError),
        ("AccessControlListNotSupported", 400, CorrectableStoreError),
        ("PermanentRedirect", 301, CorrectableStoreError),
        ("Unknown", 403, CorrectableStoreError),  # a proxy's HTML 403, no S3 code
        ("Unknown", 404, CorrectableStoreError),
        ("InvalidArgument", 400, PermanentStoreError),
        ("EntityTooLarge", 400, PermanentStoreError),
    ],
)
def test_s3_error_classification(code: str, status: int, kind: type) -> None:
    error = classify_s3_error(S3ErrorReply(code, status, code), "b", "k")
    assert type(error) is kind
    assert code in str(error) and "s3://b/k" in str(error)
    if kind is CorrectableStoreError:
        assert error.fix and error.transient  # type: ignore[attr-defined]


# The refusals of boto3's streaming trailer (aws-chunked, x-amz-trailer), as each store answered
# (the sources are in uploader/stores.py's _TRAILER_REFUSALS); all permanent or transient before.
TRAILER_REFUSALS = [
    ("InvalidArgument", 400, "Unsupported header 'x-amz-trailer' received for this API call."),  # B2
    ("InvalidRequest", 400, "The value specified in the x-amz-trailer header is not supported"),  # Scaleway
    ("NotImplemented", 501, "A header you provided implies x-amz-trailer operation which is not implemented"),
    ("NotImplemented", 501, "Transfering payloads in multiple chunks using aws-chunked is not supported."),  # Swift
    ("InvalidTrailer", 400, "Invalid trailing header names in x-amz-trailer."),
    ("BadRequest", 400, "trailing checksum is not supported"),  # Scality CloudServer
    ("XAmzContentSHA256Mismatch", 400, "invalid header: x-amz-content-sha256"),  # s3s
    ("MissingContentLength", 411, "You must provide the Content-Length HTTP header."),  # Storj's MinIO fork
]


@pytest.mark.parametrize(("code", "status", "message"), [
    ("InvalidArgument", 400, "Unsupported header 'x-amz-sdk-checksum-algorithm' received for this API call."),
    ("NotImplemented", 501, "Header 'x-amz-checksum-crc32' with value 'AAAAAA==' not implemented"),
    *TRAILER_REFUSALS,
])
def test_a_store_refusing_the_checksum_headers_is_correctable_with_the_option_that_fixes_it(
    code: str, status: int, message: str,
) -> None:
    # 501 would be transient (retried for ever, the fix never said); 400 permanent (segments lost).
    error = S3ErrorReply(code, status, message)
    refused = classify_s3_error(error, "b", "k")
    assert isinstance(refused, CorrectableStoreError) and "--s3-checksums when_required" in refused.fix
    assert message in str(refused)


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("BadDigest", 400, DigestMismatchError),  # no header was refused: the body was damaged on its way
    ("XAmzContentSHA256Mismatch", 400, DigestMismatchError),
    ("InternalError", 500, TransientStoreError),
])
def test_a_checksum_that_did_not_match_is_not_taken_for_a_refused_header(code: str, status: int, kind: type) -> None:
    error = S3ErrorReply(code, status, "The CRC32 you specified did not match the calculated checksum.")
    assert type(classify_s3_error(error, "b", "k")) is kind


@pytest.mark.parametrize(("code", "message", "kind"), [
    # AWS's error list: the body the store received does not match the digest sent with it, so it
    # was damaged in transit; a retry reads the file again. Once permanent: the segment was lost.
    ("BadDigest", "The Content-MD5 you specified did not match what we received.", DigestMismatchError),
    ("BadDigest", "The CRC32 you specified did not match the calculated checksum.", DigestMismatchError),
    ("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.",
     DigestMismatchError),
    # A malformed Content-MD5 or checksum header: no retry sends another.
    ("InvalidDigest", "The Content-MD5 you specified is not valid.", PermanentStoreError),
])
def test_a_body_damaged_in_transit_is_retried_and_a_malformed_digest_is_not(code: str, message: str,
                                                                            kind: type) -> None:
    error = S3ErrorReply(code, 400, message)
    classified = classify_s3_error(error, "b", "k")
    assert type(classified) is kind
    assert str(classified) == f"s3://b/k: {code} (HTTP 400): {message}"


def test_a_digest_mismatch_on_every_attempt_is_held_with_the_checksum_option_as_its_fix() -> None:
    # Some S3 clones answer every PUT with boto3 1.36+'s checksums so (boto/boto3#4400).
    error = S3ErrorReply("XAmzContentSHA256Mismatch", 400, "XAmzContentSHA256Mismatch")
    mismatch = classify_s3_error(error, "b", "k")
    assert isinstance(mismatch, DigestMismatchError) and not isinstance(mismatch, CorrectableStoreError)
    held = mismatch.held()
    assert isinstance(held, CorrectableStoreError) and str(held) == str(mismatch)
    assert "--s3-checksums when_required" in held.fix and "alters request bodies" in held.fix


def test_a_store_requiring_a_checksum_is_not_told_to_send_fewer() -> None:
    error = S3ErrorReply("InvalidRequest", 400, "Content-MD5 OR x-amz-checksum- HTTP header is required for Put"
                                                " Object requests with Object Lock parameters")
    assert type(classify_s3_error(error, "b", "k")) is PermanentStoreError


def test_a_missing_bucket_and_a_denied_put_say_what_to_do() -> None:
    missing = classify_s3_error(S3ErrorReply("NoSuchBucket", 404, "NoSuchBucket"), "media", "k")
    denied = classify_s3_error(S3ErrorReply("AccessDenied", 403, "AccessDenied"), "media", "k")
    assert isinstance(missing, CorrectableStoreError) and "create bucket media" in missing.fix
    assert isinstance(denied, CorrectableStoreError) and "s3:PutObject on arn:aws:s3:::media/*" in denied.fix
    assert "bucket media exists" in denied.fix


def test_no_credentials_is_correctable(seaweed: SeaweedServer, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real boto3 client that finds no credentials (an instance-metadata hiccup looks the same)."""
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=seaweed.endpoint_url)
    store = S3Store(client)
    with pytest.raises(CorrectableStoreError) as raised:
        store.put(bucket, "k.ts", b"x", content_type="video/MP2T", cache_control="no-store")
    assert "credentials" in raised.value.fix
    with pytest.raises(CorrectableStoreError):
        store.exists(bucket, "k.ts")


def test_exists_and_the_write_check_against_a_real_store(seaweed: SeaweedServer, s3: object, bucket: str,
                                                        tmp_path: Path) -> None:
    store = S3Store(s3)
    assert not store.exists(bucket, "live/a.ts")
    store.put(bucket, "live/a.ts", b"x", content_type="video/MP2T", cache_control="no-store")
    assert store.exists(bucket, "live/a.ts")
    check_writable(store, bucket)
    assert store.exists(bucket, WRITE_CHECK_KEY)
    with pytest.raises(CorrectableStoreError) as raised:  # SeaweedFS says AccessDenied, AWS NoSuchBucket
        check_writable(store, bucket + "-gone")
    assert f"bucket {bucket}-gone" in raised.value.fix
    files = FileStore(tmp_path)
    assert not files.exists("b", "k.ts")
    check_writable(files, "b")
    assert files.exists("b", WRITE_CHECK_KEY)


def test_a_read_only_file_store_is_correctable(tmp_path: Path) -> None:
    """A read-only mount is the operator's to correct (root ignores modes, so a real one)."""
    root = tmp_path / "ro"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        with pytest.raises(CorrectableStoreError) as raised:
            check_writable(FileStore(root), "b")
        assert "Read-only file system" in str(raised.value) and str(root / "b") in raised.value.fix
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
