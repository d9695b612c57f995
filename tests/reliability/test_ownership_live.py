"""Streams have one writer at a time (issue 15, point 2), through the real pipeline: real
hls-segment processes fed in real time, a real hls-uploadd, SeaweedFS, a poller reading every
playlist version through the RFC 8216 checker.

- A second segmenter on a live stream (same bucket, key prefix and index, its own OUTPUT_DIR) is
  refused at its start with one line, exits 4, writes nothing; the first goes on untouched.
- A segmenter killed with kill -9 is taken over (``--take-over``, or by a segmenter started after
  ``--takeover-after``): the stream goes on with no gap and no media sequence twice, no segment
  name reused; the killed one, started again while the new one runs, is refused and exits 4.
"""

from __future__ import annotations

import io
import re
import sqlite3
import time
from pathlib import Path

import av
import pytest

from protocol import writer_label
from tests.support.media import MediaCache
from tests.support.pipeline import Segmenter
from tests.support.viewer import wait_for

from .conftest import SEGMENT_SECONDS, Live, live_clip
from .test_faults_live import FEED_TIMEOUT_S, published, wait_ended

# hls-uploadd --takeover-after for the silence case; three 1-s target durations rule above it.
TAKEOVER_AFTER_S = 1
SILENCE_LIMIT_S = max(TAKEOVER_AFTER_S, 3 * int(SEGMENT_SECONDS))
EXIT_NOT_WRITER = 4


def writer_of(out_dir: Path, prefix: str = "live") -> str:
    """The writer id hls-segment keeps in OUTPUT_DIR's outbox."""
    with sqlite3.connect(f"file:{out_dir / f'.{prefix}.outbox'}?mode=ro", uri=True) as db:
        return str(db.execute("SELECT id FROM writer").fetchone()[0])


def segment_objects(live: Live) -> dict[str, bytes]:
    """Segment name -> bytes of every segment object under the stream's key prefix."""
    listed = live.s3.list_objects_v2(Bucket=live.bucket, Prefix=live.key_prefix + "/").get("Contents", [])
    return {item["Key"].rsplit("/", 1)[1]: live.s3.get_object(Bucket=live.bucket, Key=item["Key"])["Body"].read()
            for item in listed if item["Key"].endswith(".ts")}


def number(name: str) -> int:
    return int(re.fullmatch(r"live-(\d+)\.ts", name)[1])  # type: ignore[index]


def decoded_frames(data: bytes) -> int:
    """Frames PyAV decodes from one segment's bytes, every stream; raises on a broken one."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return sum(1 for _ in container.decode(*container.streams))


def last_line(segmenter: Segmenter) -> str:
    return segmenter.log().strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_second_segmenter_on_a_live_stream_is_refused_and_the_first_goes_on(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 12)
    daemon = live.daemon()
    poller = live.poller()
    first, _ = live.segmenter(clip, 12)
    wait_for(lambda: published(live, "live-00003.ts"), timeout=30, message="segment 3 published")
    before = segment_objects(live)
    second_dir = live.segments_root / "second"
    second, _ = live.segmenter(clip, 12, out_dir=second_dir)
    assert second.wait(60) == EXIT_NOT_WRITER, second.log()[-3000:]
    live.segmenters.remove(second)
    owner, intruder = writer_of(live.segments_root / "live"), writer_of(second_dir)
    stream = f"{live.bucket}/{live.key_prefix}/live.m3u8"
    # One line, naming the stream, its writer and that writer's peer; logged by the daemon too.
    line = f"stream {stream} is written by {writer_label(owner)} of peer 127.0.0.1"
    assert last_line(second).startswith(f"hls-segment: stopped: not the writer: {line}, heard "), last_line(second)
    # The reply is cut at 200 characters; the daemon's log line is whole.
    assert re.search(f"{writer_label(intruder)} stream {re.escape(stream)} segment live-00000.ts refused: {re.escape(line)},"
                     " heard [0-9]+ s ago: refused as a second writer\n", daemon.log())
    assert not list(second_dir.glob("live-*.ts")), "the refused segmenter cut segments"
    # It names itself as the daemon's line below names it.
    assert last_line(second).endswith(f" (this OUTPUT_DIR writes as {writer_label(intruder)})"), last_line(second)
    # The first goes on to its end, every segment published, exit 0; its objects untouched.
    assert first.wait(FEED_TIMEOUT_S) == 0, first.log()[-3000:]
    wait_ended(live)
    live.check(poller)
    after = segment_objects(live)
    assert all(after[name] == data for name, data in before.items())
    assert "second writer" not in first.log()


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("how", ["take-over", "silence"])
def test_a_takeover_after_kill_9_publishes_with_no_gap_and_the_old_writer_is_refused(
        live: Live, media: MediaCache, how: str) -> None:
    clip = live_clip(media, 30)
    daemon = live.daemon("--takeover-after", str(TAKEOVER_AFTER_S))
    poller = live.poller(every_version=True)
    old_dir, new_dir = live.segments_root / "live", live.segments_root / "new"
    old, old_feeder = live.segmenter(clip, 30)
    wait_for(lambda: published(live, "live-00004.ts"), timeout=30, message="segment 4 published")
    old.kill()
    old_feeder.stop()
    live.segmenters.remove(old)
    old_writer = writer_of(old_dir)
    if how == "silence":
        time.sleep(SILENCE_LIMIT_S + 1)  # the old writer's silence passes the takeover time
    new, new_feeder = live.segmenter(live_clip(media, 12), 12, *(["--take-over"] if how == "take-over" else []),
                                     out_dir=new_dir)
    # The daemon logs the takeover before its reply reaches the new segmenter, which then logs where it goes on.
    wait_for(lambda: "taken over by writer" in daemon.log(), timeout=30, message="the takeover in the daemon's log")
    wait_for(lambda: "continuing at" in new.log() or new.proc.poll() is not None, timeout=30,
             message="the new segmenter's first number")
    new_writer = writer_of(new_dir)
    taken = re.search(r"continuing at (\d+)", new.log())
    assert taken, new.log()[-3000:]
    first_new = int(taken[1])
    assert f"taken over by {writer_label(new_writer)}{' (takeover=1)' if how == 'take-over' else ''} from" \
           f" {writer_label(old_writer)} of peer 127.0.0.1" in daemon.log()
    wait_for(lambda: published(live, f"live-{first_new + 1:05d}.ts"), timeout=30, message="the new writer publishes")
    # The killed writer comes back on its OUTPUT_DIR while the new one runs: refused, exit 4.
    back, _ = live.segmenter(clip, 30)
    assert back.wait(60) == EXIT_NOT_WRITER, back.log()[-3000:]
    live.segmenters.remove(back)
    assert last_line(back).startswith(
        f"hls-segment: stopped: not the writer: stream {live.bucket}/{live.key_prefix}/live.m3u8 was taken over by"
        f" {writer_label(new_writer)} of peer 127.0.0.1"), last_line(back)
    assert new.wait(FEED_TIMEOUT_S) == 0, new.log()[-3000:]
    wait_ended(live)
    poller.stop()
    poller.add_version(live.playlist_text())
    assert not poller.conformance, poller.conformance
    assert not poller.problems, poller.problems
    # No gap and no media sequence twice across every version read; no segment name reused.
    sequences = sorted(poller.history.uri_of)
    assert sequences == list(range(sequences[0], sequences[-1] + 1)), sequences
    uris = [poller.history.uri_of[n] for n in sequences]
    assert len(set(uris)) == len(uris) and [number(u) for u in uris] == sorted(number(u) for u in uris)
    # The new writer's first segment follows a discontinuity in every version that lists it.
    tagged = [text for text in poller.texts if f"live-{first_new:05d}.ts" in text]
    assert tagged and all("#EXT-X-DISCONTINUITY\n#EXTINF:" in text.split(f"live-{first_new:05d}.ts")[0].rsplit(".ts", 1)[-1]
                          for text in tagged), tagged[0]
    # Each object holds the bytes of the writer that published it, and decodes.
    objects = segment_objects(live)
    old_names = {p.name for p in old_dir.glob("live-*.ts")}
    new_names = {p.name for p in new_dir.glob("live-*.ts")}
    assert min(number(n) for n in new_names) == first_new
    for name, data in objects.items():
        source = new_dir / name if name in new_names else old_dir / name
        assert data == source.read_bytes(), f"{name} is not the bytes of the writer that published it"
        assert decoded_frames(data) > 0, name
    # Everything the new writer cut is published; of the old one's, what the daemon had before the takeover.
    assert new_names <= set(objects)
    assert {n for n in old_names if number(n) < first_new} <= set(objects)
    assert all(objects[n] == (new_dir / n).read_bytes() for n in old_names & new_names)
