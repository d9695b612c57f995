"""A real browser for the player page: Debian's Chromium, headless, driven over its DevTools pipe.

The page is watched in real time (not virtual time, which runs ahead of hls.js's transmuxing
worker on a busy machine): ``page_status`` reads the page's ``#status`` every 0.2 s until it
matches or the wait is over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Chromium's --remote-debugging-pipe: it reads commands on fd 3 and writes replies on fd 4,
# JSON messages each ended by a NUL byte.
_COMMANDS_FD, _REPLIES_FD = 3, 4


def chromium() -> str:
    """The browser's path; the test is skipped, saying why, where none is installed (./dev test
    installs Debian's chromium when it runs as root, as CI does)."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium: install it (Debian/Ubuntu: sudo apt-get install -y chromium)")


class DevTools:
    """The DevTools protocol over Chromium's pipe: ``call`` sends a command, returns its result."""

    def __init__(self, commands: int, replies: int) -> None:
        self._commands = commands
        self._replies = replies
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, session: str | None = None, timeout_s: float = 30, **params: object) -> dict:
        self._next_id += 1
        message: dict[str, object] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:  # else an event, or a reply to nothing we wait for
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            data = os.read(self._replies, 65536)
            if not data:
                raise ConnectionError("Chromium closed its DevTools pipe")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)


@contextlib.contextmanager
def browser() -> Iterator[DevTools]:
    """A headless Chromium with a fresh profile, closed afterwards."""
    command_read, command_write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())
    reply_read, reply_write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())

    def pipes_at_3_and_4() -> None:
        os.dup2(command_read, _COMMANDS_FD)
        os.dup2(reply_write, _REPLIES_FD)

    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--autoplay-policy=no-user-gesture-required",
             "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pipes_at_3_and_4,
            close_fds=False,  # it would close 3 and 4 after preexec_fn; Python's own fds are CLOEXEC anyway
            start_new_session=True,  # its renderer and helper processes go with it
        )
        for fd in (command_read, reply_write):
            os.close(fd)
        try:
            yield DevTools(command_write, reply_read)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for fd in (command_write, reply_read):
                os.close(fd)


@contextlib.contextmanager
def open_page(url: str) -> Iterator[Callable[[str], object]]:
    """``url`` open in a fresh headless Chromium; yields ``evaluate(expression)``, which runs
    JavaScript in the page and returns its value (JSON-able values only)."""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url=url)["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

        def evaluate(expression: str) -> object:
            reply = devtools.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
            return reply.get("result", {}).get("value")

        yield evaluate


def page_status(url: str, want: str, wait_s: float = 45, *, playback_rate: float = 1.0) -> str:
    """The text of the player page's ``#status`` once it matches ``want`` (a regular expression),
    or as it is when ``wait_s`` is over. ``playback_rate`` is set on the page's video at once
    (to play a whole recorded stream to its end in less than its duration)."""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url=url)["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + wait_s
        status = ""
        rate_set = playback_rate == 1.0
        while time.monotonic() < deadline:
            if not rate_set:
                rate_set = devtools.call("Runtime.evaluate", session, returnByValue=True, expression=(
                    "(v => v ? (v.defaultPlaybackRate = v.playbackRate = %r, true) : false)"
                    "(document.getElementById('video'))" % playback_rate)).get("result", {}).get("value") is True
            result = devtools.call("Runtime.evaluate", session,
                                   expression="document.getElementById('status')?.textContent ?? ''",
                                   returnByValue=True)
            status = result.get("result", {}).get("value", "")
            if re.fullmatch(want, status):
                break
            time.sleep(0.2)
        return status
