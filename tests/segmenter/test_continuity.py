"""Lost packets: continuity_counter errors counted per PID and reported once per segment, on both
paths; and an input with more streams than the fast path can route falls back to PyAV."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from segmenter.psi import packet_pid
from segmenter.tsfast import MAX_STREAMS, ContinuityCheck
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.segmenter_media import run_segmenter, segment_files

from .ts_surgery import AUDIO_PID, VIDEO_PID, packets, pes_pts, remove_packets

FPS = 25
SEGMENT_TICKS = 2 * 90000  # SEGMENT_DURATION 2 with 2-s GOPs from pts 0: segment n starts at (n-1) * 2 s


def continuation_packets(data: bytes, pid: int) -> list[tuple[int, int]]:
    """(ordinal among the PID's packets, pts of the PES it belongs to) of every packet of ``pid``
    that continues a PES."""
    found = []
    pts = None
    for ordinal, packet in enumerate(p for p in packets(data) if packet_pid(p) == pid):
        if packet[1] & 0x40:
            pts = pes_pts(packet)
        elif pts is not None:
            found.append((ordinal, pts))
    return found


def losses(data: bytes, pid: int, per_segment: dict[int, int]) -> set[int]:
    """Ordinals of ``pid`` packets to remove: per segment, that many continuation packets, each
    in a different PES away from the segment's edges."""
    chosen: set[int] = set()
    for number, count in per_segment.items():
        used: set[int] = set()
        for ordinal, pts in continuation_packets(data, pid):
            inside = (number - 1) * SEGMENT_TICKS + 90000 // 2 < pts < number * SEGMENT_TICKS - 90000 // 2
            if inside and pts not in used and len(used) < count:
                used.add(pts)
                chosen.add(ordinal)
        assert len(used) == count
    return chosen


def continuity_lines(log: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"segment (\d+): (PID 0x.*(?:continuity error|corrupt PES packet).*)", log)}


def test_lost_packets_are_reported_per_pid_for_their_segment(
        tmp_path: Path, media: MediaCache, free_port: int, segmenter_path: str) -> None:
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes()
    damaged = remove_packets(data, VIDEO_PID, losses(data, VIDEO_PID, {1: 1, 3: 2}))
    if segmenter_path == "fast-path":
        # The fast path sees every packet: audio PES are one packet each here, so a lost one
        # leaves no damaged PES for FFmpeg to flag; counted all the same.
        damaged = remove_packets(damaged, AUDIO_PID, {100, 250, 251, 480})  # 250 and 251: one gap
    source = tmp_path / "damaged.ts"
    source.write_bytes(damaged)
    with Listener(free_port):
        result = run_segmenter(source, "2", tmp_path / "out", free_port)
        clean = run_segmenter(media.ts(seconds=8, gop_seconds=2, fps=FPS), "2", tmp_path / "clean", free_port)
    assert result.returncode == 0 and clean.returncode == 0, result.stderr + clean.stderr
    assert len(segment_files(tmp_path / "out")) == 4

    if segmenter_path == "fast-path":
        expected = {1: {VIDEO_PID: 1}, 3: {VIDEO_PID: 2}}
        for number in _audio_segments(data, {100, 250, 480}):
            counts = expected.setdefault(number, {})
            counts[AUDIO_PID] = counts.get(AUDIO_PID, 0) + 1
        noun = "continuity error"
    else:
        expected = {1: {VIDEO_PID: 1}, 3: {VIDEO_PID: 2}}
        noun = "corrupt PES packet"
    want = {number: ", ".join(f"PID 0x{pid:x} {count} {noun}{'' if count == 1 else 's'}"
                              for pid, count in sorted(counts.items()))
            for number, counts in expected.items()}
    assert continuity_lines(result.stderr) == want, result.stderr
    assert continuity_lines(clean.stderr) == {}, clean.stderr


def _audio_segments(data: bytes, ordinals: set[int]) -> list[int]:
    """The segment each lost audio packet (by ordinal) fell in: the video frame before it."""
    found = []
    video_pts = 0
    seen = 0
    for packet in packets(data):
        pid = packet_pid(packet)
        if pid == VIDEO_PID and (pts := pes_pts(packet)) is not None:
            video_pts = pts
        elif pid == AUDIO_PID:
            if seen in ordinals:
                found.append(video_pts // SEGMENT_TICKS + 1)
            seen += 1
    return found


def packet(pid: int, counter: int, *, payload: bool = True, discontinuity: bool = False,
           adaptation: bytes | None = None) -> bytes:
    """A packet of ``pid``; ``adaptation``: its adaptation field after the length byte (by
    default none, or the flags byte alone for a discontinuity_indicator or no payload)."""
    if adaptation is None and (discontinuity or not payload):
        adaptation = bytes([0x80 if discontinuity else 0])
    control = (0x10 if payload else 0) | (0x20 if adaptation is not None else 0)
    head = bytes([0x47, pid >> 8, pid & 0xFF, control | counter])
    if adaptation is not None:
        head += bytes([len(adaptation)]) + adaptation
    return head + b"\xff" * (188 - len(head))


def check(check: ContinuityCheck, stream: list[bytes]) -> list[tuple[int, int]]:
    chunk = b"".join(stream)
    marks = bytes(1 if packet_pid(p) == 0x100 else 2 if packet_pid(p) == 0x101 else 0 for p in stream)
    return check.check(chunk, len(stream), marks)


def test_continuity_counter_rules() -> None:
    """ISO/IEC 13818-1 2.4.3.3, on one PID: a count up passes, an adaptation-field-only packet
    repeats the counter, one duplicate is allowed, a discontinuity_indicator allows a break;
    anything else is one error at the packet after the gap, across chunks too."""
    checker = ContinuityCheck({1: 0x100, 2: 0x101})
    clean = [packet(0x100, n % 16) for n in range(40)]
    assert check(checker, clean) == []
    assert check(checker, [packet(0x100, 8), packet(0x100, 8, payload=False), packet(0x100, 9)]) == []
    assert check(checker, [packet(0x100, 9), packet(0x100, 10)]) == []  # a duplicate of the last
    assert check(checker, [packet(0x100, 10), packet(0x100, 10)]) == [(1, 0x100)]  # a second one is not
    assert check(checker, [packet(0x100, 3, discontinuity=True), packet(0x100, 4)]) == []
    lost = [packet(0x100, 5), packet(0x101, 0), packet(0x100, 9), packet(0x101, 1), packet(0x100, 10),
            packet(0x101, 3), packet(0x102, 7), packet(0x100, 12)]
    assert check(checker, lost) == [(2, 0x100), (5, 0x101), (7, 0x100)]  # PID 0x102 is not checked
    # An adaptation-field-only packet after a duplicate is no second duplicate (an odd counter too).
    assert check(checker, [packet(0x100, 13), packet(0x100, 13), packet(0x100, 13, payload=False),
                           packet(0x100, 14), packet(0x100, 0)]) == [(4, 0x100)]
    # Only the discontinuity_indicator allows a break: not an empty adaptation field, not one
    # without the flag, not one with another flag (adaptation_field_extension_flag).
    assert check(checker, [packet(0x100, 1), packet(0x100, 5, adaptation=b""), packet(0x100, 9, adaptation=b"\x00"),
                           packet(0x100, 12, adaptation=b"\x01\x01\x1f")]) == [(1, 0x100), (2, 0x100), (3, 0x100)]
    # The one duplicate allowed is counted across chunks.
    assert check(checker, [packet(0x100, 13), packet(0x100, 13)]) == []
    assert check(checker, [packet(0x100, 13)]) == [(0, 0x100)]
    # A chunk counts on from the last one: not from the counter before it, not from 15 or 0 out of turn.
    assert check(checker, [packet(0x100, 12), packet(0x100, 13)]) == [(0, 0x100)]
    assert check(checker, [packet(0x100, 15), packet(0x100, 0)]) == [(0, 0x100)]
    assert check(checker, [packet(0x100, 5), packet(0x100, 6)]) == [(0, 0x100)]
    assert check(checker, [packet(0x100, 0), packet(0x100, 1)]) == [(0, 0x100)]
    assert check(checker, [packet(0x100, 15)]) == [(0, 0x100)]
    assert check(checker, [packet(0x100, 0), packet(0x100, 0), packet(0x100, 0)]) == [(2, 0x100)]
    # A PID with only adaptation-field-only packets in a chunk does not stop the others' check.
    assert check(checker, [packet(0x100, 0, payload=False), packet(0x101, 4), packet(0x101, 6)]) == [(2, 0x101)]


def test_too_many_streams_fall_back_to_pyav(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    clip = media.ts(seconds=4, gop_seconds=2, fps=FPS)
    source = tmp_path / "many.ts"
    tracks = [arg for _ in range(MAX_STREAMS) for arg in ("-map", "0:a")]
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-map", "0:v", *tracks,
                    "-c", "copy", "-f", "mpegts", str(source)], check=True, timeout=60)
    with Listener(free_port):
        result = run_segmenter(source, "2", tmp_path / "out", free_port, "--fast-path")
    assert result.returncode == 0, result.stderr
    assert (f"MPEG-TS fast path not used: {MAX_STREAMS + 1} elementary streams (the fast path routes at most "
            f"{MAX_STREAMS})") in result.stderr
    assert len(segment_files(tmp_path / "out")) == 2


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_continuity_is_checked_across_chunk_boundaries(chunk: int) -> None:
    checker = ContinuityCheck({1: 0x100})
    stream = [packet(0x100, n % 16) for n in range(100)]
    del stream[50]
    found = []
    for start in range(0, len(stream), chunk):
        found += [(start + at, pid) for at, pid in check(checker, stream[start : start + chunk])]
    assert found == [(50, 0x100)]
