"""SFTP destinations (``--store sftp://USER@HOST/DIR``), through paramiko.

Authentication is by key only: the ``key`` parameter's file, else the ssh agent and the user's
``~/.ssh/id_*`` keys. The server's host key must be in the ``known_hosts`` parameter's file or
the user's ``~/.ssh/known_hosts`` (one of them must exist at start): an unknown or changed host
key is refused, never accepted on first use (paramiko's RejectPolicy), and the log says how to
add it.

Every object is written under a temporary name beside it, then renamed: a playlist over the old
one with ``posix-rename@openssh.com`` (an atomic replace, so a viewer never reads half of it), a
segment with SFTP's plain rename, which fails when the name is taken (draft-ietf-secsh-filexfer-02
6.5): a create-only write the server enforces. A server whose rename replaces anyway is found by
``check_create_only``, and its create-only writes then look first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from common.settings import ConfigError

from .remote import REMOTE_TIMEOUT_S, Sessions, StoreUrl, joined, object_parts, temporary_name
from .stores import (
    WRITE_CHECK_BODY,
    WRITE_CHECK_KEY,
    Body,
    CorrectableStoreError,
    StoreError,
    TransientStoreError,
    body_digest,
    opened,
    taken,
)

# errno values of SFTP status replies (paramiko maps SSH_FX_NO_SUCH_FILE, SSH_FX_PERMISSION_DENIED).
_CORRECTABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


@dataclass(slots=True)
class _Session:
    client: Any  # paramiko.SSHClient
    sftp: Any  # paramiko.SFTPClient


class SftpStore:
    """Objects as files ``DIR/BUCKET/KEY`` on an SFTP server (``url``: a StoreUrl of scheme sftp).
    Thread-safe: each thread's call uses its own SSH connection, kept for the next call."""

    versions = False  # playlists are replaced unconditionally (stores.Store.versions)

    def __init__(self, url: StoreUrl, *, timeout_s: float = REMOTE_TIMEOUT_S) -> None:
        import paramiko

        self._url = url
        self._timeout_s = timeout_s
        self.description = str(url)
        known_hosts = url.parameter("known_hosts")
        self._known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        key = url.parameter("key")
        self._key = str(Path(key).expanduser()) if key else None
        _check_files(url, self._key, self._known_hosts)
        lost = (OSError, EOFError, paramiko.SSHException)
        self._sessions: Sessions[_Session] = Sessions(self._connect, _close, lost)
        self._directories: set[str] = set()  # made, or found there, in this run
        self._replacing_rename: set[str] = set()  # buckets whose server's plain rename replaces

    def _connect(self) -> _Session:
        import paramiko

        client = paramiko.SSHClient()
        try:
            client.load_system_host_keys()
            if self._known_hosts is not None:
                client.load_host_keys(str(self._known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(self._url.host, self._url.port, username=self._url.username, key_filename=self._key,
                           timeout=self._timeout_s, banner_timeout=self._timeout_s, auth_timeout=self._timeout_s,
                           channel_timeout=self._timeout_s, look_for_keys=self._key is None, allow_agent=True)
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self._timeout_s)
        except BaseException:
            client.close()
            raise
        return _Session(client, sftp)

    def put(self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str,
            create_only: bool = False) -> None:
        """Write a temporary file, then rename it to the object's name: replacing it, or, with
        ``create_only``, only when the name is free (else the stored bytes are compared: the same
        are done, others raise ObjectTakenError)."""
        path = joined(self._url.path, object_parts(bucket, key))
        look_first = create_only and bucket in self._replacing_rename
        with self._errors(path):
            self._sessions.use(partial(self._put, path, body, create_only, look_first))

    def _put(self, path: str, body: Body, create_only: bool, look_first: bool, session: _Session) -> None:
        sftp = session.sftp
        if look_first and _exists(sftp, path):
            self._compare(sftp, path, body)
            return
        self._make_directories(sftp, path)
        temporary = temporary_name(path)
        try:
            with opened(body) as file:
                # confirm: a stat of the size written; pipelined writes do not report the
                # server's write errors (a full disk) to the writer.
                sftp.putfo(file, temporary, confirm=True)
        except BaseException:
            with contextlib.suppress(Exception):
                sftp.remove(temporary)
            raise
        if not create_only:
            try:
                sftp.posix_rename(temporary, path)
            except OSError as error:
                if error.errno is None and "unsupported" in str(error).lower():
                    raise CorrectableStoreError(
                        f"{self._where(path)}: the server does not take posix-rename@openssh.com ({error})",
                        fix="use an SFTP server that replaces a file by a rename in one step (OpenSSH, asyncssh):"
                            " without it a viewer could find no playlist") from None
                raise
            return
        try:
            sftp.rename(temporary, path)
        except OSError:
            if not _exists(sftp, path):
                raise
            with contextlib.suppress(OSError):
                sftp.remove(temporary)
            self._compare(sftp, path, body)

    def _compare(self, sftp: Any, path: str, body: Body) -> None:
        digest = hashlib.sha256()
        with sftp.open(path, "rb") as stored:
            stored.prefetch()
            for chunk in iter(partial(stored.read, 1 << 20), b""):
                digest.update(chunk)
        if digest.digest() != body_digest(body):
            raise taken(self._where(path))

    def check_create_only(self, bucket: str) -> bool:
        """Whether the server's plain rename refuses a taken name (``WRITE_CHECK_KEY``, which must
        exist): False when it replaced it, remembered, and create-only PUTs in ``bucket`` then
        look first. Raises StoreError as ``put`` does."""
        path = joined(self._url.path, object_parts(bucket, WRITE_CHECK_KEY))

        def check(session: _Session) -> bool:
            temporary = temporary_name(path)
            with session.sftp.open(temporary, "wb") as file:
                file.write(WRITE_CHECK_BODY)
            try:
                session.sftp.rename(temporary, path)
            except OSError:
                session.sftp.remove(temporary)
                return True
            return False

        with self._errors(path):
            refused = self._sessions.use(check)
        (self._replacing_rename.discard if refused else self._replacing_rename.add)(bucket)
        return refused

    def exists(self, bucket: str, key: str) -> bool:
        """stat: True for a file there, False for none."""
        path = joined(self._url.path, object_parts(bucket, key))
        with self._errors(path):
            return self._sessions.use(lambda session: _exists(session.sftp, path))

    def delete(self, bucket: str, key: str) -> None:
        """remove; an object already gone is not an error."""
        path = joined(self._url.path, object_parts(bucket, key))

        def delete(session: _Session) -> None:
            with contextlib.suppress(FileNotFoundError):
                session.sftp.remove(path)

        with self._errors(path):
            self._sessions.use(delete)

    def close(self) -> None:
        """Close every idle connection."""
        self._sessions.close()

    def _make_directories(self, sftp: Any, path: str) -> None:
        """mkdir each directory above ``path`` not made yet in this run; one already there is fine."""
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory in self._directories or directory in ("", "."):
                continue
            try:
                sftp.mkdir(directory)
            except OSError:
                if not _is_directory(sftp, directory):
                    raise
            self._directories.add(directory)

    def _where(self, path: str) -> str:
        return f"sftp://{self._url.host}:{self._url.port}/{path.lstrip('/')}"

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """paramiko's and the socket's errors on ``path`` as a StoreError of the right kind."""
        import paramiko

        where = self._where(path)
        host = self._url.host if self._url.port == 22 else f"[{self._url.host}]:{self._url.port}"
        try:
            yield
        except StoreError:
            raise
        except paramiko.BadHostKeyException as error:
            raise CorrectableStoreError(
                f"{where}: the server's host key is not the one known_hosts has for {host} ({error})",
                fix=f"find out why {host}'s host key changed; if it rightly did, replace its line in known_hosts"
            ) from None
        except paramiko.AuthenticationException as error:
            raise CorrectableStoreError(
                f"{where}: {error}",
                fix=f"authorize the daemon's key for {self._url.username}@{self._url.host} (~/.ssh/authorized_keys),"
                    " or point --store's key= at the right private key") from None
        except paramiko.SSHException as error:
            if "authentication methods" in str(error):  # no key given, none in ~/.ssh, no agent
                raise CorrectableStoreError(
                    f"{where}: {error}",
                    fix=f"give the daemon a private key authorized for {self._url.username}@{self._url.host}"
                        " (--store ...?key=FILE, ~/.ssh/id_ed25519 of its user, or an ssh agent)") from None
            if "known_hosts" in str(error):  # RejectPolicy: "Server '...' not found in known_hosts"
                known = self._known_hosts or "~/.ssh/known_hosts"
                raise CorrectableStoreError(
                    f"{where}: {error}",
                    fix=f"add {host}'s host key to {known} once you have checked its fingerprint"
                        f" (ssh-keyscan -p {self._url.port} {self._url.host}, ssh-keygen -lf)") from None
            raise TransientStoreError(f"{where}: {error}") from None
        except OSError as error:
            reason = f"{where}: {error.strerror or error or type(error).__name__}"
            if error.errno in _CORRECTABLE_ERRNOS:
                self._directories.clear()
                raise CorrectableStoreError(
                    reason, fix=f"let {self._url.username} write and rename under {self._url.path or 'its login'}"
                                f" directory on {self._url.host}") from None
            if error.errno == errno.ENOENT:
                self._directories.clear()  # one may have been removed since: made again on the retry
            raise TransientStoreError(reason) from None
        except EOFError as error:
            raise TransientStoreError(f"{where}: the connection closed ({error or 'EOF'})") from None


def _check_files(url: StoreUrl, key: str | None, known_hosts: Path | None) -> None:
    """The ``key`` and ``known_hosts`` files of ``url`` can be read and parsed; raises ConfigError."""
    import paramiko

    if known_hosts is None and not (Path.home() / ".ssh" / "known_hosts").is_file():
        raise ConfigError(f"--store {url}: no host key can be checked: give known_hosts=FILE holding the server's key,"
                          f" or fill {Path.home() / '.ssh' / 'known_hosts'} (docs/deploy.md, SFTP)")
    if known_hosts is not None:
        try:
            paramiko.HostKeys(str(known_hosts))
        except (OSError, paramiko.SSHException) as error:
            raise ConfigError(f"--store {url}: known_hosts file {known_hosts}: {_reason(error)}") from None
    if key is not None:
        try:
            paramiko.PKey.from_path(key)
        except (paramiko.PasswordRequiredException, TypeError):  # TypeError: cryptography's, for a passphrase
            raise ConfigError(f"--store {url}: key {key} is encrypted: give a key without a passphrase (readable by"
                              " the daemon's user only), or leave key= out and load it into an ssh agent") from None
        except (OSError, paramiko.SSHException, ValueError) as error:
            raise ConfigError(f"--store {url}: key {key}: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _exists(sftp: Any, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


def _is_directory(sftp: Any, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except OSError:
        return False


def _close(session: _Session) -> None:
    with contextlib.suppress(Exception):
        session.sftp.close()
    session.client.close()

