"""One S3 request at a time: PUTs through object_store (Rust, via obstore), the others through
botocore's own signer and connection pool, both without boto3's per-call machinery.

A boto3 ``put_object`` spends about 1.2 ms of CPU on a 150-byte playlist before a byte leaves:
parameter validation, serialization, some 30 event hooks, the response parser; even botocore's
signer and urllib3 alone cost 2 ms for a segment and its playlist. The daemon needs five
requests (PUT, GET, HEAD, DELETE of one key), each of which is a URL, a few headers and a status.
What stays boto3's, whichever path a request takes: the URL each bucket is addressed at
(endpoint rules, addressing style, region: resolved once per bucket by presigning a request, so
every rule boto3 applies applies here), the credential chain (environment, profile, instance or
container role, asked at every request, refreshed before they expire), the timeouts, pool size
and TLS trust of the client.

PUTs, the daemon's hot path (a segment and its playlist per message), go out through an obstore
``S3Store`` per bucket whose endpoint is that bucket's URL: Content-Type, Cache-Control, the
conditions (``If-None-Match: *``, ``If-Match``), ``x-amz-meta-*``, SigV4 with the payload signed
over plain HTTP (``UNSIGNED-PAYLOAD`` over HTTPS, as botocore decides), and unless the client's
``request_checksum_calculation`` is ``when_required`` an ``x-amz-checksum-sha256`` (object_store
knows no CRC32); always one request (never a multipart upload). docs/performance.md has the
measurements.

A PUT takes botocore's path instead, with the headers a boto3 PUT sends (``x-amz-checksum-crc32``)
but no ``Expect: 100-continue``, wherever object_store would not do what botocore does:

- a header object_store cannot send (``x-amz-acl``), or metadata named like one of its own
  attributes (``x-amz-meta-content-type``: it would send that as the header itself);
- a key object_store would change (a leading or trailing ``/``: it drops them) or cannot name
  (an empty segment, ``.``, ``..``);
- a bucket over HTTPS whose TLS trust object_store cannot make the same: a CA bundle
  (``AWS_CA_BUNDLE``, ``ca_bundle``; object_store adds it to the system's roots, botocore trusts
  it alone), ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` set (which object_store heeds and botocore
  does not), or a store object_store cannot be made for (logged once);
- a PUT object_store could not complete without an HTTP status it can tell (no reply, a reply it
  cannot read: a body that is no UTF-8, cut off, a redirect without ``Location``, no ETag, its
  own ``OBJECT_STORE_TIMEOUT_S``): it is sent again through botocore, whose reply or error
  stands. Sending it again is safe: the conditions make a PUT the store already took answer 412,
  which the callers take for their own (``stores.S3Store``).

GET, HEAD and DELETE take botocore's path: they are rare, and a GET's ``Date`` header (the
store's clock, for leases) is not in object_store's reply.

Errors: an S3 error reply raises ``S3ErrorReply`` (its code and message from the XML body, the
HTTP status), whichever path it came by; no reply at all (refused, reset, timed out) botocore's
own exceptions (``EndpointConnectionError``, ``ReadTimeoutError``...); missing credentials
botocore's ``NoCredentialsError``. uploader/stores.py classifies them all.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from xml.etree import ElementTree

# What the presigned URL of this key looks like, to cut a bucket's base URL out of it.
_PROBE_KEY = "hls-uploadd-probe"
# An error reply's body is read to this many bytes for its code and message.
MAX_ERROR_BODY_BYTES = 64 * 1024
_METADATA_PREFIX = "x-amz-meta-"
_CRC32_HEADER = "x-amz-checksum-crc32"
# object_store's words for an error reply: "... non-2xx status code: 412 Precondition Failed: BODY",
# then (in obstore's text) a debug dump after a blank line.
_STATUS_REPLY = re.compile(r"non-2xx status code: (\d{3})[^:\n]*: ?(.*?)(?:\n\nDebug source:|\Z)", re.S)


log = logging.getLogger(__name__)

# object_store's limit on a whole PUT, from connecting to the end of the reply (its own default is
# 30 s): a segment on a slow uplink must not fail at every attempt. A PUT that takes longer is
# sent again through botocore, whose timeouts are per socket operation.
OBJECT_STORE_TIMEOUT_S = 120.0
# Environment variables object_store's TLS heeds and botocore's does not.
_TLS_ENVIRONMENT = ("SSL_CERT_FILE", "SSL_CERT_DIR")


class _Unanswered(Exception):
    """object_store could not complete a PUT and gave no HTTP status it can tell: it is sent
    again through botocore (``S3Wire.request``)."""


class S3ErrorReply(Exception):
    """An S3 reply with a status of 300 or more: ``code`` ("Unknown" when the body names none:
    a HEAD, a proxy's HTML page), ``status`` (HTTP), ``message`` (the code when none)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}")
        self.code, self.status, self.message = code, status, message


@dataclass(frozen=True, slots=True)
class S3Reply:
    """A 2xx reply: status, headers (case-insensitive, botocore's), body (b"" for HEAD)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def metadata(self) -> dict[str, str]:
        """The user metadata (``x-amz-meta-NAME: value``) by NAME in lower case."""
        return {name[len(_METADATA_PREFIX):].lower(): value for name, value in self.headers.items()
                if name.lower().startswith(_METADATA_PREFIX)}


def error_of(status: int, body: bytes) -> S3ErrorReply:
    """The S3ErrorReply of a reply with ``status`` and ``body`` (an ``<Error>`` document, or
    anything else: a proxy's page, nothing)."""
    code = message = ""
    try:
        root = ElementTree.fromstring(body[:MAX_ERROR_BODY_BYTES])
        code, message = (root.findtext("Code") or "").strip(), (root.findtext("Message") or "").strip()
    except ElementTree.ParseError:
        pass
    code = code or "Unknown"
    return S3ErrorReply(code, status, message or code)


def _object_store_sends(header: str) -> bool:
    """Whether object_store sends ``header`` (lower case) on a PUT as botocore does (metadata
    named like one of its attributes, ``_OBJECT_STORE_ATTRIBUTES``, it sends as that header)."""
    if header.startswith(_METADATA_PREFIX):
        return header[len(_METADATA_PREFIX):] not in _OBJECT_STORE_ATTRIBUTES
    return header in _PUT_ATTRIBUTES or header in _PUT_CONDITIONS


def _object_store_keeps(key: str) -> bool:
    """Whether object_store names ``key`` as it is (it drops a leading or trailing ``/``)."""
    return not (key.startswith("/") or key.endswith("/"))


def crc32_header(body: bytes) -> str:
    """``x-amz-checksum-crc32``'s value: the CRC32 of ``body``, 4 bytes big-endian, base64."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


# The headers of a PUT object_store sends as attributes, by lower-case name (the conditions are
# its put modes, x-amz-meta-* its other attributes).
_PUT_ATTRIBUTES = {"content-type": "Content-Type", "cache-control": "Cache-Control"}
_PUT_CONDITIONS = frozenset({"if-none-match", "if-match"})
# object_store's attributes (obstore's ``Attribute``), by lower-case name: sent as headers.
_OBJECT_STORE_ATTRIBUTES = frozenset({
    "content-disposition", "content-encoding", "content-language", "content-type", "cache-control", "storage-class"})


class S3Wire:
    """Signed S3 requests on the credentials, endpoint and settings of a boto3 S3 ``client``.

    Thread-safe as the client is (its session is a pool; obstore's stores are shared by threads).
    Private attributes of botocore are read here and nowhere else: the client's
    ``_request_signer`` (and its ``_credentials``) and ``_endpoint.http_session`` (and its
    ``_verify``), all there since 2015; a botocore without them fails the first request with
    AttributeError.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._signer = client._request_signer
        self._http = client._endpoint.http_session
        self._checksums = getattr(client.meta.config, "request_checksum_calculation", None) != "when_required"
        self._bases: dict[str, tuple[str, str, str]] = {}  # bucket -> (base URL, signing region, service)
        self._writers: dict[str, Any] = {}  # bucket -> its obstore S3Store, None: botocore's path
        # What the credential chain gave the latest PUT, just before it (any thread's: each is the
        # chain's answer of that instant), for obstore's credential provider.
        self._latest_credentials: Any = None

    @property
    def verify(self) -> str | bool:
        """How the client checks a store's TLS certificate: the path of a CA bundle (from
        AWS_CA_BUNDLE, ``ca_bundle`` in the shared config file, the client's ``verify`` or
        REQUESTS_CA_BUNDLE), True for botocore's own bundle, False for no check."""
        return getattr(self._http, "_verify", True)

    def request(self, method: str, bucket: str, key: str, *, body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> S3Reply:
        """Send ``method`` on ``key`` in ``bucket`` with ``headers`` (and for a PUT, ``body`` with
        its checksum); the 2xx reply. Raises S3ErrorReply, botocore's connection and credential
        errors."""
        headers = headers or {}
        if method == "PUT" and all(_object_store_sends(name.lower()) for name in headers) \
                and _object_store_keeps(key) and (writer := self._writer(bucket)) is not None:
            try:
                return self._put(writer, bucket, key, body, headers)
            except _Unanswered as error:
                log.debug("s3://%s/%s: %s; sent again through botocore", bucket, key, error)
        from botocore.awsrequest import AWSRequest

        base, region, service = self._base(bucket)
        request = AWSRequest(method, f"{base}/{quote(key, safe='/~')}", data=body, headers=dict(headers))
        if method == "PUT":
            request.context["has_streaming_input"] = True
            if self._checksums:
                request.headers[_CRC32_HEADER] = crc32_header(body)
                request.headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
                request.context["checksum"] = {
                    "request_algorithm": {"in": "header", "name": _CRC32_HEADER, "algorithm": "crc32"}}
        request.context["client_config"] = self._client.meta.config
        self._signer.get_auth_instance(service, region, "s3v4").add_auth(request)
        reply = self._http.send(request.prepare())
        content = reply.content if method != "HEAD" else b""
        if reply.status_code >= 300:
            raise error_of(reply.status_code, content)
        return S3Reply(reply.status_code, reply.headers, content)

    def _put(self, writer: Any, bucket: str, key: str, body: bytes, headers: Mapping[str, str]) -> S3Reply:
        """PUT through object_store's ``writer`` for ``bucket`` (headers ``_object_store_sends``
        only); the reply's status and ETag. Raises S3ErrorReply, _Unanswered, botocore's
        credential errors."""
        import obstore

        attributes: dict[str, str] = {}
        mode: Any = "overwrite"
        for name, value in headers.items():
            lower = name.lower()
            if lower == "if-none-match":
                mode = "create"  # object_store sends If-None-Match: *, the only condition it has
            elif lower == "if-match":
                mode = {"e_tag": value}
            elif lower.startswith(_METADATA_PREFIX):
                attributes[lower[len(_METADATA_PREFIX):]] = value
            else:
                attributes[_PUT_ATTRIBUTES[lower]] = value
        # Asked here, so the chain's own errors are raised here, and the request is signed with
        # what it gives now (obstore asks _credential at every request: expires_at is now).
        self._latest_credentials = self._frozen_credentials()
        try:
            result = obstore.put(writer, key, body, attributes=attributes, mode=mode, use_multipart=False)
        except ValueError as error:  # a key object_store cannot name (an empty segment, ``.``, ``..``)
            raise _Unanswered(f"object_store cannot name the key: {error}") from None
        except (obstore.exceptions.BaseError, OSError) as error:  # a 404 comes as FileNotFoundError
            text = str(error)
            reply = _STATUS_REPLY.search(text)
            if reply is None:
                raise _Unanswered(text.partition("\n\nDebug source:")[0].replace("\n", " ")) from None
            raise error_of(int(reply.group(1)), reply.group(2).encode()) from None
        return S3Reply(200, {"ETag": result["e_tag"] or ""}, b"")

    def _frozen_credentials(self) -> Any:
        """The credentials the client's chain gives now (botocore refreshes them before they
        expire). Raises botocore's NoCredentialsError when there are none, and the chain's own
        errors."""
        from botocore.exceptions import NoCredentialsError

        if self._signer._credentials is None:
            raise NoCredentialsError()
        return self._signer._credentials.get_frozen_credentials()

    def _credential(self) -> dict[str, Any]:
        """obstore's credential provider: the credentials ``_put`` was given just before it,
        expiring now, so that every request asks again."""
        frozen = self._latest_credentials
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": datetime.datetime.now(datetime.timezone.utc)}

    def _writer(self, bucket: str) -> Any:
        """``bucket``'s obstore S3Store: its endpoint the bucket's own URL (``_base``), with the
        client's timeouts, pool size, proxy and checksum setting; object_store's retries off (the
        publisher retries). None when its PUTs take botocore's path: over HTTPS, a TLS trust
        object_store cannot make botocore's (the module's docstring), or a store it cannot make
        (logged once). Kept per bucket. Raises what ``_base`` raises."""
        if bucket in self._writers:
            return self._writers[bucket]
        import obstore
        from obstore.store import S3Store as ObjectStoreS3

        base, region, _ = self._base(bucket)
        config = self._client.meta.config
        https = base.startswith("https:")
        verify = self.verify if https else True
        if https and (isinstance(verify, str) or (verify is True and any(map(os.environ.get, _TLS_ENVIRONMENT)))):
            self._writers[bucket] = None  # a CA bundle, or trust settings botocore ignores
            return None
        options: dict[str, Any] = {
            "allow_http": not https, "pool_max_idle_per_host": str(config.max_pool_connections),
            "timeout": datetime.timedelta(seconds=OBJECT_STORE_TIMEOUT_S)}
        if config.connect_timeout is not None:
            options["connect_timeout"] = datetime.timedelta(seconds=config.connect_timeout)
        if config.read_timeout is not None:
            options["read_timeout"] = datetime.timedelta(seconds=config.read_timeout)
        if verify is False:
            options["allow_invalid_certificates"] = True
        proxy = (config.proxies or {}).get("https" if https else "http")
        if proxy:
            options["proxy_url"] = proxy
        store_config: dict[str, Any] = {
            # The endpoint is taken as the bucket's URL as it is (path or virtual-host style).
            "endpoint": base, "virtual_hosted_style_request": True, "region": region, "unsigned_payload": https}
        if self._checksums:
            store_config["checksum_algorithm"] = "sha256"
        try:
            writer = ObjectStoreS3(bucket, config=store_config, client_options=options,
                                   retry_config={"max_retries": 0}, credential_provider=self._credential)
        except (ValueError, obstore.exceptions.BaseError) as error:  # settings it refuses
            log.warning("bucket %s: its PUTs go through botocore: object_store refused its settings (%s)",
                        bucket, str(error).partition("\n")[0])
            writer = None
        self._writers[bucket] = writer
        return writer

    def _base(self, bucket: str) -> tuple[str, str, str]:
        """``bucket``'s base URL, signing region and service, as boto3 resolves them (a
        presigned URL of a probe key, cut apart); kept per bucket."""
        known = self._bases.get(bucket)
        if known is None:
            url = self._client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY},
                                                      ExpiresIn=60)
            parts = urlsplit(url)
            path = parts.path[:-len(_PROBE_KEY) - 1]
            # KEY/DATE/REGION/SERVICE/aws4_request; absent from a client that presigns with SigV2
            credential = parse_qs(parts.query).get("X-Amz-Credential", [""])[0].split("/")
            region, service = (credential[-3], credential[-2]) if len(credential) == 5 else (
                self._client.meta.region_name or "us-east-1", "s3")
            known = self._bases[bucket] = (f"{parts.scheme}://{parts.netloc}{path}", region, service)
        return known
