"""hls-segment's signals and its numbering limit, on real processes reading a real-time pipe.

Every signal that stops the segmenter ends the stream as SIGTERM does: the open segment is
finished and announced with end=1 (the playlist gets ENDLIST) and no ``.part`` file is left.
The segment number MAX_SEGMENT_NUMBER ends the stream; a later run in that OUTPUT_DIR is refused
with one line.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from protocol.limits import MAX_SEGMENT_NUMBER
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.net import free_port
from tests.support.pipeline import Feeder, Segmenter, segmenter_command
from tests.support.segmenter_media import PREFIX, run_segmenter, segment_files

CLIP_S = 20.0


def _live(tmp_path: Path, media: MediaCache, port: int) -> tuple[Segmenter, Feeder]:
    """hls-segment fed a clip at real-time pace (1-s segments), announcing to ``port``."""
    out = tmp_path / "out"
    segmenter = Segmenter(segmenter_command("1", out, port, "live", "k", prefix=PREFIX), tmp_path / "segment.log")
    assert segmenter.proc.stdin is not None
    feeder = Feeder(media.ts(seconds=CLIP_S), segmenter.proc, CLIP_S, close_at_end=False)
    feeder.start()
    return segmenter, feeder


def _no_parts(out: Path) -> bool:
    return not [path for path in out.iterdir() if path.name.endswith(".part")]


@pytest.mark.parametrize("number", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT])
def test_each_stopping_signal_ends_the_stream_with_endlist_and_no_part(
    number: signal.Signals, tmp_path: Path, media: MediaCache, segmenter_path: str
) -> None:
    port = free_port()
    with Listener(port) as listener:
        segmenter, feeder = _live(tmp_path, media, port)
        try:
            listener.wait_for(lambda heard: len(heard.messages) >= 2)
            segmenter.proc.send_signal(number)
            code = segmenter.wait(60)
        finally:
            feeder.stop()
            segmenter.kill()
    assert code == 0, segmenter.log()
    assert f"{number.name}: finishing the current segment, then stopping" in segmenter.log()
    messages = listener.messages
    assert messages[-1].end and not any(message.end for message in messages[:-1])
    assert [f.name for f in segment_files(tmp_path / "out")] == [
        f"{PREFIX}-{m.last_segment:05d}.ts" for m in messages
    ]
    assert _no_parts(tmp_path / "out")


def test_sigusr1_logs_a_status_line_and_sigusr2_switches_debug_logging(tmp_path: Path, media: MediaCache) -> None:
    port = free_port()
    with Listener(port) as listener:
        segmenter, feeder = _live(tmp_path, media, port)
        try:
            listener.wait_for(lambda heard: len(heard.messages) >= 1)
            segmenter.proc.send_signal(signal.SIGUSR1)
            segmenter.proc.send_signal(signal.SIGUSR2)
            listener.wait_for(lambda heard: len(heard.messages) >= 3)
            segmenter.proc.send_signal(signal.SIGUSR2)
            segmenter.proc.send_signal(signal.SIGTERM)
            code = segmenter.wait(60)
        finally:
            feeder.stop()
            segmenter.kill()
    log = segmenter.log()
    assert code == 0, log
    status = [line for line in log.splitlines() if "SIGUSR1: status:" in line]
    assert len(status) == 1 and "segment(s) written" in status[0] and "queued for the daemon" in status[0]
    assert "SIGUSR2: log level now DEBUG" in log and "SIGUSR2: log level now INFO" in log
    assert listener.messages[-1].end


def test_the_highest_segment_number_ends_the_stream_and_a_later_run_is_refused(
    tmp_path: Path, media: MediaCache, segmenter_path: str
) -> None:
    out = tmp_path / "out"
    port = free_port()
    first = MAX_SEGMENT_NUMBER - 2
    with Listener(port) as listener:
        done = run_segmenter(media.ts(seconds=8.0), "1", out, port, "--start-number", str(first))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "highest number an index message can carry" in line]
    assert len(warnings) == 1 and str(MAX_SEGMENT_NUMBER) in warnings[0]
    numbers = [message.last_segment for message in listener.messages]
    assert numbers == [first, first + 1, MAX_SEGMENT_NUMBER]
    assert listener.messages[-1].end
    assert [f.name for f in segment_files(out)] == [f"{PREFIX}-{n:05d}.ts" for n in numbers]
    assert _no_parts(out)

    with Listener(port):
        again = run_segmenter(media.ts(seconds=8.0), "1", out, port)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"hls-segment: {out} holds segment {MAX_SEGMENT_NUMBER}, the highest number an index message can carry:"
        " start the stream in a new OUTPUT_DIR (or with another OUTPUT_PREFIX and INDEX_NAME)"
    ]
