"""A URL INPUT over TLS: its certificate is checked (FFmpeg's own default checks nothing), against
--input-ca or the system's CAs, and a refusal says what is wrong with it; real servers on
loopback with trustme's certificates, read through PyAV's FFmpeg."""

from __future__ import annotations

import contextlib
import datetime
import functools
import http.server
import logging
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from common.settings import ConfigError
from segmenter.config import SegmenterConfig
from segmenter.errors import InputError
from segmenter.input import input_ca_file, open_input, tls_options
from tests.support.listener import Listener
from tests.support.media import make_ts
from tests.support.net import free_port

EXPIRED = {"not_after": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a 2-s MPEG-TS clip, in.ts."""
    directory = tmp_path_factory.mktemp("served")
    make_ts(directory / "in.ts", seconds=2)
    return directory


@contextlib.contextmanager
def server(handler: Any, ca: trustme.CA | None = None, names: tuple[str, ...] = ("127.0.0.1",),
           **dates: datetime.datetime) -> Iterator[int]:
    """An HTTP server on loopback (HTTPS with a certificate ``ca`` issued for ``names``); its port."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        if ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*names, **dates).configure_cert(context)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield httpd.server_address[1]
        finally:
            httpd.shutdown()


def files(directory: Path) -> Any:
    return functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))


def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def opened(url: str, ca: Path | None = None) -> str:
    container, source = open_input(url, probe_timeout_s=5, stop=threading.Event(), ca_file=ca)
    with container:
        assert source is None
        return container.format.name


def refusal(url: str, ca: Path | None = None) -> str:
    with pytest.raises(InputError) as refused:
        opened(url, ca)
    return str(refused.value)


def test_an_https_input_is_read_when_its_ca_is_named_and_refused_when_not(served: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    with server(files(served), ca) as port:
        url = f"https://127.0.0.1:{port}/in.ts"
        assert opened(url, ca_file(ca, tmp_path)) == "mpegts"
        assert refusal(url) == (f"cannot open {url}: its TLS certificate is refused (Peer certificate failed"
                                f" verification): no CA in the CA file {input_ca_file(None)} signed it (or the server"
                                " does not send its intermediate certificate): --input-ca names the CA that does")
        other = tmp_path / "other"
        other.mkdir()
        assert refusal(url, ca_file(trustme.CA(), other)).endswith(
            f": no CA in --input-ca {other / 'ca.pem'} signed it (or the server does not send its intermediate"
            " certificate)")


def test_without_a_ca_file_from_python_a_distribution_s_bundle_is_used(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Python's ssl may name no CA file (SSL_CERT_FILE naming one that is not there, a Python built
    elsewhere); the wheel's GnuTLS would then look for /etc/pki/tls/cert.pem, which Debian lacks."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    found = input_ca_file(None)
    assert found is None or Path(found).is_file()
    assert tls_options("https://cam/in.ts", None) == {"tls_verify": "1", **({"ca_file": found} if found else {})}
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        assert found == "/etc/ssl/certs/ca-certificates.crt"


def test_a_ca_file_gnutls_reads_no_ca_from_is_refused_at_start(tmp_path: Path) -> None:
    """OpenSSL's TRUSTED CERTIFICATE form loads in Python's ssl, but FFmpeg's GnuTLS reads no CA
    from it: every connection would be refused."""
    ca = ca_file(trustme.CA(), tmp_path)
    trusted = tmp_path / "trusted.pem"
    trusted.write_text(ca.read_text().replace("BEGIN CERTIFICATE", "BEGIN TRUSTED CERTIFICATE")
                       .replace("END CERTIFICATE", "END TRUSTED CERTIFICATE"))
    with pytest.raises(ConfigError, match="no -----BEGIN CERTIFICATE----- block in it"):
        SegmenterConfig.from_settings(input="https://cam/in.ts", segment_duration="2", output_dir=str(tmp_path),
                                      output_prefix="cam", index_name="i.m3u8", http_prefix="", bucket="bucket-a",
                                      key_prefix="k", settings={"input_ca": str(trusted)})


@pytest.mark.parametrize(("names", "dates", "fix"), [
    (("store.example.com",), {}, "it does not name 127.0.0.1: give INPUT a host name its certificate carries"),
    (("127.0.0.1",), EXPIRED, "it, or a CA certificate of its chain, is out of its dates (certificate has expired):"
     " renew it, or check this host's clock"),
    (("127.0.0.1",), {"not_before": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)},
     "it, or a CA certificate of its chain, is out of its dates (certificate is not yet valid): renew it, or check"
     " this host's clock"),
])
def test_a_certificate_its_ca_signed_that_is_no_good_is_said_as_such(
        served: Path, tmp_path: Path, names: tuple[str, ...], dates: dict[str, datetime.datetime], fix: str) -> None:
    ca = trustme.CA()
    with server(files(served), ca, names, **dates) as port:
        said = refusal(f"https://127.0.0.1:{port}/in.ts", ca_file(ca, tmp_path))
    assert said.startswith(f"cannot open https://127.0.0.1:{port}/in.ts: its TLS certificate is refused (")
    assert said.endswith(f"): {fix}"), said


def test_an_http_input_redirected_to_https_is_checked_too(served: Path) -> None:
    with server(files(served), trustme.CA()) as tls_port:
        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", f"https://127.0.0.1:{tls_port}/in.ts")
                self.end_headers()

        with server(Redirect) as port:
            said = refusal(f"http://127.0.0.1:{port}/in.ts")
    assert said == (f"cannot open http://127.0.0.1:{port}/in.ts: TLS failed (Peer certificate failed verification)"
                    f" against the CA file {input_ca_file(None)}")


def test_an_hls_input_warns_that_what_it_names_is_fetched_unchecked(
        served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg's HLS reader passes no TLS option on to the playlists and segments it opens: a
    segment on a server no trusted CA vouches for is read. Said once, as a warning."""
    ca = trustme.CA()
    with server(files(served), trustme.CA()) as unchecked:
        playlist = tmp_path / "site" / "live.m3u8"
        playlist.parent.mkdir()
        playlist.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                            f"#EXTINF:2,\nhttps://127.0.0.1:{unchecked}/in.ts\n#EXT-X-ENDLIST\n")
        with server(files(playlist.parent), ca) as port, caplog.at_level(logging.WARNING, "segmenter.input"):
            assert opened(f"https://127.0.0.1:{port}/live.m3u8", ca_file(ca, tmp_path)) == "hls"
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "without checking their TLS certificates" in warnings[0], warnings


def test_tls_options_check_every_url_and_no_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    assert tls_options("file:/srv/in.ts", ca) == {}
    for url in ("https://cam/in.ts", "http://cam/in.ts", "tls://cam:9000", "rtmps://cam/live"):
        assert tls_options(url, ca) == {"tls_verify": "1", "ca_file": str(ca)}
    default = input_ca_file(None)
    assert tls_options("https://cam/in.ts", None) == {"tls_verify": "1", **({"ca_file": default} if default else {})}


@pytest.mark.parametrize(("input", "content", "message"), [
    ("-", "ca", "--input-ca applies to a URL INPUT (https://...), not to stdin or a file"),
    ("https://cam/in.ts", None, "--input-ca {path} cannot be used: No such file or directory"),
    ("https://cam/in.ts", "not a certificate\n", "--input-ca {path} cannot be used: "),
])
def test_an_input_ca_that_cannot_apply_is_one_line(tmp_path: Path, input: str, content: str | None,
                                                   message: str) -> None:
    path = tmp_path / "ca.pem"
    if content == "ca":
        trustme.CA().cert_pem.write_to_path(str(path))
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        SegmenterConfig.from_settings(input=input, segment_duration="2", output_dir=str(tmp_path),
                                      output_prefix="cam", index_name="i.m3u8", http_prefix="", bucket="bucket-a",
                                      key_prefix="k", settings={"input_ca": str(path)})
    assert str(refused.value).startswith(message.format(path=path)), refused.value


def test_hls_ladder_checks_an_https_source_s_certificate(served: Path, tmp_path: Path) -> None:
    """The decoder is the ffmpeg command line, which checks no certificate by default either:
    refused without the source's CA (FFmpeg's line in the log), read to its end with --input-ca."""
    ladder = str(Path(sys.executable).parent / "hls-ladder")
    ca = trustme.CA()
    with server(files(served), ca) as port, Listener(free_port()) as daemon:
        def run(*options: str, env: dict[str, str] | None = None) -> tuple[int, str]:
            log_path = tmp_path / "ladder.log"
            with open(log_path, "wb") as log:
                code = subprocess.run([ladder, f"https://127.0.0.1:{port}/in.ts", str(tmp_path / "out"), "bucket",
                                       "prog", "--uploader", f"127.0.0.1:{daemon.port}", "--segment-seconds", "1",
                                       "--rendition", "a:96:100k:32k", *options], stderr=log, timeout=120,
                                      env=env).returncode
            return code, log_path.read_text()

        code, log = run()
        assert code != 0 and "Peer certificate failed verification" in log, log
        assert daemon.messages == []
        # A segmenter's variable is not the ladder's: its segmenters read stdin, which --input-ca refuses.
        code, log = run("--input-ca", str(ca_file(ca, tmp_path)), env={**os.environ, "HLS_SEGMENT_INPUT_CA": "/x"})
        assert code == 0, log
        assert daemon.messages and daemon.messages[-1].end, daemon.messages
