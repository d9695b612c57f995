"""The MPEG-TS fast path: which inputs take it, what its segments hold, garbage between packets."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pytest

from segmenter.cutter import Cutter, StreamInfo, StreamKind
from segmenter.psi import find_sync
from segmenter.tsfast import (
    CLOSE,
    DATA,
    OPEN,
    SKIPPED,
    NotEligible,
    Track,
    TsSplitter,
    _key_nal,
    find_program,
)
from tests.support.listener import Listener
from tests.support.media import MediaCache, probe
from tests.support.segmenter_media import TS_PACKET_BYTES, run_segmenter, segment_files

FPS = 25
TICKS = Fraction(1, 90000)


def packets_by_pid(data: bytes) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = defaultdict(list)
    for offset in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        packet = data[offset : offset + TS_PACKET_BYTES]
        found[((packet[1] & 0x1F) << 8) | packet[2]].append(packet)
    return found


def split(data: bytes, seconds: int, *, chunk: int = 65536) -> tuple[dict[int, bytearray], list[tuple]]:
    program = find_program(data)
    tracks = [Track(0x100, 0, True, False, 3600), Track(0x101, 1, False, False, None)]
    assert [pid for pid, _ in program.streams] == [0x100, 0x101]
    cutter = Cutter([StreamInfo(0, StreamKind.VIDEO, TICKS, True), StreamInfo(1, StreamKind.AUDIO, TICKS, True)],
                    Fraction(seconds))
    splitter = TsSplitter(program, tracks, cutter)
    files: dict[int, bytearray] = {}
    events: list[tuple] = []
    for start in range(0, len(data), chunk):
        events += splitter.feed(data[start : start + chunk])
    events += splitter.finish()
    for event in events:
        if event[0] == OPEN:
            files[event[1]] = bytearray(event[2])
        elif event[0] == DATA:
            files[event[1]] += event[2]
    return files, events


def interleave(data: bytes, delay: int = 40) -> bytes:
    """FFmpeg writes each PES as one run of packets; broadcast muxers interleave them. Delay every
    audio continuation packet behind ``delay`` other packets (PID order kept), so audio PES
    straddle video keyframes."""
    out: list[bytes] = []
    waiting: list[tuple[int, bytes]] = []
    for offset in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        packet = data[offset : offset + TS_PACKET_BYTES]
        audio = (((packet[1] & 0x1F) << 8) | packet[2]) == 0x101
        if audio and packet[1] & 0x40:
            out += [p for _, p in waiting]
            waiting = []
        if audio and not packet[1] & 0x40:
            waiting.append((len(out) + delay, packet))
        else:
            out.append(packet)
        while waiting and waiting[0][0] <= len(out):
            out.append(waiting.pop(0)[1])
    out += [p for _, p in waiting]
    return b"".join(out)


@pytest.mark.parametrize("interleaved", [False, True])
def test_segments_are_the_input_cut_at_keyframes(media: MediaCache, interleaved: bool) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    if interleaved:
        data = interleave(data)
    # Odd chunk sizes: packets and PES split across feeds.
    files, events = split(data, 6, chunk=100_003)
    assert [e[1] for e in events if e[0] == CLOSE] == [1, 2, 3, 4]
    source = packets_by_pid(data)
    joined: dict[int, list[bytes]] = defaultdict(list)
    for number, content in sorted(files.items()):
        pids = packets_by_pid(bytes(content))
        head = [((content[i + 1] & 0x1F) << 8) | content[i + 2] for i in (0, TS_PACKET_BYTES)]
        assert head == [0, 0x1000], "PAT and PMT first"
        for pid in (0x100, 0x101):
            joined[pid] += pids[pid]
            # Whole PES packets only: each stream's first packet in a segment starts a PES, and
            # the PES still arriving at a cut ends in the segment it started in.
            assert pids[pid][0][1] & 0x40, f"segment {number} PID {pid:#x} opens mid-PES"
    # The last audio PES of every segment is whole: its packets carry the PES_packet_length it declares.
    for number, content in sorted(files.items()):
        audio = packets_by_pid(bytes(content))[0x101]
        starts = [i for i, packet in enumerate(audio) if packet[1] & 0x40]
        last = audio[starts[-1]]
        offset = 4 + (1 + last[4] if last[3] & 0x20 else 0)
        declared = (last[offset + 4] << 8) | last[offset + 5]
        payload = sum(188 - (4 + (1 + p[4] if p[3] & 0x20 else 0)) for p in audio[starts[-1]:])
        assert payload >= declared + 6, f"segment {number}: its last audio PES is cut short"
    # Every elementary stream packet, once, in order: continuity counters run on across segments.
    for pid in (0x100, 0x101):
        assert joined[pid] == source[pid]


def test_garbage_between_packets_is_skipped(media: MediaCache) -> None:
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    middle = len(data) // 2 // TS_PACKET_BYTES * TS_PACKET_BYTES + 100
    damaged = data[:middle] + os.urandom(20_000).replace(b"\x47", b"\x48") + data[middle:]
    files, events = split(damaged, 6)
    skipped = sum(e[1] for e in events if e[0] == SKIPPED)
    assert 20_000 - TS_PACKET_BYTES <= skipped <= 20_000 + TS_PACKET_BYTES
    assert len(files) == 2


def test_find_sync_needs_several_packets_in_a_row() -> None:
    packet = b"\x47" + bytes(187)
    data = b"\x47junk" + packet * 5
    assert find_sync(data, 0) == 5
    assert find_sync(packet * 3, 0) is None  # not enough to be sure


def test_keyframe_nal_units() -> None:
    aud = b"\x00\x00\x00\x01\x09\xf0"
    assert _key_nal(aud + b"\x00\x00\x00\x01\x67\x64" + b"\x00\x00\x01\x65", hevc=False)  # SPS, IDR
    assert not _key_nal(aud + b"\x00\x00\x01\x41\x9a", hevc=False)  # non-IDR slice
    assert _key_nal(b"\x00\x00\x01\x46\x01" + b"\x00\x00\x01\x40\x01", hevc=True)  # AUD, VPS
    assert not _key_nal(b"\x00\x00\x01\x02\x01", hevc=True)  # TRAIL_R


def test_find_program_refuses_what_it_cannot_cut() -> None:
    with pytest.raises(NotEligible):
        find_program(os.urandom(10_000).replace(b"\x47", b"\x00"))


def test_which_inputs_take_the_fast_path(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=8, gop_seconds=2, fps=FPS)
    audio_only = media.ts(seconds=8, gop_seconds=2, fps=FPS, video=False)
    cases = [
        (source, {}, (), "MPEG-TS fast path: cutting at 188-byte packet level"),
        (source, {"HLS_SEGMENT_FAST_PATH": "1"}, ("--no-fast-path",), "MPEG-TS fast path not used: turned off"),
        (source, {"HLS_SEGMENT_FAST_PATH": "0"}, (), "MPEG-TS fast path not used: turned off"),
        (audio_only, {}, (), "MPEG-TS fast path not used: no video stream"),
    ]
    for n, (path, env, options, expected) in enumerate(cases):
        old = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            with Listener(free_port):
                result = run_segmenter(path, "4", tmp_path / str(n), free_port, *options)
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr


def test_fast_path_segments_play_alone_and_joined(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    with Listener(free_port):
        result = run_segmenter(source, "4", tmp_path, free_port)
    assert result.returncode == 0, result.stderr
    files = segment_files(tmp_path)
    assert len(files) == 3
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(f.read_bytes() for f in files))
    for path in [*files, joined]:
        decode = subprocess.run(["ffmpeg", "-v", "warning", "-i", str(path), "-f", "null", "-"],
                                capture_output=True, text=True, check=True)
        assert decode.stderr == "", f"{path.name}: {decode.stderr}"
    assert probe(joined).packet_count == probe(source).packet_count
