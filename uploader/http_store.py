"""HTTP destinations (``--store http(s)://HOST/DIR``): PUT and DELETE, through urllib3.

For WebDAV servers (RFC 4918: Apache mod_dav, nginx ``dav_methods PUT DELETE MKCOL``, wsgidav)
and ingest points that take PUT. A PUT answered 409 Conflict (RFC 4918 9.7.1: the parent
collection is missing) makes the collections above the object with MKCOL and is sent again.
Segment PUTs carry ``If-None-Match: *`` (RFC 9110 13.1.2): a server that enforces it answers 412
for a taken name, and the stored object is compared with a GET; one that ignores it (found by
``check_create_only``) has each segment PUT preceded by a HEAD. Replacing a playlist in one
piece is the server's part (nginx and Apache write to a temporary file and rename it).

Credentials: HTTP Basic (RFC 7617) from the URL or the netrc file; certificates checked against
the system's CAs (or ``SSL_CERT_FILE``). Redirects are not followed: a 3xx names the URL to use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from .remote import REMOTE_TIMEOUT_S, StoreUrl, object_parts
from .stores import (
    WRITE_CHECK_BODY,
    WRITE_CHECK_KEY,
    Body,
    CorrectableStoreError,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
    body_digest,
    opened,
    taken,
)

# Statuses that go away with time (RFC 9110 15.5.9, 15.6; RFC 6585 4; RFC 4918 11.5: 507).
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507})


class HttpStore:
    """Objects as resources ``BASE/BUCKET/KEY`` (``url``: a StoreUrl of scheme http or https).
    Thread-safe: urllib3 keeps up to ``connections`` connections to the server."""

    def __init__(self, url: StoreUrl, *, connections: int = 10, timeout_s: float = REMOTE_TIMEOUT_S) -> None:
        import urllib3

        self._url = url
        self.description = str(url)
        host = f"[{url.host}]" if ":" in url.host else url.host
        self._base = f"{url.scheme}://{host}:{url.port}{'/' + url.path.strip('/') if url.path.strip('/') else ''}"
        self._headers = (urllib3.make_headers(basic_auth=f"{url.username}:{url.password or ''}")
                         if url.username else {})
        context = ssl.create_default_context() if url.scheme == "https" else None
        self._pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False, ssl_context=context,
                                         timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))
        self._unconditional: set[str] = set()  # buckets whose server ignores If-None-Match

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """PUT; ``create_only``: with ``If-None-Match: *`` (a HEAD first where the server ignores
        it), a 412 answered by a GET of the stored resource compared with ``body``."""
        url = self._resource(bucket, key)
        if create_only and bucket in self._unconditional and self.exists(bucket, key):
            self._compare(url, body)
            return
        headers = {"Content-Type": content_type, "Cache-Control": cache_control}
        if create_only and bucket not in self._unconditional:
            headers["If-None-Match"] = "*"
        status = self._put(url, body, headers)
        if status == 409:
            self._make_collections(bucket, key)
            status = self._put(url, body, headers)
        if status == 412 and create_only:
            self._compare(url, body)
        elif not 200 <= status < 300:
            raise self._refused("PUT", url, status)

    def _put(self, url: str, body: Body, headers: dict[str, str]) -> int:
        with opened(body) as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(0)
            return self._request("PUT", url, body=file, headers={**headers, "Content-Length": str(size)}).status

    def _compare(self, url: str, body: Body) -> None:
        response = self._request("GET", url, preload_content=False)
        with contextlib.closing(response):
            if response.status == 404:
                raise TransientStoreError(f"{url}: there at the create-only PUT, gone at the GET that compares it;"
                                          " the PUT is tried again")
            if response.status != 200:
                raise self._refused("GET", url, response.status)
            digest = hashlib.sha256()
            with self._errors(url):
                for chunk in response.stream(1 << 20):
                    digest.update(chunk)
        if digest.digest() != body_digest(body):
            raise taken(url)

    def _make_collections(self, bucket: str, key: str) -> None:
        """MKCOL each collection from the base's first down to the object's parent; 405 (RFC 4918
        9.3.1: it exists) is fine."""
        parts = [*self._url.path.strip("/").split("/"), *object_parts(bucket, key)[:-1]]
        parts = [part for part in parts if part]
        origin = self._base[:len(self._base) - len(self._url.path.strip("/"))].rstrip("/")
        for depth in range(1, len(parts) + 1):
            url = f"{origin}/{quote('/'.join(parts[:depth]))}/"
            status = self._request("MKCOL", url).status
            if status not in (201, 405) and not 200 <= status < 300:
                raise self._refused("MKCOL", url, status)

    def check_create_only(self, bucket: str) -> bool:
        """A create-only PUT of ``WRITE_CHECK_KEY``: True on a 412; False when the server ignores
        If-None-Match (and replaced it), remembered: its create-only PUTs in ``bucket`` HEAD first."""
        url = self._resource(bucket, WRITE_CHECK_KEY)
        status = self._put(url, WRITE_CHECK_BODY, {"Content-Type": "text/plain", "If-None-Match": "*"})
        if status == 412:
            self._unconditional.discard(bucket)
            return True
        if not 200 <= status < 300:
            raise self._refused("PUT", url, status)
        self._unconditional.add(bucket)
        return False

    def exists(self, bucket: str, key: str) -> bool:
        """HEAD: True on 200, False on 404."""
        url = self._resource(bucket, key)
        status = self._request("HEAD", url).status
        if status == 404:
            return False
        if not 200 <= status < 300:
            raise self._refused("HEAD", url, status)
        return True

    def delete(self, bucket: str, key: str) -> None:
        """DELETE; 404 (gone already) is not an error."""
        url = self._resource(bucket, key)
        status = self._request("DELETE", url).status
        if status != 404 and not 200 <= status < 300:
            raise self._refused("DELETE", url, status)

    def close(self) -> None:
        """Close the kept connections."""
        self._pool.clear()

    def _resource(self, bucket: str, key: str) -> str:
        return f"{self._base}/{quote('/'.join(object_parts(bucket, key)))}"

    def _request(self, method: str, url: str, **options: Any) -> Any:
        with self._errors(url):
            headers = {**self._headers, **options.pop("headers", {})}
            return self._pool.request(method, url, headers=headers, redirect=False, **options)

    def _refused(self, method: str, url: str, status: int) -> StoreError:
        """A status other than success as a StoreError: 408, 425, 429, 5xx (507: space) transient;
        3xx, 401, 403, 404, 405, 411, 413 correctable; any other 4xx permanent."""
        reason = f"{method} {url}: HTTP {status}"
        where = f"{self._url.scheme}://{self._url.host}:{self._url.port}"
        fixes = {
            401: f"give the daemon the user and password of {where} (in --store, or in the netrc file)",
            403: f"let the store's user write under {self.description}",
            404: f"the server takes no {method} under {self.description}: correct the path in --store",
            405: f"let the server take PUT, DELETE and MKCOL under {self.description} (nginx: dav_methods PUT DELETE"
                 " MKCOL; create_full_put_path on)",
            411: "the server wants no chunked body: put a proxy that buffers in front of it",
            413: "raise the server's request body limit above a segment's size (nginx: client_max_body_size)",
        }
        if status in _TRANSIENT_STATUSES or status >= 500:
            return TransientStoreError(reason)
        if 300 <= status < 400 or status in fixes:
            return CorrectableStoreError(reason, fix=fixes.get(status, f"the server redirects {method} {url}: give"
                                                                        " --store the URL it redirects to"))
        return PermanentStoreError(reason)

    @contextlib.contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        """urllib3's errors as a StoreError: an untrusted certificate is correctable, anything else
        (refused, reset, timed out) transient."""
        import urllib3.exceptions as ux

        try:
            yield
        except ux.HTTPError as error:
            cause = error.reason if isinstance(error, ux.MaxRetryError) else error
            if isinstance(cause, ux.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(cause):
                raise CorrectableStoreError(
                    f"{url}: {cause}",
                    fix=f"give the daemon a CA that signed {self._url.host}'s certificate (SSL_CERT_FILE or the"
                        " system's store), or name the host its certificate names in --store") from None
            raise TransientStoreError(f"{url}: {cause}") from None
