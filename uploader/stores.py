"""Where objects go: S3 (any S3-compatible server) or a local directory.

A store's ``put``, ``exists`` and ``delete`` either succeed or raise one of three errors, by who
can make the same request succeed: ``TransientStoreError`` (time: the store is down, slow or
throttling), ``CorrectableStoreError`` (the operator: credentials, permissions, a missing bucket,
an expired token; it carries the fix) or ``PermanentStoreError`` (nobody: this request can never
succeed). The publisher decides what to do with each.

A create-only PUT (``create_only=True``, used for segments) never replaces an object: S3's
``If-None-Match: *`` (412 PreconditionFailed when the key is taken), a file store's exclusive
create. When the key is taken, the stored bytes are compared with the body: the same bytes are a
redo (a PUT whose reply was lost, a daemon killed before it recorded the PUT) and the PUT
succeeds; other bytes raise ``ObjectTakenError`` and the stored object is left as it is.

A store that keeps versions (``versions``: S3, a local directory) also writes playlists as a
chain (``put_version``): each PUT replaces only the version its writer last read or wrote, named
by its entity tag (S3's ``If-Match: ETAG``, ``If-None-Match: *`` for the first), so that a writer
another has overtaken is refused by the store itself (``VersionConflict``); ``get_version`` reads
the version there, with the metadata the daemon wrote beside it (docs/architecture.md, "Several
daemons").
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import errno
import fcntl
import hashlib
import io
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from common.durable import write_file
from common.tls import TlsFailure, detail, tls_failure

from .errors import UploaderError
from .s3wire import S3ErrorReply, S3Reply, S3Wire

SEGMENT_CONTENT_TYPE = "video/MP2T"
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"

# A body is bytes, or a callable that opens a fresh file each time (so a retry rereads it).
Body = bytes | Callable[[], BinaryIO]

# S3 error codes that mean "later", whatever their HTTP status says.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestTimeTooSkewed",  # the clock catches up; retrying re-signs with the new time
        "ConditionalRequestConflict",  # AWS: a concurrent conditional write to the key; retry
    }
)
# The body received did not match the Content-MD5, checksum or x-amz-content-sha256 sent with it
# (AWS's error list, docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html): damaged in
# transit, and a retry reads the file again (DigestMismatchError). Not InvalidDigest: a malformed
# Content-MD5 or checksum header, which a retry sends again.
_DIGEST_MISMATCH_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})

# Local file system errors that go away on their own (space freed, device back).
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})

# Local file system errors the operator corrects (ownership, mode, a read-only mount).
_CORRECTABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

_FIX_CREDENTIALS = (
    "give the daemon valid credentials (environment, shared profile or instance/container role)"
    " and restart it if they come from its environment"
)
_FIX_TOKEN = "renew the daemon's session token (its role, profile or environment); it is retried meanwhile"
# What the S3 client trusts is one CA bundle, named by the first of these, else botocore's own.
_NAME_A_BUNDLE = ("name a PEM file holding the store's CA in AWS_CA_BUNDLE (or ca_bundle in the shared config file,"
                  " or REQUESTS_CA_BUNDLE) and restart the daemon")
_FIX_REGION = "the bucket is in another region or behind another endpoint: fix --region or --endpoint-url"
# The codes S3 clones refuse a request header they do not implement with.
_HEADER_REFUSALS = frozenset({"InvalidArgument", "NotImplemented", "InvalidRequest"})
_FIX_CHECKSUMS = ("the store does not take boto3's checksum headers: set --s3-checksums when_required"
                  " (s3_checksums in the config file) and restart the daemon")
_FIX_DIGEST = ("the store answers every attempt that the body does not match its checksum: if it does not"
               " compute boto3's checksums as AWS does, set --s3-checksums when_required (s3_checksums in the"
               " config file) and restart the daemon; else something between the daemon and the store alters"
               " request bodies")
# How stores that do not take boto3's streaming upload with a trailing checksum (over HTTPS since
# 1.36: Content-Encoding aws-chunked, x-amz-trailer, x-amz-content-sha256
# STREAMING-UNSIGNED-PAYLOAD-TRAILER, no Content-Length) refuse it: (code, a piece of the
# message in lower case, "" for any), each as reported where cited.
_TRAILER_REFUSALS: tuple[tuple[str, str], ...] = (
    # Backblaze B2: "Unsupported header 'x-amz-trailer' received for this API call."
    # https://github.com/tailscale/tailscale/issues/16124
    ("InvalidArgument", "x-amz-trailer"),
    # Scaleway: "The value specified in the x-amz-trailer header is not supported"
    # https://github.com/scaleway/docs-content/issues/4633
    ("InvalidRequest", "x-amz-trailer"),
    # 501 "A header you provided implies x-amz-trailer operation which is not implemented"
    # https://github.com/langgenius/dify-cloud-kit/issues/9
    ("NotImplemented", "x-amz-trailer"),
    # OpenStack Swift's s3api (Infomaniak): "Transfering payloads in multiple chunks using
    # aws-chunked is not supported." https://github.com/boto/boto3/issues/4409
    ("NotImplemented", "aws-chunked"),
    # "Invalid trailing header names in x-amz-trailer." https://github.com/boto/boto3/issues/4396
    ("InvalidTrailer", ""),
    # Scality CloudServer: "trailing checksum is not supported"
    # https://github.com/scality/cloudserver/issues/5553
    ("BadRequest", "trailing checksum"),
    # s3s, a Rust S3 server library: "invalid header: x-amz-content-sha256", the streaming value
    # unknown to it; AWS's own XAmzContentSHA256Mismatch is a damaged body (transient).
    # https://github.com/s3s-project/s3s/issues/328
    ("XAmzContentSHA256Mismatch", "invalid header"),
    # Storj's gateway, a MinIO fork from before MinIO took the trailer: "You must provide the
    # Content-Length HTTP header." (boto3 sends none with aws-chunked; with any other PUT it does).
    # https://github.com/storj/gateway-st/issues/89
    ("MissingContentLength", ""),
)


def _fix_permission(bucket: str) -> str:
    # Some S3-compatible stores (SeaweedFS) answer AccessDenied for a bucket that does not exist.
    return (f"check that bucket {bucket} exists and grant the daemon's credentials s3:PutObject on"
            f" arn:aws:s3:::{bucket}/* (IAM policy or bucket policy)")


def _fix_missing_bucket(bucket: str) -> str:
    return f"create bucket {bucket}, or correct the bucket name the segmenter sends"


# S3 error codes an operator corrects, each with what to do (by bucket name).
_CORRECTABLE_CODES: dict[str, Callable[[str], str]] = {
    "AccessDenied": _fix_permission,
    "AllAccessDisabled": _fix_permission,
    "AccountProblem": lambda bucket: "the store disabled the account: settle it with the provider",
    "InvalidAccessKeyId": lambda bucket: _FIX_CREDENTIALS,
    "SignatureDoesNotMatch": lambda bucket: _FIX_CREDENTIALS,
    "NotSignedUp": lambda bucket: _FIX_CREDENTIALS,
    "ExpiredToken": lambda bucket: _FIX_TOKEN,
    "InvalidToken": lambda bucket: _FIX_TOKEN,
    "TokenRefreshRequired": lambda bucket: _FIX_TOKEN,
    "NoSuchBucket": _fix_missing_bucket,
    "PermanentRedirect": lambda bucket: _FIX_REGION,
    "AuthorizationHeaderMalformed": lambda bucket: _FIX_REGION,
    "AccessControlListNotSupported": lambda bucket: f"bucket {bucket} refuses ACLs: remove --acl",
}

# HTTP statuses without a code the daemon knows that still say "the setup is wrong".
_CORRECTABLE_STATUSES: dict[int, Callable[[str], str]] = {
    301: lambda bucket: _FIX_REGION,
    307: lambda bucket: _FIX_REGION,
    401: lambda bucket: _FIX_CREDENTIALS,
    403: _fix_permission,
    404: _fix_missing_bucket,  # a PUT cannot miss its key: its bucket is missing
}


class StoreError(UploaderError):
    """A PUT failed; ``str(error)`` is a one-line reason fit for the log."""


class TransientStoreError(StoreError):
    """The store is down, slow or throttling: the PUT is retried."""

    transient = True


class CorrectableStoreError(TransientStoreError):
    """The store refused for a reason the operator can correct (credentials, permissions, a missing
    bucket, an expired token): the PUT is retried until it is corrected, and the log says how.
    ``fix``: one line telling the operator what to do.
    """

    def __init__(self, reason: str, *, fix: str) -> None:
        super().__init__(reason)
        self.fix = fix


class TlsRefusedError(CorrectableStoreError):
    """A TLS connection to the store failed on a setting of this side: a certificate the client
    does not trust, has expired or does not name the host, a CA bundle that cannot be read, a
    port that does not speak TLS. Its ``fix`` is in the daemon's settings (or the store's
    certificate), never a permission."""


class DigestMismatchError(TransientStoreError):
    """The store found the body unlike the checksum sent with it. Damage in transit, which a retry
    mends; but an answer that repeats on every attempt is a store that miscomputes boto3's
    checksums (some S3 clones answer every PUT so since boto3 1.36) or a proxy that alters
    bodies: after ``held_after`` attempts the PUT is ``held()``, with ``fix``."""

    held_after = 3
    fix = _FIX_DIGEST

    def held(self) -> CorrectableStoreError:
        """This refusal as one the operator corrects (the stream is held, the log says how)."""
        return CorrectableStoreError(str(self), fix=self.fix)


class PermanentStoreError(StoreError):
    """No retry of this request can succeed (a key the store refuses, a body it will never take)."""


class ObjectTakenError(PermanentStoreError):
    """A create-only PUT found another object, with other bytes, under its key; it is kept."""


class TakenUnreadableError(CorrectableStoreError):
    """A create-only PUT found its key taken and cannot read the object to compare it (no
    s3:GetObject): a redo cannot be told from a reuse until the operator grants it."""


class ReadRefused(CorrectableStoreError):
    """The store refuses this daemon's credentials a read (S3's AccessDenied to a GET: no
    s3:GetObject), which a write may still be allowed."""


class VersionConflict(StoreError):
    """A conditional PUT found another version under its key than the one it replaces (S3's 412
    PreconditionFailed to If-Match or If-None-Match): another writer wrote it since. Not retried."""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an object replaced in place (a playlist), as ``get_version`` reads it."""

    etag: str  # the store's entity tag, quoted as the store gives it (RFC 9110 8.8.3)
    body: bytes
    metadata: Mapping[str, str]  # what ``put_version`` wrote beside it (S3 user metadata); {} if none
    # Seconds since it was written, by the store's own clock (S3: the reply's Date less the
    # object's Last-Modified, both whole seconds); None when the store does not say.
    age_s: float | None = None


class Store(Protocol):
    description: str  # for the startup line
    # Whether the store has ``get_version`` and ``put_version`` (module docstring); False for
    # FTP, SFTP and WebDAV, whose playlists are replaced unconditionally.
    versions: bool

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """Store ``body`` under ``key``, replacing what is there; ``create_only``: never replace
        (see the module's docstring), raising ObjectTakenError for other bytes already there."""
        ...

    def check_create_only(self, bucket: str) -> bool:
        """Whether the store refuses a create-only PUT of ``WRITE_CHECK_KEY`` (which must exist):
        False when it ignores the condition, and the store then checks each create-only PUT in
        ``bucket`` with a HEAD first. Raises StoreError as ``put`` does."""
        ...

    def exists(self, bucket: str, key: str) -> bool:
        """Whether the object is there; raises StoreError when the store cannot say."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; one that is already gone is not an error."""
        ...

    def close(self) -> None:
        """Close the connections kept for the next request (at the daemon's exit)."""
        ...

    def get_version(self, bucket: str, key: str) -> Version | None:
        """The version stored under ``key``; None when there is none. Raises StoreError."""
        ...

    def put_version(self, bucket: str, key: str, body: bytes, *, content_type: str, cache_control: str,
                    metadata: Mapping[str, str], replaces: str | None) -> str:
        """Store ``body`` under ``key`` only if the version there is ``replaces`` (an entity tag;
        None: only if there is none), with ``metadata`` beside it (ASCII keys and values, 2 KB in
        all: S3's limit on user metadata). Returns the new version's entity tag. Raises
        VersionConflict when the version there is another, or StoreError as ``put`` does."""
        ...


# Written, and overwritten at every start, by ``check_writable`` at the bucket's root.
WRITE_CHECK_KEY = ".hls-uploadd-write-check"
WRITE_CHECK_BODY = b"hls-uploadd checks at start that it can write to this bucket; safe to delete.\n"


def check_writable(store: Store, bucket: str) -> bool:
    """PUT ``WRITE_CHECK_KEY`` into ``bucket``: the one way to know a PUT will be allowed (a HEAD
    needs other permissions than a PUT); then return ``store.check_create_only(bucket)``. Raises
    the PUT's StoreError."""
    store.put(bucket, WRITE_CHECK_KEY, WRITE_CHECK_BODY, content_type="text/plain", cache_control="no-store")
    return store.check_create_only(bucket)


def body_digest(body: Body | BinaryIO) -> bytes:
    """SHA-256 of a body, or of an open file read to its end in 1 MiB chunks."""
    digest = hashlib.sha256()
    if isinstance(body, bytes):
        digest.update(body)
    elif callable(body):
        with body() as file:
            for chunk in iter(partial(file.read, 1 << 20), b""):
                digest.update(chunk)
    else:
        for chunk in iter(partial(body.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


@contextlib.contextmanager
def opened(body: Body) -> Iterator[BinaryIO]:
    """``body`` as a file open for reading from its start (a fresh one for a callable)."""
    if isinstance(body, bytes):
        yield io.BytesIO(body)
    else:
        with body() as file:
            yield file


def taken(where: str) -> ObjectTakenError:
    return ObjectTakenError(f"{where}: an object with other bytes is already stored under this key and is kept"
                            " (create-only PUT)")


class S3Store:
    """Requests through an ``S3Wire`` on an injected boto3 S3 client (its retries off: the
    publisher retries)."""

    versions = True

    def __init__(self, client: Any, *, acl: str | None = None, description: str = "s3") -> None:
        self._client = client
        self._wire = S3Wire(client)
        self._acl = acl
        self.description = description
        self._unconditional: set[str] = set()  # buckets whose store ignores If-None-Match

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle the client checks the store's certificate with (a path); None for
        botocore's own bundle or no check."""
        verify = self._wire.verify
        return verify if isinstance(verify, str) else None

    def _errors(self, bucket: str, key: str) -> contextlib.AbstractContextManager[None]:
        """A request's errors on ``key`` as StoreErrors (``_s3_errors``, a TLS failure's fix naming
        this client's CA bundle)."""
        return _s3_errors(bucket, key, self.ca_bundle)

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """PutObject; ``create_only``: with ``If-None-Match: *`` (a HEAD first in a bucket whose
        store ignores it), a 412 answered by a GET of the stored object compared with ``body``.
        Needs s3:PutObject, and s3:GetObject for the comparison."""
        data = read_body(body)
        condition: dict[str, str] = {}
        if create_only:
            if bucket in self._unconditional:
                if self.exists(bucket, key):
                    self._compare(bucket, key, data)
                    return
            else:
                condition["If-None-Match"] = "*"
        with self._errors(bucket, key):
            try:
                self._put_object(bucket, key, data, content_type, cache_control, condition)
                return
            except S3ErrorReply as error:
                if not create_only or error.status != 412:
                    raise
        self._compare(bucket, key, data)

    def _put_object(self, bucket: str, key: str, body: bytes, content_type: str, cache_control: str,
                    headers: Mapping[str, str]) -> S3Reply:
        """PutObject with the store's ACL and ``headers`` (conditions, metadata); its reply."""
        extra = {"x-amz-acl": self._acl} if self._acl else {}
        return self._wire.request("PUT", bucket, key, body=body, headers={
            "Content-Type": content_type, "Cache-Control": cache_control, **extra, **headers})

    def _compare(self, bucket: str, key: str, body: bytes) -> None:
        """GET the object a create-only PUT found under ``key``: return when it holds ``body``'s
        bytes, else raise ObjectTakenError; gone meanwhile is transient (the PUT is tried again),
        a GET refused 403 TakenUnreadableError (s3:GetObject), any other error as ``put`` raises."""
        where = f"s3://{bucket}/{key}"
        with self._errors(bucket, key):
            try:
                stored = self._wire.request("GET", bucket, key).body
            except S3ErrorReply as error:
                if error.code == "NoSuchKey":
                    raise TransientStoreError(f"{where}: there at the create-only PUT, gone at the GET that"
                                              " compares it; the PUT is tried again") from None
                if error.status == 403:
                    raise TakenUnreadableError(
                        f"{where} is already there (create-only PUT) and cannot be read to compare it:"
                        f" {classify_s3_error(error, bucket, key)}",
                        fix=f"grant the daemon's credentials s3:GetObject on arn:aws:s3:::{bucket}/*: it tells a"
                            " redo from a segment name reused") from None
                raise
        if stored != body:
            raise taken(where)

    def check_create_only(self, bucket: str) -> bool:
        """A create-only PUT of ``WRITE_CHECK_KEY``: True on a 412; False when the store ignores
        If-None-Match (and replaced the object), remembered: its create-only PUTs in ``bucket``
        HEAD first, which two writers racing for one key can still both pass."""
        with self._errors(bucket, WRITE_CHECK_KEY):
            try:
                self._put_object(bucket, WRITE_CHECK_KEY, WRITE_CHECK_BODY, "text/plain", "no-store",
                                 {"If-None-Match": "*"})
            except S3ErrorReply as error:
                if error.status == 412:
                    self._unconditional.discard(bucket)
                    return True
                raise
        self._unconditional.add(bucket)
        return False

    def exists(self, bucket: str, key: str) -> bool:
        """HEAD the object: True when found, False on 404; otherwise raises as ``put`` does."""
        with self._errors(bucket, key):
            try:
                self._wire.request("HEAD", bucket, key)
            except S3ErrorReply as error:
                if error.status == 404:
                    return False
                raise
        return True

    def delete(self, bucket: str, key: str) -> None:
        """DeleteObject (needs s3:DeleteObject); S3 answers 204 for a missing key too."""
        with self._errors(bucket, key):
            self._wire.request("DELETE", bucket, key)

    def get_version(self, bucket: str, key: str) -> Version | None:
        """GetObject: the body, ETag and user metadata; None on NoSuchKey. Needs s3:GetObject:
        refused, ReadRefused."""
        with self._errors(bucket, key):
            try:
                reply = self._wire.request("GET", bucket, key)
            except S3ErrorReply as error:
                if error.code == "NoSuchKey":
                    return None
                if error.status == 403:
                    raise ReadRefused(f"s3://{bucket}/{key}: {error}",
                                      fix=f"grant the daemon's credentials s3:GetObject on arn:aws:s3:::{bucket}/*")
                raise
        headers = reply.headers
        return Version(headers.get("ETag", ""), reply.body, reply.metadata,
                       age_s(headers.get("Date"), headers.get("Last-Modified")))

    def put_version(self, bucket: str, key: str, body: bytes, *, content_type: str, cache_control: str,
                    metadata: Mapping[str, str], replaces: str | None) -> str:
        """PutObject with ``If-Match: replaces`` (``If-None-Match: *`` for None) and the metadata
        as ``x-amz-meta-*``; a 412, or NoSuchKey to an If-Match, is a VersionConflict. A store
        that ignores conditions replaces whatever is there (the start-up check of create-only PUTs
        warns of such a store)."""
        headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()}
        headers.update({"If-Match": replaces} if replaces is not None else {"If-None-Match": "*"})
        with self._errors(bucket, key):
            try:
                reply = self._put_object(bucket, key, body, content_type, cache_control, headers)
            except S3ErrorReply as error:
                # AWS answers an If-Match on a missing key 404 NoSuchKey, SeaweedFS 412: either way
                # the version named is not there.
                if error.status == 412 or (replaces is not None and error.code == "NoSuchKey"):
                    raise VersionConflict(f"s3://{bucket}/{key}: the version stored is not "
                                          f"{replaces or 'absent'}: another writer wrote it") from None
                raise
        return str(reply.headers.get("ETag", ""))

    def close(self) -> None:
        """Nothing: the client's connections close with the process (a PUT may still run)."""


def read_body(body: Body) -> bytes:
    """A body's bytes (a callable's file read whole: a segment is a few MB, and its checksum,
    payload hash and send read it three times)."""
    if isinstance(body, bytes):
        return body
    with body() as file:
        return file.read()


def age_s(date: str | None, last_modified: str | None) -> float | None:
    """An object's age by the store's clock: a reply's Date header less its Last-Modified (both
    RFC 9110 HTTP-dates, whole seconds); None when either is missing or unreadable."""
    if not date or not last_modified:
        return None
    try:
        now, modified = email.utils.parsedate_to_datetime(date), email.utils.parsedate_to_datetime(last_modified)
        if now.tzinfo is None or modified.tzinfo is None:  # "-0000": UTC
            now, modified = now.replace(tzinfo=datetime.timezone.utc), modified.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, (now - modified).total_seconds())
    except (TypeError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def _s3_errors(bucket: str, key: str, ca_bundle: str | None) -> Iterator[None]:
    """An S3 request's errors on ``key`` as a StoreError of the right kind (``ca_bundle``: the
    file the client trusts, None for botocore's own, to name in a TLS failure's fix)."""
    import botocore.exceptions as bx

    try:
        yield
    except S3ErrorReply as error:
        raise classify_s3_error(error, bucket, key) from None
    except bx.SSLError as error:
        raise _classify_tls_error(error, bucket, key, ca_bundle) from None
    except (bx.ConnectionError, bx.HTTPClientError) as error:
        # Refused, reset, DNS, connect/read timeouts: the store may come back.
        raise TransientStoreError(f"s3://{bucket}/{key}: {error}") from None
    except bx.BotoCoreError as error:
        raise _classify_botocore_error(error, bucket, key) from None


def _classify_tls_error(error: Exception, bucket: str, key: str, ca_bundle: str | None) -> StoreError:
    """botocore's SSLError (a TLS connection to the store that failed) through
    ``classify_tls_error``, with what the S3 client trusts (``ca_bundle``; None: botocore's own)."""
    cause: BaseException = getattr(error, "kwargs", {}).get("error") or error  # urllib3's SSLError
    cause = cause.__cause__ or cause.__context__ or cause  # what ssl, urllib3 or the CA file's open raised
    host = urlsplit(getattr(error, "kwargs", {}).get("endpoint_url", "")).netloc or "the store"
    source = f"the CA bundle {ca_bundle}" if ca_bundle else "botocore's own CA bundle (not the system's)"
    trust = TlsTrust(
        source=source, trusts=f"the S3 client trusts {source} alone", name_a_ca=_NAME_A_BUNDLE,
        endpoint="--endpoint-url", plain_scheme="http://",
        other_name="give --s3-addressing-style path for a bucket name its certificate does not cover (one with dots)")
    return classify_tls_error(cause, f"s3://{bucket}/{key}: {error}", host, trust)


@dataclass(frozen=True)
class TlsTrust:
    """Where one store client's trust in certificates comes from, for a TLS refusal's fix.

    ``source``: the CA file(s) it trusts, named ("the CA bundle /etc/ca.pem"); ``trusts``: that
    as a sentence ("the S3 client trusts ... alone"); ``name_a_ca``: how the operator makes it
    trust another CA; ``endpoint``: the setting that names the store's URL ("--endpoint-url");
    ``plain_scheme``: its scheme without TLS ("http://");
    ``other_name``: another remedy for a certificate naming another host, if the store has one.
    """

    source: str
    trusts: str
    name_a_ca: str
    endpoint: str
    plain_scheme: str
    other_name: str = ""


def classify_tls_error(cause: BaseException, reason: str, host: str, trust: TlsTrust) -> StoreError:
    """A TLS connection to ``host`` that failed with ``cause`` (what ssl, urllib3 or the CA file's
    open raised) as a TlsRefusedError when a setting of either side refused it, with its fix
    (common.tls.tls_failure: a certificate naming another host, out of its dates, not for a
    server, signed by no CA ``trust`` names or refused otherwise; the store wanting a client
    certificate or an older TLS; a port without TLS), or a CA file that cannot be read (an OS
    error, or OpenSSL's X509 or PEM library refusing the file). Anything else (a handshake cut
    off, reset, timed out) is a TransientStoreError. ``reason`` is the error's text. Either way
    the request is retried."""
    certificate = f"the certificate of {host}"
    fixes = {
        TlsFailure.OTHER_NAME: f"{certificate} does not name it: fix {trust.endpoint}"
                               + (f", or {trust.other_name}" if trust.other_name else ""),
        TlsFailure.OUT_OF_DATES: f"{certificate}, or a CA certificate of its chain, is out of its dates"
                                 f" ({detail(cause)}): renew it, or check this host's clock",
        TlsFailure.WRONG_PURPOSE: f"{certificate} is not one for a server (its extendedKeyUsage has no serverAuth):"
                                  " issue one that is",
        TlsFailure.UNTRUSTED: f"{trust.trusts}, and no CA there signed {certificate} (or {host} does not send its"
                              f" intermediate certificate): {trust.name_a_ca}, or fix {trust.endpoint}",
        TlsFailure.REFUSED: f"{certificate} is refused ({detail(cause)}): fix the certificate, or {trust.endpoint}",
        TlsFailure.CERTIFICATE_REQUIRED: f"{host} asks for a client certificate, which the daemon does not present:"
                                         " let it serve the daemon without one",
        TlsFailure.PROTOCOL_VERSION: f"{host} and the daemon share no TLS version (the daemon speaks 1.2 or"
                                     " later): upgrade the server's TLS",
        TlsFailure.NOT_TLS: f"{host} does not answer TLS: is {trust.endpoint} {trust.plain_scheme}, or another port?",
    }
    failure = tls_failure(cause)
    if failure in fixes:
        return TlsRefusedError(reason, fix=fixes[failure])
    if getattr(cause, "library", None) in ("X509", "PEM") or (isinstance(cause, OSError)
                                                               and not isinstance(cause, ssl.SSLError)):
        return TlsRefusedError(reason, fix=f"{trust.source} cannot be read: {trust.name_a_ca}")
    return TransientStoreError(reason)


def _classify_botocore_error(error: Exception, bucket: str, key: str) -> StoreError:
    """A client-side boto error: missing or unusable credentials are the operator's to correct (an
    instance-metadata hiccup among them); anything else cannot succeed on a retry."""
    import botocore.exceptions as bx

    credentials = tuple(
        getattr(bx, name)
        for name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                     "MetadataRetrievalError", "TokenRetrievalError", "SSOError", "SSOTokenLoadError",
                     "UnauthorizedSSOTokenError", "NoAuthTokenError")
        if hasattr(bx, name)
    )
    if isinstance(error, credentials):
        return CorrectableStoreError(f"s3://{bucket}/{key}: {error}", fix=_FIX_CREDENTIALS)
    return PermanentStoreError(f"s3://{bucket}/{key}: {error}")


def _refuses_checksums(code: str, message: str) -> bool:
    """Whether an S3 error reply refuses boto3's checksums, which --s3-checksums when_required
    leaves out: a header (x-amz-checksum-*, x-amz-sdk-checksum-algorithm, sent with every PUT since
    1.36: Backblaze B2, Cloudflare R2, older MinIO; 2025) or the trailer (``_TRAILER_REFUSALS``).
    Not a checksum that did not match (BadDigest, XAmzContentSHA256Mismatch: transient), nor one
    the store requires (Object Lock): those are no refusal."""
    text = message.lower()
    if code in _HEADER_REFUSALS and "checksum" in text and "required" not in text:
        return True
    return any(code == refused and piece in text for refused, piece in _TRAILER_REFUSALS)


def classify_s3_error(error: S3ErrorReply, bucket: str, key: str) -> StoreError:
    """An S3 error reply as transient (5xx, 429, throttling, timeouts; a body damaged in transit:
    BadDigest, XAmzContentSHA256Mismatch, DigestMismatchError), correctable (credentials, permissions, tokens, a
    missing bucket, a wrong region: ``_CORRECTABLE_CODES``, or a 301, 307, 401, 403 or 404 without
    a known code; a store that does not take boto3's checksum headers or trailer:
    ``_refuses_checksums``) or permanent (any other 4xx)."""
    code, status, message = error.code, error.status, error.message
    reason = f"s3://{bucket}/{key}: {code} (HTTP {status or '?'}): {message}"
    if _refuses_checksums(code, message):
        return CorrectableStoreError(reason, fix=_FIX_CHECKSUMS)
    if code in _DIGEST_MISMATCH_CODES:
        return DigestMismatchError(reason)
    if code in _TRANSIENT_CODES or status >= 500 or status == 429 or status == 0:
        return TransientStoreError(reason)
    fix = _CORRECTABLE_CODES.get(code) or _CORRECTABLE_STATUSES.get(status)
    if fix is not None:
        return CorrectableStoreError(reason, fix=fix(bucket))
    return PermanentStoreError(reason)


def file_etag(body: bytes) -> str:
    """A file's entity tag: the MD5 of its bytes, quoted, as S3 tags a single-part object."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


class FileStore:
    """Objects as files ``ROOT/BUCKET/KEY``, each written to a temp name, fsync'd, then renamed
    (create-only: hard-linked, which fails when the name is taken).

    Content type and cache control are not stored: a web server in front decides them by
    extension. A key can never name a path outside ``ROOT/BUCKET``.
    """

    versions = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"file://{root}"

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        target = self.path_for(bucket, key)
        with self._os_errors(bucket, target):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if isinstance(body, bytes):
                    write_file(target, body, exclusive=create_only)
                else:
                    with body() as source:
                        write_file(target, iter(partial(source.read, 1 << 20), b""), exclusive=create_only)
                return
            except FileExistsError:
                if not create_only:
                    raise
            try:
                stored = target.open("rb")
            except FileNotFoundError:
                raise TransientStoreError(f"{target}: there at the exclusive create, gone when opened to compare it;"
                                          " the PUT is tried again") from None
            with stored:
                if body_digest(stored) != body_digest(body):
                    raise taken(str(target))

    def check_create_only(self, bucket: str) -> bool:
        """Always True: an exclusive create is the file system's own."""
        return True

    def exists(self, bucket: str, key: str) -> bool:
        """Whether ``ROOT/BUCKET/KEY`` is a file."""
        return self.path_for(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        target = self.path_for(bucket, key)
        with self._os_errors(bucket, target):
            target.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to close."""

    def get_version(self, bucket: str, key: str) -> Version | None:
        """The file's bytes and its entity tag (``file_etag``); no metadata (a web server
        serves the directory, and nothing else is stored beside the file)."""
        target = self.path_for(bucket, key)
        with self._os_errors(bucket, target):
            try:
                with target.open("rb") as file:
                    body = file.read()
                    modified = os.fstat(file.fileno()).st_mtime
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None  # none there; a PUT finds out why it cannot write one
        return Version(file_etag(body), body, {}, max(0.0, time.time() - modified))

    def put_version(self, bucket: str, key: str, body: bytes, *, content_type: str, cache_control: str,
                    metadata: Mapping[str, str], replaces: str | None) -> str:
        """Under an exclusive flock(2) of the file's directory, which every daemon writing a
        version there takes (on one host, or a file system whose locks span hosts): compare the
        file's entity tag with ``replaces``, then write it whole (``write_file``). ``metadata`` is
        not kept."""
        target = self.path_for(bucket, key)
        with self._os_errors(bucket, target):
            target.parent.mkdir(parents=True, exist_ok=True)
            directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(directory, fcntl.LOCK_EX)
                try:
                    stored = target.read_bytes()
                except FileNotFoundError:
                    stored = None
                found = file_etag(stored) if stored is not None else None
                if found != replaces:
                    raise VersionConflict(f"{target}: the version stored is not {replaces or 'absent'}: another"
                                          " writer wrote it")
                write_file(target, body)
            finally:
                os.close(directory)  # releases the lock
        return file_etag(body)

    @contextlib.contextmanager
    def _os_errors(self, bucket: str, target: Path) -> Iterator[None]:
        """OSError on ``target`` as a StoreError of the right kind."""
        try:
            yield
        except OSError as error:
            reason = f"{target}: {error.strerror or error}"
            if error.errno in _TRANSIENT_ERRNOS:
                raise TransientStoreError(reason) from None
            if error.errno in _CORRECTABLE_ERRNOS:
                fix = f"let the daemon's user write under {self.root / bucket} (owner, mode, a read-only mount)"
                raise CorrectableStoreError(reason, fix=fix) from None
            raise PermanentStoreError(reason) from None

    def path_for(self, bucket: str, key: str) -> Path:
        """``ROOT/BUCKET/KEY``; raises PermanentStoreError for a key that would leave it."""
        parts = key.split("/")
        if not bucket or "/" in bucket or bucket in (".", "..") or any(p in ("", ".", "..") for p in parts):
            raise PermanentStoreError(f"key {key!r} in bucket {bucket!r} is not a plain relative path")
        return self.root.joinpath(bucket, *parts)

