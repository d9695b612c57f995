"""RFC 6381 codec strings from codec ids, one real stream per codec the segmenter copies.

Each clip is made by ffmpeg, probed by PyAV as hls-segment probes it (``input.describe``), and its
string compared with what RFC 6381, ISO/IEC 14496-15 Annex E and the MP4 object type registry
say; the same input must give the same CODECS on the fast path and on the PyAV path, and end to end
an MP3 + H.264 input gets a master playlist that names both codecs.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
from botocore.client import BaseClient

from segmenter.codecs import aac_codec, codec_string, hevc_codec, hevc_string, mp2_codec, mpeg2_video_codec
from segmenter.input import describe
from tests.support.daemon import UploaderDaemon
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import run_segmenter
from tests.support.viewer import http_get, read_playlist, wait_for

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
AUDIO_48K = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "high", "-level", "3.1", "-g", "25"]


@functools.cache
def ffmpeg_has(encoder: str) -> bool:
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    return f" {encoder} " in listing.stdout


def ffmpeg_clip(media: MediaCache, name: str, *args: str, seconds: float = 2.0) -> Path:
    """An MPEG-TS clip ``name`` made by ``ffmpeg ARGS``, cached in the media directory."""
    path = media.directory / f"codec-{name}.ts"
    if not path.exists():
        part = path.with_suffix(".part")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, "-t", f"{seconds:g}",
                        "-f", "mpegts", str(part)], check=True, timeout=120)
        os.replace(part, path)
    return path


def probed_codecs(path: Path) -> list[str | None]:
    """Each stream's string as hls-segment computes it from the probe."""
    with av.open(str(path)) as container:
        return [codec_string(s.codec_context.codec.canonical_name, s.codec_context.extradata, s.codec_context.profile,
                             s.codec_context.level if s.type == "video" else None,
                             sample_rate=getattr(s.codec_context, "sample_rate", None))
                for s in container.streams]


def ffprobe_level(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=level",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True, timeout=30)
    return int(out.stdout.split()[0])


# (name, ffmpeg arguments, encoder needed, expected strings per stream in input order)
CLIPS = [
    ("h264-aac", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "aac"], "libx264", ["avc1.64001f", "mp4a.40.2"]),
    ("h264-aac-main", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "aac", "-profile:a", "aac_main"], "aac",
     ["avc1.64001f", "mp4a.40.1"]),
    ("h264-mp3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "libmp3lame"], "libmp3lame", ["avc1.64001f", "mp4a.40.34"]),
    ("h264-ac3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "ac3"], "ac3", ["avc1.64001f", "ac-3"]),
    ("h264-eac3", [*VIDEO, *AUDIO_48K, *H264, "-c:a", "eac3"], "eac3", ["avc1.64001f", "ec-3"]),
    ("mpeg2-mp2", [*VIDEO, *AUDIO_48K, "-c:v", "mpeg2video", "-c:a", "mp2"], "mp2", ["mp4v.61", "mp4a.6b"]),
    ("mpeg2-simple-mp2-lsf", [*VIDEO, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=24000",
                              "-c:v", "mpeg2video", "-profile:v", "5", "-bf", "0", "-c:a", "mp2"], "mp2",
     ["mp4v.60", "mp4a.69"]),
    ("mpeg2-422", [*VIDEO, "-c:v", "mpeg2video", "-pix_fmt", "yuv422p"], "mpeg2video", ["mp4v.65"]),
]


@pytest.mark.parametrize(("name", "args", "encoder", "expected"), CLIPS, ids=[c[0] for c in CLIPS])
def test_each_codec_of_a_real_stream(name: str, args: list[str], encoder: str, expected: list[str],
                                     media: MediaCache) -> None:
    if not ffmpeg_has(encoder):
        pytest.skip(f"this ffmpeg has no {encoder}")
    path = ffmpeg_clip(media, name, *args)
    assert probed_codecs(path) == expected
    with av.open(str(path)) as container:
        assert describe(container).codecs == ",".join(dict.fromkeys(expected))


@pytest.mark.parametrize(("pixels", "profile", "compatibility", "constraints"), [
    ("yuv420p", 1, "6", "90"),  # Main: compatible with Main and Main 10 (flags 1, 2 reversed)
    ("yuv420p10le", 2, "4", "90"),  # Main 10
    ("yuv444p", 4, "10", "9E.08"),  # Format range extensions: the constraint bytes say 4:4:4 8 bit
])
def test_hevc_from_the_sps_of_a_real_stream(pixels: str, profile: int, compatibility: str, constraints: str,
                                             media: MediaCache) -> None:
    if not ffmpeg_has("libx265"):
        pytest.skip("this ffmpeg has no libx265")
    path = ffmpeg_clip(media, f"hevc-{pixels}", *VIDEO, *AUDIO_48K, "-c:v", "libx265", "-pix_fmt", pixels,
                       "-x265-params", "log-level=error", "-c:a", "aac")
    level = ffprobe_level(path)
    assert probed_codecs(path) == [f"hvc1.{profile}.{compatibility}.L{level}.{constraints}", "mp4a.40.2"]


def test_hevc_string_fields() -> None:
    # ISO/IEC 14496-15 E.5's examples: Main profile, Main tier, level 3.1, progressive and frame only.
    main = bytes([0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93])
    assert hevc_string(main) == "hvc1.1.6.L93.90"
    # Profile space 1 ("A"), High tier, every constraint byte set: none left out.
    high = bytes([0x40 | 0x20 | 0x02, 0x20, 0, 0, 0x01, 0xB0, 1, 2, 3, 4, 5, 120])
    assert hevc_string(high) == "hvc1.A2.80000004.H120.B0.01.02.03.04.05"
    # No constraint flags at all: the element is left out.
    assert hevc_string(bytes([0x01, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60])) == "hvc1.1.6.L60"
    # From an hvcC record (its version byte, then the same twelve bytes).
    assert hevc_codec(None, None, bytes([1]) + main + bytes(10)) == "hvc1.1.6.L93.90"
    # Annex B: emulation prevention bytes (00 00 03) are not part of the profile_tier_level.
    sps = b"\x00\x00\x00\x01\x42\x01\x01" + b"\x01\x60\x00\x00\x03\x00\x90\x00\x00\x03\x00\x00\x03\x00\x5d\xa0"
    assert hevc_codec(None, None, sps) == "hvc1.1.6.L93.90"
    # Without an SPS: from the profile name, as before.
    assert hevc_codec("Main", 93, None) == "hvc1.1.6.L93.B0"
    assert hevc_codec("Rext", 93, None) is None


def test_aac_object_types() -> None:
    assert aac_codec(bytes([0x2B, 0x92, 0x08, 0x00]), None) == "mp4a.40.5"  # AudioSpecificConfig: SBR
    assert aac_codec(bytes([0xEB, 0x0A]), None) == "mp4a.40.29"  # PS (object type 29)
    assert aac_codec(None, "HE-AAC") == "mp4a.40.5"  # ADTS says LC; the decoder found SBR
    assert aac_codec(None, "HE-AACv2") == "mp4a.40.29"


def test_mpeg_audio_and_video_versions() -> None:
    assert mp2_codec(48000) == mp2_codec(44100) == mp2_codec(32000) == mp2_codec(None) == "mp4a.6b"
    assert mp2_codec(22050) == mp2_codec(24000) == mp2_codec(16000) == "mp4a.69"
    assert mpeg2_video_codec(None, "High") == "mp4v.64"
    assert mpeg2_video_codec(None, None) == "mp4v.61"
    # A sequence extension's profile_and_level_indication (Simple, Main level) wins over the name.
    assert mpeg2_video_codec(b"\x00\x00\x01\xb5\x15\x8a\x00\x01", "Main") == "mp4v.60"
    assert codec_string("mp3float", None, None, None) is None  # a decoder's name is not a codec's


@pytest.mark.parametrize("name", ["h264-mp3", "mpeg2-mp2", "h264-ac3"])
def test_both_paths_send_the_same_codecs(name: str, media: MediaCache, tmp_path: Path, free_port: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    args, encoder, expected = next((c[1], c[2], c[3]) for c in CLIPS if c[0] == name)
    if not ffmpeg_has(encoder):
        pytest.skip(f"this ffmpeg has no {encoder}")
    source = ffmpeg_clip(media, name, *args)
    sent = {}
    for path in ("fast-path", "pyav"):
        monkeypatch.setenv("HLS_SEGMENT_FAST_PATH", "1" if path == "fast-path" else "0")
        with Listener(free_port) as listener:
            result = run_segmenter(source, "1", tmp_path / path, free_port)
        assert result.returncode == 0, result.stderr
        sent[path] = {m.codecs for m in listener.messages}
    assert sent["fast-path"] == sent["pyav"] == {",".join(expected)}


@pytest.mark.slow
def test_mp3_and_h264_get_a_master_with_both_codecs(
    tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, s3: BaseClient, bucket: str
) -> None:
    if not ffmpeg_has("libmp3lame"):
        pytest.skip("this ffmpeg has no libmp3lame")
    source = ffmpeg_clip(media, "h264-mp3-long", *VIDEO, *AUDIO_48K, *H264, "-c:a", "libmp3lame", seconds=6)
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path)]).start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        runs = []
        for name, fast in (("low", "1"), ("high", "0")):  # two renditions, one per path: a master
            args = [sys.executable, "-m", "segmenter", str(source), "2", str(tmp_path / name), name,
                    f"{name}.m3u8", "", bucket, "mp3", "--uploader", f"127.0.0.1:{daemon.port}"]
            runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**env, "HLS_SEGMENT_FAST_PATH": fast}))
        for run in runs:
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 0, stderr
        base = seaweed.object_url(bucket, "mp3")

        def final_master() -> str | None:
            reply = http_get(f"{base}/master.m3u8")
            if reply.status != 200:
                return None
            read_playlist(f"{base}/master.m3u8", reply.text)
            return reply.text if reply.text.count("#EXT-X-STREAM-INF") == 2 else None

        master = wait_for(final_master, message="the master with both renditions", timeout=30)
    finally:
        daemon.kill()
    assert master.count('CODECS="avc1.64001f,mp4a.40.34"') == 2, master
    assert "Traceback" not in daemon.log()
