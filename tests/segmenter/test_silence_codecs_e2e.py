"""A pause in an MP2, MP3, AC-3 or E-AC-3 track while the video goes on, end to end: ffmpeg makes
the input as a live encoder would, hls-segment (the fast path for each codec, the PyAV path for
two) fills the pause with silent frames of the track's own format, hls-uploadd publishes it to
SeaweedFS, every playlist version is checked, and the audio has no hole: every input frame is
kept, ffmpeg decodes the playlist without an error to as many samples as the timeline holds, and
Chromium plays it to its end (native HLS and hls.js) where it can play the codec at all."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.browser import chromium
from tests.support.media import MediaCache, probe
from tests.support.seaweed import SeaweedServer
from tests.support.segmenter_media import segment_files

from .ts_surgery import AUDIO_PID, remove_frames
from .test_messy_input import (
    SECONDS,
    Published,
    assert_audio_pause_filled,
    audio_frames,
    assert_every_packet_kept,
    assert_within_target,
    ffmpeg_plays,
    played_to_the_end,
    publish,
)

SAMPLES = {"aac": 1024, "mp2": 1152, "mp3": 1152, "ac3": 1536, "eac3": 1536}  # per frame, at 48 kHz

# Codecs whose audio Chromium decodes from MPEG-TS HLS, native and with hls.js (Debian's Chromium
# decodes no AC-3 or E-AC-3: it plays their video alone; hls.js stops at E-AC-3 with a
# fragParsingError, pause or no pause).
CHROMIUM_PLAYS = {"aac", "mp2", "mp3"}


def publish_filled(source: Path, segment_seconds: str, tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> Published:
    """``source`` published (``publish``), with no track named as not filled, no EXTINF over
    the target, no discontinuity, and every video packet of the input in the segments."""
    published = publish(source, segment_seconds, tmp_path, seaweed, bucket)
    assert "not filled" not in published.stderr, published.stderr
    assert_within_target(published, segment_seconds)
    assert "#EXT-X-DISCONTINUITY\n" not in published.text
    assert_every_packet_kept(source, published, ("video",))
    return published


def assert_plays(published: Published, *, in_chromium: bool = True) -> None:
    """ffmpeg's HLS demuxer reads the published stream without an error and, ``in_chromium``,
    Chromium plays it to its end (its EXTINFs' sum) with native HLS and with hls.js."""
    assert ffmpeg_plays(published.playlist_url) == ""
    if not in_chromium:
        return
    chromium()
    total = sum(segment.duration for segment in published.playlist.segments)
    for engine, status in played_to_the_end(published.page_url).items():
        ended = re.fullmatch(r"Ended \((native HLS|hls\.js)\) at ([0-9.]+) s", status)
        assert ended, f"{engine}: {status}"
        assert float(ended.group(2)) == pytest.approx(total, abs=1.0), status


@pytest.mark.parametrize("codec, segmenter_path, segment_seconds", [
    ("mp2", "fast-path", "2"), ("mp3", "fast-path", "2"), ("ac3", "fast-path", "2"), ("eac3", "fast-path", "2"),
    ("mp3", "pyav", "2"), ("ac3", "pyav", "2"),
    # Segments shorter than the audio's lead over the video: the first audio after the pause is
    # held back for the next segment, and the silence still reaches it.
    ("mp2", "fast-path", "1"), ("aac", "fast-path", "1"), ("aac", "pyav", "1"),
    # MP4 (the PyAV path, read from a file): the demuxer gives the last frame before the pause
    # the pause's length as its duration; a frame lasts its samples.
    ("aac", "mp4", "2"), ("mp3", "mp4", "2"),
], indirect=["segmenter_path"])
def test_an_audio_pause_of_each_codec_is_filled_with_its_silence(
    codec: str, segmenter_path: str, segment_seconds: str, tmp_path: Path, media: MediaCache,
    seaweed: SeaweedServer, bucket: str,
) -> None:
    source = media.encoder_ts(seconds=SECONDS, audio_gap=(5, 11), audio_codec=codec)
    if segmenter_path == "mp4":
        mp4 = tmp_path / "in.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", str(source), "-c", "copy", str(mp4)],
                       check=True, timeout=60)
        source = mp4
    published = publish(source, segment_seconds, tmp_path, seaweed, bucket, by_path=segmenter_path == "mp4")
    assert ("MPEG-TS fast path: cutting" in published.stderr) == (segmenter_path == "fast-path"), published.stderr
    assert "pauses are not filled" not in published.stderr and "not filled with silence" not in published.stderr
    assert_within_target(published, segment_seconds)
    assert "#EXT-X-DISCONTINUITY\n" not in published.text
    if segmenter_path == "mp4":
        # Timed on the MP4's own clock: frames are compared by their bytes (AAC without the ADTS
        # header the segments carry it in), the hole by samples.
        header = 7 if codec == "aac" else 0
        assert not Counter(data for _, data in audio_frames(source)) - Counter(
            data[header:] for segment in segment_files(published.out_dir) for _, data in audio_frames(segment))
        pcm = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", published.playlist_url, "-map", "0:a",
                              "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, timeout=120)
        total = sum(segment.duration for segment in published.playlist.segments)
        assert abs(len(pcm.stdout) // 2 - total * 48000) <= 2 * SAMPLES[codec], (len(pcm.stdout) // 2, total)
    else:
        assert_every_packet_kept(source, published, ("video",))
        assert_audio_pause_filled(source, published, SAMPLES[codec])
    total = sum(segment.duration for segment in published.playlist.segments)
    assert total == pytest.approx(probe(source).duration_s, abs=0.1)
    assert_plays(published, in_chromium=codec in CHROMIUM_PLAYS)


@pytest.mark.parametrize("codec, segmenter_path", [
    ("aac", "fast-path"), ("aac", "pyav"), ("mp2", "fast-path"), ("mp3", "pyav"), ("ac3", "pyav"),
], indirect=["segmenter_path"])
def test_audio_that_starts_after_the_video_is_filled_from_the_first_segment(
    codec: str, segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Without audio in its first segment, hls.js sets up no audio buffer and fails
    # (bufferAppendError) at the segment that brings the first audio; ffmpeg's HLS demuxer gives
    # that audio's first two frames one timestamp.
    source = media.encoder_ts(seconds=SECONDS, audio_gap=(0, 3), audio_codec=codec)
    published = publish_filled(source, "2", tmp_path, seaweed, bucket)
    assert_audio_pause_filled(source, published, SAMPLES[codec])  # every input frame, and no hole
    first_key = probe(source).video.keyframe_pts[0]  # type: ignore[union-attr]
    first_audio = min(pts for pts, _ in audio_frames(segment_files(published.out_dir)[0]))
    assert first_audio == first_key, (first_audio, first_key)
    assert_plays(published, in_chromium=codec in CHROMIUM_PLAYS)


@pytest.mark.parametrize("segmenter_path, late", [("pyav", 0.9), ("pyav", 1.2), ("fast-path", 0.9)],
                         indirect=["segmenter_path"])
def test_audio_starting_late_gets_a_frame_in_a_first_segment_shorter_than_the_interleave(
    segmenter_path: str, late: float, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # 1-s GOPs cut at 1 s: segment 1 closes before any filler is due, and its audio (0.9 s late)
    # comes after its cut. Segment 1 once carried no audio and hls.js failed (bufferAppendError).
    # The PyAV path, which cannot read ahead, gives it one silent frame where the track's pause
    # began and fills the rest of the pause before the first frame; the fast path reads that
    # frame's PTS ahead and fills up to it at once.
    source = media.encoder_ts(seconds=8, gop_frames=25, audio_gap=(0, late))
    published = publish_filled(source, "1", tmp_path, seaweed, bucket)
    assert_audio_pause_filled(source, published)  # every input frame, and no hole
    first_key = probe(source).video.keyframe_pts[0]  # type: ignore[union-attr]
    assert [pts for pts, _ in audio_frames(segment_files(published.out_dir)[0])][:1] == [first_key]
    assert_plays(published)


def test_audio_starting_late_after_an_encoder_restart_is_filled_from_the_new_timeline_start(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # An encoder restarted (its timestamps start again) whose audio comes up 3 s after its video.
    # The new timeline's first segment once carried no audio: a hole of 3 s, and hls.js stalled
    # in it on the fast path. It is filled from the new timeline's start, as at the program's.
    again = media.encoder_ts(seconds=8, audio_gap=(0, 3))
    source = tmp_path / "restarted.ts"
    source.write_bytes(media.encoder_ts(seconds=8).read_bytes() + again.read_bytes())
    published = publish(source, "2", tmp_path, seaweed, bucket)
    assert_within_target(published, "2")
    assert "not filled" not in published.stderr, published.stderr
    marks = [segment.discontinuity for segment in published.playlist.segments]
    assert marks.count(True) == 1, published.text
    after = segment_files(published.out_dir)[marks.index(True):]
    frames = sorted(pts for path in after for pts, _ in audio_frames(path))
    assert frames[0] == probe(after[0]).video.keyframe_pts[0]  # type: ignore[union-attr]
    assert all(0 < b - a <= 2 * 1920 for a, b in zip(frames, frames[1:])), "a hole in the audio"
    assert {pts for pts, _ in audio_frames(again)} <= set(frames)  # every frame of the restarted encoder's
    assert_plays(published)


def test_an_implicitly_signalled_he_aac_track_is_filled_in_the_format_its_frame_headers_give(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Its ADTS headers say AAC-LC at 24 kHz; the probe says HE-AAC at 48 kHz, which FFmpeg's aac
    # encoder cannot make. The frames' own headers decide the silent frame, on both paths.
    source = tmp_path / "in.ts"
    source.write_bytes(remove_frames(media.implicit_he_aac_ts(seconds=SECONDS).read_bytes(), AUDIO_PID,
                                     set(range(5, 11)), fps=1))  # the PES of 5 s to 11 s in: a pause
    published = publish_filled(source, "2", tmp_path, seaweed, bucket)
    assert_audio_pause_filled(source, published, 2048)  # 1024 samples at 24 kHz, 2048 at 48 kHz
    assert_plays(published)


def test_a_second_audio_track_starting_late_and_the_first_pausing_are_each_filled(
    segmenter_path: str, tmp_path: Path, media: MediaCache, seaweed: SeaweedServer, bucket: str,
) -> None:
    # Two AAC tracks (two languages): the second starts 4 s after the video, the first pauses
    # from 8 s to 12 s; segments of about 1 s. Each track is filled on its own.
    source = media.encoder_ts(seconds=SECONDS, audio_gap=(8, 12), second_audio_gap=(0, 4))
    published = publish_filled(source, "1", tmp_path, seaweed, bucket)
    first_key = probe(source).video.keyframe_pts[0]  # type: ignore[union-attr]
    frame = SAMPLES["aac"] * 90000 // 48000
    for track in (0, 1):
        want = Counter(data for pts, data in audio_frames(source, track) if pts + frame > first_key)
        got = sorted(f for segment in segment_files(published.out_dir) for f in audio_frames(segment, track))
        assert not want - Counter(data for _, data in got), f"track {track}: input frames missing"
        assert got[0][0] < first_key + frame, (track, got[0][0], first_key)  # from segment 1's start on
        steps = [b[0] - a[0] for a, b in zip(got, got[1:])]
        assert all(frame <= step <= frame + 1 for step in steps), (track, sorted(set(steps)))
    assert_plays(published)
