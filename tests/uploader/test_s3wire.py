"""uploader/s3wire.py: the daemon's S3 requests go out as boto3's would (the same URL, signature,
headers and conditions; a PUT through object_store with its SHA-256 checksum where boto3 sends a
CRC32), through a real SeaweedFS, and an error reply of any shape is read into one code, status
and message."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ssl
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
from botocore.exceptions import ClientError
import pytest
import trustme

from examples.embedded_s3 import EmbeddedS3
from tests.support.seaweed import SeaweedServer
from tests.support.net import free_port
from tests.support.s3_errors import Answer, S3ErrorProxy
from uploader.s3wire import S3Wire, error_of
from uploader.stores import (
    CorrectableStoreError,
    PermanentStoreError,
    S3Store,
    TakenUnreadableError,
    TlsRefusedError,
    TransientStoreError,
    VersionConflict,
)

IDENTITY = ("AKIDWIRECHAIN", "wire-chain-secret-0123456789")

# What differs between two requests by design: boto3's user agent and invocation ids, the
# signature of another instant, the Expect header S3Wire leaves out, and the checksum (CRC32
# from botocore, SHA-256 from object_store), compared on its own.
UNCOMPARED = frozenset({"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "x-amz-date", "authorization",
                        "expect", "accept-encoding", "accept", "connection", "x-amz-checksum-crc32",
                        "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"})


def client(endpoint_url: str | None, *, region: str = "us-east-1", style: str = "path",
           checksums: str | None = None) -> object:
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=region)
    config = botocore.config.Config(s3={"addressing_style": style}, signature_version="s3v4",
                                    retries={"total_max_attempts": 1}, request_checksum_calculation=checksums)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def signed_headers(headers: dict[str, str]) -> list[str]:
    return headers["authorization"].partition("SignedHeaders=")[2].partition(",")[0].split(";")


@pytest.mark.parametrize("checksums", [None, "when_required"])
@pytest.mark.parametrize("acl", [None, "bucket-owner-full-control"])
def test_a_put_carries_what_a_boto3_put_carries(proxy: S3ErrorProxy, bucket: str, checksums: str | None,
                                                acl: str | None, tmp_path: Path) -> None:
    """Without an ACL through object_store, with one (a header object_store cannot send) through
    botocore: the same headers and signed headers as boto3's own PUT either way, and a checksum."""
    s3 = client(proxy.url, checksums=checksums)
    body = b"G" * 188 * 1000
    s3.put_object(Bucket=bucket, Key="a/boto.ts", Body=body, ContentType="video/MP2T", CacheControl="max-age=60",
                  IfNoneMatch="*", **({"ACL": acl} if acl else {}))
    source = tmp_path / "s.ts"
    source.write_bytes(body)
    S3Store(s3, acl=acl).put(bucket, "a/wire.ts", lambda: source.open("rb"), content_type="video/MP2T",
                             cache_control="max-age=60", create_only=True)
    (_, boto), (_, wire) = proxy.headers
    assert {name: value for name, value in wire.items() if name not in UNCOMPARED} == {
        name: value for name, value in boto.items() if name not in UNCOMPARED}
    assert [name for name in signed_headers(wire) if name not in UNCOMPARED] == [
        name for name in signed_headers(boto) if name not in UNCOMPARED]
    assert "expect" not in wire
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    checksum = ("x-amz-checksum-crc32", crc32) if acl else ("x-amz-checksum-sha256", sha256)
    assert [(name, value) for name, value in wire.items() if name.startswith("x-amz-checksum-")] == (
        [checksum] if checksums is None else [])
    if checksums is None:
        assert checksum[0] in signed_headers(wire)
    assert wire["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()  # plain HTTP: the payload is signed
    assert s3.get_object(Bucket=bucket, Key="a/wire.ts")["Body"].read() == body


def test_a_playlist_version_carries_its_condition_and_metadata(proxy: S3ErrorProxy, bucket: str) -> None:
    store = S3Store(client(proxy.url))
    first = store.put_version(bucket, "p/index.m3u8", b"#EXTM3U\n", content_type="application/vnd.apple.mpegurl",
                              cache_control="no-cache", metadata={"hls-state": '{"sequence":1}'}, replaces=None)
    second = store.put_version(bucket, "p/index.m3u8", b"#EXTM3U\n#\n", content_type="application/vnd.apple.mpegurl",
                               cache_control="no-cache", metadata={"hls-state": '{"sequence":2}'}, replaces=first)
    (_, created), (_, replaced) = proxy.headers
    assert created["if-none-match"] == "*" and replaced["if-match"] == first
    assert replaced["x-amz-meta-hls-state"] == '{"sequence":2}' and "x-amz-meta-hls-state" in signed_headers(replaced)
    version = store.get_version(bucket, "p/index.m3u8")
    assert version is not None
    assert (version.etag, version.body, dict(version.metadata)) == (second, b"#EXTM3U\n#\n",
                                                                     {"hls-state": '{"sequence":2}'})
    assert version.age_s is not None and 0 <= version.age_s < 60


@pytest.mark.parametrize(("style", "region", "endpoint", "base", "signing_region"), [
    # AWS, no endpoint given: the regional virtual host, as boto3 addresses it.
    ("virtual", "eu-west-1", None, "https://media.s3.eu-west-1.amazonaws.com", "eu-west-1"),
    ("path", "eu-west-1", None, "https://s3.eu-west-1.amazonaws.com/media", "eu-west-1"),
    ("path", "auto", "https://0123.r2.cloudflarestorage.com", "https://0123.r2.cloudflarestorage.com/media", "auto"),
    # "auto" with an endpoint given: boto3 addresses by path.
    ("auto", "us-west-004", "https://s3.us-west-004.backblazeb2.com",
     "https://s3.us-west-004.backblazeb2.com/media", "us-west-004"),
])
def test_each_bucket_is_addressed_and_signed_as_boto3_resolves_it(style: str, region: str, endpoint: str | None,
                                                                   base: str, signing_region: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    wire = S3Wire(client(endpoint, region=region, style=style))
    assert wire._base("media") == (base, signing_region, "s3")


def test_a_client_that_presigns_with_sigv2_still_signs_with_sigv4(seaweed: SeaweedServer, bucket: str) -> None:
    s3 = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").client(
        "s3", endpoint_url=seaweed.endpoint_url)
    store = S3Store(s3)
    store.put(bucket, "v2/x", b"x", content_type="text/plain", cache_control="no-store")
    assert store.exists(bucket, "v2/x") and not store.exists(bucket, "v2/y")


BOMB = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
        b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
        b'<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
        b'<Error><Code>&h;</Code></Error>')


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>The key does not exist.</Message>"
          b"<Key>k</Key></Error>", "NoSuchKey", "The key does not exist."),
    (503, b"<Error><Code>SlowDown</Code></Error>", "SlowDown", "SlowDown"),
    (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "Unknown", "Unknown"),
    (403, b"", "Unknown", "Unknown"),  # a HEAD has no body
    (400, b"<Error><Code>Trunc", "Unknown", "Unknown"),
    (500, b"\xff\xfe not xml", "Unknown", "Unknown"),
])
def test_an_error_reply_of_any_shape_is_one_code_status_and_message(status: int, body: bytes, code: str,
                                                                     message: str) -> None:
    error = error_of(status, body)
    assert (error.code, error.status, error.message) == (code, status, message)


def test_an_error_reply_that_expands_entities_is_not_expanded() -> None:
    # 10^8 bytes if expanded; expat refuses the amplification, and the reply is no S3 code.
    error = error_of(400, BOMB)
    assert error.status == 400 and len(error.code) < 100


def test_each_request_signs_with_the_credentials_the_chain_gives_then(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile's credential_process (as an SSO or role helper is) that gives the identity the
    store knows, then, once they expired, a revoked one: the first request is signed with the
    first, the next with the one fetched again (refused, and correctable), not a cached copy."""
    fetched, revoked = tmp_path / "fetched", tmp_path / "revoked"
    helper = tmp_path / "helper.py"
    helper.write_text(textwrap.dedent(f"""
        import datetime, json, pathlib
        fetched = pathlib.Path({str(fetched)!r})
        count = int(fetched.read_text()) if fetched.exists() else 0
        fetched.write_text(str(count + 1))
        revoked = pathlib.Path({str(revoked)!r}).exists()
        key, secret = ("AKIDREVOKED", "revoked") if revoked else {IDENTITY!r}
        # Less than botocore's 10-minute mandatory refresh: fetched again for the next request.
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        print(json.dumps({{"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret,
                           "Expiration": expires.isoformat()}}))
    """))
    config = tmp_path / "config"
    config.write_text(f"[profile helper]\ncredential_process = {sys.executable} {helper}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with EmbeddedS3(tmp_path / "s3", identity=IDENTITY) as server:
        bucket = "credentials"
        server.client().create_bucket(Bucket=bucket)
        session = boto3.session.Session(profile_name="helper", region_name="us-east-1")
        store = S3Store(session.client("s3", endpoint_url=server.endpoint_url,
                                       config=botocore.config.Config(s3={"addressing_style": "path"})))
        store.put(bucket, "a.ts", b"first", content_type="video/MP2T", cache_control="no-store")
        revoked.touch()
        with pytest.raises(CorrectableStoreError) as refused:
            store.put(bucket, "b.ts", b"second", content_type="video/MP2T", cache_control="no-store")
    assert "InvalidAccessKeyId" in str(refused.value) and "credentials" in refused.value.fix
    assert int(fetched.read_text()) >= 2


@pytest.mark.parametrize(("answer", "kind", "words"), [
    (Answer(503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"),
     TransientStoreError, "SlowDown (HTTP 503): Reduce your request rate."),
    (Answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"), TransientStoreError, "Unknown (HTTP 502)"),
    (Answer(404, b"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"),
     CorrectableStoreError, "NoSuchBucket (HTTP 404)"),
    (Answer(403, b"<Error><Code>SignatureDoesNotMatch</Code><Message>Check your key.</Message></Error>"),
     CorrectableStoreError, "SignatureDoesNotMatch (HTTP 403): Check your key."),
    (Answer(400, b"<Error><Code>InvalidStorageClass</Code></Error>"), PermanentStoreError, "InvalidStorageClass"),
])
def test_an_error_reply_to_a_put_is_classified_by_its_code_and_status(
        proxy: S3ErrorProxy, bucket: str, answer: Answer, kind: type, words: str) -> None:
    """A PUT's error replies, as object_store reports them (a 404 as FileNotFoundError, a 403 as
    PermissionDeniedError...): the same one-line code, status and message as botocore's path."""
    proxy.fail_next(1, answer)
    with pytest.raises(kind) as raised:
        S3Store(client(proxy.url)).put(bucket, "e/a.ts", b"x", content_type="video/MP2T", cache_control="no-store")
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_a_playlist_version_a_store_refuses_is_a_version_conflict(proxy: S3ErrorProxy, bucket: str) -> None:
    store = S3Store(client(proxy.url))
    first = store.put_version(bucket, "c/index.m3u8", b"#EXTM3U\n", content_type="application/vnd.apple.mpegurl",
                              cache_control="no-cache", metadata={}, replaces=None)
    for replaces in (None, '"not-the-etag"'):  # created already; replacing a version not stored
        with pytest.raises(VersionConflict):
            store.put_version(bucket, "c/index.m3u8", b"#EXTM3U\n#\n", content_type="application/vnd.apple.mpegurl",
                              cache_control="no-cache", metadata={}, replaces=replaces)
    assert store.get_version(bucket, "c/index.m3u8").etag == first


def test_a_put_without_a_reply_is_transient_in_one_line(bucket: str) -> None:
    store = S3Store(client(f"http://127.0.0.1:{free_port()}"))  # nothing listens there
    with pytest.raises(TransientStoreError) as raised:
        store.put(bucket, "n/a.ts", b"x", content_type="video/MP2T", cache_control="no-store")
    assert "Could not connect" in str(raised.value) and "\n" not in str(raised.value)


def puts(proxy: S3ErrorProxy) -> list[dict[str, str]]:
    """The headers of each PUT the proxy saw, in order."""
    return [headers for method, headers in proxy.headers if method == "PUT"]


def by_botocore(headers: dict[str, str]) -> bool:
    """Whether a PUT went out through botocore (its CRC32 checksum) rather than object_store."""
    return "x-amz-checksum-crc32" in headers


@pytest.mark.parametrize(("answer", "words"), [
    # AWS to a client of the wrong region: no Location, so object_store says "redirect without LOCATION".
    (Answer(301, b"<Error><Code>PermanentRedirect</Code><Message>Use the bucket's endpoint.</Message></Error>",
            "application/xml"), "PermanentRedirect (HTTP 301)"),
    # A filtering proxy's page in Latin-1: object_store stops at the first byte that is no UTF-8.
    (Answer(403, "<html><body>Accès refusé</body></html>".encode("latin-1"), "text/html; charset=iso-8859-1"),
     "Unknown (HTTP 403)"),
])
def test_a_reply_object_store_cannot_read_is_read_by_botocore(
        proxy: S3ErrorProxy, bucket: str, answer: Answer, words: str) -> None:
    """The PUT is sent again through botocore, whose reading of the reply stands: correctable, as
    it was before PUTs went through object_store, not "no reply" (transient, no fix)."""
    proxy.fail_next(2, answer)
    with pytest.raises(CorrectableStoreError) as raised:
        S3Store(client(proxy.url)).put(bucket, "e/a.ts", b"x", content_type="video/MP2T", cache_control="no-store")
    assert words in str(raised.value) and "\n" not in str(raised.value)
    assert [by_botocore(headers) for headers in puts(proxy)] == [False, True]


def test_a_put_the_store_took_without_an_etag_is_done(proxy: S3ErrorProxy, bucket: str, s3: object) -> None:
    """A store that answers 200 with no ETag (filen-s3 does): object_store calls that an error; the
    PUT sent again through botocore is taken, so it is not retried for ever."""
    proxy.fail_next(1, Answer(200, forward=True))  # stored, then the reply replaced by one without ETag
    S3Store(client(proxy.url)).put(bucket, "e/no-etag.ts", b"kept", content_type="video/MP2T",
                                   cache_control="no-store")
    assert s3.get_object(Bucket=bucket, Key="e/no-etag.ts")["Body"].read() == b"kept"
    assert [by_botocore(headers) for headers in puts(proxy)] == [False, True]


@pytest.mark.parametrize("key", ["/lead.ts", "trail/", "a//b.ts", "a/../b.ts", "a/./b.ts"])
def test_a_key_object_store_would_change_or_cannot_name_goes_through_botocore(
        proxy: S3ErrorProxy, bucket: str, key: str) -> None:
    """object_store drops a leading or trailing "/" and refuses an empty segment, "." and "..":
    such a PUT names the key as boto3's own PUT does (whatever the store then makes of it)."""
    with contextlib.suppress(ClientError):
        client(proxy.url).put_object(Bucket=bucket, Key=key, Body=b"k")
    with contextlib.suppress(PermanentStoreError):
        S3Store(client(proxy.url)).put(bucket, key, b"k", content_type="video/MP2T", cache_control="no-store")
    (_, boto_path, _), (_, wire_path, _) = proxy.answered
    assert wire_path == boto_path
    assert by_botocore(puts(proxy)[1])


def test_metadata_named_like_a_header_is_kept_as_metadata(proxy: S3ErrorProxy, bucket: str) -> None:
    """object_store would send metadata named content-type as the Content-Type header itself."""
    store = S3Store(client(proxy.url))
    store.put_version(bucket, "m/index.m3u8", b"#EXTM3U\n", content_type="application/vnd.apple.mpegurl",
                      cache_control="no-cache", metadata={"content-type": "text/evil", "state": "1"}, replaces=None)
    found = store.get_version(bucket, "m/index.m3u8")
    assert found is not None and found.metadata == {"content-type": "text/evil", "state": "1"}
    assert [by_botocore(headers) for headers in puts(proxy)] == [True]
    assert puts(proxy)[0]["content-type"] == "application/vnd.apple.mpegurl"


def test_a_large_put_without_a_condition_is_one_request(proxy: S3ErrorProxy, bucket: str, s3: object) -> None:
    """Not a multipart upload (object_store's default above 5 MiB): one request on one connection,
    no s3:AbortMultipartUpload needed, nothing left half-uploaded by a daemon killed meanwhile."""
    body = bytes(range(256)) * (6 * 4096)  # 6 MiB
    S3Store(client(proxy.url)).put(bucket, "big/a.ts", body, content_type="video/MP2T", cache_control="no-store")
    assert [(method, status) for method, _, status in proxy.answered] == [("PUT", 200)]
    assert [by_botocore(headers) for headers in puts(proxy)] == [False]
    assert s3.get_object(Bucket=bucket, Key="big/a.ts")["Body"].read() == body


@pytest.fixture
def private_ca(seaweed: SeaweedServer, tmp_path: Path) -> Iterator[tuple[S3ErrorProxy, Path]]:
    """An HTTPS endpoint in front of the session's SeaweedFS whose certificate a private CA
    signed, and that CA's certificate in a PEM file."""
    with https_proxy(seaweed, tmp_path / "ca.pem") as proxy:
        yield proxy, tmp_path / "ca.pem"


@contextlib.contextmanager
def https_proxy(seaweed: SeaweedServer, bundle: Path, identities: tuple[str, ...] = ("127.0.0.1",),
                **dates: datetime.datetime) -> Iterator[S3ErrorProxy]:
    """An S3ErrorProxy over TLS in front of ``seaweed``, its certificate for ``identities`` (and
    trustme's ``not_before``/``not_after``) signed by a new CA whose certificate goes to ``bundle``."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities, **dates).configure_cert(context)
    ca.cert_pem.write_to_path(str(bundle))
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port), tls=context) as proxy:
        yield proxy


def https_store(endpoint_url: str, verify: str | bool | None = None) -> S3Store:
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    config = botocore.config.Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                    retries={"total_max_attempts": 1})
    return S3Store(session.client("s3", endpoint_url=endpoint_url, config=config, verify=verify))


def test_a_put_over_https_trusts_what_the_client_trusts(private_ca: tuple[S3ErrorProxy, Path], bucket: str) -> None:
    """Refused by a client that does not trust the private CA (retried, and the operator's to
    correct: the fix names where the client's trust comes from); taken with the client's CA
    bundle (``verify``, as AWS_CA_BUNDLE sets it: through botocore, since object_store would add
    it to the system's roots rather than trust it alone) and with
    verification off (through object_store); the payload unsigned either way, as botocore sends it
    over HTTPS."""
    proxy, bundle = private_ca
    with pytest.raises(TlsRefusedError, match="CERTIFICATE_VERIFY_FAILED") as refused:
        https_store(proxy.url).put(bucket, "tls/a.ts", b"a", content_type="video/MP2T", cache_control="no-store")
    assert (f"no CA there signed the certificate of 127.0.0.1:{proxy.port} (or 127.0.0.1:{proxy.port} does not send"
            " its intermediate certificate): name a PEM file holding the store's CA in AWS_CA_BUNDLE") in refused.value.fix
    for verify in (str(bundle), False):
        https_store(proxy.url, verify).put(bucket, "tls/b.ts", b"b", content_type="video/MP2T",
                                           cache_control="no-store")
    bundled, unverified = puts(proxy)
    assert by_botocore(bundled) and not by_botocore(unverified)
    assert bundled["x-amz-content-sha256"] == unverified["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert unverified["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(b"b").digest()).decode()
    assert len(proxy.stored) == 2


def test_a_ca_bundle_only_botocore_reads_still_lets_puts_through(
        private_ca: tuple[S3ErrorProxy, Path], bucket: str, tmp_path: Path) -> None:
    """OpenSSL's TRUSTED CERTIFICATE form (RHEL's ca-bundle.trust.crt), which Python's ssl reads
    and object_store does not: PUTs go out (before: every segment failed as an internal error)."""
    proxy, bundle = private_ca
    trusted = tmp_path / "ca.trust.crt"
    subprocess.run(["openssl", "x509", "-in", str(bundle), "-addtrust", "serverAuth", "-out", str(trusted)],
                   check=True, capture_output=True)
    assert b"BEGIN TRUSTED CERTIFICATE" in trusted.read_bytes()
    https_store(proxy.url, str(trusted)).put(bucket, "tls/t.ts", b"t", content_type="video/MP2T",
                                             cache_control="no-store")
    assert [by_botocore(headers) for headers in puts(proxy)] == [True]
    missing = https_store(proxy.url, str(tmp_path / "no-such-bundle.pem"))
    with pytest.raises(TransientStoreError) as raised:  # as botocore said it: retried until it is there
        missing.put(bucket, "tls/m.ts", b"m", content_type="video/MP2T", cache_control="no-store")
    assert "No such file or directory" in str(raised.value)


def test_ssl_cert_file_which_botocore_ignores_does_not_let_puts_through_either(
        private_ca: tuple[S3ErrorProxy, Path], bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """object_store heeds SSL_CERT_FILE, botocore does not: PUTs trust what every other request
    trusts, so the write check cannot pass where the streams' GETs then fail."""
    proxy, bundle = private_ca
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with pytest.raises(TransientStoreError):
        https_store(proxy.url).put(bucket, "tls/s.ts", b"s", content_type="video/MP2T", cache_control="no-store")
    assert proxy.stored == []


def test_a_ca_bundle_gone_after_the_start_is_the_operator_s_to_correct(
        private_ca: tuple[S3ErrorProxy, Path], bucket: str, tmp_path: Path) -> None:
    """The start-up check reads the bundle (test_cli.py); one removed, emptied or damaged later
    fails every request: retried, held with a fix naming the file (before: "the store did not
    answer")."""
    proxy, _ = private_ca
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    for bundle in (tmp_path / "gone.pem", Path("/dev/null"), damaged):
        with pytest.raises(TlsRefusedError) as refused:
            https_store(proxy.url, str(bundle)).put(bucket, "tls/g.ts", b"g", content_type="video/MP2T",
                                                     cache_control="no-store")
        assert refused.value.fix.startswith(f"the CA bundle {bundle} cannot be read: name a PEM file"), bundle
    assert proxy.stored == []


@pytest.mark.parametrize(("identities", "dates", "fix"), [
    (("store.example.com",), {}, "the certificate of 127.0.0.1:{port} does not name it: fix --endpoint-url"),
    (("127.0.0.1",), {"not_after": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)},
     "the certificate of 127.0.0.1:{port}, or a CA certificate of its chain, is out of its dates (certificate has"
     " expired): renew it, or check this host's clock"),
    (("127.0.0.1",), {"not_before": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)},
     "the certificate of 127.0.0.1:{port}, or a CA certificate of its chain, is out of its dates (certificate is not"
     " yet valid): renew it, or check this host's clock"),
])
def test_a_certificate_of_a_trusted_ca_that_is_no_good_is_said_as_such(
        seaweed: SeaweedServer, bucket: str, tmp_path: Path, identities: tuple[str, ...],
        dates: dict[str, datetime.datetime], fix: str) -> None:
    """Its CA is trusted: the fix is the certificate's name, or its dates, not another CA."""
    bundle = tmp_path / "ca.pem"
    with https_proxy(seaweed, bundle, identities, **dates) as proxy:
        with pytest.raises(TlsRefusedError) as refused:
            https_store(proxy.url, str(bundle)).put(bucket, "tls/c.ts", b"c", content_type="video/MP2T",
                                                     cache_control="no-store")
        assert refused.value.fix.startswith(fix.format(port=proxy.port)), refused.value.fix
        assert proxy.stored == []


def test_only_a_refused_get_makes_a_taken_name_unreadable(proxy: S3ErrorProxy, bucket: str) -> None:
    """A create-only PUT answered 412 is compared by a GET: refused (403), the name is taken and
    unreadable (the fix: s3:GetObject); answered 401 (credentials), the credentials' own fix."""
    store = S3Store(client(proxy.url))
    for status, kind, fix in ((403, TakenUnreadableError, "s3:GetObject"), (401, CorrectableStoreError, "credentials")):
        proxy.fail_next(1, Answer(412, b"<Error><Code>PreconditionFailed</Code></Error>", "application/xml"))
        proxy.fail_next(1, Answer(status, b""), methods=("GET",))
        with pytest.raises(CorrectableStoreError) as refused:
            store.put(bucket, f"taken/{status}.ts", b"t", content_type="video/MP2T", cache_control="no-store",
                      create_only=True)
        assert type(refused.value) is kind and fix in refused.value.fix, refused.value


def test_an_https_endpoint_on_a_plain_http_port_is_the_operator_s_to_correct(seaweed: SeaweedServer,
                                                                            bucket: str) -> None:
    with pytest.raises(TlsRefusedError) as refused:
        https_store(f"https://127.0.0.1:{seaweed.s3_port}").put(bucket, "tls/h.ts", b"h", content_type="video/MP2T",
                                                              cache_control="no-store")
    assert refused.value.fix == f"127.0.0.1:{seaweed.s3_port} does not answer TLS: is --endpoint-url http://, or another port?"
