"""The test file servers (tests/support/file_servers.py) with real clients: ftplib for FTP and FTPS,
paramiko for SFTP, urllib3 for WebDAV. What a client writes lands under the server's root; a
stopped server refuses connections and a restarted one serves on the same port; wrong
credentials or a wrong host key are refused."""

from __future__ import annotations

import ftplib
import io
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest
import trustme
import urllib3

from tests.support.file_servers import DavServer, FileServerError, FtpServer, SftpServer
from tests.support.net import LOOPBACK

CONNECT_TIMEOUT_S = 5.0
PAYLOAD = b"#EXTM3U\n" + bytes(range(256)) * 64  # 16 KiB and 8 bytes, every byte value


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=CONNECT_TIMEOUT_S).close()
    except ConnectionRefusedError:
        return True
    return False


# -- FTP and FTPS ------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["ftp", "ftps"])
def ftp_server(request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path) -> Iterator[FtpServer]:
    tls = ca.issue_cert(LOOPBACK) if request.param else None
    with FtpServer(tmp_path / "root", tls=tls) as server:
        yield server


def ftp_login(server: FtpServer, ca_file: Path, password: str | None = None) -> ftplib.FTP:
    """A logged-in ftplib client; FTP_TLS, with the data channel protected too, for FTPS."""
    client: ftplib.FTP
    if server.tls:
        client = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(ca_file)), timeout=CONNECT_TIMEOUT_S)
    else:
        client = ftplib.FTP(timeout=CONNECT_TIMEOUT_S)
    client.connect(LOOPBACK, server.port)
    try:
        client.login(server.user, password or server.password)  # FTP_TLS sends AUTH TLS first
        if isinstance(client, ftplib.FTP_TLS):
            client.prot_p()
    except BaseException:
        client.close()
        raise
    return client


def test_ftp_client_writes_reads_renames_and_deletes_under_root(ftp_server: FtpServer, ca_file: Path) -> None:
    assert ftp_server.url == (f"{'ftps' if ftp_server.tls else 'ftp'}://hls:{ftp_server.password}"
                              f"@127.0.0.1:{ftp_server.port}/")
    client = ftp_login(ftp_server, ca_file)
    try:
        client.mkd("live")
        client.storbinary("STOR live/a.ts.tmp", io.BytesIO(PAYLOAD))
        assert (ftp_server.root / "live" / "a.ts.tmp").read_bytes() == PAYLOAD
        client.rename("live/a.ts.tmp", "live/a.ts")
        chunks: list[bytes] = []
        client.retrbinary("RETR live/a.ts", chunks.append)
        assert b"".join(chunks) == PAYLOAD
        assert client.nlst("live") == ["a.ts"]
        client.delete("live/a.ts")
        client.quit()
    finally:
        client.close()
    assert list((ftp_server.root / "live").iterdir()) == []


def test_ftp_wrong_password_is_530(ftp_server: FtpServer, ca_file: Path) -> None:
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp_login(ftp_server, ca_file, password="wrong")


def test_ftps_refuses_a_login_without_tls(ca: trustme.CA, tmp_path: Path) -> None:
    with FtpServer(tmp_path / "root", tls=ca.issue_cert(LOOPBACK)) as server:
        client = ftplib.FTP(timeout=CONNECT_TIMEOUT_S)
        client.connect(LOOPBACK, server.port)
        try:
            with pytest.raises(ftplib.error_perm, match="^550 SSL/TLS required"):
                client.login(server.user, server.password)
        finally:
            client.close()


def test_ftp_stopped_refuses_then_restarts_on_the_same_port(ftp_server: FtpServer, ca_file: Path) -> None:
    port = ftp_server.port
    ftp_server.stop()
    assert not ftp_server.running
    assert refuses_connections(port)
    ftp_server.restart()
    assert ftp_server.port == port
    ftp_login(ftp_server, ca_file).close()


def test_a_paused_server_answers_nothing_until_resumed_and_a_killed_one_refuses(tmp_path: Path) -> None:
    with FtpServer(tmp_path / "root") as server:
        server.pause()
        with socket.create_connection((LOOPBACK, server.port), timeout=CONNECT_TIMEOUT_S) as sock:
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(100)  # the kernel accepted; the frozen server sends no banner
            server.resume()
            sock.settimeout(CONNECT_TIMEOUT_S)
            assert sock.recv(100).startswith(b"220 ")
        server.kill()
        assert not server.running
        assert refuses_connections(server.port)


def test_a_restart_on_a_port_taken_meanwhile_fails_with_the_servers_words(tmp_path: Path) -> None:
    server = FtpServer(tmp_path / "root")
    server.start()
    server.stop()
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, server.port))
        squatter.listen()
        with pytest.raises(FileServerError, match="(?s)exited with code 98 while starting.*in use"):
            server.start()
    assert not server.running


# -- SFTP --------------------------------------------------------------------------------------


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[SftpServer]:
    with SftpServer(tmp_path / "root") as server:
        yield server


def ssh_connect(server: SftpServer, known_hosts: Path | None = None) -> paramiko.SSHClient:
    """A paramiko client that knows only the hosts in `known_hosts` (the server's own by default)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(LOOPBACK, server.port, username=server.user, key_filename=str(server.client_key),
                       look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT_S)
    except BaseException:
        client.close()
        raise
    return client


def test_sftp_client_writes_reads_renames_and_deletes_under_root(sftp_server: SftpServer) -> None:
    assert sftp_server.url == f"sftp://hls@127.0.0.1:{sftp_server.port}/"
    (sftp_server.root / "before.txt").write_bytes(b"there first")
    with ssh_connect(sftp_server) as client, client.open_sftp() as sftp:
        assert sftp.normalize("..") == "/"  # chrooted: root is "/", nothing above it
        assert sftp.listdir("/") == ["before.txt"]
        sftp.mkdir("live")
        with sftp.open("live/a.ts.tmp", "wb") as remote:
            remote.write(PAYLOAD)
        assert (sftp_server.root / "live" / "a.ts.tmp").read_bytes() == PAYLOAD
        sftp.posix_rename("live/a.ts.tmp", "/live/a.ts")
        with sftp.open("/live/a.ts", "rb") as remote:
            assert remote.read() == PAYLOAD
        sftp.remove("live/a.ts")
        assert sftp.listdir("live") == []
        with pytest.raises(paramiko.SSHException):
            client.exec_command("true")  # SFTP only: no exec, no shell
    assert list((sftp_server.root / "live").iterdir()) == []


def test_sftp_wrong_host_key_and_other_client_key_are_refused(sftp_server: SftpServer, tmp_path: Path) -> None:
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_connect(sftp_server, sftp_server.wrong_known_hosts)
    other_key = tmp_path / "other_key"
    client = paramiko.SSHClient()
    client.load_host_keys(str(sftp_server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    other_key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    with client, pytest.raises(paramiko.AuthenticationException):
        client.connect(LOOPBACK, sftp_server.port, username=sftp_server.user, key_filename=str(other_key),
                       look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT_S)


def test_sftp_stopped_refuses_then_restarts_on_the_same_port_with_the_same_host_key(
        sftp_server: SftpServer) -> None:
    port = sftp_server.port
    sftp_server.stop()
    assert refuses_connections(port)
    sftp_server.restart()
    assert sftp_server.port == port
    with ssh_connect(sftp_server) as client, client.open_sftp() as sftp:
        assert sftp.listdir(".") == []


def test_a_first_start_whose_port_was_taken_moves_to_another_with_known_hosts_to_match(tmp_path: Path) -> None:
    server = SftpServer(tmp_path / "root")
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, server.port))
        squatter.listen()
        with server:
            assert server.port != squatter.getsockname()[1]
            assert server.url == f"sftp://hls@127.0.0.1:{server.port}/"
            ssh_connect(server).close()


# -- WebDAV ------------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["http", "https"])
def dav_server(request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path) -> Iterator[DavServer]:
    tls = ca.issue_cert(LOOPBACK) if request.param else None
    with DavServer(tmp_path / "root", tls=tls) as server:
        yield server


def dav_pool(ca_file: Path) -> urllib3.PoolManager:
    return urllib3.PoolManager(ca_certs=str(ca_file), timeout=CONNECT_TIMEOUT_S, retries=False)


def dav_base(server: DavServer) -> str:
    return f"{'https' if server.tls else 'http'}://{LOOPBACK}:{server.port}/"


def test_dav_client_writes_reads_moves_and_deletes_under_root(dav_server: DavServer, ca_file: Path) -> None:
    assert dav_server.url == (f"{'https' if dav_server.tls else 'http'}://hls:{dav_server.password}"
                              f"@127.0.0.1:{dav_server.port}/")
    base, auth = dav_base(dav_server), urllib3.make_headers(basic_auth=f"hls:{dav_server.password}")
    with dav_pool(ca_file) as http:
        assert http.request("MKCOL", base + "live/", headers=auth).status == 201
        assert http.request("PUT", base + "live/a.ts.tmp", body=PAYLOAD, headers=auth).status == 201
        assert (dav_server.root / "live" / "a.ts.tmp").read_bytes() == PAYLOAD
        moved = http.request("MOVE", base + "live/a.ts.tmp", headers={**auth, "Destination": base + "live/a.ts"})
        assert moved.status == 201
        assert http.request("PUT", base + "live/a.ts", body=b"again", headers=auth).status == 204  # overwritten
        got = http.request("GET", base + "live/a.ts", headers=auth)
        assert (got.status, got.data) == (200, b"again")
        assert http.request("DELETE", base + "live/a.ts", headers=auth).status == 204
        assert http.request("GET", base + "live/a.ts", headers=auth).status == 404
    assert list((dav_server.root / "live").iterdir()) == []


def test_dav_wants_basic_auth_with_the_right_password(dav_server: DavServer, ca_file: Path) -> None:
    base = dav_base(dav_server)
    with dav_pool(ca_file) as http:
        anonymous = http.request("PUT", base + "a.ts", body=b"x")
        assert anonymous.status == 401
        assert anonymous.headers.get_all("WWW-Authenticate") == ['Basic realm="/"']  # no digest offered
        wrong = http.request("PUT", base + "a.ts", body=b"x", headers=urllib3.make_headers(basic_auth="hls:wrong"))
        assert wrong.status == 401
    assert list(dav_server.root.iterdir()) == []


def test_dav_stopped_refuses_then_restarts_on_the_same_port(dav_server: DavServer, ca_file: Path) -> None:
    port = dav_server.port
    dav_server.stop()
    assert refuses_connections(port)
    dav_server.restart()
    assert dav_server.port == port
    auth = urllib3.make_headers(basic_auth=f"hls:{dav_server.password}")
    with dav_pool(ca_file) as http:
        assert http.request("PUT", dav_base(dav_server) + "b.ts", body=b"b", headers=auth).status == 201
    assert (dav_server.root / "b.ts").read_bytes() == b"b"
