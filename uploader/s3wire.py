"""One S3 request at a time through botocore's own signer and connection pool, without the rest
of its per-call machinery.

A boto3 ``put_object`` spends about 1.2 ms of CPU on a 150-byte playlist before a byte leaves:
parameter validation, serialization, some 30 event hooks, the response parser. The daemon needs
five requests (PUT, GET, HEAD, DELETE of one key), each of which is a URL, a few headers and a
status. ``S3Wire`` keeps from botocore what matters and costs little: the URL each bucket is
addressed at (endpoint rules, addressing style, region: resolved once per bucket by presigning a
request, so every rule boto3 applies applies here), the SigV4 signer with the credential chain
behind it (environment, profile, instance or container role, refreshed before they expire), and
the client's HTTP session (TLS verification, proxies, timeouts, pool size, TCP_NODELAY). It
sends the headers a boto3 PUT sends (``x-amz-checksum-crc32`` and ``x-amz-sdk-checksum-algorithm``
unless the client's ``request_checksum_calculation`` is ``when_required``; the payload signed over
plain HTTP, ``UNSIGNED-PAYLOAD`` with the checksum over HTTPS, as botocore decides), but no
``Expect: 100-continue``: the round trip it costs buys nothing when bodies are a few MB.
docs/performance.md has the measurements.

Errors: an S3 error reply raises ``S3ErrorReply`` (its code and message from the XML body, the
HTTP status); a connection that fails raises botocore's own exceptions (``EndpointConnectionError``,
``ReadTimeoutError``...), missing credentials ``NoCredentialsError``. uploader/stores.py classifies
both.
"""

from __future__ import annotations

import base64
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


def crc32_header(body: bytes) -> str:
    """``x-amz-checksum-crc32``'s value: the CRC32 of ``body``, 4 bytes big-endian, base64."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


class S3Wire:
    """Signed S3 requests on the signer, HTTP session and settings of a boto3 S3 ``client``.

    Thread-safe as the client is (the session is a pool). Two private attributes of botocore are
    read here and nowhere else: the client's ``_request_signer`` and ``_endpoint.http_session``
    (both there since 2015); a botocore without them fails the first request with AttributeError.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._signer = client._request_signer
        self._http = client._endpoint.http_session
        self._checksums = getattr(client.meta.config, "request_checksum_calculation", None) != "when_required"
        self._bases: dict[str, tuple[str, str, str]] = {}  # bucket -> (base URL, signing region, service)

    def request(self, method: str, bucket: str, key: str, *, body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> S3Reply:
        """Send ``method`` on ``key`` in ``bucket`` with ``headers`` (and for a PUT, ``body`` with
        its checksum); the 2xx reply. Raises S3ErrorReply, botocore's connection and credential
        errors."""
        from botocore.awsrequest import AWSRequest

        base, region, service = self._base(bucket)
        request = AWSRequest(method, f"{base}/{quote(key, safe='/~')}", data=body, headers=dict(headers or {}))
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
