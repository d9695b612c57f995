"""Finding a test's own child processes by their command line (/proc), to kill or stop one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def children(parent: int, matches: Callable[[list[bytes]], bool]) -> list[int]:
    """The pids of the children of ``parent`` whose arguments (argv, as bytes) ``matches``: only
    this test's processes, though another test runs the same programs beside it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and matches(arguments):
            found.append(int(entry.name))
    return found


def encoder_pids(ladder_pid: int, video_bitrate: int) -> list[int]:
    """The pids of hls-ladder ``ladder_pid``'s encoders (ffmpeg) at ``video_bitrate`` (bit/s)."""
    return children(ladder_pid, lambda arguments: b"-mpegts_service_id" in arguments and b"-b:v" in arguments and (
        arguments[arguments.index(b"-b:v") + 1] == str(video_bitrate).encode()))
