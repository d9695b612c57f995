"""What a player does: plain HTTP GETs of playlists and segments, and patient polling."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import m3u8

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


def fetch_playlist(url: str, *, timeout: float = 10.0) -> m3u8.M3U8:
    """GET and parse an HLS playlist; segment URIs resolve against `url`."""
    reply = http_get(url, timeout=timeout)
    if reply.status != 200:
        raise AssertionError(f"GET {url} -> HTTP {reply.status}: {reply.body[:300]!r}")
    return m3u8.loads(reply.text, uri=url)


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
