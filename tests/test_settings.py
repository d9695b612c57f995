"""The settings both commands share: addresses, repeatable values, the TOML table, the shared secret."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from common.settings import ConfigError, as_list, is_loopback, parse_address, parse_toml, secret_from_file


def read_bytes(name: str) -> bytes:
    return Path(name).read_bytes()


def test_every_port_from_0_to_65535_is_accepted_and_no_other() -> None:
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)  # port 0: the system picks a free one
    assert parse_address("[::1]:65535") == ("::1", 65535)
    for bad in ("127.0.0.1:65536", "127.0.0.1:-1", "[::1]]:9000"):
        with pytest.raises(ConfigError, match="address"):
            parse_address(bad)


def test_a_host_name_other_than_localhost_is_never_taken_for_loopback() -> None:
    # Names are not resolved: one that points at 127.0.0.1 today may not tomorrow.
    assert not is_loopback("example.net")
    assert not is_loopback("localhost.example.net")


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
