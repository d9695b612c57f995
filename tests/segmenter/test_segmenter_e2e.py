"""hls-segment end to end: PyAV-made media piped into the real command, a real TCP peer."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import av
import pytest

from protocol import Ack, IndexMessage, Reject
from tests.support.listener import Listener, acknowledge
from tests.support.media import MediaCache, probe
from tests.support.segmenter_media import (
    BUCKET,
    HTTP_PREFIX,
    INDEX,
    KEY_PREFIX,
    PREFIX,
    concatenate,
    first_pids,
    owed_segments,
    run_segmenter,
    segment_args,
    segment_files,
)

# Every test here runs twice: with the MPEG-TS fast path (segmenter/tsfast.py) and with PyAV.
pytestmark = pytest.mark.usefixtures("segmenter_path")

FPS = 25
FRAME_S = 1 / FPS
AAC_FRAME_TICKS = 1024 * 90000 // 48000


def check_run(result: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert result.returncode == code, result.stderr


def assert_valid_segments(out_dir: Path, messages: list[IndexMessage], *, video: bool = True) -> None:
    files = sorted(segment_files(out_dir), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert [f.name for f in files] == [f"{PREFIX}-{m.last_segment:05d}.ts" for m in messages]
    for path in files:
        assert first_pids(path, 2) == [0, 0x1000], f"{path.name} does not open with PAT, PMT"
        info = probe(path)  # opens alone
        if video:
            assert info.video is not None
            assert info.video.pts[0] == info.video.keyframe_pts[0], f"{path.name} starts without a keyframe"
    assert not any(p.name.endswith(".part") for p in out_dir.iterdir())


def test_h264_aac_60s_gop2_segment6(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=60, gop_seconds=2, fps=FPS, video_bitrate=300_000)
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", tmp_path, free_port))
        messages = listener.messages
    assert [m.last_segment for m in messages] == list(range(1, 11))
    assert [m.end for m in messages] == [False] * 9 + [True]
    first = messages[0]
    assert (first.index, first.output_directory, first.segment_duration, first.output_prefix) == (
        INDEX, str(tmp_path), 6, PREFIX)
    assert (first.http_prefix, first.bucket, first.key_prefix, first.first_segment) == (HTTP_PREFIX, BUCKET, KEY_PREFIX, 1)
    assert first.codecs is not None and first.codecs.startswith("avc1.64") and first.codecs.endswith(",mp4a.40.2")
    assert (first.resolution, first.frame_rate) == ("320x240", 25.0)
    assert [m.discontinuity for m in messages] == [True] + [False] * (len(messages) - 1)  # a run opens a timeline
    assert_valid_segments(tmp_path, messages)

    source_info = probe(source)
    origin = source_info.video.start_s  # type: ignore[union-attr]
    for k, message in enumerate(messages):
        assert message.duration is not None and message.start is not None
        gops = message.duration / 2.0
        assert gops == pytest.approx(round(gops), abs=1e-6), "duration is not a whole number of GOPs"
        assert 0 <= message.start - (origin + 6 * k) < 2.0, "cut not within one GOP after the grid"
    assert sum(m.duration for m in messages) == pytest.approx(source_info.video.duration_s, abs=FRAME_S)  # type: ignore[misc, union-attr]
    # Timestamps are the input's: each segment's first video pts is a keyframe pts of the source.
    segment_starts = [probe(p).video.pts[0] for p in segment_files(tmp_path)]  # type: ignore[union-attr]
    assert set(segment_starts) <= set(source_info.video.keyframe_pts)  # type: ignore[union-attr]
    assert [round(s / 90000, 6) for s in segment_starts] == [m.start for m in messages]
    # Nothing lost: every packet of the source is in exactly one segment, but for audio frames
    # that end by the first video keyframe (segment 1 starts there; the fast path, which sees
    # whole PES packets, keeps those that start at most 0.5 s before it).
    copied = sum(probe(p).packet_count for p in segment_files(tmp_path))
    first_key = source_info.video.keyframe_pts[0]  # type: ignore[union-attr]
    early = sum(1 for pts in source_info.audio.pts if pts + AAC_FRAME_TICKS <= first_key)  # type: ignore[union-attr]
    assert source_info.packet_count - early <= copied <= source_info.packet_count


def test_renditions_of_one_source_cut_at_the_same_points(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    starts = []
    for bitrate in (300_000, 120_000):
        source = media.ts(seconds=60, gop_seconds=2, fps=FPS, video_bitrate=bitrate)
        out = tmp_path / str(bitrate)
        with Listener(free_port) as listener:
            check_run(run_segmenter(source, "6", out, free_port))
        starts.append([(m.last_segment, m.start) for m in listener.messages])
        assert_valid_segments(out, listener.messages)
    assert starts[0] == starts[1]


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_single_kind_inputs(kind: str, tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=19, gop_seconds=2, fps=FPS, video=kind == "video", audio=kind == "audio")
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "4", tmp_path, free_port))
    messages = listener.messages
    assert [m.last_segment for m in messages] == list(range(1, 6))
    assert_valid_segments(tmp_path, messages, video=kind == "video")
    assert sum(m.duration for m in messages) == pytest.approx(19.0, abs=0.03)  # type: ignore[misc]
    codecs = {m.codecs for m in messages}
    if kind == "audio":
        assert codecs == {"mp4a.40.2"}
    else:  # H.264 High profile, and nothing else: no audio codec is announced for a video-only input
        assert len(codecs) == 1 and re.fullmatch(r"avc1\.64[0-9a-f]{4}", codecs.pop() or ""), codecs
    if kind == "audio":
        assert messages[0].resolution is None
        for k, m in enumerate(messages):  # cut at the first audio packet at or after the grid
            assert 0 <= m.start - (messages[0].start + 4 * k) < 1024 / 48000 + 1e-6  # type: ignore[operator]
    else:
        assert [m.duration for m in messages] == [4.0] * 4 + [3.0]


def test_33_bit_timestamp_wrap(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.wrapping_ts(seconds=20, wrap_after_seconds=7, gop_seconds=2, fps=FPS)
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", tmp_path, free_port))
    messages = listener.messages
    assert [m.discontinuity for m in messages] == [True] + [False] * (len(messages) - 1)  # a run opens a timeline
    assert [m.duration for m in messages] == [6.0, 6.0, 6.0, 2.0]
    starts = [m.start for m in messages]
    assert starts[0] == pytest.approx(2**33 / 90000 - 7, abs=FRAME_S)
    assert [b - a for a, b in zip(starts, starts[1:])] == pytest.approx([6.0, 6.0, 6.0])
    assert_valid_segments(tmp_path, messages)


def test_backward_jump_is_a_discontinuity(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    part = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    source = concatenate([part, part], tmp_path / "twice.ts")
    out = tmp_path / "out"
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", out, free_port))
    messages = listener.messages
    assert [m.discontinuity for m in messages] == [True, False, True, False]
    assert [m.duration for m in messages] == pytest.approx([6.0, 6.0, 6.0, 6.0], abs=FRAME_S)
    assert messages[2].start == messages[0].start
    assert_valid_segments(out, messages)


@pytest.mark.parametrize("via", ["stdin", "file"])
def test_new_codecs_mid_input_start_a_new_run(via: str, tmp_path: Path, media: MediaCache, free_port: int) -> None:
    """H.264 then MPEG-2 on the same PIDs (an encoder restarted with other settings), from stdin
    and from a file named as INPUT: the second program is probed again and announced."""
    h264 = media.ts(seconds=8, gop_seconds=2, fps=FPS)
    source = concatenate([h264, media.mpeg2_ts(seconds=4, pts_offset_seconds=8.0)], tmp_path / "two-programs.ts")
    out = tmp_path / "out"
    with Listener(free_port) as listener:
        if via == "stdin":
            result = run_segmenter(source, "2", out, free_port)
        else:
            result = subprocess.run(segment_args(str(source), "2", out, free_port), capture_output=True, text=True,
                                    timeout=120)
        check_run(result)
    messages = listener.messages
    assert "the PMT now lists PID 0x100 MPEG-2 video, PID 0x101 MPEG-1 audio" in result.stderr
    assert [m.last_segment for m in messages] == list(range(1, len(messages) + 1))
    assert [m.discontinuity for m in messages] == [True, False, False, False, True, False]
    assert [m.codecs.split(",")[0][:4] for m in messages] == ["avc1"] * 4 + ["mp4v"] * 2  # type: ignore[union-attr]
    assert messages[4].codecs == "mp4v.61,mp4a.6b"
    assert [m.end for m in messages] == [False] * 5 + [True]
    assert {m.first_segment for m in messages} == {1}
    for message in messages:
        codecs = probe(out / f"{PREFIX}-{message.last_segment:05d}.ts").codecs
        assert codecs == (("h264", "aac") if message.codecs.startswith("avc1") else ("mpeg2video", "mp2")), codecs  # type: ignore[union-attr]


def test_an_mp4_file_with_its_index_at_the_end_is_read_by_ffmpeg(
    tmp_path: Path, media: MediaCache, free_port: int
) -> None:
    """A file that is not MPEG-TS is FFmpeg's to open, seekable: an MP4 whose moov atom comes
    last cannot be read front to back."""
    mp4 = tmp_path / "moov-last.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(media.ts(seconds=8, gop_seconds=2, fps=FPS)),
                    "-c", "copy", str(mp4)], check=True, timeout=60)
    out = tmp_path / "out"
    with Listener(free_port) as listener:
        check_run(subprocess.run(segment_args(str(mp4), "2", out, free_port), capture_output=True, text=True,
                                 timeout=120))
    assert [m.last_segment for m in listener.messages] == [1, 2, 3, 4]
    assert_valid_segments(out, listener.messages)


def test_every_audio_and_video_stream_is_copied(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    single = media.ts(seconds=8, gop_seconds=2, fps=FPS)
    source = tmp_path / "two-audio.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(single), "-map", "0:v", "-map", "0:a", "-map", "0:a",
         "-c", "copy", "-copyts", "-f", "mpegts", str(source)],
        check=True,
    )
    with Listener(free_port):
        check_run(run_segmenter(source, "4", tmp_path / "out", free_port))
    for path in segment_files(tmp_path / "out"):
        assert probe(path).kinds == ("video", "audio", "audio")


@pytest.mark.slow
def test_daemon_down_for_10_s_then_started(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=60, gop_seconds=2, fps=FPS)
    with open(source, "rb") as stdin:
        process = subprocess.Popen(
            segment_args("-", "2", tmp_path, free_port, "--drain-timeout", "60"),
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    started = time.monotonic()
    listener = Listener(free_port)
    try:
        # The input is read at full speed while nobody answers: all 30 segments long before 10 s.
        while len(segment_files(tmp_path)) < 30 and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert len(segment_files(tmp_path)) == 30
        assert process.poll() is None  # still trying to deliver
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        listener.start()
        _, stderr = process.communicate(timeout=60)
    finally:
        listener.stop()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert [m.last_segment for m in listener.messages] == list(range(1, 31))
    assert b"connection refused" in stderr
    assert owed_segments(tmp_path) == []


def test_restart_continues_numbering_with_a_discontinuity(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", tmp_path, free_port))
        check_run(run_segmenter(source, "6", tmp_path, free_port))
    messages = listener.messages
    assert [(m.first_segment, m.last_segment, m.discontinuity) for m in messages] == [
        (1, 1, True), (1, 2, False), (3, 3, True), (3, 4, False)]
    assert len(segment_files(tmp_path)) == 4


def test_start_number_and_wide_numbers(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", tmp_path, free_port, "--start-number", "99999"))
    assert sorted(f.name for f in segment_files(tmp_path)) == [f"{PREFIX}-100000.ts", f"{PREFIX}-99999.ts"]
    assert [(m.first_segment, m.last_segment) for m in listener.messages] == [(99999, 99999), (99999, 100000)]


def test_wire_v1_sends_exactly_the_original_bytes(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    out = str(tmp_path) + "/"
    with Listener(free_port, replies=False) as listener:
        result = run_segmenter(source, "6", out, free_port, "--wire", "v1")
        check_run(result)
        listener.wait_for(lambda lst: len(lst.connections) == 2)
    assert sorted(listener.connections) == [
        f"{INDEX}, {out}, 6, {PREFIX}, {HTTP_PREFIX}, 1, 1, 0, {BUCKET}, {KEY_PREFIX}".encode(),
        f"{INDEX}, {out}, 6, {PREFIX}, {HTTP_PREFIX}, 1, 2, 1, {BUCKET}, {KEY_PREFIX}".encode(),
    ]


def test_refused_and_transient_replies(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=18, gop_seconds=2, fps=FPS)
    busy = {"left": 2}

    def reply(message: IndexMessage) -> Reject | None:
        if message.last_segment == 1 and busy["left"]:
            busy["left"] -= 1
            return Reject.try_again("spool full")
        if message.last_segment == 2:
            return Reject("output_directory is not allowed")
        return acknowledge(message)  # type: ignore[return-value]

    with Listener(free_port, reply=reply) as listener:  # type: ignore[arg-type]
        result = run_segmenter(source, "6", tmp_path, free_port)
    assert result.returncode == 3, result.stderr
    assert "refused by the daemon (segment 2: output_directory is not allowed)" in result.stderr
    assert [m.last_segment for m in listener.messages] == [1, 1, 1, 2, 3]


def test_undelivered_messages_are_named_and_kept(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    result = run_segmenter(source, "6", tmp_path, free_port, "--drain-timeout", "0.5")
    assert result.returncode == 3
    assert f"2 message(s) not delivered to 127.0.0.1:{free_port} (segment 1-2 of {INDEX})" in result.stderr
    assert f"kept in {tmp_path}/.{PREFIX}.outbox and re-sent by the next run" in result.stderr
    assert owed_segments(tmp_path) == [1, 2]
    # The next run sends them first, then its own.
    with Listener(free_port) as listener:
        check_run(run_segmenter(source, "6", tmp_path, free_port))
    assert [m.last_segment for m in listener.messages] == [1, 2, 3, 4]
    assert owed_segments(tmp_path) == []


def test_a_writer_names_itself_and_numbers_after_where_the_daemon_says_the_stream_is(
        tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)

    def reply(message: IndexMessage) -> Ack:
        return Ack(0, 41) if message.last_segment == 0 else Ack(message.last_segment)

    with Listener(free_port, reply=reply) as listener:
        result = run_segmenter(source, "6", tmp_path, free_port, "--take-over")
        check_run(result)
        check_run(run_segmenter(source, "6", tmp_path, free_port))
    first, again = listener.startups
    assert re.fullmatch(r"[0-9a-f]{32}", first.writer or "") and again.writer == first.writer
    assert (first.takeover, again.takeover) == (True, False)
    assert {m.writer for m in listener.messages} == {first.writer}
    assert not any(m.takeover for m in listener.messages)
    # Another writer published up to 41: this one goes on after it, then after its own.
    assert [(m.last_segment, m.discontinuity) for m in listener.messages] == [
        (42, True), (43, False), (44, True), (45, False)]
    assert "continuing at 42" in result.stderr


def test_a_writer_taken_over_mid_run_stops_drops_what_it_owes_and_exits_4(
        tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=60, gop_seconds=2, fps=FPS)
    refusal = "stream b/k/i.m3u8 was taken over by writer " + "b" * 32 + " of peer 10.0.0.9"

    def reply(message: IndexMessage) -> Ack | Reject:
        return Reject.not_writer(refusal) if message.last_segment >= 2 else Ack(message.last_segment, None)

    with Listener(free_port, reply=reply) as listener:
        result = run_segmenter(source, "2", tmp_path, free_port)
    assert result.returncode == 4, result.stderr
    assert re.fullmatch(f"hls-segment: stopped: not the writer: {re.escape(refusal)}"
                        r" \(this OUTPUT_DIR writes as writer #[0-9a-f]{8}\)", result.stderr.strip().splitlines()[-1])
    # Nothing is sent after the refusal; what was still owed (the refused one too) is dropped,
    # its files kept.
    assert [m.last_segment for m in listener.messages] == [1, 2]
    assert owed_segments(tmp_path) == []
    cut = len(segment_files(tmp_path))
    assert f"dropped {cut - 1} owed message(s) (segments 2 to {cut})" in result.stderr
    # The next run on this OUTPUT_DIR does not reuse those names (and is refused in turn).
    with Listener(free_port, reply=reply) as listener:
        assert run_segmenter(source, "2", tmp_path, free_port).returncode == 4
    assert [m.last_segment for m in listener.messages] == [cut + 1]


def test_a_second_writer_is_refused_at_its_start_before_reading_its_input(
        tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    refusal = "stream b/k/i.m3u8 is written by writer " + "a" * 32 + " of peer 10.0.0.9, heard 1 s ago: refused as a second writer"
    with Listener(free_port, reply=lambda message: Reject.not_writer(refusal)) as listener:
        result = run_segmenter(source, "6", tmp_path, free_port)
    assert result.returncode == 4, result.stderr
    assert re.fullmatch(f"hls-segment: stopped: not the writer: {re.escape(refusal)}"
                        r" \(this OUTPUT_DIR writes as writer #[0-9a-f]{8}\)", result.stderr.strip().splitlines()[-1])
    assert listener.messages == [] and segment_files(tmp_path) == []


# -- bad input -------------------------------------------------------------------------------


def test_empty_stdin(tmp_path: Path, free_port: int) -> None:
    result = run_segmenter(b"", "6", tmp_path, free_port)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hls-segment: stdin is empty: it ended before any byte arrived (expected MPEG-TS)")


def test_garbage_stdin(tmp_path: Path, free_port: int) -> None:
    # Fixed bytes, not os.urandom: now and then random bytes hold a sync pattern that FFmpeg's
    # probe takes for some format, and the test would check something else than garbage.
    garbage = random.Random(20091).randbytes(300_000)
    result = run_segmenter(garbage, "6", tmp_path, free_port)
    assert result.returncode == 2, result.stderr
    assert "hls-segment: stdin is not MPEG-TS or any media FFmpeg recognises" in result.stderr
    assert segment_files(tmp_path) == []


def test_silent_stdin_times_out(tmp_path: Path, free_port: int) -> None:
    read_end, write_end = os.pipe()
    try:
        started = time.monotonic()
        result = subprocess.run(
            segment_args("-", "6", tmp_path, free_port, "--probe-timeout", "3"),
            stdin=read_end, capture_output=True, text=True, timeout=30,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 2
    assert "waiting for MPEG-TS on stdin" in result.stderr
    assert "nothing arrived on stdin in 3 s" in result.stderr
    assert 3 <= time.monotonic() - started < 15


def test_truncated_input_keeps_what_is_there(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    cut = data[: len(data) * 6 // 10 + 77]  # mid-packet
    with Listener(free_port) as listener:
        check_run(run_segmenter(cut, "6", tmp_path, free_port))
    messages = listener.messages
    assert len(messages) == 3 and messages[-1].end
    assert messages[-1].duration < 1.0  # type: ignore[operator]
    assert_valid_segments(tmp_path, messages)


def test_garbage_mid_stream_is_skipped(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    middle = len(data) // 2 // 188 * 188 + 100
    damaged = data[:middle] + os.urandom(50_000) + data[middle:]
    with Listener(free_port) as listener:
        result = run_segmenter(damaged, "6", tmp_path, free_port)
    check_run(result)
    messages = listener.messages
    assert len(messages) == 4 and messages[-1].end
    assert sum(m.duration for m in messages) == pytest.approx(20.0, abs=0.5)  # type: ignore[misc]
    assert "WARNING" in result.stderr  # what was skipped is logged
    for path in segment_files(tmp_path):
        with av.open(str(path)) as container:  # each still opens alone
            assert container.streams.video


def test_sigterm_finishes_the_current_segment(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    data = media.ts(seconds=30, gop_seconds=2, fps=FPS).read_bytes()
    with Listener(free_port) as listener:
        process = subprocess.Popen(segment_args("-", "4", tmp_path, free_port), stdin=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stdin is not None
        process.stdin.write(data[: len(data) // 2])  # a live encoder that is still running
        process.stdin.flush()
        listener.wait_for(lambda lst: len(lst.messages) >= 2)
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    messages = listener.messages
    assert messages[-1].end and not any(m.end for m in messages[:-1])
    assert [m.last_segment for m in messages] == list(range(1, len(messages) + 1))
    assert_valid_segments(tmp_path, messages)
