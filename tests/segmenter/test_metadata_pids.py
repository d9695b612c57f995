"""Timed ID3 metadata and SCTE-35 PIDs: copied into the segment they fall in, never cut on, and
the MPEG-TS fast path stays on. The inputs are clips of tests/support/media.py with the two PIDs
added by packet surgery (a PMT entry each, ID3 PES packets and splice_info_sections beside chosen
video frames); the same clip without them is the control."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from segmenter.psi import packet_pid
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.segmenter_media import run_segmenter, segment_files

from .ts_surgery import (
    AUDIO_PID,
    ID3_PID,
    SCTE35_PID,
    VIDEO_PID,
    Insertion,
    add_metadata,
    id3_tag,
    packets,
    splice_info_section,
)

pytestmark = pytest.mark.usefixtures("segmenter_path")

FPS = 25
FRAME_TICKS = 90000 // FPS
SECONDS = 8  # segments of 2 s, GOPs of 2 s: frames 0-49 in segment 1, 50-99 in 2, ...


def insertions() -> list[Insertion]:
    return [
        Insertion(13, "id3", id3_tag("one")),
        Insertion(60, "scte35", splice_info_section(60 * FRAME_TICKS, 1)),
        # A three-packet tag whose first packet comes before the keyframe that cuts segment 3:
        # it started in segment 2 and stays whole there (its PTS is the frame before the cut).
        Insertion(100, "id3", id3_tag("long", padding=400), before=1, pts_offset=-FRAME_TICKS),
        Insertion(138, "id3", id3_tag("three")),
        Insertion(160, "scte35", splice_info_section(160 * FRAME_TICKS, 2)),
    ]


def expected_segment(insertion: Insertion) -> int:
    return insertion.frame // (2 * FPS) + (0 if insertion.before else 1)


def segment_contents(path: Path) -> tuple[list[tuple[str, int]], list[tuple[int, bytes]], list[bytes]]:
    """A segment's audio and video packets (kind, pts), its timed ID3 tags (pts, tag), and its
    SCTE-35 sections, as FFmpeg's demuxer reads them."""
    media: list[tuple[str, int]] = []
    tags: list[tuple[int, bytes]] = []
    sections: list[bytes] = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if not packet.size:
                continue
            kind = packet.stream.type
            if kind in ("audio", "video"):
                media.append((kind, packet.pts))
            elif packet.stream.name == "timed_id3":
                tags.append((packet.pts, bytes(packet)))
            elif packet.stream.name == "scte_35":
                sections.append(bytes(packet))
    return media, tags, sections


def segment(source: Path, out: Path, port: int) -> str:
    with Listener(port):
        result = run_segmenter(source, "2", out, port)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_metadata_is_copied_into_the_segment_it_falls_in_and_never_cut_on(
        tmp_path: Path, media: MediaCache, free_port: int, segmenter_path: str) -> None:
    clip = media.ts(seconds=SECONDS, gop_seconds=2, fps=FPS)
    planned = insertions()
    source = tmp_path / "metadata.ts"
    source.write_bytes(add_metadata(clip.read_bytes(), planned, fps=FPS))

    log = segment(source, tmp_path / "with", free_port)
    control_log = segment(clip, tmp_path / "without", free_port)
    with_files, without_files = segment_files(tmp_path / "with"), segment_files(tmp_path / "without")

    fast = segmenter_path == "fast-path"
    assert ("MPEG-TS fast path: cutting at 188-byte packet level" in log) is fast
    assert "copied, never cut on: PID 0x102 timed ID3 metadata" + (", PID 0x103 SCTE-35" if fast else "") in log
    scte_refused = "(SCTE-35, PID 0x103) is not copied on the PyAV path"
    assert log.count(scte_refused) == (0 if fast else 1), log
    assert "continuity error" not in log + control_log and "corrupt" not in log + control_log

    # Cuts unchanged: the same segments, each with the same audio and video packets.
    contents = [segment_contents(path) for path in with_files]
    assert [media for media, _, _ in contents] == [segment_contents(path)[0] for path in without_files]
    assert len(contents) == SECONDS // 2

    for number, (media_packets, tags, sections) in enumerate(contents, 1):
        here = [i for i in planned if expected_segment(i) == number]
        assert tags == [(i.pts, i.payload) for i in here if i.kind == "id3"], f"segment {number}"
        assert sections == ([i.payload for i in here if i.kind == "scte35"] if fast else []), f"segment {number}"
        # In the segment whose time range holds it: from its first video frame to the next one's.
        video = [pts for kind, pts in media_packets if kind == "video"]
        for pts, _ in tags:
            assert min(video) <= pts <= max(video), f"segment {number}: tag at {pts} outside {video[0]}..{video[-1]}"

    if fast:
        # Byte for byte: the inserted packets, whole, in their segment, in input order; and the
        # audio and video packets are those of the same input without metadata.
        for number, path in enumerate(with_files, 1):
            data = path.read_bytes()
            for pid in (ID3_PID, SCTE35_PID):
                got = [p for p in packets(data) if packet_pid(p) == pid]
                want = [p for i in planned if expected_segment(i) == number for p in i.packets
                        if packet_pid(p) == pid]
                assert got == want, f"segment {number} PID {pid:#x}"
            control = without_files[number - 1].read_bytes()
            for pid in (VIDEO_PID, AUDIO_PID):
                assert ([p for p in packets(data) if packet_pid(p) == pid]
                        == [p for p in packets(control) if packet_pid(p) == pid])
