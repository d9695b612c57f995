"""Segments are what they claim: bytes that are not MPEG-TS are refused before they are queued."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.client import BaseClient
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Ack, Reject, encode_message
from segmenter.outbox import Outbox
from tests.support.daemon import drop_from_page_cache, place_segment
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for
from uploader.mpegts import PACKET_SIZE, TransportStreamCheck

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none
from .test_payloads import keys, payload_files

HTML = b"<!doctype html><html><body><script>alert('not a segment')</script></body></html>\n" * 40


def verdict(data: bytes, piece: int | None = None) -> str | None:
    check = TransportStreamCheck()
    step = piece or max(1, len(data))
    for start in range(0, len(data), step):
        check.feed(data[start:start + step])
    return check.refusal()


def packet(pid: int, payload: bytes = b"", *, start: bool = False, adaptation: bytes | None = None) -> bytes:
    """One transport packet, stuffed with 0xFF to 188 bytes."""
    control = (0x2 if adaptation is not None else 0) | (0x1 if payload else 0)
    header = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF, control << 4])
    body = (bytes([len(adaptation)]) + adaptation if adaptation is not None else b"") + payload
    return (header + body).ljust(PACKET_SIZE, b"\xff")


PAT_SECTION = bytes.fromhex("0000b00d0001c100000001f0002ab104b2")  # pointer_field 0, program 1 -> PMT 0x1000


def test_a_real_segment_passes_in_any_pieces(segment_source: Path) -> None:
    data = segment_source.read_bytes()
    for piece in (None, 1, 187, 188, 189, 4096, 65536):
        assert verdict(data, piece) is None, piece


@given(cuts=st.lists(st.integers(min_value=0, max_value=5 * PACKET_SIZE), max_size=8))
@settings(max_examples=200)
def test_where_the_pieces_are_cut_does_not_change_the_verdict(cuts: list[int]) -> None:
    streams = [
        packet(0x100, b"\x01" * 20) + packet(0, PAT_SECTION, start=True) + packet(0x100),
        packet(0x100) * 3 + b"\x47" * 10,  # truncated
        packet(0x100) + b"\x00" + packet(0, PAT_SECTION, start=True)[1:] + packet(0x100),  # a lost sync
        packet(0x100) * 5,  # no PAT
    ]
    for data in streams:
        check = TransportStreamCheck()
        previous = 0
        for cut in sorted(min(cut, len(data)) for cut in cuts):
            check.feed(data[previous:cut])
            previous = cut
        check.feed(data[previous:])
        assert check.refusal() == verdict(data)


def test_each_way_of_not_being_mpegts_is_named() -> None:
    pat = packet(0, PAT_SECTION, start=True)
    assert verdict(HTML) == "no sync byte 0x47 at byte 0 (MPEG-TS packets are 188 bytes)"
    assert verdict(pat + packet(0x100) + b"\x00" * PACKET_SIZE + pat) == (
        "no sync byte 0x47 at byte 376 (MPEG-TS packets are 188 bytes)")
    assert verdict(pat * 3 + pat[:100]) == "its 664 bytes are not a whole number of 188-byte packets (truncated?)"
    assert verdict(packet(0x100) * 4) == "none of its 4 packets is a PAT (PID 0)"
    assert verdict(b"") == "it is empty"
    assert verdict(b"\x47" * PACKET_SIZE * 2) == "none of its 2 packets is a PAT (PID 0)"
    # The first packet without its sync byte is named, however the bytes were cut.
    assert verdict(pat + b"\x00" * PACKET_SIZE + packet(0x100) + b"\x01" * PACKET_SIZE, PACKET_SIZE) == (
        "no sync byte 0x47 at byte 188 (MPEG-TS packets are 188 bytes)")


def test_only_a_packet_starting_a_pat_section_counts_as_a_pat() -> None:
    assert verdict(packet(0, PAT_SECTION, start=False)) is not None  # no payload_unit_start_indicator
    assert verdict(packet(0, bytes.fromhex("0002b0"), start=True)) is not None  # table_id 2 on PID 0
    assert verdict(packet(0x1000, PAT_SECTION, start=True)) is not None  # PID 0x1000: low byte 0, not PID 0
    assert verdict(packet(0, start=True, adaptation=b"\x00" * 10)) is not None  # no payload
    assert verdict(packet(0, b"\xf0" + PAT_SECTION, start=True)) is not None  # pointer_field past the packet
    assert verdict(packet(0, PAT_SECTION, start=True, adaptation=b"\x10" + b"\x00" * 6)) is None
    assert verdict(packet(0, b"\x02\xaa\xbb" + PAT_SECTION[1:], start=True)) is None  # pointer_field 2
    # The adaptation field is skipped from where it starts, in any packet of the segment.
    stuffed = packet(0, PAT_SECTION, start=True, adaptation=b"\x10" + b"\xff" * 6)
    assert verdict(packet(0x100) + stuffed) is None
    assert verdict(packet(0, bytes.fromhex("0002b0"), start=True, adaptation=b"\x00" * 7)) is not None
    # Malformed packets: nothing is read past the packet, nor where it says there is no payload.
    no_payload = packet(0, start=True, adaptation=b"\x00" * 10)
    assert verdict(no_payload[:15] + b"\x00" * (PACKET_SIZE - 15)) is not None
    full_adaptation = bytes([0x47, 0x40, 0x00, 0x30, PACKET_SIZE - 5]) + b"\x00" * (PACKET_SIZE - 5)
    assert verdict(full_adaptation) is not None  # says it has a payload, but the field fills the packet
    assert verdict(packet(0, bytes([PACKET_SIZE - 5]), start=True)) is not None  # pointer_field to the very end


def test_html_with_a_correct_sha256_is_refused_as_an_inline_payload(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segment_source: Path,
    tmp_path: Path,
) -> None:
    daemon = start_uploader("--allow-unsigned-inline")  # no --allow-dir: inline payloads only
    data = segment_source.read_bytes()

    def inline(body: bytes, number: int, **fields: object) -> bytes:
        message = ext_message(Path("/nowhere"), bucket, number, size=len(body),
                              payload_sha256=hashlib.sha256(body).hexdigest(), **fields)
        return encode_message(message, newline=True) + body

    with daemon.connect() as client:
        client.send_only(inline(HTML, 1))
        assert client.reply() == Reject(
            "inline payload is not MPEG-TS: no sync byte 0x47 at byte 0 (MPEG-TS packets are 188 bytes)")
        truncated = data[: len(data) - 100]
        client.send_only(inline(truncated, 1))
        assert client.reply() == Reject(f"inline payload is not MPEG-TS: its {len(truncated)} bytes are not a"
                                        " whole number of 188-byte packets (truncated?)")
        assert payload_files(daemon.spool_dir) == []  # nothing stored
        client.send_only(inline(data, 1, end=True))  # the connection goes on; a real segment passes
        assert client.reply() == Ack(1)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == ["seg-00001.ts"]
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00001.ts")).body == data
    assert "segment seg-00001.ts refused: inline payload is not MPEG-TS: no sync byte" in daemon.log()


@pytest.mark.parametrize("in_page_cache", [True, False], ids=["just-written", "on-disk-only"])
def test_segment_files_that_are_not_mpegts_are_refused_before_they_are_queued(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segments_dir: Path,
    segment_source: Path, in_page_cache: bool,
) -> None:
    """Checked on the event loop from the page cache (a segment just written), or on a thread when
    its bytes must be read from storage: the same verdicts."""
    daemon = start_uploader("--allow-dir", str(segments_dir))
    data = segment_source.read_bytes()
    (segments_dir / "seg-00001.ts").write_bytes(os.urandom(100_000).replace(b"\x47", b"\x46"))
    (segments_dir / "seg-00002.ts").write_bytes(data[: len(data) // PACKET_SIZE // 2 * PACKET_SIZE + 7])
    place_segment(segment_source, segments_dir, "seg", 3)
    if not in_page_cache and not all(drop_from_page_cache(path) for path in sorted(segments_dir.glob("seg-*.ts"))):
        pytest.skip(f"the file system of {segments_dir} is tmpfs: its pages never leave the cache")
    with daemon.connect() as client:
        reply = client.send(ext_message(segments_dir, bucket, 1))
        assert reply == Reject.because(f"segment {segments_dir}/seg-00001.ts is not MPEG-TS: no sync byte 0x47"
                                       " at byte 0 (MPEG-TS packets are 188 bytes)")
        reply = client.send(ext_message(segments_dir, bucket, 2))
        assert isinstance(reply, Reject) and not reply.is_transient
        assert "seg-00002.ts is not MPEG-TS: its" in reply.reason and "(truncated?)" in reply.reason
        assert client.send(ext_message(segments_dir, bucket, 3, end=True)) == Ack(3)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == ["seg-00003.ts"]
    assert keys(s3, bucket) == ["live/one/index.m3u8", "live/one/seg-00003.ts"]
    assert daemon.send_v1(encode_message(ext_message(segments_dir, bucket, 1, key_prefix="live/v1"))).startswith(
        b"ERR segment ")  # the original wire gets the same refusal
    log = daemon.log()
    assert "seg-00001.ts refused: segment" in log and "seg-00002.ts refused: segment" in log


def test_a_segmenter_told_its_segment_is_not_mpegts_says_so_and_exits_non_zero(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, tmp_path: Path,
) -> None:
    """A segment file damaged on disk while its message was owed: the daemon refuses it for good
    (it will never become MPEG-TS), the run publishes the rest and exits 3 naming the refusal."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    daemon = start_uploader("--allow-dir", str(out_dir))
    (out_dir / "cam-00001.ts").write_bytes(HTML)
    outbox = Outbox.open(out_dir / ".cam.outbox")
    outbox.add(ext_message(out_dir, bucket, 1, index="cam.m3u8", output_prefix="cam", key_prefix="live/cam"))
    outbox.close()
    source = media.ts(seconds=4.0, gop_seconds=1.0)
    with open(source, "rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "segmenter", "-", "2", str(out_dir), "cam", "cam.m3u8", "", bucket, "live/cam",
             "--uploader", f"127.0.0.1:{daemon.port}"],
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 3, result.stderr
    assert "refused segment 1 of cam.m3u8: segment" in result.stderr and "is not MPEG-TS" in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "1 refused by the daemon (segment 1:" in last_line and "not MPEG-TS" in last_line, last_line
    url = seaweed.object_url(bucket, "live/cam/cam.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments][0] == "cam-00002.ts"
    assert http_get(seaweed.object_url(bucket, "live/cam/cam-00001.ts")).status == 404
