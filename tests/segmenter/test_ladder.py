"""hls-ladder: its pure core (ladders, command lines, Matroska framing, the keyframe grid) on
real FFmpeg output, and its process tree against a fake daemon (tests/support/listener.py):
a source that ends or stalls ends every rendition, bad settings are one line, exit 2.

The live run with a real daemon, S3 and players is tests/e2e/test_ladder_live.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from common.settings import ConfigError
from segmenter.ladder import (
    CLUSTER_ID,
    ENCODERS,
    PRESETS,
    Rendition,
    decoder_command,
    element_header,
    encoder_command,
    grid_point_after,
    keyframe_expression,
    keyframe_pts,
    ladder_from_toml,
    parse_bitrate,
    read_cluster,
    rendition_from_spec,
    service_id,
)
from segmenter.ladder_run import PTS_WRAP, Encoder, Ladder, LadderPlan, SourceEnded, segment_children
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.net import free_port
from tests.support.processes import children, encoder_pids

LADDER = str(Path(sys.executable).parent / "hls-ladder")
SMALL = ("--rendition=a:160x90:100k:32k", "--rendition=b:320x180:200k:32k")


# -- the ladder and its settings (pure) --------------------------------------------------------

def test_the_presets_are_the_originals_rates_and_a_modern_ladder() -> None:
    assert [r.bitrate for r in PRESETS["original"]] == [128_000, 256_000, 364_000]
    assert [(r.width, r.height) for r in PRESETS["modern"]] == [(1920, 1080), (1280, 720), (854, 480), (640, 360)]


def test_a_ladder_file_and_a_spec_give_the_same_rendition() -> None:
    text = '[[rendition]]\nname = "720p"\nsize = "1280x720"\nvideo_bitrate = "2800k"\naudio_bitrate = 128000\n'
    assert ladder_from_toml(text, source="l.toml") == (Rendition("720p", 720, 2_800_000, 128_000, 1280),)
    assert rendition_from_spec("720p:1280x720:2.8M") == Rendition("720p", 720, 2_800_000, 128_000, 1280)
    assert rendition_from_spec("tall:720p:800k:64k").width is None  # the source's aspect ratio


@pytest.mark.parametrize(("text", "error"), [
    ("[[rendition]]\nname = 'a'\nsize = '720p'\n", "l.toml: rendition 1: missing video_bitrate"),
    ("[[rendition]]\nname = 'a'\nsize = '721p'\nvideo_bitrate = '1M'\n", "sides must be even"),
    ("[[rendition]]\nname = 'a b'\nsize = '720p'\nvideo_bitrate = '1M'\n", "name 'a b' must be"),
    ("[[rendition]]\nname = 'a'\nsize = '720p'\nvideo_bitrate = 'fast'\n", "'fast' is not a bitrate"),
    ("[[rendition]]\nname = 'a'\nsize = '720p'\nvideo_bitrate = '1M'\ncrf = 20\n", "unknown key(s): crf"),
    ("[[rendition]]\nname = 'a'\nsize = '720p'\nvideo_bitrate = '1M'\n" * 2, "used twice: a"),
    ("[ladder]\n", "unknown table(s): ladder"),
    ("", "no [[rendition]] tables"),
    ("[[rendition]\n", "not TOML"),
])
def test_a_bad_ladder_file_is_refused_naming_what(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ladder_from_toml(text, source="l.toml")
    assert error in str(raised.value) and str(raised.value).startswith("l.toml")


def test_bitrates_are_bits_per_second_within_bounds() -> None:
    assert parse_bitrate("x", "800k") == 800_000 and parse_bitrate("x", 96000) == 96_000
    for bad in ("0", "300M", True, "1e6", -5):
        with pytest.raises(ConfigError):
            parse_bitrate("x", bad)


# -- command lines and the grid (pure) -----------------------------------------------------------

def test_the_decoder_writes_each_rendition_scaled_to_its_own_pipe() -> None:
    command = decoder_command("ffmpeg", "udp://0:1", PRESETS["original"], (7, 8, 9), frame_rate=Fraction(25))
    graph = command[command.index("-filter_complex") + 1]
    assert graph.startswith("[0:v:0]fps=25/1,split=3") and "scale=640:480" in graph
    assert [arg for arg in command if arg.startswith("pipe:")] == ["pipe:7", "pipe:8", "pipe:9"]
    assert "0:a:0?" in command and "0:a:0?" not in decoder_command("ffmpeg", "-", PRESETS["original"], (3, 4, 5),
                                                                    audio=False)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_keeps_to_the_grid_alone(encoder: str) -> None:
    command = encoder_command("ffmpeg", PRESETS["modern"][1], Fraction(2), encoder=encoder, service_id=7)
    assert command[command.index("-c:v") + 1] == ENCODERS[encoder].codec
    assert command[command.index("-force_key_frames") + 1] == keyframe_expression(Fraction(2))
    assert command[command.index("-mpegts_service_id") + 1] == "7" and "-copyts" in command
    assert set(ENCODERS[encoder].grid_options) <= set(command)


def test_program_numbers_change_with_every_encoder_and_stay_valid() -> None:
    numbers = [service_id(n) for n in range(70_000)]
    assert min(numbers) == 1 and max(numbers) == 65_535
    assert all(a != b for a, b in zip(numbers, numbers[1:]))


def test_a_successor_joins_at_the_next_grid_point_of_the_streams_origin() -> None:
    assert grid_point_after(5_000, Fraction(2), 520) == 6_520
    assert grid_point_after(6_520, Fraction(2), 520) == 8_520  # strictly after
    assert grid_point_after(100, Fraction(5, 2), 0) == 2_500


def test_an_encoders_last_keyframe_is_counted_across_any_number_of_pts_wraps() -> None:
    """MPEG-TS PTS wrap every 2^33 ticks (26.5 h); a channel runs for weeks. An encoder alive for
    30 h, its first keyframe 1 s before a wrap, has put its last out 30 h after its first."""
    encoder = Encoder(process=None, started=0.0, incarnation=0, grid_ms=7_000, first_ms=7_000)  # type: ignore[arg-type]
    assert encoder.last_keyframe_ms() is None
    pts = PTS_WRAP - 90_000
    encoder.keyframes_out([pts])
    for _ in range(30 * 1800):  # a keyframe every 2 s for 30 hours
        pts = (pts + 180_000) % PTS_WRAP
        encoder.keyframes_out([pts])
    assert encoder.last_keyframe_ms() == 7_000 + 30 * 3600 * 1000


def test_only_a_second_signal_hurries_not_the_ladders_own_end() -> None:
    """A ladder that ends the stream itself (a stall, a failure) ends it as one signal does; a
    signal then is the first, which lets every rendition finish (no SIGKILL, exit not 130)."""
    ladder = Ladder(LadderPlan("-", (), Fraction(2), Path("/"), lambda rendition, path: []))
    ladder._end()
    ladder.stop()
    assert ladder._stopping and not ladder._hurry
    ladder.stop()
    assert ladder._hurry


def test_keyframes_fall_on_the_grid_for_a_late_encoder_too(tmp_path: Path) -> None:
    """FFmpeg's ``t`` counts from an encoder's own first frame: the offset puts an encoder that
    joined 0.52 s after the first frame on the same grid (keyframes at 0.52 + 2k)."""
    late = tmp_path / "late.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-t", "6", "-f", "lavfi", "-i",
                    "testsrc2=size=160x90:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-g", "100000",
                    "-sc_threshold", "0", "-force_key_frames", keyframe_expression(Fraction(2), 520),
                    "-f", "mpegts", str(late)], check=True)
    keys = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time,flags",
                           "-of", "csv=p=0", str(late)], capture_output=True, text=True, check=True).stdout
    times = [round(float(line.split(",")[0]) - 1.4, 2) for line in keys.split() if ",K" in line]
    assert times == [0.0, 1.48, 3.48, 5.48]  # the first frame, then 2 - 0.52 + 2k


# -- Matroska framing and MPEG-TS keyframes, on FFmpeg's own bytes -------------------------------

@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds as the decoder writes a rendition: raw video and PCM in live Matroska."""
    path = tmp_path_factory.mktemp("ladder") / "rendition.mkv"
    command = decoder_command("ffmpeg", "testsrc2=size=320x240:rate=25", (Rendition("a", 90, 100_000, 32_000, 160),),
                              (1,))
    at = command.index("-i")
    command[at:at + 2] = ["-t", "2", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2", "-f", "lavfi",
                          "-i", "sine=sample_rate=48000"]
    command[command.index("0:a:0?")] = "1:a:0"
    with open(path, "wb") as out:
        subprocess.run(command, stdout=out, check=True)
    return path


def test_the_decoders_matroska_reads_as_header_then_one_frame_per_cluster(decoded: Path) -> None:
    clusters = []
    with open(decoded, "rb") as stream:
        with pytest.raises(SourceEnded):
            for element_id, head, payload in segment_children(stream):
                if element_id == CLUSTER_ID:
                    clusters.append(read_cluster(payload))
    frames = [cluster.video_ms for cluster in clusters if cluster is not None and cluster.video_ms is not None]
    assert frames == list(range(0, 2000, 40))  # 25 fps, every frame its own cluster
    assert all(cluster is not None for cluster in clusters) and len(clusters) > len(frames)  # PCM ones too


def test_ebml_headers_wait_for_their_bytes_and_refuse_what_is_no_ebml() -> None:
    assert element_header(b"\x1f\x43\xb6") is None  # a cluster ID cut short
    header = element_header(b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff")
    assert header is not None and header.id == CLUSTER_ID and header.size is None and header.length == 12
    with pytest.raises(ValueError):
        element_header(b"\x00\x01")


def test_keyframes_are_found_in_an_encoders_output_with_their_pts(decoded: Path, tmp_path: Path) -> None:
    command = encoder_command("ffmpeg", Rendition("a", 90, 100_000, 32_000, 160), Fraction(1, 2))
    with open(decoded, "rb") as source:
        output = subprocess.run(command, stdin=source, capture_output=True, check=True).stdout
    keys = keyframe_pts(output)
    assert [round((pts - keys[0]) / 90) for pts in keys] == [0, 520, 1000, 1520]  # ms; video starts at 40 ms
    assert keyframe_pts(output[:-1]) == keys and keyframe_pts(b"") == []


@pytest.mark.parametrize(("rate", "segment"), [("30000/1001", Fraction(2)), ("25", Fraction(16, 5))],
                         ids=["29.97-fps-2-s", "25-fps-3.2-s"])
def test_an_encoder_that_joins_later_keys_the_same_frames(tmp_path: Path, rate: str, segment: Fraction) -> None:
    """The grid in whole milliseconds: an encoder fed from a grid point on (as a successor is)
    makes its keyframes on exactly the frames the first encoder made them on, at frame rates
    whose frames fall a fraction of a millisecond from a grid point, and on segment durations
    that are no whole number of frames."""
    decoded = tmp_path / "rendition.mkv"
    command = decoder_command("ffmpeg", "src", (Rendition("a", 90, 100_000, 32_000, 160),), (1,), audio=False)
    at = command.index("-i")
    command[at:at + 2] = ["-t", "30", "-f", "lavfi", "-i", f"testsrc2=size=160x90:rate={rate}"]
    with open(decoded, "wb") as out:
        subprocess.run(command, stdout=out, check=True)
    with open(decoded, "rb") as stream:
        elements = []
        with pytest.raises(SourceEnded):
            for element in segment_children(stream):
                elements.append(element)
    header = b"".join(head + payload for element_id, head, payload in elements if element_id != CLUSTER_ID)
    clusters = [(read_cluster(payload), head + payload) for element_id, head, payload in elements
                if element_id == CLUSTER_ID]
    origin = clusters[0][0].video_ms  # type: ignore[union-attr]

    def keys(start_ms: int) -> list[int]:
        """Keyframe PTS of an encoder fed from the first frame at or after ``start_ms``."""
        first = next(i for i, (c, _) in enumerate(clusters) if c is not None and c.video_ms >= start_ms)
        shift = clusters[first][0].video_ms - origin  # type: ignore[union-attr]
        encode = encoder_command("ffmpeg", Rendition("a", 90, 100_000, 32_000, 160), segment, shift_ms=shift)
        fed = header + b"".join(data for _, data in clusters[first:])
        return keyframe_pts(subprocess.run(encode, input=fed, capture_output=True, check=True).stdout)

    whole = keys(origin)
    assert len(whole) == int(30 / segment) + (30 % segment > 0)
    for grid_index in range(1, len(whole) - 1, 2):
        joined = keys(grid_point_after(origin + int(grid_index * segment * 1000) - 1, segment, origin))
        assert joined == whole[grid_index:], (grid_index, joined, whole)


# -- the process tree against a fake daemon ------------------------------------------------------

def ladder(tmp_path: Path, source: str, port: int, *extra: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    """hls-ladder with the SMALL ladder on 1-s segments; its log in ``tmp_path``/ladder.log."""
    with open(tmp_path / "ladder.log", "wb") as log:
        return subprocess.Popen([LADDER, source, str(tmp_path / "out"), "bucket", "prog", "--uploader",
                                 f"127.0.0.1:{port}", "--segment-seconds", "1", *SMALL, *extra],
                                stdin=stdin, stderr=log)


def first_video_pts(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                          "-read_intervals", "%+#1", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[0].strip(","))


def test_a_source_that_ends_ends_every_rendition_cut_at_the_same_times(tmp_path: Path, media: MediaCache) -> None:
    clip = media.ts(seconds=6)
    with Listener(free_port()) as daemon:
        process = ladder(tmp_path, str(clip), daemon.port)
        assert process.wait(120) == 0, (tmp_path / "ladder.log").read_text()
        messages = daemon.messages
    by_index = {name: [m for m in messages if m.index == f"{name}.m3u8"] for name in ("a", "b")}
    assert all(sent and sent[-1].end and not any(m.end for m in sent[:-1]) for sent in by_index.values()), messages
    counts = {name: len(sent) for name, sent in by_index.items()}
    assert counts["a"] == counts["b"] >= 5, counts
    for number in range(1, counts["a"] + 1):
        starts = {first_video_pts(tmp_path / "out" / name / f"{name}-{number:05d}.ts") for name in ("a", "b")}
        assert len(starts) == 1, (number, starts)
    assert "the source ended" in (tmp_path / "ladder.log").read_text()


def test_a_stalled_source_is_warned_about_then_ends_the_stream(tmp_path: Path, media: MediaCache) -> None:
    read_end, write_end = os.pipe()
    # Longer than FFmpeg's probe (5 s of media), which waits for more before it decodes.
    with Listener(free_port()) as daemon, open(media.ts(seconds=8), "rb") as clip:
        process = ladder(tmp_path, "-", daemon.port, "--stall-warning", "1", "--stall-end", "4", stdin=read_end)
        os.close(read_end)
        try:
            os.write(write_end, clip.read())  # then nothing more, the pipe still open: a stall
            assert process.wait(90) == 0, (tmp_path / "ladder.log").read_text()
        finally:
            os.close(write_end)
            if process.poll() is None:
                process.kill()
        ended = [m.index for m in daemon.messages if m.end]
    log = (tmp_path / "ladder.log").read_text()
    assert sorted(ended) == ["a.m3u8", "b.m3u8"], log
    assert "the source has sent nothing for 1 s; the stream ends at 4 s" in log
    assert "the source has sent nothing for 4 s: ending the stream" in log


def test_a_source_silent_from_the_start_is_warned_about_and_ends_the_ladder_with_exit_1(tmp_path: Path) -> None:
    """No byte ever comes (a listener without a caller): warned about after --stall-warning,
    given up after --stall-end, exit 1 (its supervisor starts it again), one line saying why."""
    read_end, write_end = os.pipe()
    with Listener(free_port()) as daemon:
        process = ladder(tmp_path, "-", daemon.port, "--stall-warning", "1", "--stall-end", "3", stdin=read_end)
        os.close(read_end)
        try:
            assert process.wait(60) == 1, (tmp_path / "ladder.log").read_text()
        finally:
            os.close(write_end)
            if process.poll() is None:
                process.kill()
    log = (tmp_path / "ladder.log").read_text()
    assert "the source has sent nothing yet for 1 s; the stream ends at 3 s" in log, log
    assert log.rstrip().splitlines()[-1] == "hls-ladder: the source sent nothing in 3 s from the start (--stall-end)", log


@pytest.mark.slow
def test_a_source_that_starts_late_is_waited_for_past_the_segmenters_probe_timeout(
    tmp_path: Path, media: MediaCache,
) -> None:
    """hls-segment alone gives up (exit 2) when no byte comes within its --probe-timeout (30 s);
    under hls-ladder, which watches the source itself, a source that starts 32 s late is a
    channel like any other, warned about meanwhile."""
    read_end, write_end = os.pipe()
    with Listener(free_port()) as daemon:
        process = ladder(tmp_path, "-", daemon.port, stdin=read_end)
        os.close(read_end)
        try:
            time.sleep(32)
            assert process.poll() is None, (tmp_path / "ladder.log").read_text()
            with open(media.ts(seconds=6), "rb") as clip:
                os.write(write_end, clip.read())
        finally:
            os.close(write_end)
        try:
            assert process.wait(90) == 0, (tmp_path / "ladder.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
        ended = sorted(m.index for m in daemon.messages if m.end)
    log = (tmp_path / "ladder.log").read_text()
    assert ended == ["a.m3u8", "b.m3u8"], log
    assert "the source has sent nothing yet for 10 s" in log and "the source sends its first bytes after 3" in log, log


@pytest.mark.slow
def test_a_segmenter_that_stops_reading_cannot_hold_the_end_of_the_ladder(tmp_path: Path, media: MediaCache) -> None:
    """One SIGTERM while a rendition's hls-segment takes no input (here SIGSTOP; a hung disk in
    the field): the ladder still ends, the stuck segmenter killed, the other rendition ended."""
    with Listener(free_port()) as daemon:
        process, writer = paced_ladder(tmp_path, daemon, media.ts(seconds=60), segments=2)
        stuck = segmenter_pid(process.pid, "a")
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        time.sleep(3)  # the relay fills the pipe into it and blocks
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(120) == 1, (tmp_path / "ladder.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
            if Path(f"/proc/{stuck}").exists():
                os.kill(stuck, signal.SIGKILL)
            writer.join(30)
        ended = [m.index for m in daemon.messages if m.end]
    log = (tmp_path / "ladder.log").read_text()
    assert ended == ["b.m3u8"], log
    assert "rendition a: hls-segment takes no input: killing it" in log, log


def test_a_second_signal_stops_at_once_and_the_renditions_still_end(tmp_path: Path, media: MediaCache) -> None:
    read_end, write_end = os.pipe()
    with Listener(free_port()) as daemon, open(media.ts(seconds=8), "rb") as clip:
        process = ladder(tmp_path, "-", daemon.port, stdin=read_end)
        os.close(read_end)
        try:
            os.write(write_end, clip.read())
            daemon.wait_for(lambda heard: len(heard.messages) >= 2, 60)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 130, (tmp_path / "ladder.log").read_text()
        finally:
            os.close(write_end)
            if process.poll() is None:
                process.kill()
        daemon.wait_for(lambda heard: sum(m.end for m in heard.messages) == 2, 30)


@pytest.mark.parametrize(("options", "error"), [
    (("--ladder", "nope"), "--ladder 'nope' is neither a preset (original, modern) nor a TOML file"),
    (("--ladder", "missing.toml"), "--ladder: cannot read missing.toml: No such file or directory"),
    (("--rendition", "a:abc:1k"), "--rendition 'a:abc:1k': size: 'abc' is not a size (WIDTHxHEIGHT, or HEIGHT like 720p)"),
    (("--rendition", "a:720p:1M", "--rendition", "a:360p:500k"), "rendition name(s) used twice: a"),
    (("--encoder", "x265"), "--encoder 'x265' is not one of libx264, h264_nvenc, h264_qsv, h264_vaapi"),
    (("--frame-rate", "0"), "--frame-rate '0' is outside 1..240 frames per second"),
    (("--segment-seconds", "0"), "--segment-seconds '0' must be more than 0 and at most 3600 s"),
    (("--ffmpeg", "/nonexistent/ffmpeg"), "--ffmpeg '/nonexistent/ffmpeg': no such program"),
    (("--rendition", "master:360p:500k"),
     "--rendition 'master:360p:500k': name 'master' is taken: master.m3u8 is the master playlist"),
    (("--stall-warning", "0"), "--stall-warning must be a positive number of seconds"),
    (("--stall-warning", "5", "--stall-end", "5"), "--stall-end must be longer than --stall-warning (or 0: never)"),
    (("--input-ca", "ca.pem"),
     "--input-ca applies to an https://, rtmps:// or tls:// INPUT, not to stdin, a file or another URL"),
])
def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path, options: tuple[str, ...], error: str) -> None:
    done = subprocess.run([LADDER, "udp://127.0.0.1:9", str(tmp_path / "out"), "b", "p", *options],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"hls-ladder: {error}"], done.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_segmenter_refusing_its_options_stops_the_ladder_with_exit_2(tmp_path: Path, media: MediaCache) -> None:
    with Listener(free_port()) as daemon:
        process = ladder(tmp_path, str(media.ts(seconds=4)), daemon.port, "--segment-option=--wire=carrier-pigeon")
        assert process.wait(60) == 2
    log = (tmp_path / "ladder.log").read_text()
    assert "hls-segment: --wire must be ext or v1, not 'carrier-pigeon'" in log and log.rstrip().endswith(
        "hls-ladder: a segmenter refused its configuration (its message is above)"), log


def paced_feed(write_end: int, clip: Path) -> threading.Thread:
    """A thread writing ``clip`` to ``write_end`` a little faster than real time, as a live
    source with some jitter (a 1-s clip in 0.8 s), then closing it (the source ends)."""
    data = clip.read_bytes()

    def feed() -> None:
        chunk = len(data) // 96
        try:
            for at in range(0, len(data), chunk):
                os.write(write_end, data[at:at + chunk])
                time.sleep(0.2)
        except BrokenPipeError:
            pass  # the ladder ended first
        finally:
            os.close(write_end)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return writer


def paced_ladder(tmp_path: Path, daemon: Listener, clip: Path, *, segments: int,
                 ) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """hls-ladder reading ``clip`` from stdin at about real time (``paced_feed``), returned once
    ``daemon`` has heard of ``segments`` segments of rendition a."""
    read_end, write_end = os.pipe()
    process = ladder(tmp_path, "-", daemon.port, stdin=read_end)
    os.close(read_end)
    writer = paced_feed(write_end, clip)
    daemon.wait_for(lambda heard: sum(m.index == "a.m3u8" for m in heard.messages) >= segments, 60)
    return process, writer


def segmenter_pid(ladder_pid: int, rendition: str) -> int | None:
    """The pid of the hls-segment writing ``rendition``'s playlist."""
    found = children(ladder_pid, lambda arguments: f"{rendition}.m3u8".encode() in arguments
                     and any(argument.endswith(b"hls-segment") for argument in arguments[:2]))
    return found[0] if found else None


@pytest.mark.slow
def test_a_hung_encoder_is_killed_and_replaced_and_the_channel_goes_on(tmp_path: Path, media: MediaCache) -> None:
    """An encoder that stops reading (here SIGSTOP; a driver hang in the field) holds the relay,
    and so the decoder and every rendition, for STUCK_S at most: then it is killed, replaced at
    the next grid point, and the stream goes on to its end with the same segments in both."""
    with Listener(free_port()) as daemon:
        process, writer = paced_ladder(tmp_path, daemon, media.ts(seconds=24), segments=4)
        hung = next(iter(encoder_pids(process.pid, 100_000)), None)
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        try:
            assert process.wait(120) == 0, (tmp_path / "ladder.log").read_text()
        finally:
            os.kill(hung, signal.SIGKILL) if Path(f"/proc/{hung}").exists() else None
            writer.join(30)
        messages = daemon.messages
    log = (tmp_path / "ladder.log").read_text()
    assert "rendition a: the encoder took no input for" in log and "rendition a: encoder 2 joined at" in log, log
    sent = {name: [m for m in messages if m.index == f"{name}.m3u8"] for name in ("a", "b")}
    assert [m.last_segment for m in sent["a"]] == [m.last_segment for m in sent["b"]], sent
    assert sum(m.discontinuity for m in sent["a"]) == sum(m.discontinuity for m in sent["b"]) + 1, sent


def test_an_encoder_that_keeps_failing_ends_the_ladder_after_five_tries(tmp_path: Path, media: MediaCache) -> None:
    """A setting the encoder refuses: it is tried again with a growing delay, then the ladder
    gives up (exit 1, one line saying why) and its supervisor can start it again."""
    read_end, write_end = os.pipe()
    with Listener(free_port()) as daemon:
        process = ladder(tmp_path, "-", daemon.port, "--encoder-preset", "no-such-preset", stdin=read_end)
        os.close(read_end)
        writer = paced_feed(write_end, media.ts(seconds=24))
        assert process.wait(90) == 1
        writer.join(30)
    log = (tmp_path / "ladder.log").read_text()
    assert log.count("the encoder exited with code 1; starting another in") == 2 * 4, log  # four retries each
    assert log.rstrip().splitlines()[-1].startswith("hls-ladder: rendition "), log
    assert "5 times in a row within 10 s of a start; ending every rendition" in log, log
