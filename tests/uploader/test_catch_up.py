"""A stream that is behind skips the playlists a newer queued message supersedes."""

from __future__ import annotations

from pathlib import Path

from protocol import Ack
from tests.support.daemon import place_segment
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none

COUNT = 20


def test_a_backlog_is_published_with_fewer_playlists_and_every_segment(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--window", "30")
    for number in range(1, COUNT + 1):
        place_segment(segment_source, segments_dir, "seg", number)
    with daemon.connect() as client:
        for number in range(1, COUNT + 1):  # all at once, as a segmenter drains its outbox
            client.send_only(ext_message(segments_dir, bucket, number, end=number == COUNT))
        assert [client.reply() for _ in range(COUNT)] == [Ack(n) for n in range(1, COUNT + 1)]
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    playlist = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p,
                        message="the final playlist")
    assert [s.uri for s in playlist.segments] == [f"seg-{n:05d}.ts" for n in range(1, COUNT + 1)]
    for number in range(1, COUNT + 1):
        assert http_get(seaweed.object_url(bucket, f"live/one/seg-{number:05d}.ts")).status == 200
    # The playlist with ENDLIST is visible before the publisher logs its last line: wait for that
    # line (the one saying the stream ended) rather than count at once.
    wait_for(lambda: "(stream ended)" in daemon.log(), message="the last 'published' line")
    published = [line for line in daemon.log().splitlines() if " published" in line]
    assert len(published) == COUNT
    skipped = [line for line in published if "(listed by the next playlist)" in line]
    assert skipped, "a backlog of 20 messages should have let some playlists be skipped"
    assert "(listed by the next playlist)" not in published[-1]  # the last one is always PUT
