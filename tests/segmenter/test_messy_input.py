"""Messy real input, end to end: keyframes off the grid, missing or far apart, and one track
pausing while the other goes on. ffmpeg makes each input as a live encoder would; hls-segment
(both paths) cuts it, hls-uploadd publishes it to SeaweedFS, every playlist version is read as a
player reads it and checked (tests/support/rfc8216.py), every packet of the input must be in a
segment, and ffmpeg's HLS demuxer, and for the pauses Chromium (native HLS and hls.js), play the
published stream to its end.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import m3u8
import pytest

from segmenter.cutter import DISCONTINUITY_GAP_S
from segmenter.silence import LATE_UNIT_S
from tests.support.browser import chromium, page_status
from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache, probe
from tests.support.pipeline import PlaylistPoller
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import HLS_SEGMENT, INDEX, KEY_PREFIX, PREFIX, segment_files
from tests.support.viewer import read_playlist

from .ts_surgery import AUDIO_PID, VIDEO_PID, remove_frames, remove_packets, shift_pts, strip_pts

pytestmark = pytest.mark.usefixtures("segmenter_path")

SECONDS = 20


@dataclass
class Published:
    playlist: m3u8.M3U8  # the final version, with ENDLIST
    text: str
    stderr: str  # hls-segment's log
    out_dir: Path
    playlist_url: str
    page_url: str


def publish(source: Path, segment_seconds: str, tmp_path: Path, seaweed: SeaweedServer, bucket: str,
            *daemon_args: str, by_path: bool = False) -> Published:
    """``source`` through hls-segment and a real hls-uploadd into ``bucket``, read while live.
    The playlist is an EVENT playlist, so that its last version lists the whole stream.
    ``by_path``: hls-segment reads the file itself (an MP4 needs seeking), not from stdin."""
    base = seaweed.object_url(bucket, KEY_PREFIX)
    out = tmp_path / "out"
    # --keep-segment-files: every packet of the input is looked for in the segment files.
    daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(tmp_path), "--player-page", "--playlist-type",
                                                   "event", "--keep-segment-files", *daemon_args]).start()
    poller = PlaylistPoller(f"{base}/{INDEX}", f"{base}/", playlist_type="event", stop_at_endlist=True)
    poller.start()
    try:
        with open(os.devnull if by_path else source, "rb") as stdin:
            run = subprocess.run(
                [*HLS_SEGMENT, str(source) if by_path else "-", segment_seconds, str(out), PREFIX, INDEX, "", bucket, KEY_PREFIX,
                 "--uploader", f"127.0.0.1:{daemon.port}"],
                stdin=stdin, capture_output=True, text=True, timeout=180,
            )
        assert run.returncode == 0, run.stderr
        poller.join(60)
        assert not poller.is_alive(), "no playlist with ENDLIST"
    finally:
        poller.stop()
        daemon.kill()
    assert poller.problems == [], poller.problems
    assert poller.conformance == [], poller.conformance
    text = poller.texts[-1]
    return Published(read_playlist(f"{base}/{INDEX}", text), text, run.stderr, out, f"{base}/{INDEX}",
                     f"{base}/index.html")


def assert_within_target(published: Published, segment_seconds: str) -> None:
    """EXT-X-TARGETDURATION is ceil(SEGMENT_DURATION) and no EXTINF, rounded as RFC 8216 4.3.3.1
    says (halves up), exceeds it."""
    target = math.ceil(float(segment_seconds))
    assert published.playlist.target_duration == target
    durations = [segment.duration for segment in published.playlist.segments]
    assert all(math.floor(d + 0.5) <= target for d in durations), durations


AAC_FRAME_TICKS = 1024 * 90000 // 48000


def assert_every_packet_kept(source: Path, published: Published, kinds: tuple[str, ...] = ("video", "audio")) -> None:
    """Every packet of the input is in a segment, but for audio frames that end by the first video
    keyframe (segment 1 starts there; the fast path keeps those starting at most 0.5 s before it)."""
    files = segment_files(published.out_dir)
    assert len(files) == len(published.playlist.segments)
    source_info = probe(source)
    first_key = source_info.video.keyframe_pts[0]  # type: ignore[union-attr]
    for kind in kinds:
        want = sorted(getattr(source_info, kind).pts)
        got = sorted(pts for path in files if (stream := getattr(probe(path), kind)) for pts in stream.pts)
        required = [pts for pts in want if kind == "video" or pts + AAC_FRAME_TICKS > first_key]
        assert set(got) <= set(want) and len(got) == len(set(got)), f"{kind}: packets not in the input, or twice"
        assert set(required) <= set(got), f"{kind}: {len(got)} packets in the segments, {len(required)} required"


def audio_frames(path: Path, track: int = 0) -> list[tuple[int, bytes]]:
    """(pts, bytes) of every packet of audio ``track`` (one frame each, as FFmpeg's parsers split them)."""
    with av.open(str(path)) as container:
        return [(packet.pts, bytes(packet)) for packet in container.demux(audio=track) if packet.pts is not None]


def assert_audio_pause_filled(source: Path, published: Published, samples: int = 1024) -> None:
    """The segments' audio has no hole: one frame after the other, ``samples`` samples (at 48 kHz)
    apart, from the first to the last; every input frame is in it (but those before the first
    video keyframe), at its own pts but for the muxer's late unit (at most LATE_UNIT_S of frames
    that followed on from the audio before the pause, moved into it); every other frame is one
    silent frame. Where the resumed audio is off the filler's grid of frames (frames of other
    than the 1024 samples ffmpeg's source gives at a time), less than a frame is left there."""
    frame = samples * 90000 // 48000
    source_info = probe(source)
    first_key = source_info.video.keyframe_pts[0]  # type: ignore[union-attr]
    source_frames = audio_frames(source)
    want = sorted((pts, data) for pts, data in source_frames if pts + frame > first_key)
    got = sorted(frame for path in segment_files(published.out_dir) for frame in audio_frames(path))
    steps = [b[0] - a[0] for a, b in zip(got, got[1:])]
    off_grid = [step for step in steps if not frame <= step <= frame + 1]  # a frame's ticks, rounded
    assert len(off_grid) <= (samples != 1024) and all(frame < step < 2 * frame for step in off_grid), sorted(set(steps))
    assert not Counter(data for _, data in want) - Counter(data for _, data in got), "input frames missing"
    moved = sorted(set(want) - set(got))
    pause = max(zip(want, want[1:]), key=lambda pair: pair[1][0] - pair[0][0])  # the frames around it
    assert len(moved) * frame <= 90000 * LATE_UNIT_S, len(moved)
    assert all(pause[0][0] - 90000 * LATE_UNIT_S < pts <= pause[0][0] for pts, _ in moved), (pause[0][0], moved)
    filler = Counter(data for _, data in got) - Counter(data for _, data in source_frames)
    assert len(filler) == 1 and sum(filler.values()) >= (pause[1][0] - pause[0][0]) // frame - 2, filler
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", published.playlist_url, "-map", "0:a",
                          "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, timeout=120)
    assert pcm.returncode == 0 and not pcm.stderr, pcm.stderr
    count = len(pcm.stdout) // 2
    assert abs(count - len(got) * samples) <= 2 * samples, (count, len(got) * samples)


def decoded(url: str, stream: str) -> list[str]:
    """The MD5 of every frame ffmpeg decodes from ``stream`` (``v`` or ``a``) of ``url`` (a file,
    or a playlist read as a player reads it, segment after segment), in order."""
    result = subprocess.run(["ffmpeg", "-hide_banner", "-v", "quiet", "-i", url, "-map", f"0:{stream}",
                             "-f", "framemd5", "-"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [line.rsplit(",", 1)[1].strip() for line in result.stdout.splitlines() if not line.startswith("#")]


def ffmpeg_plays(url: str) -> str:
    """What ffmpeg's HLS demuxer and the decoders say, reading ``url`` to its end (empty: fine)."""
    result = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


ENGINES = {"native HLS": "?native", "hls.js": "?hls.js"}


def played_to_the_end(page_url: str, engines: tuple[str, ...] = tuple(ENGINES)) -> dict[str, str]:
    """Chromium plays the page natively (no fallback to hls.js) and with hls.js (or ``engines``
    of those), four times real time: engine -> the page's last status ("Ended (ENGINE) at T s",
    or the error that stopped it)."""
    statuses = {engine: page_status(page_url + ENGINES[engine], r"Ended .*|Error .*", wait_s=60, playback_rate=4)
                for engine in engines}
    for engine, status in statuses.items():
        assert not status.startswith(("Ended", "Playing")) or f"({engine}" in status, (engine, status)
    return statuses


@pytest.mark.parametrize("case, params, segment_seconds", [
    # One GOP of 5 s in a 2-s GOP stream.
    ("long GOP", dict(keyframes_at=(0, 2, 4, 9, 11, 13, 15, 17, 19)), "2"),
    # The same with B-frames: a cut without a keyframe lands on a P-frame whose B-frames follow
    # it in decode order and are shown before it.
    ("long GOP, B-frames", dict(keyframes_at=(0, 2, 4, 9, 11, 13, 15, 17, 19), b_frames=3), "2"),
    # Keyframes every 49 frames at 25 fps: 40 ms earlier each GOP, drifting across the grid.
    ("GOP off the grid", dict(gop_frames=49), "2"),
    # The keyframe at 8 s lost.
    ("missing keyframe", dict(keyframes_at=(0, 2, 4, 6, 10, 12, 14, 16, 18)), "2"),
    # A GOP that does not divide SEGMENT_DURATION: 2-s GOPs cut at 3 s.
    ("GOP not dividing", dict(gop_frames=50), "3"),
    # Half-second segments: target 1.
    ("short segments", dict(gop_frames=12, fps=24), "0.5"),
])
def test_keyframe_patterns_never_break_the_target_duration(
    case: str, params: dict, segment_seconds: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer,
    bucket: str,
) -> None:
    source = media.encoder_ts(seconds=SECONDS, **params)
    published = publish(source, segment_seconds, tmp_path, seaweed, bucket)
    assert_within_target(published, segment_seconds)
    assert not any(segment.discontinuity for segment in published.playlist.segments)
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).video.duration_s, abs=0.05)  # type: ignore[union-attr]
    assert_every_packet_kept(source, published)
    assert ffmpeg_plays(published.playlist_url) == ""
    forced = re.findall(r"segment \d+ starts without a keyframe", published.stderr)
    if case == "GOP off the grid":
        assert not forced  # a keyframe 40 ms early is cut on, not waited past
    if case in ("long GOP", "long GOP, B-frames", "missing keyframe"):
        assert forced, published.stderr  # and said once, with the fix
    if case == "long GOP, B-frames" and chromium() is not None:
        # Pictures shown before the first one of their segment: players place them by timestamp.
        for status in played_to_the_end(published.page_url).values():
            ended = re.fullmatch(r"Ended \((native HLS|hls\.js)\) at ([0-9.]+) s", status)
            assert ended, status
            assert float(ended.group(2)) == pytest.approx(total, abs=1.0), status


@pytest.mark.parametrize("gap, b_frames", [
    ("video", 0), ("audio", 0),
    # With B-frames, the encoder dates the first pictures after a video pause with decoding times
    # from before it (DTS 6.4 s for a picture shown at 11.5 s): the muxer sends them before the
    # audio of the pause. They decide no cut; the pause is cut on the audio as without B-frames.
    ("video", 3), ("audio", 3),
])
def test_a_track_pausing_while_the_other_goes_on_is_no_discontinuity(
    gap: str, b_frames: int, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    source = media.encoder_ts(seconds=SECONDS, b_frames=b_frames, **{f"{gap}_gap": (5, 11)})
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert "#EXT-X-DISCONTINUITY\n" not in published.text
    assert "new timeline" not in published.stderr, published.stderr
    drops = [line for line in published.stderr.splitlines() if "dropping" in line]
    assert all("before the first video keyframe" in line for line in drops), drops
    if gap == "audio":
        assert_every_packet_kept(source, published, ("video",))
        assert_audio_pause_filled(source, published)
    else:
        assert_every_packet_kept(source, published)
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).duration_s, abs=0.1)
    assert ffmpeg_plays(published.playlist_url) == ""
    if chromium() is None:
        pytest.skip("no Chromium to play the stream in")
    # Both stop at a hole in the audio (native HLS on the input file itself): the audio pause
    # must have come out filled with silence in each segment whose time it covers. Chromium's
    # native HLS also stalls on the pictures dated from before a video pause by a B-frame encoder,
    # whoever cuts them (ffmpeg's own HLS muxer's output of that input stalls the same way).
    stalls = gap == "video" and b_frames  # native HLS: not played, it would wait out its 60 s
    for engine, status in played_to_the_end(published.page_url, ("hls.js",) if stalls else tuple(ENGINES)).items():
        ended = re.fullmatch(r"Ended \((native HLS|hls\.js)\) at ([0-9.]+) s", status)
        assert ended, f"{engine}: {status}"
        assert float(ended.group(2)) == pytest.approx(total, abs=1.0), status


def test_joining_mid_gop_starts_segment_one_at_the_first_video_keyframe(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    whole = media.encoder_ts(seconds=12)
    data = whole.read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(data[len(data) // 12 // 188 * 188:])  # about 1 s in: mid-GOP, audio first
    published = publish(joined, "2", tmp_path, seaweed, bucket)
    first = probe(segment_files(published.out_dir)[0])
    assert first.video is not None and first.audio is not None
    keyframe = first.video.keyframe_pts[0]
    assert min(first.video.pts) == keyframe
    # PyAV hands over each AAC frame with its duration: those ending after the keyframe are kept.
    # The fast path sees PES packets without one: those starting at most 0.5 s before it.
    slack = 1024 * 90000 // 48000 if segmenter_path == "pyav" else 45000
    assert min(first.audio.pts) >= keyframe - slack
    assert ffmpeg_plays(published.playlist_url) == ""
    if chromium() is None:
        pytest.skip("no Chromium to play the stream in")
    for status in played_to_the_end(published.page_url).values():
        assert re.fullmatch(r"Ended \((native HLS|hls\.js)\) at [0-9.]+ s", status), status


@pytest.mark.parametrize("case", ["frames 60-62 lost", "video pause under INTERLEAVE_S"])
def test_frames_missing_right_before_the_limit_never_break_the_target_duration(
    case: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # One keyframe in 20 s at SEGMENT_DURATION 2: every later cut is made without a keyframe,
    # before the frame that would reach 2.5 s. Frames missing right there (the TS packets of
    # frames 60-62 lost, or the video pausing from 2.2 s to 2.9 s while the audio goes on) made
    # the next frame come past the limit: a 2.52-s segment, EXTINF 3 over a target of 2.
    if case == "frames 60-62 lost":
        source = tmp_path / "lost.ts"
        source.write_bytes(remove_frames(media.encoder_ts(seconds=SECONDS, keyframes_at=(0,)).read_bytes(),
                                         VIDEO_PID, {60, 61, 62}))
    else:
        source = media.encoder_ts(seconds=SECONDS, keyframes_at=(0,), video_gap=(2.2, 2.9))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert not any(segment.discontinuity for segment in published.playlist.segments)
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).duration_s, abs=0.1)
    assert_every_packet_kept(source, published)
    # The published stream, read segment after segment, decodes to the input's pictures.
    assert decoded(published.playlist_url, "v") == decoded(str(source), "v")


def left_out_lines(published: Published) -> list[str]:
    """hls-segment's lines saying a stream was left out of the segments for want of a packet."""
    said = "sent no packet while the input was probed, so its sample rate is unknown: left out"
    return [line for line in published.stderr.splitlines() if said in line]


def test_a_video_stream_that_never_sends_leaves_segments_cut_on_the_audio_clock(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # The PMT lists a video stream (the one segments are cut on) that sends nothing, and the
    # audio's first PES has no PTS. The audio waits DISCONTINUITY_GAP_S for a first keyframe,
    # then segments are cut on its clock, every target, and the run says why, once.
    data = remove_packets(media.encoder_ts(seconds=SECONDS).read_bytes(), VIDEO_PID, set(range(10**6)))
    source = tmp_path / "no-video.ts"
    source.write_bytes(strip_pts(data, AUDIO_PID, 1))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    waited = DISCONTINUITY_GAP_S - 2  # audio held for a first keyframe, then dropped up to one target back
    total = sum(segment.duration for segment in published.playlist.segments)
    assert SECONDS - waited - 1 < total <= SECONDS, total
    assert len(published.playlist.segments) >= total // 2
    warnings = [line for line in published.stderr.splitlines() if "cut on the other streams' clock" in line]
    assert len(warnings) == 1 and "stream #0 (video)" in warnings[0] and "no keyframe" in warnings[0], published.stderr
    # The audio, read segment after segment, decodes to at least what the playlist says (the
    # fast path keeps whole PES packets starting up to JOIN_SLACK_S before segment 1: up to 1 s more).
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", published.playlist_url, "-map", "0:a",
                          "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, timeout=120)
    assert pcm.returncode == 0, pcm.stderr
    assert total * 48000 - 2 * 1024 <= len(pcm.stdout) // 2 <= (total + 1) * 48000, (len(pcm.stdout) // 2, total)


def test_an_audio_stream_that_never_sends_is_left_out_and_the_video_published(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # The PMT lists an AAC stream that sends no packet: nothing says its sample rate or channels,
    # and FFmpeg's muxer refuses every packet of a program holding it. The video is published
    # whole; the stream is left out and named once (on the PyAV path, whichever is asked for).
    source = tmp_path / "no-audio.ts"
    source.write_bytes(remove_packets(media.encoder_ts(seconds=SECONDS).read_bytes(), AUDIO_PID, set(range(10**6))))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert not any(segment.discontinuity for segment in published.playlist.segments)
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).video.duration_s, abs=0.05)  # type: ignore[union-attr]
    assert_every_packet_kept(source, published, ("video",))
    assert decoded(published.playlist_url, "v") == decoded(str(source), "v")
    warnings = left_out_lines(published)
    assert len(warnings) == 1 and f"PID 0x{AUDIO_PID:x}" in warnings[0] and "aac" in warnings[0], published.stderr
    fallback = "MPEG-TS fast path not used: stream #1 sent no packet while the input was probed"
    assert segmenter_path == "pyav" or fallback in published.stderr, published.stderr
    assert "muxer refused" not in published.stderr, published.stderr


SECOND_AUDIO_PID = 0x101  # ffmpeg's MPEG-TS muxer numbers PIDs from 0x100 in stream order
FIRST_AUDIO_PID = 0x100


def two_audio_tracks(media: MediaCache, tmp_path: Path) -> Path:
    """The encoder's AAC track twice (PIDs 0x100 and 0x101), no video: an audio-only input."""
    two = tmp_path / "two-audio.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", str(media.encoder_ts(seconds=SECONDS)),
                    "-map", "0:a", "-map", "0:a", "-c", "copy", "-f", "mpegts", str(two)], check=True, timeout=60)
    return two


def test_audio_frames_without_pts_keep_their_time_and_the_durations_stay_true(
    tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Audio only (the PyAV path on either setting), two tracks, one PES packet without PTS at the
    # start: FFmpeg hands the PyAV path the frames of one track without timestamps. Written so,
    # the muxer timed them itself and refused the track's next timed frame. Each frame is dated
    # from the one before it; the segments' durations stay those of the media, each has one, and
    # the published total is the input's.
    two = two_audio_tracks(media, tmp_path)
    source = tmp_path / "audio-no-first-pts.ts"
    source.write_bytes(strip_pts(two.read_bytes(), FIRST_AUDIO_PID, 1))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert all(segment.duration > 0 for segment in published.playlist.segments), published.text
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).duration_s, abs=2 * AAC_FRAME_TICKS / 90000), published.text
    starts = [probe(path).audio.start_s for path in segment_files(published.out_dir)]
    assert starts == sorted(starts), starts
    # Every frame of both tracks is in a segment, at its own time (FFmpeg's reader dates the
    # frames of the PES packet without PTS back from the next one's).
    for pid in (FIRST_AUDIO_PID, SECOND_AUDIO_PID):
        got = sorted(pts for path in segment_files(published.out_dir) for pts in pid_pts(path, pid))
        assert got == pid_pts(source, pid), f"PID 0x{pid:x}"
    assert "making some up" not in published.stderr, published.stderr


def test_audio_only_input_whose_first_track_never_sends_is_cut_on_the_other_track_from_the_start(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Two audio tracks, no video (the PyAV path on either setting): the first sends nothing. It is
    # left out, said once, and the other track's audio is published whole, cut on its own clock.
    two = two_audio_tracks(media, tmp_path)
    source = tmp_path / "first-audio-silent.ts"
    source.write_bytes(remove_packets(two.read_bytes(), FIRST_AUDIO_PID, set(range(10**6))))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert not any(segment.discontinuity for segment in published.playlist.segments)
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).duration_s, abs=2 * AAC_FRAME_TICKS / 90000), published.text
    got = sorted(pts for path in segment_files(published.out_dir) for pts in pid_pts(path, SECOND_AUDIO_PID))
    assert got == pid_pts(source, SECOND_AUDIO_PID)
    assert ffmpeg_plays(published.playlist_url) == ""
    assert "muxer refused" not in published.stderr, published.stderr
    # The track left out is not the one segments are cut on: the other track is, from the start.
    left_out = left_out_lines(published)
    assert len(left_out) == 1 and f"PID 0x{FIRST_AUDIO_PID:x}" in left_out[0], published.stderr
    assert "the other streams' clock" not in published.stderr, published.stderr


def test_an_audio_reference_whose_pes_packets_carry_no_pts_is_left_out_and_the_other_track_published(
    tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Two audio tracks, no video (the PyAV path on either setting); the first, which segments
    # would be cut on, carries no PTS at all. Read from a pipe, FFmpeg dated its frames from 0,
    # 1.4 s before the other track's: segments alternated between EXTINF 2.02 and 2 and each
    # began before the one before it ended. It is left out, said once; the other track is
    # published whole, at its own times.
    two = two_audio_tracks(media, tmp_path)
    source = tmp_path / "first-audio-untimed.ts"
    source.write_bytes(strip_pts(two.read_bytes(), FIRST_AUDIO_PID))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    said = [line for line in published.stderr.splitlines() if "nothing places it in time: left out" in line]
    assert len(said) == 1 and f"PID 0x{FIRST_AUDIO_PID:x}" in said[0] and "left out" in said[0], published.stderr
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(two).duration_s, abs=2 * AAC_FRAME_TICKS / 90000), published.text
    files = segment_files(published.out_dir)
    for path in files:
        with av.open(str(path)) as segment:
            assert len(segment.streams) == 1, path  # (the muxer numbers the PIDs from 0x100 again)
    got = sorted(pts for path in files for pts in probe(path).audio.pts)  # type: ignore[union-attr]
    assert got == pid_pts(two, SECOND_AUDIO_PID)
    assert ffmpeg_plays(published.playlist_url) == ""


def test_an_audio_track_whose_pes_packets_carry_no_pts_is_left_out_on_both_paths(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # H.264 + AAC whose PES packets carry no PTS: the fast path would copy them as they came
    # (players place them nowhere), so the PyAV path takes the input and leaves the track out.
    source = tmp_path / "audio-untimed.ts"
    source.write_bytes(strip_pts(media.encoder_ts(seconds=SECONDS).read_bytes(), AUDIO_PID))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert_every_packet_kept(source, published, ("video",))
    assert not any(probe(path).audio for path in segment_files(published.out_dir))
    said = [line for line in published.stderr.splitlines() if "nothing places it in time: left out" in line]
    assert len(said) == 1, published.stderr
    assert segmenter_path == "pyav" or f"MPEG-TS fast path not used: PID(s) 0x{AUDIO_PID:x} carry no PTS" \
        in published.stderr, published.stderr
    assert ffmpeg_plays(published.playlist_url) == ""
    if chromium() is None:
        pytest.skip("no Chromium to play the stream in")
    for status in played_to_the_end(published.page_url).values():
        assert re.fullmatch(r"Ended \((native HLS|hls\.js)\) at 20\.0 s", status), status


def test_audio_frames_dated_before_the_ones_before_them_are_kept_or_left_out_alone(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # One audio PES (16 AAC frames) dated 0.1 s early (an encoder's jitter): no new timeline. The
    # fast path copies it as it came. FFmpeg's muxer (the PyAV path) refuses a frame timed at or
    # before the stream's last one: the frames of it overlapping the ones before (4) are left
    # out, said in one line, and counted; the rest of the stream is published.
    source = tmp_path / "audio-jitter.ts"
    source.write_bytes(shift_pts(media.encoder_ts(seconds=SECONDS).read_bytes(), AUDIO_PID, 30, -9000))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert not any(segment.discontinuity for segment in published.playlist.segments)
    assert_every_packet_kept(source, published, ("video",))
    refused = re.findall(r"stream #1: dropping packets for segment \d+: the muxer refused it \(Invalid argument\)",
                         published.stderr)
    assert len(refused) == (segmenter_path == "pyav"), published.stderr
    # Every frame of the input from the first video keyframe on, timed or not as FFmpeg reads it.
    with av.open(str(source)) as container:
        first_key = probe(source).video.keyframe_pts[0]  # type: ignore[union-attr]
        frames = [(packet.pts, bytes(packet)) for packet in container.demux(audio=0) if packet.size]
        start = next(n for n, (pts, _) in enumerate(frames) if pts is not None and pts + AAC_FRAME_TICKS > first_key)
        want = Counter(data for _, data in frames[start:])
    got = Counter(data for path in segment_files(published.out_dir) for _, data in audio_frames(path))
    assert sum((want - got).values()) == (4 if segmenter_path == "pyav" else 0), want - got


def test_an_mp4_whose_timestamps_start_below_zero_is_moved_later_as_a_whole(
    tmp_path: Path, seaweed: SeaweedServer, bucket: str,
) -> None:
    # An MP4 with B-frames and AAC (FFmpeg's demuxer gives its first video DTS -0.08 s, its first
    # audio frame -1024 samples): the PyAV path, reading the file. Each segment's muxer would move
    # its own timestamps (the first segment's by 0.08 s, the others' not), and segment 1 would end
    # after segment 2 starts. The whole input is moved 0.08 s later instead, said once.
    source = tmp_path / "b-frames.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={SECONDS}",
                    "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={SECONDS}",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-c:a", "aac", str(source)],
                   check=True, timeout=120)
    published = publish(source, "2", tmp_path, seaweed, bucket, by_path=True)
    assert_within_target(published, "2")
    assert ffmpeg_plays(published.playlist_url) == ""
    assert len(re.findall(r"timestamps start 0.08 s below 0", published.stderr)) == 1, published.stderr
    ends = []
    for path in segment_files(published.out_dir):
        with av.open(str(path)) as container:
            dts = [packet.dts for packet in container.demux() if packet.dts is not None]
        ends.append((min(dts), max(dts)))
    assert all(later[0] > earlier[1] - 90000 // 25 for earlier, later in zip(ends, ends[1:])), ends


def pid_pts(path: Path, pid: int) -> list[int]:
    """The sorted pts of every packet of ``pid`` in the MPEG-TS file ``path``."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.id == pid]
        return sorted(packet.pts for packet in container.demux(streams) if packet.pts is not None and packet.size)


def test_an_audio_stream_that_starts_after_the_probe_stays_out_and_its_packets_are_counted(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # The PMT's audio stream sends nothing for its first half (past what FFmpeg's probe reads).
    # It is left out of the segments, said once, and its packets, when they come, are dropped
    # and counted; the video is published whole. Copied in from segment 6 on (as the fast path
    # once did), the track joining the stream stopped hls.js (bufferAppendError).
    source = tmp_path / "late-audio.ts"
    source.write_bytes(remove_packets(media.encoder_ts(seconds=SECONDS).read_bytes(), AUDIO_PID, set(range(450))))
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert_every_packet_kept(source, published, ("video",))
    left_out = left_out_lines(published)
    dropped = re.findall(r"stream #1: dropping packets for segment \d+: a stream left out", published.stderr)
    assert len(left_out) == 1 and dropped, published.stderr
    assert not any(probe(path).audio for path in segment_files(published.out_dir))
    assert ffmpeg_plays(published.playlist_url) == ""
    if chromium() is None:
        pytest.skip("no Chromium to play the stream in")
    for status in played_to_the_end(published.page_url).values():
        assert re.fullmatch(r"Ended \((native HLS|hls\.js)\) at 20\.0 s", status), status
