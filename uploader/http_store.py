"""HTTP destinations (``--store http(s)://HOST/DIR``): WebDAV, or any server that takes PUT, through
urllib3.

On a WebDAV server (RFC 4918: nginx ``dav_methods PUT DELETE MKCOL MOVE``, Apache mod_dav,
wsgidav) every object is PUT under a temporary name beside it, then MOVEd to its name (RFC 4918
9.9): ``Overwrite: T`` for a playlist, so a viewer never reads half of one; ``Overwrite: F`` for
a segment, which the server refuses (412) when the name is taken, and the stored object is then
compared with a GET. A PUT answered 409 Conflict (9.7.1: the parent collection is missing) makes
the collections above the object with MKCOL and is sent again.

A server without MOVE (405 or 501 to it: an ingest point that takes PUT alone) gets each object
PUT in place, segments with ``If-None-Match: *`` (RFC 9110 13.1.2; one that ignores it, found by
``check_create_only``, has each segment PUT preceded by a HEAD). Replacing a playlist in one piece
is then the server's part (nginx writes a PUT to a temporary file and renames it). A segment whose
PUT failed half-way may leave its first bytes under its name: its next attempt in this run
replaces them.

Credentials: HTTP Basic (RFC 7617) from the URL or the netrc file; certificates checked against
the system's CAs (or ``SSL_CERT_FILE``). Redirects are not followed: a 3xx names the URL to use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from .remote import REMOTE_TIMEOUT_S, StoreUrl, object_parts, system_trust, temporary_name
from .stores import (
    WRITE_CHECK_BODY,
    WRITE_CHECK_KEY,
    Body,
    CorrectableStoreError,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
    body_digest,
    classify_tls_error,
    opened,
    taken,
)

# Statuses that go away with time (RFC 9110 15.5.9, 15.6; RFC 6585 4; RFC 4918 11.3, 11.5: 423, 507).
_TRANSIENT_STATUSES = frozenset({408, 423, 425, 429, 500, 502, 503, 504, 507})
# A server that does not implement a method answers so (RFC 9110 15.5.6, 15.6.2).
_NOT_IMPLEMENTED = frozenset({405, 501})


class HttpStore:
    """Objects as resources ``BASE/BUCKET/KEY`` (``url``: a StoreUrl of scheme http or https).
    Thread-safe: urllib3 keeps up to ``connections`` connections to the server."""

    versions = False  # playlists are replaced unconditionally (stores.Store.versions)

    def __init__(self, url: StoreUrl, *, connections: int = 10, timeout_s: float = REMOTE_TIMEOUT_S) -> None:
        import urllib3

        self._url = url
        self.description = str(url)
        host = f"[{url.host}]" if ":" in url.host else url.host
        self._origin = f"{url.scheme}://{host}:{url.port}"
        self._base_parts = [part for part in url.path.split("/") if part]
        self._headers = (urllib3.make_headers(basic_auth=f"{url.username}:{url.password or ''}")
                         if url.username else {})
        context = ssl.create_default_context() if url.scheme == "https" else None
        self._trust = system_trust(url.scheme)
        self._pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False, ssl_context=context,
                                         timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))
        self._moves: bool | None = None  # whether the server takes MOVE; None: not asked yet
        self._unconditional: set[str] = set()  # buckets whose server ignores If-None-Match
        self._broken: set[str] = set()  # resources a PUT in place of this run failed half-way on
        self._lock = threading.Lock()

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """PUT to a temporary name and MOVE (the module's docstring), or PUT in place where the
        server has no MOVE; ``create_only``: never replacing an object, one already there
        compared (the same bytes: done; others: ObjectTakenError)."""
        url = self._resource(bucket, key)
        headers = {"Content-Type": content_type, "Cache-Control": cache_control}
        if self._moves is not False and self._put_and_move(bucket, key, url, body, headers, create_only):
            return
        self._put_in_place(bucket, key, url, body, headers, create_only)

    def _put_and_move(self, bucket: str, key: str, url: str, body: Body, headers: dict[str, str],
                      create_only: bool) -> bool:
        """PUT to the temporary name, MOVE to ``url``; False when the server has no MOVE."""
        temporary = self._resource(bucket, temporary_name(key))
        self._checked_put(bucket, key, temporary, body, headers)
        status = self._request("MOVE", temporary, headers={
            "Destination": url, "Overwrite": "F" if create_only else "T"}).status
        if 200 <= status < 300:
            self._moves = True
            return True
        with contextlib.suppress(StoreError):
            self._request("DELETE", temporary)
        if status in _NOT_IMPLEMENTED and not self._moves:
            self._moves = False
            return False
        if status == 412 and create_only:
            self._compare(url, body)
            return True
        raise self._refused("MOVE", temporary, status)

    def _put_in_place(self, bucket: str, key: str, url: str, body: Body, headers: dict[str, str],
                      create_only: bool) -> None:
        """PUT to ``url`` itself (a server without MOVE)."""
        with self._lock:
            mended = url in self._broken
        if create_only and not mended:
            if bucket in self._unconditional:
                if self.exists(bucket, key):
                    self._compare(url, body)
                    return
            else:
                headers = {**headers, "If-None-Match": "*"}
        try:
            status = self._put(bucket, key, url, body, headers)
        except TransientStoreError:
            with self._lock:
                self._broken.add(url)  # its first bytes may be there: the next attempt replaces them
            raise
        if status == 412 and create_only:
            self._compare(url, body)
        elif not 200 <= status < 300:
            raise self._refused("PUT", url, status)
        with self._lock:
            self._broken.discard(url)

    def _checked_put(self, bucket: str, key: str, url: str, body: Body, headers: dict[str, str]) -> None:
        if not 200 <= (status := self._put(bucket, key, url, body, headers)) < 300:
            raise self._refused("PUT", url, status)

    def _put(self, bucket: str, key: str, url: str, body: Body, headers: dict[str, str]) -> int:
        """One PUT, once more after making the collections above ``key`` when it answers 409;
        returns the status."""
        status = self._send(url, body, headers)
        if status == 409:
            self._make_collections(bucket, key)
            status = self._send(url, body, headers)
        return status

    def _send(self, url: str, body: Body, headers: dict[str, str]) -> int:
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
        parts = [*self._base_parts, *object_parts(bucket, key)[:-1]]
        for depth in range(1, len(parts) + 1):
            url = f"{self._origin}/{quote('/'.join(parts[:depth]))}/"
            status = self._request("MKCOL", url).status
            if status not in (201, 405) and not 200 <= status < 300:
                raise self._refused("MKCOL", url, status)

    def check_create_only(self, bucket: str) -> bool:
        """Whether the server refuses to write over ``WRITE_CHECK_KEY`` (which must exist): a MOVE
        with ``Overwrite: F``, else (no MOVE) a PUT with ``If-None-Match: *``. False when it
        replaced it, remembered: the create-only PUTs in ``bucket`` then HEAD first."""
        url = self._resource(bucket, WRITE_CHECK_KEY)
        headers = {"Content-Type": "text/plain", "Cache-Control": "no-store"}
        if self._moves is not False:
            temporary = self._resource(bucket, temporary_name(WRITE_CHECK_KEY))
            self._checked_put(bucket, WRITE_CHECK_KEY, temporary, WRITE_CHECK_BODY, headers)
            status = self._request("MOVE", temporary, headers={"Destination": url, "Overwrite": "F"}).status
            if status != 412:
                with contextlib.suppress(StoreError):
                    self._request("DELETE", temporary)
            if status in _NOT_IMPLEMENTED and not self._moves:
                self._moves = False
            elif status == 412 or 200 <= status < 300:
                self._moves = True
                return self._refuses_taken(bucket, status == 412)
            else:
                raise self._refused("MOVE", temporary, status)
        status = self._put(bucket, WRITE_CHECK_KEY, url, WRITE_CHECK_BODY, {**headers, "If-None-Match": "*"})
        if status != 412 and not 200 <= status < 300:
            raise self._refused("PUT", url, status)
        return self._refuses_taken(bucket, status == 412)

    def _refuses_taken(self, bucket: str, refused: bool) -> bool:
        (self._unconditional.discard if refused else self._unconditional.add)(bucket)
        return refused

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
        return f"{self._origin}/{quote('/'.join([*self._base_parts, *object_parts(bucket, key)]))}"

    def _request(self, method: str, url: str, **options: Any) -> Any:
        with self._errors(url):
            headers = {**self._headers, **options.pop("headers", {})}
            return self._pool.request(method, url, headers=headers, redirect=False, **options)

    def _refused(self, method: str, url: str, status: int) -> StoreError:
        """A status other than success as a StoreError: 408, 423, 425, 429, 5xx (507: space)
        transient, except 501 and 505; 3xx, 401, 403, 404, 405, 411, 413, 501, 505 correctable; any
        other 4xx permanent."""
        reason = f"{method} {url}: HTTP {status}"
        where = f"{self._url.scheme}://{self._url.host}:{self._url.port}"
        fixes = {
            401: f"give the daemon the user and password of {where} (in --store, or in the netrc file)",
            403: f"let the store's user write under {self.description}",
            404: f"the server takes no {method} under {self.description}: correct the path in --store",
            405: f"let the server take PUT, DELETE, MKCOL and MOVE under {self.description} (nginx: dav_methods PUT"
                 " DELETE MKCOL MOVE)",
            501: f"the server does not implement {method}: let it take PUT and DELETE under {self.description}",
            505: "the server does not speak HTTP/1.1: put one that does in front of it",
            411: "the server wants no chunked body: put a proxy that buffers in front of it",
            413: "raise the server's request body limit above a segment's size (nginx: client_max_body_size)",
        }
        if status in _TRANSIENT_STATUSES or (status >= 500 and status not in fixes):
            return TransientStoreError(reason)
        if 300 <= status < 400 or status in fixes:
            return CorrectableStoreError(reason, fix=fixes.get(status, f"the server redirects {method} {url}: give"
                                                                        " --store the URL it redirects to"))
        return PermanentStoreError(reason)

    @contextlib.contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        """urllib3's errors as a StoreError: a TLS failure as stores.classify_tls_error sorts it,
        anything else (refused, reset, timed out) transient."""
        import urllib3.exceptions as ux

        try:
            yield
        except ux.HTTPError as error:
            cause = error.reason if isinstance(error, ux.MaxRetryError) else error
            if isinstance(cause, ux.SSLError):
                inner = next((arg for arg in cause.args if isinstance(arg, BaseException)), cause)
                raise classify_tls_error(inner, f"{url}: {cause}", self._origin.partition("://")[2],
                                         self._trust) from None
            raise TransientStoreError(f"{url}: {cause}") from None
