"""Where objects go: S3 (any S3-compatible server) or a local directory.

A store's ``put`` and ``delete`` either succeed or raise ``TransientStoreError`` (try again later: the store
is down, slow or throttling) or ``PermanentStoreError`` (trying again cannot help: no such
bucket, access denied). The publisher decides what to do with each.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from common.durable import write_file

from .errors import UploaderError

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
    }
)

# Local file system errors that go away on their own (space freed, device back).
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})


class StoreError(UploaderError):
    """A PUT failed; ``str(error)`` is a one-line reason fit for the log."""


class TransientStoreError(StoreError):
    """The store is down, slow or throttling: the PUT is retried."""

    transient = True


class PermanentStoreError(StoreError):
    """Trying again cannot help (no such bucket, access denied): the segment fails."""


class Store(Protocol):
    description: str  # for the startup line

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str) -> None: ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; one that is already gone is not an error."""
        ...


class S3Store:
    """PUTs through an injected boto3 S3 client (its retries off: the publisher retries)."""

    def __init__(self, client: Any, *, acl: str | None = None, description: str = "s3") -> None:
        self._client = client
        self._acl = acl
        self.description = description

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str) -> None:
        extra = {"ACL": self._acl} if self._acl else {}
        with _s3_errors(bucket, key):
            if isinstance(body, bytes):
                self._client.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type, CacheControl=cache_control, **extra
                )
            else:
                with body() as file:
                    self._client.put_object(
                        Bucket=bucket, Key=key, Body=file, ContentType=content_type, CacheControl=cache_control, **extra
                    )

    def delete(self, bucket: str, key: str) -> None:
        """DeleteObject (needs s3:DeleteObject); S3 answers 204 for a missing key too."""
        with _s3_errors(bucket, key):
            self._client.delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def _s3_errors(bucket: str, key: str) -> Iterator[None]:
    """botocore's errors of one request on ``key`` as TransientStoreError or PermanentStoreError."""
    import botocore.exceptions as bx

    try:
        yield
    except bx.ClientError as error:
        raise classify_client_error(error, bucket, key) from None
    except (bx.ConnectionError, bx.HTTPClientError) as error:
        # Refused, reset, DNS, connect/read timeouts: the store may come back.
        raise TransientStoreError(f"s3://{bucket}/{key}: {error}") from None
    except bx.NoCredentialsError:
        raise PermanentStoreError("no AWS credentials found (environment, profile or instance role)") from None
    except bx.BotoCoreError as error:
        raise PermanentStoreError(f"s3://{bucket}/{key}: {error}") from None


def classify_client_error(error: Any, bucket: str, key: str) -> StoreError:
    """An S3 error reply as transient (5xx, throttling, timeouts) or permanent (other 4xx)."""
    response = getattr(error, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", "Unknown"))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = str(response.get("Error", {}).get("Message", "")) or code
    reason = f"s3://{bucket}/{key}: {code} (HTTP {status or '?'}): {message}"
    if code in _TRANSIENT_CODES or status >= 500 or status == 429 or status == 0:
        return TransientStoreError(reason)
    return PermanentStoreError(reason)


class FileStore:
    """Objects as files ``ROOT/BUCKET/KEY``, each written to a temp name, fsync'd, then renamed.

    Content type and cache control are not stored: a web server in front decides them by
    extension. A key can never name a path outside ``ROOT/BUCKET``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"file://{root}"

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str) -> None:
        target = self.path_for(bucket, key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(body, bytes):
                write_file(target, body)
            else:
                with body() as source:
                    write_file(target, iter(partial(source.read, 1 << 20), b""))
        except OSError as error:
            reason = f"{target}: {error.strerror or error}"
            if error.errno in _TRANSIENT_ERRNOS:
                raise TransientStoreError(reason) from None
            raise PermanentStoreError(reason) from None

    def delete(self, bucket: str, key: str) -> None:
        target = self.path_for(bucket, key)
        try:
            target.unlink(missing_ok=True)
        except OSError as error:
            reason = f"{target}: {error.strerror or error}"
            if error.errno in _TRANSIENT_ERRNOS:
                raise TransientStoreError(reason) from None
            raise PermanentStoreError(reason) from None

    def path_for(self, bucket: str, key: str) -> Path:
        """``ROOT/BUCKET/KEY``; raises PermanentStoreError for a key that would leave it."""
        parts = key.split("/")
        if not bucket or "/" in bucket or bucket in (".", "..") or any(p in ("", ".", "..") for p in parts):
            raise PermanentStoreError(f"key {key!r} in bucket {bucket!r} is not a plain relative path")
        return self.root.joinpath(bucket, *parts)

