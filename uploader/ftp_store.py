"""FTP and FTPS destinations (``--store ftp://`` and ``ftps://``), through the stdlib's ftplib.

Every object is stored under a temporary name beside it, then renamed over its name (RNFR/RNTO,
RFC 959 4.1.3), so a viewer never reads half a playlist. FTP has no create-only write: a
create-only PUT asks the object's SIZE first and compares the stored bytes when it is there (two
writers racing for one name could both pass; one daemon writes each stream). FTPS is explicit
TLS (AUTH TLS, RFC 4217) on the control and data connections, certificates checked against the
system's CAs (or ``SSL_CERT_FILE``), the data connections resuming the control's TLS session as
vsftpd's ``require_ssl_reuse`` demands.

Replies are sorted as the Store protocol asks: 4xx and lost connections are transient; 530 and
532 (login), 550 (no access) and an untrusted certificate are the operator's to correct; 552
(storage allocation exceeded) waits for space, like a full disk; any other 5xx is permanent.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from .remote import REMOTE_TIMEOUT_S, Sessions, StoreUrl, joined, object_parts, system_trust, temporary_name
from .stores import (
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

# What a connection that a server dropped fails with.
_LOST = (OSError, EOFError, ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)


class _ResumingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        connection, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            connection = self.context.wrap_socket(connection, server_hostname=self.host,
                                                  session=self.sock.session)  # type: ignore[union-attr]
        return connection, size


class FtpStore:
    """Objects as files ``DIR/BUCKET/KEY`` on an FTP or FTPS server (``url``: a StoreUrl of scheme
    ftp or ftps; anonymous when it has no user). Thread-safe: each thread's call uses its own
    control connection, kept for the next call."""

    versions = False  # playlists are replaced unconditionally (stores.Store.versions)

    def __init__(self, url: StoreUrl, *, timeout_s: float = REMOTE_TIMEOUT_S) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self.description = str(url)
        self._sessions: Sessions[ftplib.FTP] = Sessions(self._connect, _close, _LOST)
        self._directories: set[str] = set()  # made, or found there, in this run
        self._trust = system_trust(url.scheme)

    def _connect(self) -> ftplib.FTP:
        url = self._url
        if url.scheme == "ftps":
            ftp: ftplib.FTP = _ResumingFTP_TLS(context=ssl.create_default_context(), timeout=self._timeout_s)
        else:
            ftp = ftplib.FTP(timeout=self._timeout_s)
        try:
            ftp.connect(url.host, url.port)
            if isinstance(ftp, ftplib.FTP_TLS):
                try:
                    ftp.auth()
                except ftplib.error_perm as error:
                    raise CorrectableStoreError(
                        f"{url}: the server does not take AUTH TLS: {str(error).strip()}",
                        fix=f"enable explicit TLS (RFC 4217) on {url.host}, or use ftp:// if a password in clear on"
                            " that network is acceptable") from None
            ftp.login(url.username or "anonymous", url.password or "")
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.voidcmd("TYPE I")
        except BaseException:
            _close(ftp)
            raise
        return ftp

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """STOR to a temporary name, then rename it to the object's; ``create_only``: an object
        already there is compared (same bytes: done; other bytes: ObjectTakenError)."""
        path = joined(self._url.path, object_parts(bucket, key))

        def store(ftp: ftplib.FTP) -> None:
            if create_only and _size(ftp, path) is not None:
                if _retrieved_digest(ftp, path) != body_digest(body):
                    raise taken(self._where(path))
                return
            self._make_directories(ftp, path)
            temporary = temporary_name(path)
            try:
                with opened(body) as file:
                    ftp.storbinary(f"STOR {temporary}", file, blocksize=1 << 16)
            except ftplib.Error:
                with contextlib.suppress(ftplib.Error, OSError, EOFError):
                    ftp.delete(temporary)  # what a failed transfer left (the connection still answers)
                raise
            ftp.rename(temporary, path)

        with self._errors(path):
            self._sessions.use(store)

    def check_create_only(self, bucket: str) -> bool:
        """False: FTP has no create-only write; each create-only PUT asks SIZE first."""
        return False

    def exists(self, bucket: str, key: str) -> bool:
        """SIZE (RFC 3659 4): True when answered, False on 550."""
        path = joined(self._url.path, object_parts(bucket, key))
        with self._errors(path):
            return self._sessions.use(lambda ftp: _size(ftp, path) is not None)

    def delete(self, bucket: str, key: str) -> None:
        """DELE; an object already gone is not an error."""
        path = joined(self._url.path, object_parts(bucket, key))

        def delete(ftp: ftplib.FTP) -> None:
            try:
                ftp.delete(path)
            except ftplib.error_perm as error:
                if not str(error).startswith("550") or _size(ftp, path) is not None:
                    raise

        with self._errors(path):
            self._sessions.use(delete)

    def close(self) -> None:
        """QUIT every idle connection."""
        self._sessions.close()

    def _make_directories(self, ftp: ftplib.FTP, path: str) -> None:
        """MKD each directory above ``path`` not made yet in this run; one already there is fine
        (the STOR that follows reports what really stops it)."""
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory in self._directories or directory in ("", "."):
                continue
            with contextlib.suppress(ftplib.error_perm):
                ftp.mkd(directory)
            self._directories.add(directory)

    def _where(self, path: str) -> str:
        return f"{self._url.scheme}://{self._url.host}:{self._url.port}/{path.lstrip('/')}"

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """ftplib's, the socket's and TLS's errors on ``path`` as a StoreError of the right kind."""
        try:
            yield
        except StoreError:
            raise
        except ftplib.Error as error:
            reply = str(error).strip()
            if reply.startswith("550"):
                self._directories.clear()  # one may have been removed since
            raise _classified(reply, self._where(path), self._url) from None
        except ssl.SSLError as error:
            raise classify_tls_error(error, f"{self._where(path)}: {error}", f"{self._url.host}:{self._url.port}",
                                     self._trust) from None
        except (OSError, EOFError) as error:
            raise TransientStoreError(f"{self._where(path)}: {error or type(error).__name__}") from None


def _classified(reply: str, where: str, url: StoreUrl) -> StoreError:
    """An FTP reply (RFC 959 4.2) as a StoreError: 4xx transient, 530/532/550 correctable, 552
    transient, other 5xx permanent."""
    reason = f"{where}: {reply}"
    code = reply[:3]
    if code in ("530", "532"):
        return CorrectableStoreError(reason, fix=f"give the daemon the FTP user and password of {url.host} (in --store,"
                                                 " or in the netrc file)")
    if code == "550":
        return CorrectableStoreError(reason, fix=f"let FTP user {url.username or 'anonymous'} write and rename under"
                                                 f" {url.path or 'its login directory'} on {url.host}")
    if code.startswith("4") or code == "552":
        return TransientStoreError(reason)
    return PermanentStoreError(reason)


def _size(ftp: ftplib.FTP, path: str) -> int | None:
    """The object's size in bytes (SIZE, RFC 3659 4), None when there is none (550). Raises
    CorrectableStoreError for a server without SIZE (500, 502): it cannot tell whether a segment's
    name is taken."""
    try:
        return ftp.size(path)
    except ftplib.error_perm as error:
        reply = str(error).strip()
        if reply.startswith("550"):
            return None
        if reply[:3] in ("500", "502"):
            raise CorrectableStoreError(f"{path}: the server does not answer SIZE: {reply}",
                                        fix="use an FTP server with SIZE (RFC 3659): without it a segment could be"
                                            " written over another") from None
        raise


def _retrieved_digest(ftp: ftplib.FTP, path: str) -> bytes:
    """SHA-256 of the object at ``path`` (RETR)."""
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {path}", digest.update, blocksize=1 << 16)
    return digest.digest()


def _close(ftp: Any) -> None:
    """QUIT, or just close when the server does not answer."""
    try:
        ftp.quit()
    except Exception:
        ftp.close()
