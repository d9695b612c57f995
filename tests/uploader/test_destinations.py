"""FTP, FTPS, SFTP and HTTP (WebDAV) destinations against real servers on loopback
(tests/support/file_servers.py): what each store does, and how each failure is sorted."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.reliability.test_faults_live import tmpfs
from tests.support.file_servers import FileServer, FtpServer, SftpServer, new_file_server, store_url
from common.settings import ConfigError
from uploader.ftp_store import FtpStore, _classified
from uploader.http_store import HttpStore
from uploader.remote import parse_store_url
from uploader.sftp_store import SftpStore
from uploader.stores import (
    CorrectableStoreError,
    ObjectTakenError,
    PermanentStoreError,
    Store,
    TlsRefusedError,
    TransientStoreError,
    check_writable,
)

KINDS = ["ftp", "ftps", "sftp", "http", "https"]
Server = FileServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' CA is the one the stores' default TLS context trusts (SSL_CERT_FILE)."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


OPENED: list[FtpStore | SftpStore | HttpStore] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """Every store a test made has its kept connections closed after it."""
    yield
    while OPENED:
        OPENED.pop().close()


def new_store(text: str, **options: Any) -> Store:
    url = parse_store_url(text)
    if url.scheme in ("ftp", "ftps"):
        OPENED.append(FtpStore(url, **options))
    elif url.scheme == "sftp":
        OPENED.append(SftpStore(url, **options))
    else:
        OPENED.append(HttpStore(url, **options))
    return OPENED[-1]


@pytest.fixture(params=KINDS)
def served(request: pytest.FixtureRequest, tmp_path: Path, ca: trustme.CA, trusted: None
           ) -> Iterator[tuple[Server, Store]]:
    """A running server of each kind, and a store that writes to it under ``base/``."""
    root = tmp_path / "root"
    root.mkdir()
    with new_file_server(request.param, root, ca) as server:
        yield server, new_store(store_url(server, "base"))


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_objects_are_written_replaced_and_deleted(served: tuple[Server, Store], tmp_path: Path) -> None:
    server, store = served
    segment = tmp_path / "seg-00001.ts"
    segment.write_bytes(os.urandom(300_000))
    store.put("b", "live/one/seg-00001.ts", lambda: segment.open("rb"), content_type="video/MP2T",
              cache_control="max-age=60", create_only=True)
    for version in (b"#EXTM3U\n# one\n", b"#EXTM3U\n# two\n"):
        store.put("b", "live/one/index.m3u8", version, content_type="application/vnd.apple.mpegurl",
                  cache_control="max-age=1")
    stored = server.root / "base" / "b" / "live" / "one"
    assert (stored / "seg-00001.ts").read_bytes() == segment.read_bytes()
    assert (stored / "index.m3u8").read_bytes() == b"#EXTM3U\n# two\n"
    assert files_under(server.root) == ["base/b/live/one/index.m3u8", "base/b/live/one/seg-00001.ts"]
    assert store.exists("b", "live/one/seg-00001.ts") and not store.exists("b", "live/one/seg-00002.ts")
    store.delete("b", "live/one/seg-00001.ts")
    store.delete("b", "live/one/seg-00001.ts")  # gone already: not an error
    assert not store.exists("b", "live/one/seg-00001.ts")
    assert files_under(server.root) == ["base/b/live/one/index.m3u8"]


def test_a_create_only_put_is_a_redo_for_the_same_bytes_and_refused_for_others(served: tuple[Server, Store]) -> None:
    server, store = served
    first = os.urandom(50_000)
    store.put("b", "seg-1.ts", first, content_type="video/MP2T", cache_control="c", create_only=True)
    store.put("b", "seg-1.ts", first, content_type="video/MP2T", cache_control="c", create_only=True)
    with pytest.raises(ObjectTakenError, match="other bytes"):
        store.put("b", "seg-1.ts", b"other", content_type="video/MP2T", cache_control="c", create_only=True)
    assert (server.root / "base" / "b" / "seg-1.ts").read_bytes() == first
    assert files_under(server.root) == ["base/b/seg-1.ts"]


def test_the_write_check_tells_which_servers_refuse_a_taken_name(served: tuple[Server, Store]) -> None:
    # FTP has no create-only write at all; SFTP's plain rename and WebDAV's If-None-Match refuse
    # a taken name.
    server, store = served
    assert check_writable(store, "b") is (not isinstance(server, FtpServer))
    assert (server.root / "base" / "b" / ".hls-uploadd-write-check").is_file()


def test_a_server_down_is_transient_and_its_return_is_used(served: tuple[Server, Store]) -> None:
    server, store = served
    store.put("b", "index.m3u8", b"1", content_type="t", cache_control="c")
    server.stop()
    with pytest.raises(TransientStoreError):
        store.put("b", "index.m3u8", b"2", content_type="t", cache_control="c")
    server.restart()
    # The connection kept from before the outage is dead: a new one is made, without an error.
    store.put("b", "index.m3u8", b"3", content_type="t", cache_control="c")
    assert (server.root / "base" / "b" / "index.m3u8").read_bytes() == b"3"


def test_a_connection_the_server_dropped_while_idle_is_replaced(served: tuple[Server, Store]) -> None:
    server, store = served
    store.put("b", "index.m3u8", b"1", content_type="t", cache_control="c")
    server.restart()
    store.put("b", "index.m3u8", b"2", content_type="t", cache_control="c")
    assert store.exists("b", "index.m3u8")


@pytest.mark.parametrize("kind", ["ftp", "ftps", "sftp", "http", "https"])
def test_a_server_that_does_not_answer_is_transient(kind: str, tmp_path: Path, ca: trustme.CA,
                                                    trusted: None) -> None:
    with new_file_server(kind, tmp_path, ca) as server:
        store = new_store(store_url(server), timeout_s=1.0)
        server.pause()
        try:
            with pytest.raises(TransientStoreError):
                store.put("b", "k.ts", b"x", content_type="t", cache_control="c")
        finally:
            server.resume()


@pytest.mark.parametrize("kind", ["ftp", "http"])
def test_a_wrong_password_is_the_operators_to_correct(kind: str, tmp_path: Path, ca: trustme.CA) -> None:
    with new_file_server(kind, tmp_path, ca) as server:
        store = new_store(store_url(server).replace(f":{server.password}@", ":wrong@"))
        with pytest.raises(CorrectableStoreError) as refused:
            store.put("b", "k.ts", b"x", content_type="t", cache_control="c")
    assert ("530" if kind == "ftp" else "HTTP 401") in str(refused.value)
    assert "netrc" in refused.value.fix and "wrong" not in str(refused.value)


def test_a_password_from_netrc_is_used(tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "root").mkdir()
    with FtpServer(tmp_path / "root") as server:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {server.user} password {server.password}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        url = parse_store_url(f"ftp://127.0.0.1:{server.port}/").with_netrc()
        OPENED.append(FtpStore(url))
        OPENED[-1].put("b", "k.ts", b"x", content_type="t", cache_control="c")
    assert (tmp_path / "root" / "b" / "k.ts").read_bytes() == b"x"


@pytest.mark.parametrize("kind", ["ftps", "https"])
@pytest.mark.parametrize("trusting", ["system", "other file"])
def test_a_certificate_not_trusted_is_the_operators_to_correct(kind: str, trusting: str, tmp_path: Path,
                                                              ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix names what the daemon trusts (OpenSSL's CA file and directory, or the ones
    SSL_CERT_FILE and SSL_CERT_DIR name) and how to add a CA."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    if trusting == "system":
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        paths = ssl.get_default_verify_paths()
        trusted = f"the CA file {paths.openssl_cafile} and the CA directory {paths.openssl_capath}"
        add = ("add the store's CA to the system's CA store, or name a PEM file holding it and the other CAs the"
               " daemon needs in SSL_CERT_FILE")
    else:
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        monkeypatch.setenv("SSL_CERT_FILE", str(other))
        monkeypatch.setenv("SSL_CERT_DIR", f"{tmp_path}:{tmp_path}")
        trusted = (f"the CA file {other} (SSL_CERT_FILE) and the CA directories {tmp_path}:{tmp_path}"
                   " (SSL_CERT_DIR)")
        add = f"add the store's CA to {other}"  # the system's store is not read at all
    with new_file_server(kind, tmp_path, ca) as server:
        with pytest.raises(TlsRefusedError, match="certificate") as refused:
            new_store(store_url(server)).put("b", "k.ts", b"x", content_type="t", cache_control="c")
    host = f"127.0.0.1:{server.port}"
    assert refused.value.fix == (f"the daemon trusts {trusted}, and no CA there signed the certificate of {host} (or"
                                 f" {host} does not send its intermediate certificate): {add}, and restart the"
                                 " daemon, or fix --store")


@pytest.mark.parametrize("kind", ["ftps", "https"])
@pytest.mark.parametrize(("identities", "host", "dates", "fix"), [
    (("store.example.com",), "127.0.0.1", {}, "the certificate of 127.0.0.1:{port} does not name it: fix --store"),
    (("127.0.0.1",), "localhost", {}, "the certificate of localhost:{port} does not name it: fix --store"),
    (("127.0.0.1",), "127.0.0.1", {"not_after": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)},
     "the certificate of 127.0.0.1:{port}, or a CA certificate of its chain, is out of its dates (certificate has"
     " expired): renew it, or check this host's clock"),
    (("127.0.0.1",), "127.0.0.1",
     {"not_before": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)},
     "the certificate of 127.0.0.1:{port}, or a CA certificate of its chain, is out of its dates (certificate is"
     " not yet valid): renew it, or check this host's clock"),
])
def test_a_certificate_of_a_trusted_ca_that_is_no_good_is_said_as_such(
        kind: str, identities: tuple[str, ...], host: str, dates: dict[str, datetime.datetime], fix: str,
        tmp_path: Path, ca: trustme.CA, trusted: None) -> None:
    """Its CA is trusted: the fix is the certificate's name (an IP address or a host name it does
    not give), or its dates, not another CA (as for S3: stores.classify_tls_error)."""
    root = tmp_path / "root"
    root.mkdir()
    with new_file_server(kind, root, ca, identities, **dates) as server:
        with pytest.raises(TlsRefusedError) as refused:
            url = store_url(server).replace("127.0.0.1", host)
            new_store(url).put("b", "k.ts", b"x", content_type="t", cache_control="c")
    assert refused.value.fix == fix.format(port=server.port)
    assert files_under(root) == []


def test_an_https_store_on_a_plain_http_port_is_the_operator_s_to_correct(tmp_path: Path, ca: trustme.CA) -> None:
    with new_file_server("http", tmp_path, ca) as server:
        url = store_url(server).replace("http://", "https://")
        with pytest.raises(TlsRefusedError) as refused:
            new_store(url).put("b", "k.ts", b"x", content_type="t", cache_control="c")
    assert refused.value.fix == f"127.0.0.1:{server.port} does not answer TLS: is --store http://, or another port?"


def sftp_refusal(server: SftpServer, **changes: str) -> CorrectableStoreError:
    url = store_url(server)
    for old, new in changes.items():
        url = url.replace(old, new)
    with pytest.raises(CorrectableStoreError) as refused:
        new_store(url).put("b", "k.ts", b"x", content_type="t", cache_control="c")
    return refused.value


def test_sftp_never_accepts_a_host_key_it_does_not_know(tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    (tmp_path / "root").mkdir()
    with SftpServer(tmp_path / "root") as server:
        unknown = sftp_refusal(server, **{str(server.known_hosts): str(empty)})
        changed = sftp_refusal(server, **{str(server.known_hosts): str(server.wrong_known_hosts)})
        other_key = tmp_path / "other_key"
        import asyncssh

        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(other_key))
        unauthorized = sftp_refusal(server, **{str(server.client_key): str(other_key)})
    assert "not found in known_hosts" in str(unknown) and f"to {empty}" in unknown.fix
    assert "ssh-keyscan -p" in unknown.fix
    assert "host key" in str(changed) and "replace its line in known_hosts" in changed.fix
    assert "authorize the daemon's key" in unauthorized.fix
    assert not list((tmp_path / "root").rglob("*"))


def test_an_ftp_user_that_may_not_write_is_held_with_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "b").mkdir(parents=True)
    with FtpServer(root) as server:
        store = new_store(store_url(server))
        # A plain file where the key's directory should be: the server refuses (550) as it
        # refuses a directory its user may not write.
        (root / "b" / "live").write_bytes(b"")
        with pytest.raises(CorrectableStoreError, match="550") as refused:
            store.put("b", "live/k.ts", b"x", content_type="t", cache_control="c")
    assert "let FTP user hls write and rename under" in refused.value.fix


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("421 Service not available", TransientStoreError),
        ("451 Local error", TransientStoreError),
        ("452 Insufficient storage", TransientStoreError),
        ("530 Not logged in", CorrectableStoreError),
        ("532 Need account", CorrectableStoreError),
        ("550 Permission denied", CorrectableStoreError),
        ("552 Exceeded storage allocation", TransientStoreError),
        ("553 File name not allowed", PermanentStoreError),
        ("502 Command not implemented", PermanentStoreError),
    ],
)
def test_ftp_replies_are_sorted_by_who_can_make_them_succeed(reply: str, kind: type) -> None:
    error = _classified(reply, "ftp://h:21/b/k.ts", parse_store_url("ftp://h/"))
    assert type(error) is kind and str(error) == f"ftp://h:21/b/k.ts: {reply}"


@pytest.mark.parametrize(
    ("status", "kind", "fix"),
    [
        (301, CorrectableStoreError, "give --store the URL it redirects to"),
        (401, CorrectableStoreError, "user and password"),
        (403, CorrectableStoreError, "let the store's user write"),
        (404, CorrectableStoreError, "correct the path in --store"),
        (405, CorrectableStoreError, "dav_methods PUT DELETE MKCOL MOVE"),
        (501, CorrectableStoreError, "does not implement PUT"),
        (505, CorrectableStoreError, "HTTP/1.1"),
        (423, TransientStoreError, None),
        (413, CorrectableStoreError, "client_max_body_size"),
        (408, TransientStoreError, None),
        (429, TransientStoreError, None),
        (503, TransientStoreError, None),
        (507, TransientStoreError, None),
        (400, PermanentStoreError, None),
        (415, PermanentStoreError, None),
    ],
)
def test_http_statuses_are_sorted_by_who_can_make_them_succeed(status: int, kind: type, fix: str | None) -> None:
    error = HttpStore(parse_store_url("http://h/base"))._refused("PUT", "http://h:80/base/b/k.ts", status)
    assert type(error) is kind and str(error) == f"PUT http://h:80/base/b/k.ts: HTTP {status}"
    if fix is not None:
        assert fix in error.fix  # type: ignore[attr-defined]


def test_an_ftp_server_without_a_directory_made_since_start_gets_it_again(tmp_path: Path) -> None:
    # A directory the store made and someone removed: the next PUT's 550 makes it forget what it
    # made, and the retry makes it again.
    root = tmp_path / "root"
    root.mkdir()
    with FtpServer(root) as server:
        store = new_store(store_url(server))
        store.put("b", "live/1.ts", b"1", content_type="t", cache_control="c")
        for path in sorted((root / "b").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / "b").rmdir()
        with pytest.raises(CorrectableStoreError):
            store.put("b", "live/2.ts", b"2", content_type="t", cache_control="c")
        store.put("b", "live/2.ts", b"2", content_type="t", cache_control="c")
    assert (root / "b" / "live" / "2.ts").read_bytes() == b"2"


def test_ftp_store_names_cannot_inject_commands(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with FtpServer(tmp_path / "root") as server:
        with pytest.raises(PermanentStoreError, match="not a plain relative path"):
            new_store(store_url(server)).put("b", "x.ts\r\nDELE y", b"x", content_type="t", cache_control="c")


class _IngestHandler(http.server.BaseHTTPRequestHandler):
    """An HTTP ingest point: PUT writes the body in place under the root, GET/HEAD/DELETE; no
    MOVE, no MKCOL (405), If-None-Match honoured or not (``server.conditional``); the server's
    ``break_puts`` next PUTs write half their body and drop the connection."""

    server: _IngestServer

    def _path(self) -> Path:
        return self.server.root / self.path.lstrip("/")

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        target = self._path()
        if self.server.conditional and self.headers.get("If-None-Match") == "*" and target.exists():
            self.rfile.read(length)
            self._answer(412)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.server.break_puts:
            self.server.break_puts -= 1
            target.write_bytes(self.rfile.read(length // 2))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        target.write_bytes(self.rfile.read(length))
        self._answer(201)

    def do_GET(self) -> None:  # noqa: N802
        target = self._path()
        if not target.is_file():
            self._answer(404)
            return
        body = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_HEAD = do_GET

    def do_DELETE(self) -> None:  # noqa: N802
        self._path().unlink(missing_ok=True)
        self._answer(204)

    def do_MOVE(self) -> None:  # noqa: N802
        self._answer(405)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _IngestServer(http.server.ThreadingHTTPServer):
    def __init__(self, root: Path, *, conditional: bool) -> None:
        super().__init__(("127.0.0.1", 0), _IngestHandler)
        self.root = root
        self.conditional = conditional
        self.break_puts = 0


@pytest.fixture(params=[True, False], ids=["conditional", "unconditional"])
def ingest(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_IngestServer]:
    server = _IngestServer(tmp_path, conditional=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_server_without_move_gets_objects_in_place_never_replacing_a_segment(ingest: _IngestServer) -> None:
    store = new_store(f"http://127.0.0.1:{ingest.server_address[1]}/in")
    # Whether it honours If-None-Match is found out by the write check, as for S3 clones.
    assert check_writable(store, "b") is ingest.conditional
    store.put("b", "live/seg-1.ts", b"first", content_type="video/MP2T", cache_control="c", create_only=True)
    store.put("b", "live/seg-1.ts", b"first", content_type="video/MP2T", cache_control="c", create_only=True)
    with pytest.raises(ObjectTakenError):
        store.put("b", "live/seg-1.ts", b"other", content_type="video/MP2T", cache_control="c", create_only=True)
    store.put("b", "live/index.m3u8", b"#EXTM3U\n", content_type="t", cache_control="c")
    assert (ingest.root / "in" / "b" / "live" / "seg-1.ts").read_bytes() == b"first"
    assert files_under(ingest.root) == ["in/b/.hls-uploadd-write-check", "in/b/live/index.m3u8", "in/b/live/seg-1.ts"]


def test_a_segment_put_in_place_that_broke_half_way_is_replaced_by_its_retry(ingest: _IngestServer) -> None:
    store = new_store(f"http://127.0.0.1:{ingest.server_address[1]}/")
    check_writable(store, "b")
    data = os.urandom(100_000)
    ingest.break_puts = 1
    with pytest.raises(TransientStoreError):
        store.put("b", "seg-2.ts", data, content_type="video/MP2T", cache_control="c", create_only=True)
    assert (ingest.root / "b" / "seg-2.ts").stat().st_size == 50_000  # its first half is there
    store.put("b", "seg-2.ts", data, content_type="video/MP2T", cache_control="c", create_only=True)
    assert (ingest.root / "b" / "seg-2.ts").read_bytes() == data


def test_a_reader_never_sees_half_a_playlist(served: tuple[Server, Store]) -> None:
    # Each version is written under a temporary name and renamed (MOVEd) over the last: a reader
    # of the server's file finds a whole version, or (WebDAV's MOVE deletes first) none for an instant.
    server, store = served
    versions = [b"#EXTM3U\n" + bytes([65 + n % 26]) * 200_000 for n in range(12)]
    path = server.root / "base" / "b" / "index.m3u8"
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in versions:
            store.put("b", "index.m3u8", version, content_type="t", cache_control="c")
    finally:
        done.set()
        reader.join()
    assert seen and all(text in versions for text in seen), {len(text) for text in seen if text not in versions}


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_disk_on_the_server_is_waited_out_and_never_leaves_a_broken_segment(
    kind: str, tmp_path: Path, ca: trustme.CA, trusted: None
) -> None:
    # The server's disk fills during a segment's transfer: the PUT fails (transient), nothing is
    # under the segment's name, and once space is freed the same PUT stores it whole.
    mounted = tmpfs(tmp_path / "root", "size=2m")
    root = next(mounted)
    try:
        with new_file_server(kind, root, ca) as server:
            store = new_store(store_url(server))
            data = os.urandom(1_500_000)
            filler = root / "filler"
            filler.write_bytes(b"\0" * 1_000_000)
            with pytest.raises(TransientStoreError):
                store.put("b", "seg-1.ts", data, content_type="video/MP2T", cache_control="c", create_only=True)
            assert not (root / "b" / "seg-1.ts").exists()
            filler.unlink()
            store.put("b", "seg-1.ts", data, content_type="video/MP2T", cache_control="c", create_only=True)
            assert (root / "b" / "seg-1.ts").read_bytes() == data
            assert files_under(root) == ["b/seg-1.ts"]
    finally:
        mounted.close()


def test_ftps_to_a_server_without_tls_is_held_with_the_fix(tmp_path: Path) -> None:
    with FtpServer(tmp_path) as server:
        store = new_store(store_url(server).replace("ftp://", "ftps://"))
        with pytest.raises(CorrectableStoreError, match="does not take AUTH TLS") as refused:
            store.put("b", "k.ts", b"x", content_type="t", cache_control="c", create_only=True)
    assert "or use ftp://" in refused.value.fix and server.password not in str(refused.value)


def test_sftp_key_and_known_hosts_files_are_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncssh

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts
    with pytest.raises(ConfigError, match="^--store sftp://u@h:22/d: no host key can be checked: give known_hosts="):
        SftpStore(parse_store_url("sftp://u@h/d"))
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    encrypted = tmp_path / "encrypted"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(encrypted), passphrase="pw")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    cases = {
        f"sftp://u@h/?known_hosts={tmp_path}/absent": "known_hosts file",
        f"sftp://u@h/?key={tmp_path}/absent&known_hosts={known_hosts}": "No such file",
        f"sftp://u@h/?key={garbage}&known_hosts={known_hosts}": f"key {garbage}: ",
        f"sftp://u@h/?key={encrypted}&known_hosts={known_hosts}": "is encrypted: give a key without a passphrase",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match="^--store sftp://u@h:22/") as refused:
            SftpStore(parse_store_url(text))
        assert message in str(refused.value) and "\n" not in str(refused.value)


def test_sftp_without_any_key_is_held_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_*
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    (tmp_path / "root").mkdir()
    with SftpServer(tmp_path / "root") as server:
        store = new_store(f"{server.url}?known_hosts={server.known_hosts}")
        with pytest.raises(CorrectableStoreError) as refused:
            store.put("b", "k.ts", b"x", content_type="t", cache_control="c")
    assert "give the daemon a private key authorized for hls@127.0.0.1" in refused.value.fix
