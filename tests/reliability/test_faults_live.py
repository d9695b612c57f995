"""Faults during a live stream through the real pipeline (issue 7).

Each case: a PyAV-made H.264+AAC clip is piped at real-time pace into a real hls-segment, which
feeds a real hls-uploadd publishing to a SeaweedFS of the test's own, while a poller reads the
playlist as a player would. Then something breaks. At the end every segment the segmenter produced
is in S3 exactly once (same bytes), the final playlist conforms and ends with ENDLIST, and the
poller never saw a playlist naming a segment it could not GET (``Live.check``).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import m3u8
import pytest

from protocol import Reject
from tests.support.daemon import legit_message
from tests.support.media import MediaCache
from tests.support.viewer import wait_for

from .conftest import Live, live_clip

FEED_TIMEOUT_S = 120


def published(live: Live, name: str, index: str = "live.m3u8") -> bool:
    """The playlist as a player reads it now names segment ``name``."""
    try:
        return name in live.playlist_text(index)
    except Exception:  # noqa: BLE001 - not there yet, or S3 down
        return False


def finish(live: Live, *, timeout_s: float = FEED_TIMEOUT_S) -> None:
    """Let the feeders end their input and every segmenter exit 0 (all acknowledged)."""
    for feeder in live.feeders:
        assert feeder.finished.wait(timeout_s), "the feeder did not finish"
    for segmenter in live.segmenters:
        if segmenter.proc.returncode is None or segmenter.proc.returncode >= 0:
            code = segmenter.wait(timeout_s)
            assert code == 0, f"hls-segment exited {code}:\n{segmenter.log()[-3000:]}"


def wait_ended(live: Live, index: str = "live.m3u8", timeout_s: float = 60) -> None:
    wait_for(lambda: published(live, "#EXT-X-ENDLIST", index), timeout=timeout_s, message=f"ENDLIST in {index}")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_daemon_kill_9_mid_stream_restarted_5_s_later(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 20)
    daemon = live.daemon()
    poller = live.poller()
    segmenter, _ = live.segmenter(clip, 20)
    wait_for(lambda: published(live, "live-00005.ts"), timeout=30, message="segment 5 published")
    live.sample()
    daemon.kill()
    killed_at = time.monotonic()
    time.sleep(5)  # the fault itself: the daemon stays dead for 5 s
    daemon.start()
    restarted_after = time.monotonic() - killed_at
    finish(live)
    wait_ended(live)
    result = live.check(poller, daemon_down_s=round(restarted_after, 1))
    assert "retry" in segmenter.log() or "daemon" in segmenter.log()
    assert result.produced[-1] == f"live-{len(result.produced):05d}.ts"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_s3_down_15_s_mid_stream(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 30)
    daemon = live.daemon()
    poller = live.poller()
    live.segmenter(clip, 30)
    wait_for(lambda: published(live, "live-00004.ts"), timeout=30, message="segment 4 published")
    live.server.stop()
    stopped_at = time.monotonic()
    wait_for(lambda: "failed (attempt 1), retrying" in daemon.log(), timeout=20, message="a failed upload")
    time.sleep(max(0.0, 15 - (time.monotonic() - stopped_at)))  # the fault: S3 away for 15 s
    live.server.start()
    down_s = time.monotonic() - stopped_at
    finish(live)
    wait_ended(live)
    live.check(poller, s3_down_s=round(down_s, 1))
    assert "succeeded after" in daemon.log()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_s3_answering_slowly(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 20)
    # Every chunk S3 and the daemon exchange waits 150 ms: a PUT takes ~0.3-0.6 s, against one
    # segment a second.
    proxy = live.proxy(("127.0.0.1", live.server.s3_port), delay_s=0.15)
    daemon = live.daemon(endpoint_url=proxy.url)
    poller = live.poller()
    live.segmenter(clip, 20)
    finish(live)
    wait_ended(live, timeout_s=90)
    live.check(poller, s3_delay_ms=150)
    assert proxy.forwarded["up"] > clip.stat().st_size  # everything went through the slow link
    assert "published" in daemon.log()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_daemon_down_20_s_while_two_segmenters_keep_running(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 36)
    daemon = live.daemon()
    pollers = [live.poller("a.m3u8"), live.poller("b.m3u8")]
    live.segmenter(clip, 36, prefix="a", index="a.m3u8")
    live.segmenter(clip, 36, prefix="b", index="b.m3u8")
    wait_for(lambda: published(live, "a-00004.ts", "a.m3u8") and published(live, "b-00004.ts", "b.m3u8"),
             timeout=30, message="segment 4 of both streams")
    live.sample()
    daemon.stop()
    stopped_at = time.monotonic()
    time.sleep(20)  # the fault: no daemon for 20 s; the segmenters keep reading their input
    daemon.start()
    down_s = round(time.monotonic() - stopped_at, 1)
    finish(live)
    for index, prefix, poller in (("a.m3u8", "a", pollers[0]), ("b.m3u8", "b", pollers[1])):
        wait_ended(live, index)
        live.check(poller, index=index, prefixes=(prefix,), daemon_down_s=down_s, segmenters=2)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_segmenter_kill_9_mid_segment_then_a_new_one(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 12)
    live.daemon()
    poller = live.poller()
    first, feeder = live.segmenter(clip, 12)
    out_dir = live.segments_root / "live"
    # Kill it while a segment is half written: its .part file exists, segment 4 is published.
    wait_for(lambda: published(live, "live-00004.ts") and any(p.name.endswith(".part") for p in out_dir.iterdir()),
             timeout=30, message="segment 4 published and the next one half written")
    first.kill()
    feeder.stop()
    partial = [p for p in out_dir.iterdir() if p.name.endswith(".part")]
    killed_after = max(int(p.name.split("-")[1][:5]) for p in out_dir.glob("live-*.ts"))
    assert partial, "no half-written segment when killed"
    # A new segmenter on the same stream (same OUTPUT_DIR): it continues after the last number.
    live.segmenters.remove(first)
    second, _ = live.segmenter(clip, 12)
    finish(live)
    wait_ended(live)
    result = live.check(poller, killed_after_segment=killed_after)
    assert not any(p.name.endswith(".part") for p in out_dir.iterdir())
    first_new = f"live-{killed_after + 1:05d}.ts"
    assert f"continuing at {killed_after + 1}" in second.log()
    final = m3u8.loads(poller.texts[-1] if poller.texts[-1].endswith("ENDLIST\n") else live.playlist_text())
    # Across the playlist's versions, the new run's first segment carries the discontinuity.
    tagged = [t for t in poller.texts + [live.playlist_text()] if first_new in t]
    assert tagged and all("#EXT-X-DISCONTINUITY\n#EXTINF:" in t.split(first_new)[0].rsplit(".ts", 1)[-1]
                          for t in tagged), tagged[0]
    assert final.is_endlist
    assert len(result.produced) >= killed_after + 5


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigterm_with_a_backlog_drains_and_restarts_from_the_spool(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 16)
    # A slow S3 (each PUT ~1 s) builds a backlog of queued segments.
    proxy = live.proxy(("127.0.0.1", live.server.s3_port), delay_s=0.4)
    daemon = live.daemon("--drain-timeout", "2", endpoint_url=proxy.url)
    poller = live.poller()
    live.segmenter(clip, 16)
    wait_for(lambda: "live-00008.ts queued" in daemon.log(), timeout=30, message="segment 8 queued")
    live.sample()
    proxy.delay_s = 30  # and now S3 hangs: the PUT in flight cannot finish within the drain
    time.sleep(0.5)
    began = time.monotonic()
    assert daemon.stop(timeout_s=20) == 0
    drained_in = time.monotonic() - began
    assert drained_in < 2 + 3, f"SIGTERM took {drained_in:.1f} s with --drain-timeout 2"
    left = int(daemon.log().rsplit(" message(s) left queued", 1)[0].rsplit(" ", 1)[1])
    assert left > 0, "no backlog at SIGTERM"
    proxy.delay_s = 0
    proxy.drop_connections()
    daemon.start()
    wait_for(lambda: "resuming" in daemon.log(), timeout=10, message="the spool resumed")
    finish(live)
    wait_ended(live)
    live.check(poller, backlog_at_sigterm=left, drain_s=round(drained_in, 2))


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_daemon_kill_9_while_receiving_an_inline_payload(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 16)
    daemon = live.daemon("--allow-unsigned-inline")
    # The segmenter reaches the daemon through a slow link (60 kB/s for ~50 kB segments), so a
    # payload is in flight most of the time and the kill lands in the middle of one.
    link = live.proxy(("127.0.0.1", live.daemon_port), rate_bps=60_000)
    poller = live.poller()
    segmenter, _ = live.segmenter(clip, 16, "--send-segments", port=link.port)
    payloads = daemon.spool_dir / "payloads"
    wait_for(lambda: published(live, "live-00003.ts"), timeout=30, message="segment 3 published")
    wait_for(lambda: any(p.name.endswith(".part") for p in payloads.iterdir()), timeout=20,
             message="a payload half received")
    live.sample()
    daemon.kill()
    cut = [p.name for p in payloads.iterdir() if p.name.endswith(".part")]
    assert cut, "the kill missed the payload"
    time.sleep(2)  # the fault: down for 2 s; the segmenter's sends fail meanwhile
    link.rate_bps = None
    daemon.start()
    assert any(f"removed payload {name}" in daemon.log() for name in cut), daemon.log()[-2000:]
    finish(live)
    wait_ended(live)
    result = live.check(poller, payloads_cut_off=len(cut))
    # Every segment reached the daemon as an inline payload (no daemon-side file read).
    inline = set(re.findall(r"segment (live-\d+\.ts) queued with its \d+-byte payload", daemon.log(all_runs=True)))
    assert set(result.produced) <= inline, sorted(set(result.produced) - inline)
    assert not [p for p in payloads.iterdir() if p.name.endswith(".part")]


def tmpfs(directory: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted on ``directory`` (made here) with mount ``options`` until the generator is
    closed; the test is skipped where mounting is not allowed (it needs root)."""
    directory.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs to hold the daemon's spool, so that it can be filled."""
    yield from tmpfs(tmp_path / "uploadd" / "spool", "size=8m,mode=0700")


def fill(directory: Path) -> Path:
    """Write a file until the file system is full."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(block)
                file.flush()
        except OSError:
            pass
    # Then the last few bytes: no page left for a new one.
    fd = os.open(filler, os.O_WRONLY | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_spool_file_system_full(live: Live, media: MediaCache, small_spool: Path) -> None:
    clip = live_clip(media, 20)
    daemon = live.daemon()
    assert daemon.spool_dir == small_spool
    poller = live.poller()
    segmenter, _ = live.segmenter(clip, 20)
    wait_for(lambda: published(live, "live-00003.ts"), timeout=30, message="segment 3 published")
    filler = fill(small_spool)
    full_at = time.monotonic()
    wait_for(lambda: "not queued" in daemon.log(), timeout=20, message="a message refused for the full disk")
    refused = daemon.log().count("not queued")
    # "Try again" is the daemon's state, not the peer's fault: more of them than the refusals
    # that close a connection (20) leave it open.
    legit = live.segments_root / "legit"
    legit.mkdir()
    with daemon.connect() as client:
        replies = [client.send(legit_message(legit, live.bucket, number)) for number in range(1, 26)]
    assert all(isinstance(reply, Reject) and reply.is_transient for reply in replies), replies
    time.sleep(max(0.0, 5 - (time.monotonic() - full_at)))  # the fault: full for 5 s
    filler.unlink()
    finish(live)
    wait_ended(live)
    live.check(poller, spool_full_s=5, messages_refused_try_again=refused)
    assert "try again" in segmenter.log()
    assert "disk is full" in daemon.log() or "No space" in daemon.log()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_segmenter_kill_9_between_a_segment_and_its_acknowledgement(live: Live, media: MediaCache) -> None:
    """The window the mid-segment case does not hit: a segment is on disk, its message not yet
    acknowledged (the link to the daemon is slow), and the segmenter dies. The next run on the
    same stream must still get that segment published."""
    clip = live_clip(media, 10)
    daemon = live.daemon()
    link = live.proxy(("127.0.0.1", live.daemon_port), delay_s=0.6)
    poller = live.poller()
    first, feeder = live.segmenter(clip, 10, port=link.port)
    out_dir = live.segments_root / "live"
    wait_for(lambda: published(live, "live-00003.ts"), timeout=30, message="segment 3 published")
    done = {p.name for p in out_dir.glob("live-*.ts")}
    wait_for(lambda: {p.name for p in out_dir.glob("live-*.ts")} - done, timeout=10, message="a new segment")
    newest = max(p.name for p in out_dir.glob("live-*.ts"))
    first.kill()  # its message is still on the slow link, or not even sent
    feeder.stop()
    assert f"{newest} queued" not in daemon.log(), "the kill came too late"
    live.segmenters.remove(first)
    link.delay_s = 0
    live.segmenter(clip, 10, port=link.port)
    finish(live)
    wait_ended(live)
    live.check(poller, unacknowledged_at_kill=newest)
