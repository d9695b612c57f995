"""common.tls.tls_failure and the fixes built on it (stores.classify_tls_error, the daemon's
handshake line), on errors from real handshakes over loopback: each kind of certificate a
server or client can present, each alert a peer can send, bytes that are no TLS. The
certificates are made here with `cryptography`, for the cases trustme does not make (an expired
intermediate, a certificate for clients only, a chain served without its intermediate)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.tls import TlsFailure, tls_failure
from uploader.server import handshake_failure
from uploader.stores import TlsRefusedError, TlsTrust, TransientStoreError, classify_tls_error

LOOPBACK = ipaddress.ip_address("127.0.0.1")
NOW = datetime.datetime.now(datetime.timezone.utc)
LONG_AGO = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
TRUST = TlsTrust(source="the CA file ca.pem", trusts="the daemon trusts the CA file ca.pem", name_a_ca="add it",
                 endpoint="--store", plain_scheme="http://")


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def issue(name: str, issuer: Issued | None = None, *, ca: bool = False, until: datetime.datetime | None = None,
          usage: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,
                                                       ExtendedKeyUsageOID.CLIENT_AUTH)) -> Issued:
    """A certificate for ``name`` (a CA's, or a leaf's for 127.0.0.1) signed by ``issuer`` (None:
    itself), valid until ``until`` (a year from now)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(LONG_AGO)
               .not_valid_after(until or NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False))
    return Issued(key, builder.sign(issuer.key if issuer else key, hashes.SHA256()))


def pem(*issued: Issued) -> bytes:
    return b"".join(item.certificate.public_bytes(serialization.Encoding.PEM) for item in issued)


def write_chain(directory: Path, name: str, leaf: Issued, *chain: Issued) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(pem(leaf, *chain))
    key.write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[tuple[Issued, Path]]:
    root = issue("test root", ca=True)
    (tmp_path / "root.pem").write_bytes(pem(root))
    yield root, tmp_path


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, *, server_hostname: str = "127.0.0.1"
              ) -> tuple[BaseException | None, BaseException | None]:
    """One handshake (and a first read, where TLS 1.3 delivers a client certificate's refusal)
    over loopback: (the client's error, the server's error)."""
    errors: dict[str, BaseException | None] = {"server": None}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"x")
            except (OSError, ssl.SSLError) as error:
                errors["server"] = error
        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                    client.wrap_socket(raw, server_hostname=server_hostname) as tls:
                tls.recv(1)
            client_error = None
        except (OSError, ssl.SSLError) as error:
            client_error = error
        thread.join(10)
    return client_error, errors["server"]


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def store_fix(error: BaseException | None) -> str:
    assert error is not None
    classified = classify_tls_error(error, "reason", "127.0.0.1:443", TRUST)
    assert isinstance(classified, TlsRefusedError), classified
    return classified.fix


@pytest.mark.parametrize(("case", "failure", "fix"), [
    ("expired intermediate", TlsFailure.OUT_OF_DATES,
     "the certificate of 127.0.0.1:443, or a CA certificate of its chain, is out of its dates (certificate has"
     " expired): renew it, or check this host's clock"),
    ("clients only", TlsFailure.WRONG_PURPOSE,
     "the certificate of 127.0.0.1:443 is not one for a server (its extendedKeyUsage has no serverAuth): issue one"
     " that is"),
    ("intermediate not sent", TlsFailure.UNTRUSTED,
     "the daemon trusts the CA file ca.pem, and no CA there signed the certificate of 127.0.0.1:443 (or 127.0.0.1:443"
     " does not send its intermediate certificate): add it, or fix --store"),
    ("another host", TlsFailure.OTHER_NAME, "the certificate of 127.0.0.1:443 does not name it: fix --store"),
])
def test_a_server_certificate_refused_is_said_as_what_is_wrong(
        pki: tuple[Issued, Path], case: str, failure: TlsFailure, fix: str) -> None:
    root, directory = pki
    intermediate = issue("intermediate", root, ca=True, until=LONG_AGO + datetime.timedelta(days=30)
                         if case == "expired intermediate" else None)
    usage = (ExtendedKeyUsageOID.CLIENT_AUTH,) if case == "clients only" else (ExtendedKeyUsageOID.SERVER_AUTH,)
    leaf = issue("server", intermediate, usage=usage)
    chain = () if case == "intermediate not sent" else (intermediate,)
    server = server_context(*write_chain(directory, "server", leaf, *chain))
    client_error, _ = handshake(server, client_context(directory / "root.pem"),
                                server_hostname="localhost" if case == "another host" else "127.0.0.1")
    assert client_error is not None and tls_failure(client_error) is failure, client_error
    assert store_fix(client_error) == fix


@pytest.mark.parametrize(("case", "said"), [
    ("client certificate of another CA", "its client certificate is refused: unable to get local issuer certificate;"
     " sign it with a CA of --tls-client-ca"),
    ("client certificate for servers only", "its client certificate is not one for a client (its extendedKeyUsage"
     " has no clientAuth)"),
    ("daemon certificate of another CA", "it refused this daemon's certificate (TLSV1_ALERT_UNKNOWN_CA): check its"
     " --tls-ca and --tls-server-name against --tls-cert (chain, names, dates)"),
    ("old TLS", "it shares no TLS version with this daemon, which speaks 1.2 or later"),
    ("plaintext", "; this listener speaks TLS only (hls-segment --tls)"),
])
def test_the_daemon_says_what_a_peer_failing_its_handshake_lacks(pki: tuple[Issued, Path], case: str,
                                                                 said: str) -> None:
    root, directory = pki
    daemon_cert = write_chain(directory, "daemon", issue("daemon", root))
    usage = (ExtendedKeyUsageOID.SERVER_AUTH,) if case == "client certificate for servers only" else (
        ExtendedKeyUsageOID.CLIENT_AUTH,)
    other_root = issue("other root", ca=True)
    (directory / "other.pem").write_bytes(pem(other_root))
    client_issuer = other_root if case == "client certificate of another CA" else root
    client_cert = write_chain(directory, "client", issue("segmenter", client_issuer, usage=usage))
    server = server_context(*daemon_cert, client_ca=directory / "root.pem")
    client = client_context(directory / ("other.pem" if case == "daemon certificate of another CA" else "root.pem"),
                            *client_cert)
    if case == "old TLS":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1: what is tested
            client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    if case == "plaintext":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            result: dict[str, BaseException] = {}

            def serve() -> None:
                connection, _ = listener.accept()
                try:
                    server.wrap_socket(connection, server_side=True)
                except (OSError, ssl.SSLError) as error:
                    result["error"] = error
            thread = threading.Thread(target=serve)
            thread.start()
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                raw.sendall(b"index.m3u8, /srv/, 2, seg, , 1, 1, 0, b, k\n")
            thread.join(10)
        server_error: BaseException | None = result.get("error")
    else:
        _, server_error = handshake(server, client)
    assert server_error is not None, case
    assert said in handshake_failure(server_error), handshake_failure(server_error)


def test_a_handshake_cut_off_is_transient_not_a_setting(pki: tuple[Issued, Path]) -> None:
    root, directory = pki
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def cut() -> None:
            connection, _ = listener.accept()
            connection.recv(10)
            connection.close()
        thread = threading.Thread(target=cut)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                client_context(directory / "root.pem").wrap_socket(raw, server_hostname="127.0.0.1")
        except (OSError, ssl.SSLError) as error:
            cut_off: BaseException = error
        thread.join(10)
    assert tls_failure(cut_off) is None
    assert isinstance(classify_tls_error(cut_off, "reason", "127.0.0.1:443", TRUST), TransientStoreError)
