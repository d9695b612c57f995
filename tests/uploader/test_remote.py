"""``--store`` URLs, their credentials, object paths and reused connections (uploader/remote.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import ConfigError
from uploader.remote import Sessions, StoreUrl, joined, object_parts, parse_store_url, temporary_name
from uploader.stores import PermanentStoreError


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "username", "password", "path"),
    [
        ("s3", "s3", "", 0, None, None, ""),
        ("file:///srv/hls/", "file", "", 0, None, None, "/srv/hls"),
        ("ftp://cdn.example.com/live", "ftp", "cdn.example.com", 21, None, None, "live"),
        ("ftps://u:p%40ss@[::1]:2121/", "ftps", "::1", 2121, "u", "p@ss", ""),
        ("ftp://h/%2Fsrv/live/", "ftp", "h", 21, None, None, "/srv/live"),
        ("sftp://hls@h/srv/www", "sftp", "h", 22, "hls", None, "/srv/www"),
        ("sftp://hls@h:2222/~/www", "sftp", "h", 2222, "hls", None, "www"),
        ("https://u:pw@dav.example.com/hls", "https", "dav.example.com", 443, "u", "pw", "/hls"),
        ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080, None, None, ""),
        ("https://dav.example.com/live@2x/", "https", "dav.example.com", 443, None, None, "/live@2x"),
        ("https://u:p@dav.example.com/live@2x/", "https", "dav.example.com", 443, "u", "p", "/live@2x"),
    ],
)
def test_store_urls_are_parsed(text: str, scheme: str, host: str, port: int, username: str | None,
                               password: str | None, path: str) -> None:
    url = parse_store_url(text)
    assert (url.scheme, url.host, url.port, url.username, url.password, url.path) == (
        scheme, host, port, username, password, path)


@pytest.mark.parametrize("password", ["s3cret", "pa/ss", "12/3", "Zz#q", "a?b", "x@y", "7x"])
def test_a_store_url_is_never_shown_with_its_password(password: str) -> None:
    given = f"ftps://user:{password}@h:990/live"
    if "/" in password:  # to be written %2F, RFC 3986 3.2.1: refused, never printed
        with pytest.raises(ConfigError) as refused:
            parse_store_url(given)
        assert password not in str(refused.value) and "***" in str(refused.value)
        given = given.replace(password, password.replace("/", "%2F"))
    url = parse_store_url(given)
    assert (url.host, url.port, url.password) == ("h", 990, password)
    assert str(url) == "ftps://user@h:990/live" and password not in repr(url)
    for bad in (f"ftp://user:{password}@h:99999/", f"file://user:{password}@host/x", f"gopher://user:{password}@h/"):
        with pytest.raises(ConfigError) as refused:
            parse_store_url(bad)
        assert password not in str(refused.value) and "***" in str(refused.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ftp://h/live", "ftp://h:21/live"),
        ("ftp://h/%2Fsrv/www", "ftp://h:21/%2Fsrv/www"),
        ("ftp://h", "ftp://h:21/"),
        ("sftp://u@h", "sftp://u@h:22"),
        ("sftp://u@h/", "sftp://u@h:22/"),
        ("sftp://u@h/~/www", "sftp://u@h:22/~/www"),
        ("sftp://u@h/srv/www", "sftp://u@h:22/srv/www"),
        ("https://dav.example.com/a%3Fb/", "https://dav.example.com:443/a%3Fb"),
    ],
)
def test_a_store_url_is_shown_as_meaning_the_same_place(text: str, shown: str) -> None:
    assert str(parse_store_url(text)) == shown
    assert parse_store_url(shown) == parse_store_url(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gopher://h/", "is not 's3' or a URL of scheme file, ftp, ftps, sftp, http, https"),
        ("ftp:/h", "is not 's3' or a URL"),
        ("file://host/x", "a file store is file:///ABSOLUTE/PATH"),
        ("ftp:///live", "names no host"),
        ("ftp://h:0x15/", "its port is not a number"),
        ("sftp://h/x", "an sftp store names its user"),
        ("sftp://u@h/x?identity=k", "unknown parameter 'identity' (sftp stores take key, known_hosts)"),
        ("https://h/x?token=1", "unknown parameter 'token' (https stores take none)"),
        ("ftp://h:0/", "its port is not a number from 1 to 65535"),
        ("http://u:p@[::1]x/", "names no host"),
        ("http://[::1/", "Invalid IPv6 URL"),
        ("sftp://u@h/x?key=a&key=b", "parameter 'key' is given twice"),
        ("sftp://u:pw@h/x", "authenticates with a key, not a password"),
        ("ftp://h/a%0Ab/", "control character"),
        ("ftp://hls:pa/ss@host/htdocs", "a user and password go before the host, a '/' in them as %2F"),
        ("ftp://hls%0D%0ASTAT@h/", "control character"),
    ],
)
def test_a_bad_store_url_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^--store ") as refused:
        parse_store_url(text)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_sftp_parameters_are_kept() -> None:
    url = parse_store_url("sftp://hls@h/x?key=/etc/hls/id_ed25519&known_hosts=/etc/hls/known_hosts")
    assert url.parameter("key") == "/etc/hls/id_ed25519" and url.parameter("known_hosts") == "/etc/hls/known_hosts"
    assert url.parameter("other") is None
    assert str(url) == "sftp://hls@h:22/x?key=/etc/hls/id_ed25519&known_hosts=/etc/hls/known_hosts"


def test_a_password_left_out_comes_from_netrc(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ftp.example.com login hls password fromnetrc\nmachine other login x password y\n")
    netrc.chmod(0o600)
    assert parse_store_url("ftp://ftp.example.com/").with_netrc(netrc) == StoreUrl(
        "ftp", "ftp.example.com", 21, "hls", "fromnetrc", "")
    # The URL's own password wins; another user's entry is not taken; another host has none.
    assert parse_store_url("ftp://a:b@ftp.example.com/").with_netrc(netrc).password == "b"
    assert parse_store_url("ftp://someone@ftp.example.com/").with_netrc(netrc).password is None
    assert parse_store_url("http://third/").with_netrc(netrc).password is None
    assert parse_store_url("http://third/").with_netrc(tmp_path / "absent").password is None


def test_netrc_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine dav login u password fromenv\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert parse_store_url("https://dav/").with_netrc().password == "fromenv"


def test_a_netrc_others_may_read_or_one_named_but_absent_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine h login u password p\n")
    netrc.chmod(0o644)
    with pytest.raises(ConfigError, match=f"^netrc file {netrc} holds passwords and others may read it: chmod 600"):
        parse_store_url("ftp://h/").with_netrc(netrc)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"does not exist \(\$NETRC\)"):
        parse_store_url("ftp://h/").with_netrc()


def test_a_broken_netrc_is_a_config_error(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("host h login u password p\n")
    with pytest.raises(ConfigError, match=f"^netrc file {netrc}: "):
        parse_store_url("ftp://h/").with_netrc(netrc)


@pytest.mark.parametrize("key", ["../x.ts", "a//b.ts", "./x.ts", "a/\nDELE x.ts", "x\r.ts", ""])
def test_a_key_that_is_not_a_plain_path_is_refused(key: str) -> None:
    with pytest.raises(PermanentStoreError, match="is not a plain relative path"):
        object_parts("b", key)


def test_object_paths() -> None:
    assert joined("", object_parts("b", "live/x.ts")) == "b/live/x.ts"
    assert joined("/srv/", object_parts("b", "x.ts")) == "/srv/b/x.ts"
    assert temporary_name("/srv/b/x.m3u8") == "/srv/b/.x.m3u8.part"
    assert temporary_name("x.m3u8") == ".x.m3u8.part"


def test_sessions_reuse_a_connection_and_replace_one_that_was_lost() -> None:
    made: list[list[str]] = []
    closed: list[list[str]] = []

    def connect() -> list[str]:
        made.append([])
        return made[-1]

    sessions: Sessions[list[str]] = Sessions(connect, closed.append, (ConnectionResetError,))
    assert sessions.use(lambda c: c.append("one") or "ok") == "ok"
    sessions.use(lambda c: c.append("two"))
    assert made == [["one", "two"]]

    def dropped_when_idle(connection: list[str]) -> None:
        if connection is made[0]:
            raise ConnectionResetError
        connection.append("three")

    sessions.use(dropped_when_idle)
    assert len(made) == 2 and made[1] == ["three"] and closed == [made[0]]
    # Failing again on a new connection, the error is the caller's: no third try.
    with pytest.raises(ConnectionResetError):
        sessions.use(lambda c: (_ for _ in ()).throw(ConnectionResetError()))
    assert len(made) == 3 and closed[1:] == [made[1], made[2]]
    # Another error is the caller's at once, and its connection is closed all the same.
    sessions.use(lambda c: c.append("four"))
    with pytest.raises(KeyError):
        sessions.use(lambda c: {}["x"])
    assert len(made) == 4 and closed[-1] is made[3]
    sessions.use(lambda c: c.append("five"))
    sessions.close()
    assert closed[-1] is made[4] and made[4] == ["five"]
