"""Options, environment and the config file become one UploaderConfig; bad ones a one-line exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from common.options import settings_from_file
from common.settings import ConfigError
from tests.support.daemon import UploaderDaemon
from tests.support.options import command_settings
from uploader.cli import app
from uploader.config import OPTIONS, SECTION, UploaderConfig
from uploader.playlist import PlaylistType


def build(config_file: Path | None = None, **values: object) -> UploaderConfig:
    from_file = settings_from_file(OPTIONS, config_file, section=SECTION) if config_file else {}
    return UploaderConfig.from_settings({**from_file, **values})


def test_defaults_are_safe(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^no bucket is allowed: give --bucket NAME"):
        build(spool_dir=str(tmp_path))  # no bucket may be written until the operator says which
    config = build(spool_dir=str(tmp_path), bucket=["live"])
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 10234)
    assert config.allow_dirs == ()  # no directory may be read until the operator says so
    assert config.buckets == frozenset({"live"}) and not config.any_bucket and config.key_prefixes == ()
    assert not config.allow_unsigned_inline and config.peers == {}
    assert config.window == 5 and config.playlist_type is PlaylistType.LIVE
    assert config.acl is None
    assert [str(store) for store in config.stores] == ["s3"]
    assert config.cache_control_segment == "max-age=31536000, immutable"
    assert config.max_payload_inflight_bytes == 1024 * 1024 * 1024 >= config.max_payload_bytes


def test_command_line_beats_file_beats_defaults(tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    config_file = tmp_path / "uploadd.toml"
    config_file.write_text(
        f'[uploadd]\nwindow = 7\nplaylist-type = "event"\nallow_dir = ["{segments}"]\nretry_max_delay = 2\n'
        'bucket = ["live"]\n'
    )
    config = UploaderConfig.from_settings(command_settings(app, "--config", str(config_file), "--window", "3"))
    assert config.window == 3
    assert config.playlist_type is PlaylistType.EVENT
    assert config.allow_dirs == (segments.resolve(),)
    assert config.retry_max_delay_s == 2.0


@pytest.mark.parametrize(
    ("values", "file_text", "message"),
    [
        ({"window": 0}, "", "--window 0 is below 3"),
        ({"window": 1001}, "", "--window 1001 is outside 3..1000"),
        ({"listen": "127.0.0.1:99999"}, "", "outside 0..65535"),
        ({}, "[uploadd]\nlisten = '10.1:80'\n", "--listen: address '10.1:80': '10.1' is no IPv4 address"),
        ({"playlist_type": "loop"}, "", "--playlist-type 'loop' is not one of live, event, vod"),
        ({"store": "gopher://x"}, "", "--store 'gopher://x' is not 's3' or a URL of scheme file, ftp"),
        ({"store": "file://relative"}, "", "a file store is file:///ABSOLUTE/PATH"),
        ({"allow_dir": ["relative/dir"]}, "", "must be an absolute path"),
        ({"allow_dir": ["/no/such/dir"]}, "", "--allow-dir '/no/such/dir' does not exist: create it first, writable by"
                                               " the user hls-segment runs as (e.g. install -d -m 2775 -g GROUP"
                                               " /no/such/dir; hls-segment makes OUTPUT_DIR inside it)"),
        ({"allow_dir": ["/dev/null"]}, "", "--allow-dir '/dev/null' is not a directory"),
        ({"bucket": ["Bad_Bucket"]}, "", "not a valid S3 bucket name"),
        ({"acl": "everyone"}, "", "--acl 'everyone'"),
        ({}, "[uploadd]\nwindoww = 3\n", "unknown setting(s): windoww"),
        ({}, "[uploadd]\nwindow = 'five'\n", "--window must be an integer"),
        ({"max_payload_size": 1000, "max_payload_inflight": 999}, "",
         "--max-payload-inflight 999 is below --max-payload-size 1000: a payload of the largest size could never be received"),
        ({}, "[uploadd]\nmax_payload_inflight = 'lots'\n", "--max-payload-inflight must be an integer"),
        ({}, "[uploadd]\nmax_inflight = 2.5\n", "--max-inflight must be an integer, not 2.5"),
        ({}, "[uploadd]\nidle_timeout = true\n", "--idle-timeout must be a number of seconds, not True"),
        ({"drain_timeout": "soon"}, "", "--drain-timeout must be a number of seconds, not 'soon'"),
        ({}, "[uploadd\n", "uploadd.toml"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, values: dict[str, object], file_text: str, message: str) -> None:
    config_file = tmp_path / "uploadd.toml"
    config_file.write_text(file_text)
    with pytest.raises(ConfigError) as error:
        build(config_file, **values)
    assert message in str(error.value)


def run_cli(*args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """hls-uploadd with ``args``, this environment with ``env`` and without ``unset``."""
    return subprocess.run(
        [sys.executable, "-m", "uploader", *args], capture_output=True, text=True, timeout=60,
        env={name: value for name, value in {**os.environ, **(env or {})}.items() if name not in unset},
        stdin=subprocess.DEVNULL,
    )


def test_bad_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("--spool-dir", str(tmp_path), "--window", "1001")
    assert result.returncode == 2
    assert result.stderr == "hls-uploadd: configuration error: --window 1001 is outside 3..1000\n"


@pytest.mark.parametrize("window", ["0", "1", "2"])
def test_a_window_under_three_segments_is_refused_naming_the_rfc_rule(tmp_path: Path, window: str) -> None:
    # Segments last at most the target duration, so fewer than 3 never hold 3 target durations.
    result = run_cli("--spool-dir", str(tmp_path / "spool"), "--window", window)
    assert result.returncode == 2
    assert result.stderr == (
        f"hls-uploadd: configuration error: --window {window} is below 3: a live playlist must hold at least 3"
        " target durations of media after removing a segment (RFC 8216 6.2.2), which fewer than 3 segments"
        " never do\n"
    )
    assert not (tmp_path / "spool").exists()
    result = run_cli("--spool-dir", str(tmp_path / "spool"), env={"HLS_UPLOADD_WINDOW": window})
    assert result.returncode == 2 and f"--window {window} is below 3" in result.stderr


@pytest.mark.parametrize(("value", "accepted"), [("0", 0.0), ("2", 2.0), ("300", 300.0), ("1", None), ("301", None),
                                               ("-1", None)])
def test_a_lease_time_to_live_is_none_or_two_seconds_to_five_minutes(tmp_path: Path, value: str,
                                                                     accepted: float | None) -> None:
    if accepted is not None:
        assert build(spool_dir=str(tmp_path), bucket=["live"], lease_ttl=value).lease_ttl_s == accepted
        return
    with pytest.raises(ConfigError, match=f"^--lease-ttl {float(value)} is neither 0 \\(no leases\\) nor within 2..300"):
        build(spool_dir=str(tmp_path), bucket=["live"], lease_ttl=value)


def test_leases_need_a_store_with_conditional_writes(tmp_path: Path) -> None:
    assert build(spool_dir=str(tmp_path), bucket=["live"]).lease_ttl_s == 0  # one daemon: no leases
    build(spool_dir=str(tmp_path), bucket=["live"], lease_ttl="6", store=[f"file://{tmp_path}/www"])
    with pytest.raises(ConfigError, match="^--lease-ttl needs conditional writes, which --store ftp://"):
        build(spool_dir=str(tmp_path), bucket=["live"], lease_ttl="6", store=["ftp://example.net/live"])


def test_payload_budget_below_the_largest_payload_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("--spool-dir", str(tmp_path), "--max-payload-inflight", "1000",
                     env={"HLS_UPLOADD_MAX_PAYLOAD_SIZE": "2000"})
    assert result.returncode == 2
    assert result.stderr == (
        "hls-uploadd: configuration error: --max-payload-inflight 1000 is below --max-payload-size 2000:"
        " a payload of the largest size could never be received\n"
    )


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--spool-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}", "--bucket", "live")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"hls-uploadd: cannot start: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_unusable_spool_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run_cli("--spool-dir", str(tmp_path / "file" / "spool"), "--bucket", "live")
    assert result.returncode == 1
    assert "hls-uploadd: cannot start: cannot open spool" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_and_config_file_reach_the_daemon(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    config_file = tmp_path / "uploadd.toml"
    config_file.write_text('[uploadd]\nbucket = ["from-file"]\n')
    port_file = tmp_path / "port"
    env = {
        **os.environ,
        "HLS_UPLOADD_ALLOW_DIR": f"{one}:{two}",
        "HLS_UPLOADD_CONFIG": str(config_file),
        "HLS_UPLOADD_PORT_FILE": str(port_file),
        "HLS_UPLOADD_STORE": f"file://{tmp_path / 'www'}",
    }
    daemon = UploaderDaemon(tmp_path / "d", env=env, any_bucket_unless_scoped=False).start()
    try:
        line = daemon.startup_line
        assert f"listening on 127.0.0.1:{daemon.port};" in line
        assert f"allowed dirs: {one}, {two};" in line and "buckets: from-file" in line
        assert f"store file://{tmp_path / 'www'};" in line and f"spool {daemon.spool_dir}" in line
        assert port_file.read_text() == f"{daemon.port}\n"
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_listen_given_a_port_alone_listens_on_that_port_of_127_0_0_1(tmp_path: Path, free_port: int) -> None:
    # Once taken for a host named "10234": with --insecure-no-auth it bound 0.0.39.250.
    daemon = UploaderDaemon(tmp_path / "d", ["--listen", str(free_port)]).start()
    try:
        assert daemon.port == free_port
        assert f"hls-uploadd listening on 127.0.0.1:{free_port};" in daemon.startup_line
    finally:
        daemon.kill()


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_empty_allow_dir_is_named_as_given_not_as_the_current_directory(tmp_path: Path, where: str) -> None:
    # The command line's '' once became Path('') and was named '.'.
    args, env = (["--allow-dir", ""], None) if where == "option" else ([], {"HLS_UPLOADD_ALLOW_DIR": f"{tmp_path}:"})
    result = run_cli("--spool-dir", str(tmp_path / "spool"), *args, env=env)
    assert (result.returncode, result.stderr) == (
        2, "hls-uploadd: configuration error: --allow-dir '' (an empty path) must be an absolute path\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "127.0.0.1:"], "--listen: address '127.0.0.1:': no port after the colon"),
    (["--listen", "a:1,b:2"],
     "--listen: address 'a:1,b:2': 'a:1,b:2' is neither an IP address nor a host name (one address is taken here)"),
    (["--listen", "0:10234"],  # once bound 0.0.0.0, every interface
     "--listen: address '0:10234': '0' is no IPv4 address (a resolver may read it as another one, 127.1 as"
     " 127.0.0.1): write the IPv4 address in full dotted-quad form, four numbers 0..255 without leading zeros"
     " (127.0.0.1)"),
])
def test_a_listen_address_that_is_not_one_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("--spool-dir", str(tmp_path / "spool"), *args)
    assert (result.returncode, result.stderr) == (2, f"hls-uploadd: configuration error: {message}\n")


@pytest.mark.parametrize("where", ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "ca_bundle of profile live"])
@pytest.mark.parametrize(("content", "reason"), [
    (None, "No such file or directory"),
    ("not a certificate\n", "no certificate or crl found"),
    ("directory", "is a directory: the S3 client reads one PEM file"),
])
def test_a_ca_bundle_that_cannot_be_read_is_one_line_and_exit_2(
        tmp_path: Path, where: str, content: str | None, reason: str) -> None:
    """Every request over HTTPS would fail (before: retried for ever as "the store did not answer",
    naming neither the file nor where it was set). botocore passes a directory to OpenSSL as a
    file: one with every certificate hashed in it fails the same."""
    bundle = tmp_path / "ca.pem"
    if content == "directory":
        bundle.mkdir()
    elif content is not None:
        bundle.write_text(content)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    unset = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE")  # each would win over the ones after it
    source = where
    if where == "ca_bundle of profile live":
        config = tmp_path / "aws-config"
        config.write_text(f"[profile live]\nca_bundle = {bundle}\n")
        env.update(AWS_CONFIG_FILE=str(config), AWS_PROFILE="live")
        source = f"ca_bundle of profile live in {config}"
    else:
        env[where] = str(bundle)
    result = run_cli("--spool-dir", str(tmp_path / "spool"), "--bucket", "live", "--listen", "127.0.0.1:0",
                     "--endpoint-url", "HTTPS://127.0.0.1:9", env=env,  # a scheme's case is no matter
                     unset=tuple(name for name in unset if name not in env))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"hls-uploadd: configuration error: the CA bundle {bundle} ({source}) ")
    assert reason in result.stderr and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("scheme", ["https", "ftps"])
@pytest.mark.parametrize(("variable", "content", "message"), [
    ("SSL_CERT_FILE", None, "the CA file {path} (SSL_CERT_FILE) cannot be read: No such file or directory"),
    ("SSL_CERT_FILE", "not a certificate\n",
     "the CA file {path} (SSL_CERT_FILE) cannot be read: [X509: NO_CERTIFICATE"),
    ("SSL_CERT_FILE", "directory",
     "the CA file {path} (SSL_CERT_FILE) is a directory: name a directory in SSL_CERT_DIR (after openssl rehash)"),
    ("SSL_CERT_DIR", None, "the CA directory {path} (SSL_CERT_DIR) cannot be read: No such file or directory"),
    ("SSL_CERT_DIR", "a file", "the CA directory {path} (SSL_CERT_DIR) cannot be read: Not a directory"),
    ("SSL_CERT_DIR", "directory", "the CA directory {path} (SSL_CERT_DIR) has no certificate OpenSSL looks up (no"
     " HASH.0 names): run openssl rehash {path}"),
    ("SSL_CERT_FILE", "", "SSL_CERT_FILE is set but empty, so OpenSSL reads no CA from it: unset it, or name a file"),
    ("SSL_CERT_DIR", "", "SSL_CERT_DIR is set but empty, so OpenSSL reads no CA from it: unset it, or name a"
     " directory"),
])
def test_a_ca_file_or_directory_the_daemon_cannot_read_is_one_line_and_exit_2(
        tmp_path: Path, scheme: str, variable: str, content: str | None, message: str) -> None:
    """The ftps and https stores trust what SSL_CERT_FILE and SSL_CERT_DIR name in place of the
    system's CAs; OpenSSL skips one it cannot read without a word, and every request would then be
    refused as signed by no trusted CA. SSL_CERT_DIR may name several, ':'-separated; OpenSSL finds a
    CA in one by the hash of its name (`openssl rehash`). Set but empty, OpenSSL reads none."""
    path = tmp_path / "ca"
    if content == "directory":
        path.mkdir()
        if variable == "SSL_CERT_DIR":
            trustme.CA().cert_pem.write_to_path(str(path / "ca.pem"))  # there, but not where OpenSSL looks
    elif content is not None:
        path.write_text(content)
    hashed = tmp_path / "hashed"  # a directory as `openssl rehash` leaves it, before the one refused
    hashed.mkdir()
    trustme.CA().cert_pem.write_to_path(str(hashed / "0123abcd.0"))
    value = "" if content == "" else str(path) if variable == "SSL_CERT_FILE" else f"{hashed}:{path}"
    result = run_cli("--spool-dir", str(tmp_path / "spool"), "--bucket", "live", "--listen", "127.0.0.1:0",
                     "--store", f"{scheme}://127.0.0.1:9/live", env={variable: value},
                     unset=tuple({"SSL_CERT_FILE", "SSL_CERT_DIR"} - {variable}))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"hls-uploadd: configuration error: {message.format(path=path)}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_ssl_cert_file_is_not_read_for_a_store_without_tls(tmp_path: Path) -> None:
    daemon = UploaderDaemon(tmp_path / "d", ["--store", "ftp://127.0.0.1:9/live"],
                            env={**os.environ, "SSL_CERT_FILE": str(tmp_path / "missing.pem")}).start()
    try:
        assert "hls-uploadd listening on 127.0.0.1:" in daemon.startup_line
    finally:
        daemon.kill()


def test_a_ca_bundle_is_not_read_for_a_store_over_plain_http(tmp_path: Path) -> None:
    daemon = UploaderDaemon(tmp_path / "d", ["--listen", "127.0.0.1:0", "--endpoint-url", "http://127.0.0.1:9"],
                            env={**os.environ, "AWS_CA_BUNDLE": str(tmp_path / "missing.pem")}).start()
    try:
        assert "hls-uploadd listening on 127.0.0.1:" in daemon.startup_line
    finally:
        daemon.kill()
