"""The logs of the processes a test started, shown when the test fails.

pytest's report of a failure holds the test's own output, not that of the daemons and
segmenters it ran; an intermittent failure in CI is then a timeout with no cause. Each helper
that starts a process with a log file calls ``watch`` on it; tests/conftest.py clears the list
before each test and adds the tail of each log to a failed test's report.
"""

from __future__ import annotations

from pathlib import Path

TAIL_LINES = 60

_watched: list[Path] = []


def watch(log_path: Path) -> None:
    """Show the tail of ``log_path`` if the current test fails (a path watched twice, once)."""
    if log_path not in _watched:
        _watched.append(log_path)


def clear() -> None:
    """Forget the logs of the previous test."""
    _watched.clear()


def tails(lines: int = TAIL_LINES) -> list[tuple[str, str]]:
    """(title, last ``lines`` lines) of each watched log that exists, in the order watched."""
    sections = []
    for path in _watched:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        sections.append((f"log {path}", "\n".join(text.splitlines()[-lines:])))
    return sections
