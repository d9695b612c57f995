"""A real browser for the player page: Debian's Chromium, headless, one fresh profile per visit."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Virtual time the page gets to load the playlist, a segment, and start playing (Chromium runs
# it as fast as it can; a live stream has its first segments listed already).
PAGE_TIME_MS = 10_000


def chromium() -> str:
    """The browser's path; the test is skipped, saying why, where none is installed (./dev test
    installs Debian's chromium when it runs as root, as CI does)."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium: install it (Debian/Ubuntu: sudo apt-get install -y chromium)")


def page_status(url: str) -> str:
    """The text of the player page's ``#status`` after PAGE_TIME_MS of page time."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--autoplay-policy=no-user-gesture-required",
             f"--virtual-time-budget={PAGE_TIME_MS}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )
    found = re.search(r'<p id="status">(.*?)</p>', result.stdout)
    assert found, f"no #status in what Chromium rendered (exit {result.returncode}):\n{result.stderr[-2000:]}"
    return html.unescape(found.group(1))
