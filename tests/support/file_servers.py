"""FTP/FTPS, SFTP and WebDAV servers on loopback for the `--store` destinations' tests.

Each server runs in its own subprocess (tests/support/serve_files.py) and serves a directory,
``root``, so that a test can stop it and bring it back on the same port, kill it, or freeze it
(SIGSTOP). Its keys, certificates, config and log live in a private directory removed when the
object is garbage (or the test process exits); a server still running then is killed.

    with FtpServer(tmp_path / "root", tls=ca.issue_cert("127.0.0.1")) as ftp:
        ...  # store to ftp.url
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import asyncssh
import trustme

from examples.embedded_s3 import listening_ports
from tests.support.net import LOOPBACK, free_port
from tests.support.serve_files import PORT_TAKEN

__all__ = ["DavServer", "FileServerError", "FtpServer", "SftpServer"]

REPO = Path(__file__).resolve().parents[2]
# A server is up in ~0.2-0.6 s (mostly imports); a loaded box gets ample room on top.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 0.02
# On a first start the port chosen may be taken before the server binds it; we then try another.
START_ATTEMPTS = 3


class FileServerError(RuntimeError):
    """A file server died while starting, or did not listen in time."""


class _PortTaken(FileServerError):
    pass


def random_password(length: int = 16) -> str:
    """ASCII letters only: it goes into URLs as it is."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


def _reap(procs: list[subprocess.Popen[bytes]], state_dir: Path) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shutil.rmtree(state_dir, ignore_errors=True)


class _ServerProcess:
    """A server subprocess on one loopback port, kept across restarts."""

    kind: ClassVar[str]

    def __init__(self, root: Path | str, *, user: str) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-server-"))
        self.log_path = self.state_dir / "server.log"
        self.port = free_port()  # another one if it is taken at the first start()
        self.last_start_s: float | None = None  # wall time of the last start()
        self._started_once = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []  # for the reaper
        self._log_offset = 0
        weakref.finalize(self, _reap, self._procs, self.state_dir)

    # -- what a subclass says ---------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        """The kind's own keys of serve_files' config."""
        raise NotImplementedError

    def _port_changed(self) -> None:
        """Called when a first start moved to another port."""

    @property
    def url(self) -> str:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and return once it listens on `port`; raise FileServerError with its
        stderr if it dies first. Only the first start may move to another port (its own was
        taken); later ones use the same port or fail."""
        if self.running:
            raise FileServerError(f"{self.kind} server already running (pid {self.pid})")
        began = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._launch_and_wait()
            except _PortTaken:
                if self._started_once or attempt == START_ATTEMPTS:
                    raise
                self.port = free_port()
                self._port_changed()
            else:
                break
        self._started_once = True
        self.last_start_s = time.monotonic() - began

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (and SIGCONT, should it be paused) and wait; SIGKILL after `timeout_s`. The
        port is free afterwards; root keeps its files."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: the server ends at once, its connections reset."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel's backlog) but nothing answers."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """stop() and start() again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote to stderr since its latest start."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nothing)"

    # -- internals ----------------------------------------------------------------------

    def _launch_and_wait(self) -> None:
        config_path = self.state_dir / "config.json"
        config_path.write_text(json.dumps(
            {"kind": self.kind, "port": self.port, "root": str(self.root), "user": self.user, **self._config()}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            # Own session: a Ctrl-C meant for pytest does not reach it.
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.serve_files", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.state_dir, env=env, start_new_session=True,
            )
        self._proc = proc
        self._procs[:] = [proc]
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.port not in listening_ports(proc.pid):
            if proc.poll() is not None:
                self._proc = None
                error_type = _PortTaken if proc.returncode == PORT_TAKEN else FileServerError
                raise error_type(f"{self.kind} server exited with code {proc.returncode} while starting "
                                      f"on port {self.port}; its output:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise FileServerError(f"{self.kind} server not listening on port {self.port} after "
                                      f"{START_TIMEOUT_S:g} s; its output:\n{self.log_tail()}")
            time.sleep(PROBE_INTERVAL_S)


def _write_tls(state_dir: Path, tls: trustme.LeafCert | None) -> dict[str, str]:
    if tls is None:
        return {}
    cert, key = state_dir / "cert.pem", state_dir / "key.pem"
    with open(cert, "wb") as chain:
        for pem in tls.cert_chain_pems:
            chain.write(pem.bytes())
    tls.private_key_pem.write_to_path(str(key))
    return {"cert": str(cert), "key": str(key)}


class _PasswordServer(_ServerProcess):
    """A server whose `user` logs in with a password, over TLS when given `tls`."""

    schemes: tuple[str, str]  # the URL's scheme without TLS, and with it

    def __init__(self, root: Path | str, *, user: str = "hls", password: str | None = None,
                 tls: trustme.LeafCert | None = None) -> None:
        """`password`: ASCII letters; None: a random one (`.password`). `tls`: the server's
        certificate, e.g. ``trustme.CA().issue_cert("127.0.0.1")``."""
        super().__init__(root, user=user)
        self.password = password or random_password()
        self.tls = tls
        self._tls_files = _write_tls(self.state_dir, tls)

    def _config(self) -> dict[str, Any]:
        return {"password": self.password, **self._tls_files}

    @property
    def url(self) -> str:
        """``SCHEME://USER:PASSWORD@127.0.0.1:PORT/``, the TLS scheme with TLS."""
        return f"{self.schemes[bool(self.tls)]}://{self.user}:{self.password}@{LOOPBACK}:{self.port}/"


class FtpServer(_PasswordServer):
    """pyftpdlib FTP, or with `tls` explicit FTPS (AUTH TLS) that requires TLS on the control and
    data channels. `user` may do everything ("elradfmwMT") in root; passive mode on loopback."""

    kind = "ftp"
    schemes = ("ftp", "ftps")


class SftpServer(_ServerProcess):
    """asyncssh SFTP chrooted to root, public-key authentication only, for one ed25519 client key
    made here (`client_key`, an unencrypted OpenSSH private key file). No shell, exec, scp or
    forwarding. `known_hosts` names its host key for ``[127.0.0.1]:PORT``; `wrong_known_hosts`
    names another key for the same host, so that a client must refuse it."""

    kind = "sftp"

    def __init__(self, root: Path | str, *, user: str = "hls") -> None:
        super().__init__(root, user=user)
        self.host_key_path = self.state_dir / "host_key"
        self.client_key = self.state_dir / "client_key"
        self.authorized_keys = self.state_dir / "authorized_keys"
        self.known_hosts = self.state_dir / "known_hosts"
        self.wrong_known_hosts = self.state_dir / "wrong_known_hosts"
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._other_host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="hls-test-client")
        self.host_key.write_private_key(str(self.host_key_path))
        client_key.write_private_key(str(self.client_key))
        self.client_key.chmod(0o600)
        client_key.write_public_key(str(self.authorized_keys))
        self._port_changed()

    def _port_changed(self) -> None:
        for path, key in ((self.known_hosts, self.host_key), (self.wrong_known_hosts, self._other_host_key)):
            public = key.export_public_key("openssh").decode().split()[:2]
            path.write_text(f"[{LOOPBACK}]:{self.port} {' '.join(public)}\n")

    def _config(self) -> dict[str, Any]:
        return {"host_key": str(self.host_key_path), "authorized_keys": str(self.authorized_keys)}

    @property
    def url(self) -> str:
        """``sftp://USER@127.0.0.1:PORT/``; the path is relative to root (the chroot)."""
        return f"sftp://{self.user}@{LOOPBACK}:{self.port}/"


class DavServer(_PasswordServer):
    """wsgidav on cheroot: root read-write over WebDAV (PUT, GET, DELETE, MKCOL, MOVE, ...) for
    `user` with HTTP Basic auth only (no digest, no anonymous access); https with `tls`."""

    kind = "dav"
    schemes = ("http", "https")


FileServer = FtpServer | SftpServer | DavServer


def new_file_server(kind: str, root: Path, ca: trustme.CA, identities: tuple[str, ...] = (LOOPBACK,),
                    **dates: datetime.datetime) -> FileServer:
    """A server (not started) for a --store scheme: ftp, ftps, sftp, http or https (WebDAV); with
    TLS, its certificate from ``ca`` for ``identities`` (and trustme's ``not_before``/``not_after``)."""
    tls = ca.issue_cert(*identities, **dates) if kind in ("ftps", "https") else None
    if kind in ("ftp", "ftps"):
        return FtpServer(root, tls=tls)
    if kind == "sftp":
        return SftpServer(root)
    return DavServer(root, tls=tls)


def store_url(server: FileServer, path: str = "") -> str:
    """The daemon's ``--store`` URL for ``server`` (an SFTP one with its key and known_hosts)."""
    if isinstance(server, SftpServer):
        return f"{server.url}{path}?key={server.client_key}&known_hosts={server.known_hosts}"
    return f"{server.url}{path}"
