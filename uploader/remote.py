"""What the stores over a network share: the ``--store`` URL, its credentials, object paths and
reused connections.

A ``--store`` is ``s3`` or a URL (docs/deploy.md, "Destinations"):

- ``file:///PATH``: objects as files ``PATH/BUCKET/KEY``;
- ``ftp://[USER[:PASSWORD]@]HOST[:PORT]/DIR`` and ``ftps://...`` (explicit TLS, RFC 4217): ``DIR``
  is relative to the login directory (RFC 1738 3.2.2; ``/%2Fsrv/live`` for ``/srv/live``);
- ``sftp://USER@HOST[:PORT]/DIR[?key=FILE&known_hosts=FILE]``: ``DIR`` is absolute, ``/~/DIR``
  relative to the login directory (draft-ietf-secsh-scp-sftp-ssh-uri-04 3.5);
- ``http(s)://[USER[:PASSWORD]@]HOST[:PORT]/DIR``: objects PUT to ``DIR/BUCKET/KEY`` (WebDAV,
  RFC 4918; nginx ``dav_methods``; ingest points that take PUT).

A password left out of the URL is looked up in the netrc file (``$NETRC``, else ``~/.netrc``) by
host. The URL itself can come from the command line, ``HLS_UPLOADD_STORE`` or the config file;
it is never printed with its password.
"""

from __future__ import annotations

import netrc
import os
import posixpath
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from common.settings import ConfigError

from .stores import PermanentStoreError, TlsTrust

# Connect and per-operation timeout of the network stores, seconds: an answer slower than this is
# a transient failure, retried with the publisher's backoff.
REMOTE_TIMEOUT_S = 20.0

SCHEMES = ("s3", "file", "ftp", "ftps", "sftp", "http", "https")
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22, "http": 80, "https": 443}
# Query parameters each scheme takes.
_PARAMETERS: dict[str, frozenset[str]] = {"sftp": frozenset({"key", "known_hosts"})}

C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A parsed ``--store``. ``path``: the base directory, '/'-separated without a trailing '/'
    ("" for the login directory or the server's root; for ``file`` and ``sftp`` absolute unless
    it was given relative to the login directory). ``str()`` is the URL without its password."""

    scheme: str
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    parameters: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        if self.scheme == "s3":
            return "s3"
        if self.scheme == "file":
            return f"file://{self.path}"
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{name}={value}" for name, value in self.parameters)
        return f"{self.scheme}://{user}{host}:{self.port}{self._shown_path}" + (f"?{query}" if query else "")

    @property
    def _shown_path(self) -> str:
        """The path as a URL of this scheme writes it (FTP: relative unless %2F; SFTP: /~/ for the
        login directory's)."""
        if self.scheme in ("ftp", "ftps"):
            return f"/%2F{quote(self.path[1:])}" if self.path.startswith("/") else f"/{quote(self.path)}"
        if self.scheme == "sftp" and not self.path.startswith("/"):
            return f"/~/{quote(self.path)}" if self.path else ""
        return quote(self.path)

    @property
    def identity(self) -> str:
        """Which place this is, whatever the credentials and parameters (a key file moved, a
        known_hosts file renamed): the URL without its password and query."""
        return str(StoreUrl(self.scheme, self.host, self.port, self.username, None, self.path))

    def parameter(self, name: str) -> str | None:
        """A query parameter's value, None when not given."""
        return dict(self.parameters).get(name)

    def with_netrc(self, path: Path | None = None) -> StoreUrl:
        """This URL with the login and password the netrc file (``path``; else ``$NETRC``, else
        ``~/.netrc``, which may be absent) has for its host, where the URL leaves them out.
        Raises ConfigError for a netrc file that cannot be read or parsed, a ``$NETRC`` that names
        none, or a password from a file that others than its owner may read (as curl and ftp
        warn of, and Python's netrc refuses for ``~/.netrc``)."""
        if self.password is not None or self.scheme in ("s3", "file", "sftp"):
            return self
        from_environment = path is None and bool(os.environ.get("NETRC"))
        chosen = Path(os.environ["NETRC"]) if from_environment else path or Path.home() / ".netrc"
        if not chosen.exists():
            if from_environment:
                raise ConfigError(f"netrc file {chosen} does not exist ($NETRC)")
            return self
        try:
            entry = netrc.netrc(str(chosen)).authenticators(self.host)
        except (OSError, netrc.NetrcParseError) as error:
            raise ConfigError(f"netrc file {chosen}: {error}") from None
        if entry is None:
            return self
        login, _, password = entry
        if self.username is not None and login and login != self.username:
            return self  # the file's entry is another user's
        if password and chosen.stat().st_mode & 0o077:
            raise ConfigError(f"netrc file {chosen} holds passwords and others may read it: chmod 600 {chosen}")
        return StoreUrl(self.scheme, self.host, self.port, self.username or login or None, password,
                        self.path, self.parameters)


def parse_store_url(text: str) -> StoreUrl:
    """``--store`` as a StoreUrl (the module's docstring has the forms). Raises ConfigError, one
    line and never with the password, for anything else: an unknown scheme, a relative ``file``
    path, a missing or malformed host, a port out of 1..65535, an unknown or repeated query
    parameter, a password in an sftp URL, a control character anywhere."""
    if text == "s3":
        return StoreUrl("s3")
    shown = _redacted(text)
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES or "://" not in text:
        raise ConfigError(f"--store {shown!r} is not 's3' or a URL of scheme {', '.join(SCHEMES[1:])}")
    userinfo, address = _userinfo(rest)
    try:
        parts = urlsplit(f"{scheme}://{address}")
    except ValueError as error:  # "Invalid IPv6 URL"
        raise ConfigError(f"--store {shown!r}: {error}") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    user, _, password = userinfo.partition(":") if userinfo is not None else ("", "", "")
    username = unquote(user) if user else None
    secret = unquote(password) if userinfo is not None and ":" in userinfo else None
    path = unquote(parts.path)
    parameters = tuple(parse_qsl(parts.query, keep_blank_values=True))
    if any(_has_control(piece) for piece in (username or "", secret or "", path, *sum(parameters, ()))):
        raise ConfigError(f"--store {shown!r} has a control character (a line break?) in it")
    if scheme == "file":
        if userinfo is not None or parts.netloc not in ("", "localhost") or not path.startswith("/") or parts.query:
            raise ConfigError(f"--store {shown!r}: a file store is file:///ABSOLUTE/PATH")
        return StoreUrl("file", path=posixpath.normpath(path) if path != "/" else "/")
    if userinfo is None and "@" in path and ":" in parts.netloc:
        # ftp://u:p/x@host/: a password with a '/' read as a port and a path.
        raise ConfigError(f"--store {shown!r}: a user and password go before the host, a '/' in them as %2F")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--store {shown!r}: its port is not a number from 1 to 65535")
    if not parts.hostname or not _HOST_PORT.fullmatch(parts.netloc):
        raise ConfigError(f"--store {shown!r} names no host (SCHEME://[USER@]HOST[:PORT]/DIR)")
    names = [name for name, _ in parameters]
    known = _PARAMETERS.get(scheme, frozenset())
    for name in names:
        if name not in known:
            raise ConfigError(f"--store {shown!r}: unknown parameter {name!r} ({scheme} stores take"
                              f" {', '.join(sorted(known)) or 'none'})")
        if names.count(name) > 1:
            raise ConfigError(f"--store {shown!r}: parameter {name!r} is given twice")
    if scheme == "sftp":
        if not username:
            raise ConfigError(f"--store {shown!r}: an sftp store names its user (sftp://USER@HOST/DIR)")
        if secret is not None:
            raise ConfigError(f"--store {shown!r}: an sftp store authenticates with a key, not a password: leave"
                              " the password out (key=FILE, docs/deploy.md)")
        path = path[3:] if path.startswith("/~/") else "" if path == "/~" else path
    elif scheme in ("ftp", "ftps"):
        path = path[1:]  # RFC 1738: relative to the login directory; %2F made it absolute
    return StoreUrl(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, secret,
                    path.rstrip("/") if path != "/" else "/", parameters)


# A URL's HOST[:PORT]: a name or IPv4 address, or an IPv6 address in brackets.
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:@/]+)(:[0-9]*)?")


def _userinfo(rest: str) -> tuple[str | None, str]:
    """A URL's part after ``SCHEME://`` as (USER[:PASSWORD] or None, the rest): the userinfo ends
    at the last ``@`` before the first ``/`` (RFC 3986 3.2), so a password may hold ``@``, ``#``
    or ``?`` but a ``/`` only as ``%2F``."""
    at = rest.split("/", 1)[0].rfind("@")
    return (rest[:at], rest[at + 1:]) if at >= 0 else (None, rest)


def _redacted(text: str) -> str:
    """A URL as given, with what may be a password replaced by ``***``: between the ``:`` after
    the user and the last ``@`` (a password holding an unencoded ``/`` included)."""
    scheme, separator, rest = text.partition("://")
    at = rest.rfind("@")
    if not separator or at < 0 or ":" not in rest[:at]:
        return text
    return f"{scheme}://{rest[:at].partition(':')[0]}:***@{rest[at + 1:]}"


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or c == "\x7f" for c in text)


def system_trust(scheme: str) -> TlsTrust:
    """What ``ssl.create_default_context()`` trusts, which the ``https`` and ``ftps`` stores check
    certificates with (``scheme``), for a TLS refusal's fix (stores.classify_tls_error): OpenSSL's
    CA file and CA directory, each its default or what SSL_CERT_FILE and SSL_CERT_DIR name."""
    paths = ssl.get_default_verify_paths()
    named_file, named_directory = os.environ.get(paths.openssl_cafile_env), os.environ.get(paths.openssl_capath_env)
    file = (f"the CA file {named_file} ({paths.openssl_cafile_env})" if named_file is not None
            else f"the CA file {paths.openssl_cafile}")
    directories = "directories" if named_directory and os.pathsep in named_directory else "directory"
    directory = (f"the CA {directories} {named_directory} ({paths.openssl_capath_env})" if named_directory is not None
                 else f"the CA directory {paths.openssl_capath}")
    if named_file is not None:
        name_a_ca = f"add the store's CA to {named_file}, and restart the daemon"
    else:
        name_a_ca = ("add the store's CA to the system's CA store, or name a PEM file holding it and the other CAs"
                     f" the daemon needs in {paths.openssl_cafile_env}, and restart the daemon")
    source = f"{file} and {directory}"
    return TlsTrust(source=source, trusts=f"the daemon trusts {source}", name_a_ca=name_a_ca, endpoint="--store",
                    plain_scheme="ftp://" if scheme == "ftps" else "http://")


def object_parts(bucket: str, key: str) -> list[str]:
    """``BUCKET/KEY`` as path components under a store's base directory. Raises
    PermanentStoreError for a key that would leave it (an empty, ``.`` or ``..`` component) or
    whose name a file transfer command cannot carry (a control character: FTP and SFTP paths
    end at a line break)."""
    parts = [bucket, *key.split("/")]
    if "/" in bucket or any(p in ("", ".", "..") or any(ord(c) < 32 or c == "\x7f" for c in p) for p in parts):
        raise PermanentStoreError(f"key {key!r} in bucket {bucket!r} is not a plain relative path")
    return parts


def joined(base: str, parts: list[str]) -> str:
    """``base`` and ``parts`` as one '/'-separated path (``base`` "" : relative)."""
    return "/".join([base.rstrip("/"), *parts]) if base else "/".join(parts)


def temporary_name(path: str) -> str:
    """Where an object is written before it is renamed to ``path``: a hidden name beside it, the
    same for every attempt (a retry overwrites what an interrupted one left)."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}.part" if directory else f".{name}.part"


class Sessions(Generic[C]):
    """Connections to one server, each used by one thread at a time and kept for the next call.

    ``use(call)`` runs ``call(connection)`` on an idle connection (or a new one from ``connect``);
    a call that raises closes its connection (its state is unknown). A connection that sat idle
    may have been dropped by the server: when ``call`` fails on one with an error in ``lost``, it
    is closed and the call made once more on a new connection. ``connect`` and ``call`` raise what
    they raise; ``close`` must not raise.
    """

    def __init__(self, connect: Callable[[], C], close: Callable[[C], None],
                 lost: tuple[type[BaseException], ...]) -> None:
        self._connect = connect
        self._close = close
        self._lost = lost
        self._idle: list[C] = []
        self._lock = threading.Lock()

    def use(self, call: Callable[[C], R]) -> R:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._kept(connection, call)
            except self._lost:
                pass
        return self._kept(self._connect(), call)

    def _kept(self, connection: C, call: Callable[[C], R]) -> R:
        try:
            result = call(connection)
        except BaseException:
            self._close(connection)
            raise
        with self._lock:
            self._idle.append(connection)
        return result

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._close(connection)
