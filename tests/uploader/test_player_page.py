"""The player page's choice of engine, in a real Chromium, for browsers it cannot play in.

Chromium has both engines; a script run before the page's own takes one or both away (a browser
without native HLS: ``canPlayType`` answers ""; without MSE: no ``MediaSource``). The page and
hls.js are served from loopback as hls-uploadd uploads them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.browser import browser
from uploader.player import PAGE_NAME, SCRIPT_NAME, player_script, render_player_page

NO_NATIVE_HLS = "HTMLMediaElement.prototype.canPlayType = () => '';"
NO_MSE = "delete window.MediaSource; delete window.ManagedMediaSource; delete window.WebKitMediaSource;"


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on loopback: its base URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def status_without(url: str, script: str, wait_s: float = 15) -> str:
    """The page's ``#status`` once it is no longer "Loading...", ``script`` run before the page's."""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        devtools.call("Page.enable", session)
        devtools.call("Page.addScriptToEvaluateOnNewDocument", session, source=script)
        devtools.call("Page.navigate", session, url=url)
        deadline = time.monotonic() + wait_s
        status = ""
        while time.monotonic() < deadline:
            status = devtools.call("Runtime.evaluate", session, returnByValue=True, expression=(
                "document.getElementById('status')?.textContent ?? ''"))["result"].get("value", "")
            if status not in ("", "Loading..."):
                break
            time.sleep(0.2)
        return status


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("page")
    (directory / PAGE_NAME).write_text(render_player_page("stream.m3u8", title="t"))
    (directory / SCRIPT_NAME).write_bytes(player_script())
    with served(directory) as base:
        yield base + PAGE_NAME


@pytest.mark.parametrize(("query", "script", "status"), [
    ("?native", NO_NATIVE_HLS, "This browser has no native HLS player: open the page without ?native."),
    ("", NO_NATIVE_HLS + NO_MSE, "This browser cannot play HLS."),
    ("?hls.js", NO_MSE, "hls.js cannot run here (no Media Source Extensions): open the page without ?hls.js."),
    ("?hls.js", NO_NATIVE_HLS + NO_MSE, "This browser cannot play HLS."),
])
def test_a_browser_without_the_engine_asked_for_is_told_so(page_url: str, query: str, script: str,
                                                           status: str) -> None:
    assert status_without(page_url + query, script) == status
