"""A resolution or frame-rate change inside one rendition (RFC 8216 4.3.2.3): an encoder
reconfigured live, same codec, clock going on. The new SPS values reach the index messages and
the master playlist, the segment that starts with the new SPS is cut exactly at its first
keyframe and marked as a discontinuity, and ffmpeg reads the published stream to its end.

The inputs are two ffmpeg encodes of one source, the second with ``-output_ts_offset`` so that
its timestamps follow the first's, concatenated as MPEG-TS bytes (same PIDs, same PMT).
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from segmenter.codecs import codec_string, h264_sps_parameters, hevc_sps_parameters
from segmenter.randomaccess import ParameterSet, ParameterWatch, VideoCodec, sequence_parameter_set
from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache
from tests.support.pipeline import PlaylistPoller
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import segment_into_listener
from tests.support.viewer import http_get, read_playlist, wait_for

SEGMENT_SECONDS = "2"
PART_SECONDS = 5  # the change is about 5 s in: between the 2-s grid points 4 and 6 s in
TICKS = 90000
AUDIO_DELAY_S = 0.05

# kind -> the two parts' (size, frame rate)
CHANGES = {
    "size": (("320x240", 25), ("640x360", 25)),
    "rate": (("320x240", 25), ("320x240", 50)),
}


def encode(path: Path, size: str, fps: int, *, offset_s: float = 0, codec: str = "h264") -> Path:
    """``PART_SECONDS`` of testsrc2 and a tone, a keyframe every second, H.264 High (or HEVC).
    With an ``offset_s``, the tone starts AUDIO_DELAY_S after the picture: the AAC encoder's
    priming would make it overlap the first part's last audio frame."""
    if path.exists():
        return path
    video = (["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
              "-x264-params", f"keyint={fps}:min-keyint={fps}:scenecut=0"] if codec == "h264" else
             ["-c:v", "libx265", "-preset", "veryfast", "-x265-params",
              f"keyint={fps}:min-keyint={fps}:scenecut=0:log-level=error"])
    tmp = path.with_name(f".{path.name}.part")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={PART_SECONDS}",
         *(["-itsoffset", str(AUDIO_DELAY_S)] if offset_s else []),
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={PART_SECONDS}",
         *video, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
         "-output_ts_offset", str(offset_s), "-f", "mpegts", str(tmp)],
        check=True, timeout=120,
    )
    os.replace(tmp, path)
    return path


def ffmpeg_decodes(url: str) -> str:
    """What ffmpeg's demuxers and decoders say, reading ``url`` to its end (empty: fine). Frames
    keep their timestamps (``-fps_mode passthrough``, 90 kHz encoder time base): at the default,
    the 1/25 s time base ffmpeg picks from the first frames cannot hold 50-fps frames apart."""
    result = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", url, "-map", "0",
                             "-fps_mode", "passthrough", "-enc_time_base:v", "1:90000", "-f", "null", "-"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def first_pts(path: Path) -> float:
    """The presentation time of a file's first video packet, in seconds."""
    with av.open(str(path)) as container:
        return next(p.pts for p in container.demux(video=0) if p.pts is not None) / TICKS


def changing_ts(media: MediaCache, kind: str) -> tuple[Path, float, float]:
    """The two parts of ``CHANGES[kind]`` back to back, as one MPEG-TS input, the second one's
    first frame shown one frame after the first one's last; with the first frame's and the
    second part's first keyframe's presentation times, in seconds."""
    (size1, fps1), (size2, fps2) = CHANGES[kind]
    first = encode(media.directory / f"part-{size1}-{fps1}-0.ts", size1, fps1)
    start = first_pts(first)
    # The muxer's start and the encoder's B-frame delay depend on the frame rate and the offset:
    # try the offset that would be right, then correct it by what came out.
    offset = PART_SECONDS
    for _ in range(3):
        second = encode(media.directory / f"part-{size2}-{fps2}-{offset}.ts", size2, fps2, offset_s=offset)
        error = round(start + PART_SECONDS - first_pts(second), 6)
        if not error:
            break
        offset = round(offset + error, 6)
    assert not error, f"no offset puts the second part right after the first ({error} s off)"
    path = media.directory / f"parameter-change-{kind}.ts"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(first.read_bytes() + second.read_bytes())
        # ffmpeg must read the input itself without a word, or the published stream's test means nothing.
        assert ffmpeg_decodes(str(tmp)) == "", tmp
        os.replace(tmp, path)
    return path, start, first_pts(second)


def first_keyframe(path: Path) -> tuple[float, int, int, float]:
    """(pts in seconds, width, height, frame rate from the pts steps) of a file's first video frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = []
        for frame in container.decode(stream):
            frames.append(frame)
            if len(frames) == 3:
                break
    pts = sorted(f.pts for f in frames)
    return frames[0].pts / TICKS, frames[0].width, frames[0].height, TICKS / (pts[1] - pts[0])


# -- the SPS parsers on real encodes --------------------------------------------------------------


@pytest.mark.parametrize("codec, size, fps", [
    ("h264", "320x240", 25), ("h264", "640x360", 50), ("h264", "854x480", 30),
    ("hevc", "640x360", 25), ("hevc", "426x240", 50),
])
def test_the_sps_gives_the_size_after_cropping_the_vui_frame_rate_and_the_probes_codec_string(
    codec: str, size: str, fps: int, media: MediaCache
) -> None:
    path = encode(media.directory / f"sps-{codec}-{size}-{fps}.ts", size, fps, codec=codec)
    judged = VideoCodec.H264 if codec == "h264" else VideoCodec.HEVC
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        probed = codec_string(context.name, context.extradata, context.profile, context.level)
        packet = next(p for p in container.demux(stream) if p.is_keyframe)
        sps = sequence_parameter_set(judged, bytes(packet))
    assert sps is not None
    parameters = (h264_sps_parameters if codec == "h264" else hevc_sps_parameters)(sps)
    assert parameters is not None
    assert parameters.resolution == size == f"{context.width}x{context.height}"
    assert parameters.frame_rate == fps
    assert parameters.codec == probed is not None


def test_a_truncated_or_foreign_nal_unit_gives_no_parameters(media: MediaCache) -> None:
    path = encode(media.directory / "sps-h264-320x240-25.ts", "320x240", 25)
    with av.open(str(path)) as container:
        packet = next(p for p in container.demux(video=0) if p.is_keyframe)
    sps = sequence_parameter_set(VideoCodec.H264, bytes(packet))
    assert sps is not None and h264_sps_parameters(sps) is not None
    assert h264_sps_parameters(sps[:6]) is None
    assert hevc_sps_parameters(sps) is None
    assert h264_sps_parameters(b"\x68\xee\x3c\x80") is None  # a PPS
    assert sequence_parameter_set(VideoCodec.MPEG2, bytes(packet)) is None


def test_without_vui_timing_the_frame_rate_is_measured_from_decode_timestamps() -> None:
    from segmenter.codecs import VideoParameters

    measured = ParameterSet(VideoParameters("avc1.64001e", 640, 360, None), Fraction(1, TICKS))
    assert measured.frame_rate is None
    for dts in (0, 3600, 5400, 7200, 9000):  # a late first frame: the smallest step counts
        measured.frame(dts)
    assert measured.frame_rate == 50.0
    measured.frame(9900)  # after RATE_FRAMES frames no more is measured... (5 so far: still measuring)
    assert measured.frame_rate == 100.0
    for dts in range(20000, 40000, 900):
        measured.frame(dts)
    assert not measured.measuring and measured.frame_rate == 100.0
    announced = ParameterSet(VideoParameters("avc1.64001e", 640, 360, 25.0), Fraction(1, TICKS))
    announced.frame(0)
    announced.frame(1800)
    assert announced.frame_rate == 25.0 and not announced.measuring


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_the_watch_reports_a_change_once_at_the_first_keyframe_with_new_parameters(
    kind: str, media: MediaCache
) -> None:
    watch = ParameterWatch(VideoCodec.H264, Fraction(1, TICKS))
    changes = []
    source, _, change_s = changing_ts(media, kind)
    with av.open(str(source)) as container:
        for packet in container.demux(video=0):
            if packet.is_keyframe and watch.keyframe(bytes(packet)):
                changes.append(round(packet.pts / TICKS, 3))
            watch.frame(packet.dts)
    assert changes == [round(change_s, 3)]
    (size1, fps1), (size2, fps2) = CHANGES[kind]
    assert watch.first is not None and watch.current is not None
    assert (watch.first.parameters.resolution, watch.first.frame_rate) == (size1, fps1)
    assert (watch.current.parameters.resolution, watch.current.frame_rate) == (size2, fps2)


# -- hls-segment: the messages --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_messages_follow_the_new_parameters_from_the_segment_cut_at_the_change(
    kind: str, segmenter_path: str, media: MediaCache, tmp_path: Path, free_port: int
) -> None:
    source, _, change_s = changing_ts(media, kind)
    messages, files, log = segment_into_listener(source, SEGMENT_SECONDS, tmp_path, free_port, segmenter_path)
    starts = [first_keyframe(f) for f in files]
    changed = next(i for i, (start, *_) in enumerate(starts) if start >= change_s - 0.001)
    assert starts[changed][0] == pytest.approx(change_s, abs=0.001)  # cut exactly at the change
    assert [m.discontinuity for m in messages[1:]] == [i == changed for i in range(1, len(messages))]
    (size1, fps1), (size2, fps2) = CHANGES[kind]
    for i, (message, (_, width, height, rate)) in enumerate(zip(messages, starts)):
        size, fps = (size1, fps1) if i < changed else (size2, fps2)
        assert (message.resolution, message.frame_rate) == (size, fps), i
        assert (f"{width}x{height}", round(rate)) == (size, fps), i  # what the segment holds
    old_codec = messages[0].codecs.split(",")[0]
    new_codec = messages[-1].codecs.split(",")[0]
    assert old_codec.startswith("avc1.64") and new_codec.startswith("avc1.64")
    assert old_codec != new_codec  # x264 picked a higher level for more pixels per second
    assert messages[changed - 1].codecs == messages[0].codecs
    assert messages[changed].codecs == messages[-1].codecs == messages[0].codecs.replace(old_codec, new_codec)
    assert f"segment {messages[changed].last_segment} starts with new video parameters" in log
    assert "new timeline" not in log, log


# -- end to end: hls-uploadd, SeaweedFS, the master, ffmpeg -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_the_change_is_published_as_a_discontinuity_and_the_master_follows(
    kind: str, segmenter_path: str, media: MediaCache, tmp_path: Path, seaweed: SeaweedServer, bucket: str
) -> None:
    (size1, fps1), (size2, fps2) = CHANGES[kind]
    source, start_s, change_s = changing_ts(media, kind)
    renditions = {"changing": source,
                  "steady": encode(media.directory / f"part-{size1}-{fps1}-0.ts", size1, fps1)}
    base = seaweed.object_url(bucket, "program")
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path), "--playlist-type", "event"]).start()
    poller = PlaylistPoller(f"{base}/changing.m3u8", f"{base}/", playlist_type="event", stop_at_endlist=True)
    poller.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        runs = [subprocess.Popen([sys.executable, "-m", "segmenter", str(source), SEGMENT_SECONDS,
                                  str(tmp_path / name), name, f"{name}.m3u8", "", bucket, "program",
                                  "--uploader", f"127.0.0.1:{daemon.port}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for name, source in renditions.items()]
        for run in runs:
            _, stderr = run.communicate(timeout=180)
            assert run.returncode == 0, stderr
        poller.join(60)
        assert not poller.is_alive(), "no playlist with ENDLIST"

        def final_master() -> str | None:
            reply = http_get(f"{base}/master.m3u8")
            if reply.status != 200:
                return None
            read_playlist(f"{base}/master.m3u8", reply.text)
            return reply.text if f"RESOLUTION={size2}" in reply.text or fps2 != fps1 else None

        master = wait_for(final_master, message="the master with the new parameters", timeout=30)
    finally:
        poller.stop()
        daemon.kill()
    assert poller.problems == [] and poller.conformance == [], (poller.problems, poller.conformance)
    playlist = read_playlist(f"{base}/changing.m3u8", poller.texts[-1])
    tagged = [i for i, segment in enumerate(playlist.segments) if segment.discontinuity]
    durations = [segment.duration for segment in playlist.segments]
    elapsed = [sum(durations[:i]) for i in range(len(durations))]
    assert len(tagged) == 1 and elapsed[tagged[0]] == pytest.approx(change_s - start_s, abs=0.01), (tagged, elapsed)
    lines = master.splitlines()
    changing = lines[lines.index("changing.m3u8") - 1]
    assert f"RESOLUTION={size2}" in changing and f"FRAME-RATE={fps2:.3f}" in changing, master
    assert ffmpeg_decodes(f"{base}/changing.m3u8") == ""
