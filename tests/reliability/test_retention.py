"""Bounded growth (issue 14, C): what a 24/7 stream leaves on the segmenter's disk, in the bucket
and in the spool.

Real hls-segment and hls-uploadd processes and a SeaweedFS of the test's own, as in
test_faults_live.py; every playlist version goes through the RFC 8216 checker (PlaylistPoller),
which here also fetches every segment each version names, so an object deleted while listed, or
before RFC 8216 6.2.2 lets it go, is caught.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import m3u8
import pytest

from tests.support.media import MediaCache
from tests.support.pipeline import PlaylistPoller, record
from tests.support.viewer import wait_for

from .conftest import Live, live_clip
from .test_faults_live import fill, finish, published, tmpfs, wait_ended

FEED_TIMEOUT_S = 120


def segment_objects(live: Live, prefix: str = "live") -> dict[str, int]:
    """Segment objects under the pipeline's key prefix: name -> size in bytes."""
    found: dict[str, int] = {}
    for page in live.s3.get_paginator("list_objects_v2").paginate(Bucket=live.bucket, Prefix=live.key_prefix + "/"):
        for item in page.get("Contents", []):
            name = item["Key"][len(live.key_prefix) + 1 :]
            if name.startswith(prefix + "-") and name.endswith(".ts"):
                found[name] = item["Size"]
    return found


def listed(text: str) -> list[str]:
    return [segment.uri for segment in m3u8.loads(text).segments]


def local_files(directory: Path, prefix: str = "live") -> list[str]:
    return sorted(path.name for path in directory.glob(f"{prefix}-*.ts"))


def spool_rows(live: Live, query: str) -> list[tuple[object, ...]]:
    """Rows of the (running or stopped) daemon's spool, read-only."""
    path = live.daemons[0].spool_dir / "spool.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


def conforming(poller: PlaylistPoller, final: str) -> None:
    poller.stop()
    poller.add_version(final)
    assert not poller.problems, poller.problems
    assert not poller.conformance, poller.conformance


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_segments_that_left_the_live_window_are_deleted_after_their_availability_time(
    live: Live, media: MediaCache
) -> None:
    clip = live_clip(media, 24)
    live.daemon("--cdn-allowance", "1", retention=True)
    poller = live.poller(every_version=True)
    live.segmenter(clip, 24)
    finish(live)
    wait_ended(live)
    final = live.playlist_text()
    window = listed(final)
    produced = m3u8.loads(final).media_sequence + len(window) - 1
    # Each removed segment goes once RFC 8216 6.2.2's time and the 1-s allowance have passed.
    objects = wait_for(lambda: (found := segment_objects(live)).keys() == set(window) and found,
                       timeout=60, message="only the final window left in the bucket")
    conforming(poller, final)
    # Path mode: the daemon removed each file it read once the segment was stored.
    assert local_files(live.segments_root / "live") == []
    assert spool_rows(live, "SELECT count(*) FROM deletions") == [(0,)]
    record(live.case, segments_produced=produced, segments_published=produced,
           segments_deleted=produced - len(window), bytes_left_on_disk=0, bytes_left_in_bucket=sum(objects.values()),
           playlist_versions=len(poller.texts))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_deletions_queued_before_a_restart_are_done_after_it(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 16)
    daemon = live.daemon("--cdn-allowance", "15", retention=True)
    poller = live.poller(every_version=True)
    live.segmenter(clip, 16)
    finish(live)
    wait_ended(live)
    final = live.playlist_text()
    daemon.kill()  # kill -9: removals recorded, their objects not deleted yet
    pending = [key for (key,) in spool_rows(live, "SELECT object_key FROM deletions")]
    assert pending, "no deletion was pending at the kill"
    names = {key.rsplit("/", 1)[1] for key in pending}
    assert names <= segment_objects(live).keys()
    assert not names & set(listed(final))
    daemon.start()
    wait_for(lambda: segment_objects(live).keys() == set(listed(final)), timeout=90,
             message="the deletions queued before the restart done after it")
    conforming(poller, final)
    # Each deletion is recorded done just after its object is gone: wait for the last record.
    wait_for(lambda: spool_rows(live, "SELECT count(*) FROM deletions") == [(0,)], timeout=10,
             message="every deletion recorded done")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_event_stream_keeps_every_segment_object_and_its_files_are_removed(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 12)
    live.daemon("--playlist-type", "event", "--cdn-allowance", "0", retention=True)
    poller = PlaylistPoller(live.server.object_url(live.bucket, f"{live.key_prefix}/live.m3u8"),
                            live.server.object_url(live.bucket, f"{live.key_prefix}/"),
                            playlist_type="event", every_version=True)
    live.pollers.append(poller)
    poller.start()
    live.segmenter(clip, 12)
    finish(live)
    wait_ended(live)
    final = live.playlist_text()
    assert m3u8.loads(final).media_sequence == 1
    # Nothing was queued for deletion, so nothing will ever be deleted: EVENT never removes a
    # segment from its playlist (RFC 8216 6.2.1).
    assert spool_rows(live, "SELECT count(*) FROM deletions") == [(0,)]
    assert segment_objects(live).keys() == set(listed(final))
    assert local_files(live.segments_root / "live") == []
    conforming(poller, final)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_inline_segments_are_removed_once_acknowledged_unless_kept_and_numbering_goes_on(
    live: Live, media: MediaCache
) -> None:
    clip = live_clip(media, 6)
    daemon = live.daemon("--allow-unsigned-inline", retention=True)
    poller = live.poller(every_version=True)
    out_dir = live.segments_root / "live"
    live.segmenter(clip, 6, "--send-segments", keep_segments=False)
    finish(live)
    wait_ended(live)
    first = live.playlist_text()
    conforming(poller, first)
    # The daemon answered OK with the payload committed in its spool: the file is not needed.
    assert local_files(out_dir) == []
    wait_for(lambda: not list((daemon.spool_dir / "payloads").iterdir()), timeout=30,
             message="the daemon's payload files removed once uploaded")
    # A second run in the same OUTPUT_DIR numbers after what the first sent, though its files are
    # gone: the first stream's objects are never overwritten. It keeps its files.
    kept_poller = live.poller("again.m3u8", every_version=True)
    live.segmenter(clip, 6, "--send-segments", index="again.m3u8", keep_segments=True)
    finish(live)
    wait_ended(live, "again.m3u8")
    again = live.playlist_text("again.m3u8")
    conforming(kept_poller, again)
    last_first = int(listed(first)[-1][len("live-"):-len(".ts")])
    kept = local_files(out_dir)
    assert kept[0] == f"live-{last_first + 1:05d}.ts" and set(listed(again)) <= set(kept)
    assert f"already holds or announced segments up to {last_first}" in live.segmenters[1].log()


@pytest.fixture
def small_output_dir(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs as the segmenter's OUTPUT_DIR (under the daemon's --allow-dir)."""
    yield from tmpfs(tmp_path / "segments" / "live", "size=2m")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_full_output_dir_ends_the_stream_with_what_was_stored(
    live: Live, media: MediaCache, small_output_dir: Path
) -> None:
    clip = live_clip(media, 30)
    # The daemon keeps the files, as an operator may ask: nothing frees the disk again.
    daemon = live.daemon("--keep-segment-files", retention=True)
    poller = live.poller(every_version=True)
    segmenter, feeder = live.segmenter(clip, 30)
    wait_for(lambda: published(live, "live-00003.ts"), timeout=30, message="segment 3 published")
    filler = fill(small_output_dir)
    code = segmenter.wait(FEED_TIMEOUT_S)
    feeder.stop()
    wait_ended(live)
    final = live.playlist_text()
    conforming(poller, final)
    assert code == 1, segmenter.log()[-3000:]
    errors = [line for line in segmenter.log().splitlines() if line.startswith("hls-segment:")]
    assert len(errors) == 1, segmenter.log()[-3000:]
    stored = local_files(small_output_dir)
    assert errors[0].startswith(f"hls-segment: OUTPUT_DIR {small_output_dir} is full (No space left on device")
    assert f"the stream was ended after segment {len(stored)} (EXT-X-ENDLIST)" in errors[0], errors[0]
    assert not [path.name for path in small_output_dir.iterdir() if path.name.endswith(".part")]
    # Everything stored was published, and the final playlist ends with the last of them.
    assert listed(final)[-1] == stored[-1]
    assert set(stored) <= segment_objects(live).keys()
    assert "Traceback" not in segmenter.log()
    filler.unlink()
    record(live.case, segments_produced=len(stored), segments_published=len(segment_objects(live)))
    assert "failed" not in daemon.log()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_stream_whose_segmenter_vanished_is_ended_then_forgotten(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 30)
    daemon = live.daemon("--end-silent-after", "3", "--forget-ended-after", "3", retention=True)
    poller = live.poller(every_version=True)
    segmenter, feeder = live.segmenter(clip, 30)
    wait_for(lambda: published(live, "live-00004.ts"), timeout=30, message="segment 4 published")
    segmenter.kill()  # kill -9: no end message will ever come
    feeder.stop()
    wait_ended(live, timeout_s=60)
    final = live.playlist_text()
    conforming(poller, final)
    assert "(--end-silent-after): ending it with EXT-X-ENDLIST" in daemon.log()
    wait_for(lambda: "(--forget-ended-after): its state is removed from the spool" in daemon.log(), timeout=60,
             message="the ended stream forgotten")
    assert spool_rows(live, "SELECT count(*) FROM streams") == [(0,)]
    assert spool_rows(live, "SELECT count(*) FROM segments") == [(0,)]
    assert live.playlist_text() == final  # the ended playlist stays for viewers
