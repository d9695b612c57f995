"""Truthful independence: a segment says ``independent=1`` exactly when it decodes alone.

Clips with open and closed GOPs (tests/support/gop_media.py) are judged by
``segmenter.randomaccess`` part by part, segmented by hls-segment on both paths, and every
segment is decoded alone and compared with what its message claimed; end to end, the master
playlist says EXT-X-INDEPENDENT-SEGMENTS for a closed-GOP program and not for an open-GOP one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from botocore.client import BaseClient

from segmenter.randomaccess import StartPicture, TsSegmentStart, codec_by_name, codec_by_stream_type, nal_length_size
from tests.support.daemon import UploaderDaemon
from tests.support.gop_media import FPS, GOP_FRAMES, GOP_KINDS, Pictures, decode_alone, decoded_pictures, gop_clip
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import concatenate, segment_args, segment_files, segment_into_listener
from tests.support.viewer import fetch_playlist, http_get, read_playlist, wait_for

TS_PACKET_BYTES = 188
CLIP_SECONDS = 10
SEGMENT_SECONDS = "2"  # two GOPs a segment: five segments a clip


@functools.cache
def ffmpeg_has(encoder: str) -> bool:
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    return f" {encoder} " in listing.stdout


def clip(media: MediaCache, kind: str, container: str = "mpegts") -> Path:
    if kind.startswith("hevc") and not ffmpeg_has("libx265"):
        pytest.skip("this ffmpeg has no libx265")
    return gop_clip(media.directory, kind, seconds=CLIP_SECONDS, container=container)


def claims_hold(claims: list[bool], truths: list[bool], kind: str) -> None:
    """No segment claims to be independent and is not; for every kind but H.264 open GOPs, no
    segment that decodes alone fails to say so, and for that one some really do not decode alone
    (the rule for H.264 is IDR only: randomaccess.py)."""
    assert not [n for n, (claim, truth) in enumerate(zip(claims, truths)) if claim and not truth], (claims, truths)
    if kind == "h264-open":
        assert not all(truths[1:]), truths
    else:
        assert claims == truths


def expected_claims(kind: str, count: int) -> list[bool]:
    """The first segment starts at the encoder's first picture (always an IDR or closed); the
    others at a later keyframe."""
    return [True] + [GOP_KINDS[kind][1]] * (count - 1)


# -- the rules, on real encoded bytes -------------------------------------------------------------


@contextlib.contextmanager
def gops(path: Path) -> Iterator[tuple[av.video.stream.VideoStream, list[list[av.Packet]]]]:
    """The video stream of ``path`` and its packets in decode order, split before each keyframe
    (valid while the context lasts)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        parts: list[list[av.Packet]] = []
        for packet in container.demux(stream):
            if packet.size:
                if packet.is_keyframe or not parts:
                    parts.append([])
                parts[-1].append(packet)
        yield stream, parts


def judge(stream: av.video.stream.VideoStream, packets: list[av.Packet]) -> StartPicture:
    """``packets`` judged as the start of a segment, as the PyAV path does."""
    codec = codec_by_name(stream.codec_context.name)
    assert codec is not None
    start = StartPicture(codec, nal_length_size(codec, stream.codec_context.extradata))
    for packet in packets:
        if start.feed(bytes(packet)):
            break
    return start


def alone(stream: av.video.stream.VideoStream, packets: list[av.Packet], path: Path, reference: Pictures) -> bool:
    """Whether ``packets``, remuxed into a file of their own, decode completely and as in
    ``reference`` (the muxer takes the packets' data)."""
    with av.open(str(path), "w", format="mpegts") as out:
        copy = out.add_stream_from_template(stream)
        for packet in packets:
            packet.stream = copy
            out.mux(packet)
    return decode_alone(path, reference).complete


@pytest.mark.parametrize("kind", sorted(GOP_KINDS))
def test_each_keyframe_is_judged_as_decoding_alone_shows(kind: str, media: MediaCache, tmp_path: Path) -> None:
    source = clip(media, kind)
    reference = decoded_pictures(source)
    with gops(source) as (stream, parts):
        assert len(parts) >= CLIP_SECONDS * FPS // GOP_FRAMES
        starts = [judge(stream, packets) for packets in parts]
        truths = [alone(stream, packets, tmp_path / f"part-{n}.ts", reference) for n, packets in enumerate(parts)]
    verdicts = [start.independent for start in starts]
    assert [bool(start.reason) for start in starts] == [not v for v in verdicts]
    claims_hold(verdicts, truths, kind)
    assert verdicts == expected_claims(kind, len(parts))


@pytest.mark.parametrize("kind", ["h264-open", "h264-closed", "hevc-open", "hevc-closed"])
def test_length_prefixed_nal_units_from_mp4(kind: str, media: MediaCache) -> None:
    with gops(clip(media, kind, container="mp4")) as (stream, parts):
        codec = codec_by_name(stream.codec_context.name)
        assert nal_length_size(codec, stream.codec_context.extradata) == 4  # avcC / hvcC, as FFmpeg writes them
        verdicts = [judge(stream, packets).independent for packets in parts]
    assert verdicts == expected_claims(kind, len(parts))


def keyframe_offsets(path: Path) -> list[int]:
    """Byte offsets of the TS packets that start each video keyframe's PES."""
    with av.open(str(path)) as container:
        return [packet.pos for packet in container.demux(container.streams.video[0])
                if packet.size and packet.is_keyframe]


@pytest.mark.parametrize("kind", ["h264-open", "h264-closed", "hevc-open", "hevc-cra"])
def test_mpeg_ts_packets_are_judged_like_access_units(kind: str, media: MediaCache) -> None:
    path = clip(media, kind)
    data = path.read_bytes()
    offsets = keyframe_offsets(path)
    assert all(offset % TS_PACKET_BYTES == 0 for offset in offsets)
    stream_type = 0x1B if kind.startswith("h264") else 0x24
    video = {0x100: (codec_by_stream_type(stream_type), 0)}
    whole, one_by_one = [], []
    for start, end in zip(offsets, [*offsets[1:], len(data)]):
        judge = TsSegmentStart(video)
        judge.feed(data[start:end])
        whole.append(judge.finish().independent)
        judge = TsSegmentStart(video)
        for at in range(start, end, TS_PACKET_BYTES):
            judge.feed(memoryview(data)[at : at + TS_PACKET_BYTES])
        one_by_one.append(judge.finish().independent)
    assert whole == one_by_one == expected_claims(kind, len(offsets))


def test_a_cut_before_a_picture_that_is_not_a_keyframe(media: MediaCache) -> None:
    """A segment cut without a keyframe (a long GOP split on the grid) starts at a P or B picture."""
    for kind in ("h264-closed", "mpeg2-closed", "hevc-closed"):
        with gops(clip(media, kind)) as (stream, parts):
            start = judge(stream, parts[1][5:])
        assert (start.decided, start.independent) == (True, False), kind
        assert "not" in start.reason


# -- through hls-segment, on both paths -----------------------------------------------------------

CASES = [(kind, path) for kind in sorted(GOP_KINDS) for path in ("fast-path", "pyav")
         if not (kind.startswith("mpeg2") and path == "fast-path")]  # the fast path takes H.264 and HEVC


@pytest.mark.parametrize(("kind", "path"), CASES)
def test_each_message_says_independent_exactly_when_its_segment_decodes_alone(
    kind: str, path: str, media: MediaCache, tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = clip(media, kind)
    monkeypatch.setenv("HLS_SEGMENT_FAST_PATH", "1" if path == "fast-path" else "0")
    messages, files, log = segment_into_listener(source, SEGMENT_SECONDS, tmp_path, free_port, path)
    assert len(messages) >= CLIP_SECONDS // int(SEGMENT_SECONDS)
    reference = decoded_pictures(concatenate(files, tmp_path / "all.ts"))
    decoded = [decode_alone(file, reference) for file in files]
    assert all(alone.packets for alone in decoded)
    claims_hold([m.independent for m in messages], [alone.complete for alone in decoded], kind)
    assert [m.independent for m in messages] == expected_claims(kind, len(messages))
    logged = [line for line in log.splitlines() if "is not independent" in line]
    assert len(logged) == (0 if GOP_KINDS[kind][1] else 1), logged


def test_mp4_input_with_open_gops_on_the_pyav_path(media: MediaCache, tmp_path: Path, free_port: int) -> None:
    source = clip(media, "h264-open", container="mp4")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with Listener(free_port) as listener:
        result = subprocess.run(segment_args(str(source), SEGMENT_SECONDS, tmp_path, free_port),
                                capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    claims = [m.independent for m in listener.messages]
    files = segment_files(tmp_path)
    reference = decoded_pictures(concatenate(files, tmp_path / "all.ts"))
    claims_hold(claims, [decode_alone(file, reference).complete for file in files], "h264-open")
    assert claims == expected_claims("h264-open", len(claims))


# -- end to end: the master playlist ----------------------------------------------------------------


@pytest.mark.slow
def test_the_master_says_independent_segments_only_for_closed_gops(
    tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    programs = {"closed": clip(media, "h264-closed"), "open": clip(media, "h264-open")}
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path)]).start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        runs = []
        for program, source in programs.items():
            for name in ("low", "high"):  # two renditions: a master is written
                out = tmp_path / program / name
                args = [sys.executable, "-m", "segmenter", str(source), SEGMENT_SECONDS, str(out), name,
                        f"{name}.m3u8", "", bucket, program, "--uploader", f"127.0.0.1:{daemon.port}"]
                runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        for run in runs:
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 0, stderr

        masters = {}
        for program in programs:
            base = seaweed.object_url(bucket, program)
            for name in ("low", "high"):
                wait_for(lambda u=f"{base}/{name}.m3u8": (r := http_get(u)).status == 200
                         and read_playlist(u, r.text).is_endlist, message=f"{program}/{name}.m3u8 ended", timeout=30)

            def final_master(base: str = base) -> str | None:
                reply = http_get(f"{base}/master.m3u8")
                if reply.status != 200:
                    return None
                read_playlist(f"{base}/master.m3u8", reply.text)
                return reply.text if reply.text.count("#EXT-X-STREAM-INF") == 2 else None

            masters[program] = wait_for(final_master, message=f"the master of {program}", timeout=30)
            # What the master claims is what the published segments do when decoded alone.
            playlist = fetch_playlist(f"{base}/low.m3u8")
            files = []
            for number, segment in enumerate(playlist.segments):
                files.append(tmp_path / f"{program}-{number}.ts")
                files[-1].write_bytes(s3.get_object(Bucket=bucket, Key=f"{program}/{segment.uri}")["Body"].read())
            reference = decoded_pictures(concatenate(files, tmp_path / f"{program}.ts"))
            decoded = [decode_alone(file, reference).complete for file in files]
            assert all(decoded) is (program == "closed"), decoded
    finally:
        daemon.kill()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in masters["closed"]
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in masters["open"]
    assert "Traceback" not in daemon.log()
