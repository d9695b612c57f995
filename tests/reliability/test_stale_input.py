"""The stale-input watchdog of hls-segment (issue 7): an input that stalls is a warning, not an end;
after a configurable longer silence the stream is ended cleanly."""

from __future__ import annotations

import time

import pytest

from tests.support.media import MediaCache
from tests.support.viewer import wait_for

from .conftest import Live, live_clip
from .test_faults_live import finish, published, wait_ended

STALL_S = 30


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_input_stalls_for_30_s_then_resumes(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 12)
    live.daemon()
    poller = live.poller()
    segmenter, feeder = live.segmenter(clip, 12, "--stall-warning", "5", "--stall-end", "120")
    wait_for(lambda: feeder.fed_seconds >= 6, timeout=30, message="6 s of input fed")
    feeder.pause()
    paused_at = time.monotonic()
    wait_for(lambda: "no input for" in segmenter.log(), timeout=15, message="the stall warning")
    warned_after = time.monotonic() - paused_at
    while time.monotonic() - paused_at < STALL_S:
        assert "#EXT-X-ENDLIST" not in live.playlist_text(), "a stall ended the stream"
        assert segmenter.proc.poll() is None, segmenter.log()[-2000:]
        time.sleep(0.5)
    feeder.resume()
    finish(live)
    wait_ended(live)
    result = live.check(poller, stall_s=STALL_S, warned_after_s=round(warned_after, 1))
    assert len(result.produced) >= 11
    assert "input resumed" in segmenter.log()
    # Exactly one ENDLIST, at the real end: no version before the last one had it.
    assert not any("#EXT-X-ENDLIST" in text for text in poller.texts[:-1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fast_path", ["1", "0"], ids=["fast-path", "pyav-path"])
def test_a_long_silence_ends_the_stream_cleanly(live: Live, media: MediaCache, fast_path: str) -> None:
    clip = live_clip(media, 20)
    live.daemon()
    poller = live.poller()
    segmenter, feeder = live.segmenter(clip, 20, "--stall-warning", "1", "--stall-end", "4",
                                       env={"HLS_SEGMENT_FAST_PATH": fast_path})
    wait_for(lambda: published(live, "live-00004.ts"), timeout=30, message="segment 4 published")
    feeder.pause()  # the encoder hangs with its pipe open
    paused_at = time.monotonic()
    code = segmenter.wait(30)
    ended_after = time.monotonic() - paused_at
    assert code == 0, segmenter.log()[-3000:]
    assert 4 <= ended_after < 15, ended_after
    assert "ending the stream" in segmenter.log()
    feeder.stop()
    wait_ended(live)
    live.check(poller, silence_end_s=4, ended_after_s=round(ended_after, 1))


@pytest.mark.timeout(120)
def test_a_url_input_that_stalls_is_warned_about_then_ended(live: Live, media: MediaCache) -> None:
    """The same watchdog for an input FFmpeg reads itself (here tcp://): a warning from a monitor
    thread, the end from FFmpeg's read timeout."""
    clip = live_clip(media, 20)
    live.daemon()
    poller = live.poller()
    segmenter, feeder = live.segmenter(clip, 20, "--stall-warning", "1", "--stall-end", "4", tcp=True)
    wait_for(lambda: published(live, "live-00004.ts"), timeout=30, message="segment 4 published")
    feeder.pause()  # the server keeps the connection open and sends nothing
    paused_at = time.monotonic()
    code = segmenter.wait(30)
    ended_after = time.monotonic() - paused_at
    log = segmenter.log()
    assert code == 0, log[-3000:]
    assert 4 <= ended_after < 15, ended_after
    assert "no input for 1 s: the encoder may have stalled; the stream ends after 4 s" in log, log[-3000:]
    assert "ending the stream" in log
    feeder.stop()
    wait_ended(live)
    live.check(poller, url_silence_end_s=4, ended_after_s=round(ended_after, 1))
