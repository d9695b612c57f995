"""S3-compatible stores other than AWS, by configuration: the client settings docs/deploy.md
gives for MinIO, Cloudflare R2, Backblaze B2 and AWS reach the S3 client, a store that refuses
boto3's checksum headers or trailer (as B2 and R2 did when boto3 1.36 began sending a CRC32 on every
PUT) is published to once --s3-checksums when_required is set, and a body damaged in transit is
put again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.options import settings_from_file
from tests.support.daemon import place_segment
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.cli import build_store
from uploader.config import OPTIONS, SECTION, UploaderConfig

from .conftest import StartUploader
from .test_faults import assert_published, send_all

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"

# The checksum header the daemon's PUTs carry unless --s3-checksums when_required (object_store's
# SHA-256; boto3 sends x-amz-sdk-checksum-algorithm and a CRC32): a store that refuses flexible
# checksums is made to refuse a request carrying it, with the answers stores gave boto3's.
CHECKSUM_HEADER = "x-amz-checksum-sha256"
# Refused as B2 refused it (x-amz-sdk-checksum-algorithm is sent with every checksummed boto3 PUT).
UNSUPPORTED_CHECKSUM = Answer(
    400, b"<Error><Code>InvalidArgument</Code><Message>Unsupported header 'x-amz-sdk-checksum-algorithm' received"
         b" for this API call.</Message></Error>", "application/xml")


def documented_configs() -> dict[str, str]:
    """Each ```toml block of docs/deploy.md's "Other S3 stores" section, by the heading above it."""
    text = DEPLOY.read_text()
    section = text[text.index("## Other S3 stores"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return {heading: block for heading, block in re.findall(r"### (.+?)\n.*?```toml\n(.*?)```", section, re.S)}


def config_of(tmp_path: Path, toml: str) -> UploaderConfig:
    """The daemon's configuration from ``toml`` (its allowed directory here), with a spool here."""
    path = tmp_path / "uploadd.toml"
    path.write_text(toml.replace("/var/spool/hls", str(tmp_path)))
    return UploaderConfig.from_settings({**settings_from_file(OPTIONS, path, section=SECTION),
                                         "spool_dir": str(tmp_path / "spool")})


def test_the_docs_give_a_configuration_for_each_store() -> None:
    assert sorted(documented_configs()) == ["AWS with an instance role", "Backblaze B2", "Cloudflare R2", "MinIO"]


@pytest.mark.parametrize(("store", "endpoint", "region", "style", "checksums"), [
    ("MinIO", "http://minio.internal:9000", "us-east-1", "path", None),
    ("Cloudflare R2", "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com", "auto", "path",
     "when_required"),
    ("Backblaze B2", "https://s3.us-west-004.backblazeb2.com", "us-west-004", "auto", "when_required"),
    ("AWS with an instance role", "https://s3.eu-west-1.amazonaws.com", "eu-west-1", "auto", None),
])
def test_each_documented_configuration_reaches_the_s3_client(
    store: str, endpoint: str, region: str, style: str, checksums: str | None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        monkeypatch.delenv(name, raising=False)
    config = config_of(tmp_path, documented_configs()[store])
    client = build_store(config, config.stores[0])._client  # type: ignore[attr-defined]
    assert (client.meta.endpoint_url, client.meta.region_name) == (endpoint, region)
    assert client.meta.config.s3 == {"addressing_style": style}
    assert client.meta.config.request_checksum_calculation == (checksums or "when_supported")
    assert client.meta.config.response_checksum_validation == (checksums or "when_supported")


def refusal(status: int, code: str, message: str) -> Answer:
    return Answer(status, f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode(),
                  "application/xml")


# How stores refuse boto3's streaming trailer (aws-chunked, x-amz-trailer; boto3 sends it over
# HTTPS, its checksum headers over HTTP as here): each answer as reported, sources in
# uploader/stores.py's _TRAILER_REFUSALS. Each was permanent (the segments lost) or, a 501,
# transient (retried for ever, the fix never said).
REFUSALS = {
    "B2 headers": UNSUPPORTED_CHECKSUM,
    "B2 trailer": refusal(400, "InvalidArgument", "Unsupported header 'x-amz-trailer' received for this API call."),
    "Scaleway": refusal(400, "InvalidRequest", "The value specified in the x-amz-trailer header is not supported"),
    "x-amz-trailer not implemented": refusal(
        501, "NotImplemented", "A header you provided implies x-amz-trailer operation which is not implemented"),
    "Swift s3api": refusal(
        501, "NotImplemented", "Transfering payloads in multiple chunks using aws-chunked is not supported."),
    "InvalidTrailer": refusal(400, "InvalidTrailer", "Invalid trailing header names in x-amz-trailer."),
    "Scality": refusal(400, "BadRequest", "trailing checksum is not supported"),
    "s3s": refusal(400, "XAmzContentSHA256Mismatch", "invalid header: x-amz-content-sha256"),
    "Storj": refusal(411, "MissingContentLength", "You must provide the Content-Length HTTP header."),
}


def held_then_published(proxy: S3ErrorProxy, start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str,
                        segments_dir: Path, segment_source: Path, *options: str) -> str:
    """A daemon with boto3's default checksums behind ``proxy``: its first segment is held, not
    failed, and the ERROR names the fix (the log it wrote then is returned). Restarted with
    --s3-checksums when_required on the same spool, as the operator would, it publishes that
    segment and two more."""
    refused = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket, "--endpoint-url", proxy.url,
                             *options)
    place_segment(segment_source, segments_dir, "seg", 1)
    send_all(refused, segments_dir, bucket, range(1, 2))
    wait_for(lambda: " held: upload of " in refused.log(), timeout=30, message="the stream held")
    log = refused.log()
    assert "set --s3-checksums when_required" in log and "failed permanently" not in log, log
    refused.stop()
    proxy.answered.clear()
    daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket, "--endpoint-url", proxy.url,
                            "--s3-checksums", "when_required", "--s3-addressing-style", "path", *options)
    for number in range(2, 4):
        place_segment(segment_source, segments_dir, "seg", number)
    send_all(daemon, segments_dir, bucket, range(2, 4), end_at=3)
    assert_published(seaweed, bucket, 3)
    return log


@pytest.mark.parametrize("answer", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_store_refusing_the_checksum_headers_is_published_to_with_checksums_when_required(
    answer: Answer, start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    message = answer.body.decode().partition("<Message>")[2].partition("</Message>")[0]
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.refuse_headers = {CHECKSUM_HEADER: answer}
        # boto3's default: the start-up write check is refused, and the ERROR says the fix.
        log = held_then_published(proxy, start_uploader, seaweed, bucket, segments_dir, segment_source)
        assert f"bucket {bucket} cannot be written" in log and message in log, log
        assert answer.status not in proxy.statuses(), proxy.answered  # (412: the write check's create-only PUT)


# As AWS answers a PUT whose body did not match its Content-MD5 or checksum (damaged on its way).
BAD_DIGEST = Answer(
    400, b"<Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not match what we received."
         b"</Message></Error>", "application/xml")


def test_a_segment_whose_body_was_damaged_in_transit_is_put_again_and_published(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    # Once permanent: the segment failed for good, though a retry reads the file again.
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.fail_next(2, BAD_DIGEST, path_ends=".ts")
        daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket, "--endpoint-url", proxy.url,
                                "--retry-max-delay", "0.2")
        for number in range(1, 3):
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 3), end_at=2)
        assert_published(seaweed, bucket, 2)
        assert proxy.statuses().count(400) == 2, proxy.answered  # each refused once, then put again
    log = daemon.log()
    assert "failed permanently" not in log and "BadDigest" in log and "succeeded after" in log, log
    assert " held: " not in log, log  # twice is damage in transit, not yet a store that always says so


def test_a_store_that_finds_every_checksummed_body_mismatched_is_held_with_the_fix_then_published(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    # An S3 clone that miscomputes boto3 1.36+'s checksums answers every PUT carrying them as AWS
    # answers a damaged body (boto/boto3#4400). Retried for ever, quietly, it would stall the stream.
    mismatch = refusal(400, "XAmzContentSHA256Mismatch",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.refuse_headers = {CHECKSUM_HEADER: mismatch}
        log = held_then_published(proxy, start_uploader, seaweed, bucket, segments_dir, segment_source,
                                  "--retry-max-delay", "0.2")
    assert f"bucket {bucket} could not be checked: the store found the body unlike its checksum" in log, log
    assert "(the store did not answer)" not in log, log
