"""TLS on the control channel: segments cross the network encrypted, the daemon's certificate is
checked, and a peer's TLS mistake (none, a wrong CA, no client certificate) loses nothing."""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from common.settings import ConfigError
from protocol import Ack, Reply, ReplyDecoder, encode_message
from segmenter.config import SegmenterConfig
from segmenter.outbox import Outbox
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for
from uploader.config import UploaderConfig

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none
from .test_payloads import assert_published_as_on_disk, payload_files

HANDSHAKE_FAILED = "TLS handshake failed"


@dataclass(frozen=True)
class Certificates:
    """PEM files made for one test: a CA, the daemon's certificate for 127.0.0.1 signed by it, a
    client certificate signed by it, another CA, a client certificate that CA signed, and a
    client certificate the first CA signed that has expired."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path
    expired_cert: Path
    expired_key: Path

    def daemon_args(self, *extra: str) -> tuple[str, ...]:
        # The segmenters here send their segments inline, unsigned: TLS alone protects them.
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key), "--allow-unsigned-inline", *extra)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("segmenter.example")
    stranger = other.issue_cert("segmenter.example")
    expired = ca.issue_cert("segmenter.example", not_after=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    files = Certificates(*(directory / name for name in (
        "ca.pem", "daemon.pem", "daemon.key", "client.pem", "client.key", "other-ca.pem", "stranger.pem",
        "stranger.key", "expired.pem", "expired.key")))
    ca.cert_pem.write_to_path(str(files.ca))
    other.cert_pem.write_to_path(str(files.other_ca))
    for leaf, cert, key in ((server, files.cert, files.key), (client, files.client_cert, files.client_key),
                            (stranger, files.stranger_cert, files.stranger_key),
                            (expired, files.expired_cert, files.expired_key)):
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
    return files


def tls_exchange(address: tuple[str, int], context: ssl.SSLContext, data: bytes) -> Reply | None:
    """Send ``data`` over TLS, return the one reply; None when the daemon closes the connection
    first, at the handshake or after it (TLS 1.3 checks a client certificate after the client's
    side of the handshake is done)."""
    try:
        with socket.create_connection(address, timeout=20) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(data)
            replies = ReplyDecoder()
            while (reply := replies.next_reply()) is None:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                replies.receive_data(chunk)
            return reply
    except (ssl.SSLError, ConnectionError):
        return None


def run_segmenter(source: Path, out_dir: Path, port: int, bucket: str, *options: str,
                  index: str = "index.m3u8") -> subprocess.CompletedProcess[str]:
    with open(source, "rb") as stdin:
        return subprocess.run(
            [sys.executable, "-m", "segmenter", "-", "2", str(out_dir), "cam", index, "", bucket, "live/tls",
             # --keep-segments: what was published is compared with the files.
             "--uploader", f"127.0.0.1:{port}", "--send-segments", "--keep-segments", *options],
            stdin=stdin, capture_output=True, text=True, timeout=180,
        )


def owed(out_dir: Path) -> list[tuple[str, int]]:
    outbox = Outbox.open(out_dir / ".cam.outbox")
    try:
        return [(message.index, message.last_segment) for message in outbox.messages()]
    finally:
        outbox.close()


def test_a_whole_run_over_tls_publishes_every_segment(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, certificates: Certificates,
    tmp_path: Path,
) -> None:
    daemon = start_uploader(*certificates.daemon_args())  # no --allow-dir: the bytes come over TLS
    assert "transport: TLS" in daemon.startup_line
    out_dir = tmp_path / "out"
    result = run_segmenter(media.ts(seconds=6.0, gop_seconds=1.0), out_dir, daemon.port, bucket,
                           "--tls-ca", str(certificates.ca), "--tls-server-name", "localhost")
    assert result.returncode == 0, result.stderr
    assert_published_as_on_disk(seaweed, bucket, "live/tls", out_dir, 3)
    assert daemon.log().count("-byte payload") == 3 and HANDSHAKE_FAILED not in daemon.log()
    wait_for(lambda: payload_files(daemon.spool_dir) == [], message="payload files removed once published", timeout=30)


def test_a_segmenter_s_tls_mistakes_lose_nothing(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, certificates: Certificates,
    tmp_path: Path,
) -> None:
    """Without --tls, with a CA that did not sign the daemon's certificate, with a name it does not
    carry: each run says so once, keeps its messages owed and exits 3; the next run, set right,
    delivers them all.
    Each run is its own stream (INDEX_NAME), since each ends its stream when its input ends."""
    daemon = start_uploader(*certificates.daemon_args())
    out_dir = tmp_path / "out"
    source = media.ts(seconds=4.0, gop_seconds=1.0)

    def url(index: str) -> str:
        return seaweed.object_url(bucket, f"live/tls/{index}")

    plaintext = run_segmenter(source, out_dir, daemon.port, bucket, "--drain-timeout", "1", index="a.m3u8")
    assert plaintext.returncode == 3, plaintext.stderr
    went_away = [line for line in plaintext.stderr.splitlines() if "keeping" in line]
    assert len(went_away) == 1 and "give --tls" in went_away[0], plaintext.stderr
    assert owed(out_dir) == [("a.m3u8", 1), ("a.m3u8", 2)], plaintext.stderr
    wait_for(lambda: HANDSHAKE_FAILED in daemon.log(), message="the daemon's line", timeout=30)
    handshake_lines = [line for line in daemon.log().splitlines() if HANDSHAKE_FAILED in line]
    assert "this listener speaks TLS only (hls-segment --tls)" in handshake_lines[0], handshake_lines

    wrong_ca = run_segmenter(source, out_dir, daemon.port, bucket, "--drain-timeout", "1",
                             "--tls-ca", str(certificates.other_ca), index="b.m3u8")
    assert wrong_ca.returncode == 3, wrong_ca.stderr
    refused = [line for line in wrong_ca.stderr.splitlines() if "TLS certificate is refused" in line]
    assert len(refused) == 1 and "check --tls-ca" in refused[0], wrong_ca.stderr
    assert "Traceback" not in wrong_ca.stderr
    assert [number for _, number in owed(out_dir)] == [1, 2, 3, 4], wrong_ca.stderr

    wrong_name = run_segmenter(source, out_dir, daemon.port, bucket, "--drain-timeout", "1",
                               "--tls-ca", str(certificates.ca), "--tls-server-name", "uploader.example", index="c.m3u8")
    assert wrong_name.returncode == 3, wrong_name.stderr
    refused = [line for line in wrong_name.stderr.splitlines() if "TLS certificate is refused" in line]
    assert len(refused) == 1 and "uploader.example" in refused[0] and "check --tls-server-name" in refused[0], \
        wrong_name.stderr
    assert [number for _, number in owed(out_dir)] == [1, 2, 3, 4, 5, 6], wrong_name.stderr
    # The daemon's side of the last two: the peer refused the daemon's certificate, not "no TLS".
    lines = [line for line in daemon.log().splitlines() if HANDSHAKE_FAILED in line]
    refusals = [line for line in lines if "WRONG_VERSION_NUMBER" not in line]  # the plaintext run's retries
    assert refusals and all("it refused this daemon's certificate" in line for line in refusals), lines
    for index in ("a.m3u8", "b.m3u8", "c.m3u8"):
        assert http_get(url(index)).status == 404  # nothing got through

    right = run_segmenter(source, out_dir, daemon.port, bucket, "--tls-ca", str(certificates.ca), index="d.m3u8")
    assert right.returncode == 0, right.stderr
    assert owed(out_dir) == []
    for index, numbers in (("a.m3u8", (1, 2)), ("b.m3u8", (3, 4)), ("c.m3u8", (5, 6)), ("d.m3u8", (7, 8))):
        final = wait_for(lambda: (p := fetch_playlist_or_none(url(index))) is not None and p.is_endlist and p,
                         timeout=30)
        assert [s.uri for s in final.segments] == [f"cam-{n:05d}.ts" for n in numbers]
        for n in numbers:
            body = http_get(seaweed.object_url(bucket, f"live/tls/cam-{n:05d}.ts")).body
            assert body == (out_dir / f"cam-{n:05d}.ts").read_bytes()


@pytest.mark.parametrize(("dates", "said"), [
    ({"not_after": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}, "certificate has expired"),
    ({"not_before": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)},
     "certificate is not yet valid"),
])
def test_a_segmenter_says_a_daemon_certificate_out_of_its_dates_is_to_renew(
    start_uploader: StartUploader, bucket: str, media: MediaCache, tmp_path: Path,
    dates: dict[str, datetime.datetime], said: str,
) -> None:
    """A certificate its CA signed, but expired or not valid yet: the fix is the certificate (or
    the clock), not --tls-ca (common.tls.tls_failure, which the stores' TLS refusals use too)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", **dates)
    files = [tmp_path / name for name in ("ca.pem", "daemon.pem", "daemon.key")]
    for pem, path in zip((ca.cert_pem, leaf.cert_chain_pems[0], leaf.private_key_pem), files, strict=True):
        pem.write_to_path(str(path))
    daemon = start_uploader("--tls-cert", str(files[1]), "--tls-key", str(files[2]), "--allow-unsigned-inline")
    out_dir = tmp_path / "out"
    result = run_segmenter(media.ts(seconds=4.0, gop_seconds=1.0), out_dir, daemon.port, bucket,
                           "--drain-timeout", "1", "--tls-ca", str(files[0]))
    assert result.returncode == 3, result.stderr
    refused = [line for line in result.stderr.splitlines() if "TLS certificate is refused" in line]
    assert len(refused) == 1 and f"{said} (it, or a CA certificate of its chain, is out of its dates: renew it, or" \
        " check the clocks)" in refused[0], result.stderr
    assert owed(out_dir) == [("index.m3u8", 1), ("index.m3u8", 2)]


@pytest.mark.parametrize("client", ["none", "expired"])
def test_a_segmenter_whose_client_certificate_the_daemon_refuses_is_told_where_to_look(
    start_uploader: StartUploader, bucket: str, media: MediaCache, certificates: Certificates, tmp_path: Path,
    client: str,
) -> None:
    """With TLS 1.3 the daemon checks a client certificate after the segmenter's side of the
    handshake: the segmenter sees only a closed connection, and its line says what that means."""
    daemon = start_uploader(*certificates.daemon_args("--tls-client-ca", str(certificates.ca)))
    extra = () if client == "none" else ("--tls-cert", str(certificates.expired_cert),
                                         "--tls-key", str(certificates.expired_key))
    result = run_segmenter(media.ts(seconds=4.0, gop_seconds=1.0), tmp_path / "out", daemon.port, bucket,
                           "--drain-timeout", "1", "--tls-ca", str(certificates.ca), *extra)
    assert result.returncode == 3, result.stderr
    closed = [line for line in result.stderr.splitlines() if "keeping" in line]
    assert len(closed) == 1 and "a daemon with --tls-client-ca closes a peer whose --tls-cert it refuses or misses" \
        in closed[0], result.stderr
    assert owed(tmp_path / "out") == [("index.m3u8", 1), ("index.m3u8", 2)]


def test_a_tls_segmenter_meeting_a_plaintext_daemon_sends_nothing_in_clear_and_loses_nothing(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, certificates: Certificates,
    tmp_path: Path,
) -> None:
    daemon = start_uploader()  # no certificate
    out_dir = tmp_path / "out"
    result = run_segmenter(media.ts(seconds=4.0, gop_seconds=1.0), out_dir, daemon.port, bucket,
                           "--drain-timeout", "1", "--tls-ca", str(certificates.ca))
    assert result.returncode == 3, result.stderr
    failed = [line for line in result.stderr.splitlines() if "TLS failed" in line]
    assert len(failed) == 1 and "does the daemon speak TLS" in failed[0], result.stderr
    assert owed(out_dir) == [("index.m3u8", 1), ("index.m3u8", 2)]
    assert "queued" not in daemon.log()


def test_peers_that_fail_the_handshake_are_closed_with_one_line_and_no_reply(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segment_source: Path,
    certificates: Certificates,
) -> None:
    """A plaintext client, then (mutual TLS) a TLS client without a certificate, with one another
    CA signed, with an expired one: each is closed with one log line saying what it lacks; a
    client with a certificate the CA signed is served."""
    daemon = start_uploader(*certificates.daemon_args("--tls-client-ca", str(certificates.ca)))
    assert "peer authentication: TLS client certificate; transport: TLS" in daemon.startup_line
    data = segment_source.read_bytes()
    message = encode_message(ext_message(Path("/nowhere"), bucket, 1, end=True, size=len(data),
                                         payload_sha256=hashlib.sha256(data).hexdigest()), newline=True) + data
    with socket.create_connection(daemon.address, timeout=20) as sock:
        sock.sendall(message[:200])
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        assert b"OK" not in received and b"ERR" not in received  # no reply in clear
    wait_for(lambda: daemon.log().count(HANDSHAKE_FAILED) == 1, message="the plaintext client's line", timeout=30)

    failures = [("the plaintext client", "this listener speaks TLS only (hls-segment --tls)")]
    for name, certificate, said in (
            ("no certificate", None, "it sent no client certificate, which --tls-client-ca asks for"),
            ("another CA's", (certificates.stranger_cert, certificates.stranger_key),
             "its client certificate is refused: unable to get local issuer certificate; sign it with a CA of"
             " --tls-client-ca"),
            ("an expired one", (certificates.expired_cert, certificates.expired_key),
             "its client certificate, or a CA certificate of its chain, is out of its dates (certificate has"
             " expired): renew it (hls-segment --tls-cert), or check the clocks")):
        context = ssl.create_default_context(cafile=certificates.ca)
        if certificate is not None:
            context.load_cert_chain(*certificate)
        assert tls_exchange(daemon.address, context, message) is None, name
        failures.append((name, said))
        wait_for(lambda: daemon.log().count(HANDSHAKE_FAILED) == len(failures), message=f"{name}'s line", timeout=30)
    lines = [line for line in daemon.log().splitlines() if HANDSHAKE_FAILED in line]
    for (name, said), line in zip(failures, lines, strict=True):
        assert said in line, (name, line)

    with_certificate = ssl.create_default_context(cafile=certificates.ca)
    with_certificate.load_cert_chain(certificates.client_cert, certificates.client_key)
    assert tls_exchange(daemon.address, with_certificate, message) == Ack(1)
    final_url = seaweed.object_url(bucket, "live/one/index.m3u8")
    wait_for(lambda: (p := fetch_playlist_or_none(final_url)) is not None and p.is_endlist, timeout=30)
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00001.ts")).body == data
    assert daemon.log().count(HANDSHAKE_FAILED) == len(failures)


def test_tls_settings_that_cannot_work_are_refused_with_one_line(certificates: Certificates, tmp_path: Path) -> None:
    def daemon(**settings: object) -> UploaderConfig:
        return UploaderConfig.from_settings({"spool_dir": str(tmp_path / "spool"), "bucket": ["live"], **settings})

    def segmenter(**settings: object) -> SegmenterConfig:
        return SegmenterConfig.from_settings(
            input="-", segment_duration="2", output_dir=str(tmp_path), output_prefix="cam", index_name="i.m3u8",
            http_prefix="", bucket="bucket-a", key_prefix="k", settings=settings)

    assert daemon(tls_cert=str(certificates.cert), tls_key=str(certificates.key)).tls_context is not None
    assert daemon().tls_context is None
    with pytest.raises(ConfigError, match=r"^--tls-cert needs --tls-key: a certificate and its private key go together$"):
        daemon(tls_cert=str(certificates.cert))
    with pytest.raises(ConfigError, match=r"^--tls-client-ca needs --tls-cert and --tls-key"):
        daemon(tls_client_ca=str(certificates.ca))
    with pytest.raises(ConfigError, match=r"^--tls-cert .* with --tls-key .* cannot be used: KEY_VALUES_MISMATCH"):
        daemon(tls_cert=str(certificates.cert), tls_key=str(certificates.client_key))
    with pytest.raises(ConfigError, match=r"cannot be used: No such file or directory"):
        daemon(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(certificates.key))
    with pytest.raises(ConfigError, match=r"^--tls-client-ca .* cannot be used"):
        daemon(tls_cert=str(certificates.cert), tls_key=str(certificates.key), tls_client_ca=str(certificates.key))
    # Mutual TLS authenticates peers: a non-loopback listener may do without a secret.
    daemon(listen="0.0.0.0:0", tls_cert=str(certificates.cert), tls_key=str(certificates.key),
           tls_client_ca=str(certificates.ca))
    with pytest.raises(ConfigError, match=r"give --secret-file PATH \(or --tls-client-ca FILE\)"):
        daemon(listen="0.0.0.0:0", tls_cert=str(certificates.cert), tls_key=str(certificates.key))

    assert segmenter().tls_context is None
    assert segmenter(tls_ca=str(certificates.ca)).tls is True  # --tls-ca implies --tls
    checked = segmenter(tls=True).tls_context
    assert checked is not None and checked.check_hostname and checked.verify_mode is ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match=r"^--wire v1 is plaintext only: --tls needs --wire ext$"):
        segmenter(tls=True, wire="v1")
    with pytest.raises(ConfigError, match=r"only apply with --tls$"):
        segmenter(tls=False, tls_ca=str(certificates.ca))
    with pytest.raises(ConfigError, match=r"^--tls-ca .*other\.pem cannot be used: No such file"):
        segmenter(tls_ca=str(tmp_path / "other.pem"))
    with pytest.raises(ConfigError, match=r"^--tls-key needs --tls-cert"):
        segmenter(tls=True, tls_key=str(certificates.client_key))
