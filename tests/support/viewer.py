"""What a player does: plain HTTP GETs of playlists and segments, and patient polling."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import m3u8

from .rfc8216 import History, master_playlist_problems

T = TypeVar("T")

# No proxies: every test server is on loopback, and an http_proxy in the
# developer's environment must not get in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Headers(Mapping[str, str]):
    """Response headers with case-insensitive names; repeated headers are joined by ", "."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_get(url: str, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> Response:
    """GET `url`; a 4xx/5xx answer is returned as a Response, not raised."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return Response(reply.status, Headers(reply.headers.items()), reply.read())
    except urllib.error.HTTPError as error:
        with error:  # holds the open connection
            return Response(error.code, Headers(error.headers.items()), error.read())


class PlaylistsSeen:
    """Every playlist version the tests read, one RFC 8216 history per URL (tests/support/rfc8216.py).

    ``read_playlist`` and ``fetch_playlist`` add to it; hooks in tests/conftest.py empty it before
    each test and fail the test (``NonConformant``) on any problem. A media playlist's type (live,
    event, vod) is the one its first version declares, unless the reader names it: a reader that
    knows it should say so, or a live playlist wrongly declaring EVENT would be judged as one.
    """

    def __init__(self) -> None:
        self._histories: dict[str, History] = {}
        self._last: dict[str, str] = {}  # URL -> the version read last
        self._master_problems: list[str] = []

    def clear(self) -> None:
        self._histories.clear()
        self._last.clear()
        self._master_problems.clear()

    def add(self, url: str, text: str, playlist_type: str | None = None) -> None:
        if "#EXT-X-STREAM-INF" in text:
            self._master_problems += [f"{url}: {problem}" for problem in master_playlist_problems(text)]
            return
        history = self._histories.get(url)
        if history is None:
            declared = re.search(r"^#EXT-X-PLAYLIST-TYPE:(EVENT|VOD)\r?$", text, re.MULTILINE)
            history = self._histories[url] = History(playlist_type or (declared[1].lower() if declared else "live"))
        if self._last.get(url) != text:
            self._last[url] = text
            history.add(text)

    def problems(self) -> list[str]:
        found = list(self._master_problems)
        for url, history in self._histories.items():
            found += [f"{url}: {problem}" for problem in history.problems]
        return found


SEEN = PlaylistsSeen()


class NonConformant(AssertionError):
    """Playlists a test read break RFC 8216 (raised by the hook in tests/conftest.py)."""


def read_playlist(url: str, text: str, *, playlist_type: str | None = None) -> m3u8.M3U8:
    """Parse a playlist read from ``url``, after the RFC 8216 checker saw it (``SEEN``)."""
    SEEN.add(url, text, playlist_type)
    return m3u8.loads(text, uri=url)


def fetch_playlist(url: str, *, timeout: float = 10.0, playlist_type: str | None = None) -> m3u8.M3U8:
    """GET, check (``read_playlist``) and parse an HLS playlist; segment URIs resolve against `url`."""
    reply = http_get(url, timeout=timeout)
    if reply.status != 200:
        raise AssertionError(f"GET {url} -> HTTP {reply.status}: {reply.body[:300]!r}")
    return read_playlist(url, reply.text, playlist_type=playlist_type)


def wait_for(predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
             message: str | None = None) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Raises AssertionError naming what was awaited (and its last value) on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value {value!r}")
        time.sleep(interval)
