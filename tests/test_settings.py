"""The settings both commands share: addresses, repeatable values, the TOML table, the shared secret."""

from __future__ import annotations

import importlib.metadata
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from common.settings import (
    MAX_SECRET_FILE_BYTES,
    ConfigError,
    as_list,
    is_loopback,
    metrics_address,
    parse_address,
    parse_toml,
    secret_file_warning,
    secret_from_file,
)


def read_bytes(name: str) -> bytes:
    return Path(name).read_bytes()


def test_every_port_from_0_to_65535_is_accepted_and_no_other() -> None:
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)  # port 0: the system picks a free one
    assert parse_address("[::1]:65535") == ("::1", 65535)
    for bad in ("127.0.0.1:65536", "127.0.0.1:-1", "[::1]]:9000"):
        with pytest.raises(ConfigError, match="address"):
            parse_address(bad)


@pytest.mark.parametrize(("text", "address"), [
    ("10234", ("127.0.0.1", 10234)),  # a port alone, never a host named 10234 (IPv4 0.0.39.250)
    (":7000", ("127.0.0.1", 7000)),
    ("uploader.example.net", ("uploader.example.net", 10234)),
    ("uploader.example.net.:99", ("uploader.example.net.", 99)),
    ("10.0.0.5:0", ("10.0.0.5", 0)),
    ("::1", ("::1", 10234)),  # an IPv6 address alone
    ("[2001:db8::7]", ("2001:db8::7", 10234)),
    ("[2001:db8::7]:8443", ("2001:db8::7", 8443)),
    ("fe80::1%eth0", ("fe80::1%eth0", 10234)),  # a scoped IPv6 address alone
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
])
def test_addresses_are_parsed_by_their_form(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(("text", "message"), [
    ("127.0.0.1:", "address '127.0.0.1:': no port after the colon"),
    ("[::1]:", "address '[::1]:': no port after the colon"),
    ("a:1,b:2", "address 'a:1,b:2': 'a:1,b:2' is neither an IP address nor a host name (one address is taken here)"),
    ("a,b:2", "address 'a,b:2': 'a,b' is neither an IP address nor a host name (one address is taken here)"),
    ("uploader_1:10234", "address 'uploader_1:10234': 'uploader_1' is neither an IP address nor a host name"),
    ("-host:1", "address '-host:1': '-host' is neither an IP address nor a host name"),
    ("[example.net]:1", "address '[example.net]:1' is not [IPV6]:PORT"),
    ("[127.0.0.1]:1", "address '[127.0.0.1]:1' is not [IPV6]:PORT"),
    ("h:port", "address 'h:port': port 'port' is not a number"),
    ("h:+80", "address 'h:+80': port '+80' is not a number"),
    ("127.0.0.1:²", "address '127.0.0.1:²': port '²' is not a number"),  # once int()'s ValueError
    ("²", "address '²': '²' is neither an IP address nor a host name"),
    ("h:" + "9" * 5000, f"address 'h:{'9' * 5000}': port {'9' * 5000} is outside 0..65535"),
    ("a.1:80", "address 'a.1:80': 'a.1' is neither an IP address nor a host name"
               " (a host name's last label is never all digits, RFC 3696 2)"),
    ("0x7f.1", "address '0x7f.1': '0x7f.1' is neither an IP address nor a host name"
               " (a host name's last label is never all digits, RFC 3696 2)"),
    # Once scope "eth0:8080" on port 10234.
    ("fe80::1%eth0:8080", "address 'fe80::1%eth0:8080': an IPv6 address with a port goes in brackets:"
                          " [IPV6%SCOPE]:PORT"),
])
def test_an_address_that_is_not_one_is_refused_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_address(text)
    assert str(refused.value) == message


@pytest.mark.parametrize(("text", "host"), [
    ("0:9100", "0"),  # the resolver's 0.0.0.0: every interface
    ("127.1", "127.1"),  # inet_aton's 127.0.0.1
    ("10.1:80", "10.1"),  # 10.0.0.1
    ("1.2.3.4.5", "1.2.3.4.5"),
    ("0177.0.0.1:80", "0177.0.0.1"),  # octal to inet_aton: 127.0.0.1
    ("127.0.0.1.:80", "127.0.0.1."),
])
def test_a_host_of_digits_and_dots_that_is_no_ipv4_address_is_refused_asking_for_the_dotted_quad(
    text: str, host: str,
) -> None:
    # Such a name passes RFC 1123's labels, but no host name's last label is all digits (RFC 3696
    # section 2), and the resolver reads some of them as another IPv4 address than they look like.
    with pytest.raises(ConfigError) as refused:
        parse_address(text)
    assert str(refused.value) == (
        f"address {text!r}: {host!r} is no IPv4 address (a resolver may read it as another one, 127.1 as"
        " 127.0.0.1): write the IPv4 address in full dotted-quad form, four numbers 0..255 without leading"
        " zeros (127.0.0.1)")


def test_localhost_is_loopback_in_any_case() -> None:
    assert is_loopback("localhost") and is_loopback("LOCALHOST") and is_loopback("LocalHost")


def test_a_host_name_other_than_localhost_is_never_taken_for_loopback() -> None:
    # Names are not resolved: one that points at 127.0.0.1 today may not tomorrow.
    assert not is_loopback("example.net")
    assert not is_loopback("localhost.example.net")


def test_a_metrics_address_is_host_and_port_or_a_port_on_127_0_0_1() -> None:
    assert metrics_address("--metrics-listen", None) is None
    assert metrics_address("--metrics-listen", "") is None  # the option given empty: no endpoint
    assert metrics_address("--metrics-listen", "9100") == ("127.0.0.1", 9100)
    assert metrics_address("--metrics-listen", "0") == ("127.0.0.1", 0)
    assert metrics_address("--metrics-listen", "0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert metrics_address("--metrics-listen", "[::1]:9100") == ("::1", 9100)
    assert metrics_address("--metrics-listen", ":9100") == ("127.0.0.1", 9100)


@pytest.mark.parametrize(("text", "message"), [
    ("nowhere", "--metrics-listen 'nowhere' is not HOST:PORT or PORT"),
    ("9100.5", "--metrics-listen '9100.5' is not HOST:PORT or PORT"),
    # No port: never the protocol's DEFAULT_PORT, which the uploader listens on.
    ("127.0.0.1:", "--metrics-listen '127.0.0.1:' is not HOST:PORT or PORT"),
    ("[::1]", "--metrics-listen '[::1]' is not HOST:PORT or PORT"),
    ("::1", "--metrics-listen '::1' is not HOST:PORT or PORT"),
    ("::1:9100", "--metrics-listen '::1:9100' is not HOST:PORT or PORT"),
    ("127.0.0.1:http", "--metrics-listen: address '127.0.0.1:http': port 'http' is not a number"),
    ("0:9100", "--metrics-listen: address '0:9100': '0' is no IPv4 address (a resolver may read it as another"
               " one, 127.1 as 127.0.0.1): write the IPv4 address in full dotted-quad form, four numbers 0..255"
               " without leading zeros (127.0.0.1)"),
    ("70000", "--metrics-listen: address '127.0.0.1:70000': port 70000 is outside 0..65535"),
])
def test_a_metrics_address_without_a_port_or_with_a_bad_one_is_an_error_naming_the_option(
    text: str, message: str,
) -> None:
    with pytest.raises(ConfigError) as error:
        metrics_address("--metrics-listen", text)
    assert str(error.value) == message


def test_a_config_file_whose_section_is_not_a_table_is_an_error_naming_the_file() -> None:
    with pytest.raises(ConfigError) as error:
        parse_toml("uploadd = 3\n", source="/etc/hls/uploadd.toml", section="uploadd")
    assert "/etc/hls/uploadd.toml" in str(error.value) and "[uploadd]" in str(error.value)


def test_a_repeatable_setting_takes_one_string_or_path_or_a_list_of_them() -> None:
    assert as_list("bucket", "live") == ["live"]
    assert as_list("allow_dir", PurePosixPath("/srv/hls")) == ["/srv/hls"]
    assert as_list("bucket", ("live", "vod")) == ["live", "vod"]
    for bad in (["live", 3], 3, {"live": "vod"}):
        with pytest.raises(ConfigError, match="--bucket"):
            as_list("bucket", bad)


def test_a_secret_file_gives_its_bytes_without_the_white_space_around_them(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"  0123456789abcdef\n")  # 16 bytes: the shortest accepted
    assert secret_from_file(path, read_bytes) == b"0123456789abcdef"
    assert secret_from_file(None, read_bytes) is None


def test_a_short_or_unreadable_secret_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"0123456789abcde\n")
    with pytest.raises(ConfigError) as error:
        secret_from_file(short, read_bytes)
    assert str(short) in str(error.value) and "15 bytes" in str(error.value)
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as error:
        secret_from_file(missing, read_bytes)
    assert str(missing) in str(error.value) and "No such file or directory" in str(error.value)


def test_a_secret_file_larger_than_a_secret_is_refused_naming_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.write_bytes(b"k" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(ConfigError) as error:
        secret_from_file(huge, read_bytes)
    assert str(huge) in str(error.value) and f"more than {MAX_SECRET_FILE_BYTES} bytes" in str(error.value)
    largest = tmp_path / "largest"
    largest.write_bytes(b"k" * MAX_SECRET_FILE_BYTES)
    assert secret_from_file(largest, read_bytes) == b"k" * MAX_SECRET_FILE_BYTES


def test_a_secret_file_others_can_read_gets_a_warning() -> None:
    assert secret_file_warning("s", stat.S_IFREG | 0o600) is None
    assert secret_file_warning("s", stat.S_IFREG | 0o400) is None
    assert secret_file_warning("s", stat.S_IFREG | 0o711) is None  # its group and others may run it, not read it
    for mode in (0o640, 0o604, 0o644):
        warning = secret_file_warning("/etc/hls/secret", stat.S_IFREG | mode)
        assert warning is not None and f"{mode:04o}" in warning and "chmod 600 /etc/hls/secret" in warning
    assert secret_file_warning("/dev/zero", stat.S_IFCHR | 0o666) is None  # not a file anyone chmods


PROGRAMS = {
    "hls-segment": ["segmenter", "-", "2", "{out}", "seg", "index.m3u8", "http://cdn.example.net/", "live", "k"],
    "hls-uploadd": ["uploader", "--listen", "127.0.0.1:0", "--spool-dir", "{out}/spool"],
}


def _program(name: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``name`` as a process with ``extra`` options, stdin empty; expected to exit at once."""
    args = [part.format(out=tmp_path / "out") for part in PROGRAMS[name]]
    return subprocess.run([sys.executable, "-m", *args, *extra], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_secret_file_dev_zero_is_one_line_and_exit_2(program: str, tmp_path: Path) -> None:
    done = _program(program, tmp_path, "--secret-file", "/dev/zero")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{program}: {'configuration error: ' if program == 'hls-uploadd' else ''}secret file /dev/zero holds"
        f" more than {MAX_SECRET_FILE_BYTES} bytes: a secret is one line (is it the right file?)"
    ]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_group_readable_secret_file_is_warned_about_by_both_programs(program: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123\n")
    secret.chmod(0o640)
    # 192.0.2.1 (TEST-NET-1) is no address of this host: the daemon warns, then cannot bind and exits.
    done = _program(program, tmp_path, "--secret-file", str(secret), "--listen" if program == "hls-uploadd"
                    else "--probe-timeout", "192.0.2.1:0" if program == "hls-uploadd" else "1")
    assert f"secret file {secret} is readable by its group or others (mode 0640): chmod 600 {secret}" in done.stderr
    secret.chmod(0o600)
    done = _program(program, tmp_path, "--secret-file", str(secret), "--listen" if program == "hls-uploadd"
                    else "--probe-timeout", "192.0.2.1:0" if program == "hls-uploadd" else "1")
    assert "readable by its group" not in done.stderr


def test_a_port_file_in_a_missing_directory_is_one_line_before_binding(tmp_path: Path) -> None:
    missing = tmp_path / "run" / "port"
    done = _program("hls-uploadd", tmp_path, "--port-file", str(missing))
    assert done.returncode == 2 and done.stdout == ""  # never listened
    assert done.stderr.strip().splitlines() == [
        f"hls-uploadd: configuration error: --port-file {missing}: directory {missing.parent} does not exist"
    ]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version_comes_from_the_package_metadata(program: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", PROGRAMS[program][0], "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program} {importlib.metadata.version('hls-distributor')}\n"
