"""A stream's state lives in the store: a daemon with a fresh spool, a spool restored from a
backup, or a daemon another one overtook never makes a playlist go back (uploader/resume.py,
Publisher._sync and _fence). Real daemons, real SeaweedFS; every version read goes through the
RFC 8216 checker, and its media sequence must never go back."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import m3u8
import pytest

from protocol import Ack, Reject
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.pipeline import PlaylistPoller
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for
from uploader.resume import STATE_METADATA

from .conftest import StartUploader
from .test_correctable import s3_error
from .test_daemon import ext_message

PLAYLIST = "live/one/index.m3u8"


@contextlib.contextmanager
def watched(seaweed: SeaweedServer, bucket: str) -> Iterator[PlaylistPoller]:
    """A viewer reading the playlist every 20 ms: each version checked (one RFC 8216 history, the
    poller's own), each segment fetched, the media sequence never going back."""
    watching = PlaylistPoller(seaweed.object_url(bucket, PLAYLIST), seaweed.object_url(bucket, "live/one/"), 0.02)
    watching.start()
    yield watching
    watching.stop()
    assert not watching.conformance, watching.conformance
    assert not watching.problems, watching.problems
    sequences = [m3u8.loads(text).media_sequence for text in watching.texts]
    assert sequences == sorted(sequences), f"EXT-X-MEDIA-SEQUENCE went back: {sequences}"


@pytest.fixture
def poller(seaweed: SeaweedServer, bucket: str) -> Iterator[PlaylistPoller]:
    with watched(seaweed, bucket) as watching:
        yield watching


def send(daemon: UploaderDaemon, directory: Path, bucket: str, source: Path, numbers: range, *,
         end_at: int | None = None) -> None:
    with daemon.connect() as client:
        for number in numbers:
            place_segment(source, directory, "seg", number)
            reply = client.send(ext_message(directory, bucket, number, end=number == end_at))
            assert reply == Ack(number), reply


def lists(poller: PlaylistPoller, name: str) -> bool:
    return bool(poller.texts) and poller.texts[-1].rstrip().endswith(name)


def published(daemon: UploaderDaemon, directory: Path, bucket: str, source: Path, numbers: range,
              poller: PlaylistPoller, *, end_at: int | None = None) -> None:
    """``send`` the segments, then wait for the viewer to read the playlist listing the last."""
    send(daemon, directory, bucket, source, numbers, end_at=end_at)
    last = "#EXT-X-ENDLIST" if end_at is not None else f"seg-{numbers[-1]:05d}.ts"
    wait_for(lambda: lists(poller, last), timeout=30, message=f"{last} in the playlist")


def replaced(start_uploader: StartUploader, directory: Path, bucket: str, source: Path,
             poller: PlaylistPoller) -> UploaderDaemon:
    """A daemon that published segments 1 to 5 killed, and a new one with an empty spool started."""
    first = start_uploader("--allow-dir", str(directory), "--keep-segment-files")
    published(first, directory, bucket, source, range(1, 6), poller)
    first.kill()
    return start_uploader("--allow-dir", str(directory), "--keep-segment-files", name="replacement")


def test_a_fresh_spool_goes_on_from_the_playlist_in_the_store(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: object,
) -> None:
    # The operator replaces the machine: a new daemon, an empty spool, the same stream.
    second = replaced(start_uploader, segments_dir, bucket, segment_source, poller)
    # The segmenter re-sends the last segment (its acknowledgement was lost), then goes on.
    send(second, segments_dir, bucket, segment_source, range(5, 9), end_at=8)
    wait_for(lambda: "#EXT-X-ENDLIST" in (poller.texts or [""])[-1], timeout=30, message="the ended playlist")
    final = m3u8.loads(poller.texts[-1])
    assert [(s.uri, n) for n, s in enumerate(final.segments, final.media_sequence)][-4:] == [
        ("seg-00005.ts", 5), ("seg-00006.ts", 6), ("seg-00007.ts", 7), ("seg-00008.ts", 8)]
    log = second.log()
    assert "goes on from its playlist in the store, at media sequence 5 (this spool was at 0" in log
    assert "segment seg-00005.ts: listed already as media sequence 5" in log
    head = s3.head_object(Bucket=bucket, Key=PLAYLIST)  # type: ignore[attr-defined]
    assert STATE_METADATA in head["Metadata"]


def test_the_window_read_from_the_store_is_kept_when_the_stream_goes_on_later(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller,
) -> None:
    # The new daemon's first message is a re-send, then the stream waits a while (its worker
    # ends and a new one loads the state from the spool): the next segment extends the window
    # read from the store, not a window of the one segment this spool saw.
    second = replaced(start_uploader, segments_dir, bucket, segment_source, poller)
    send(second, segments_dir, bucket, segment_source, range(5, 6))
    wait_for(lambda: "segment seg-00005.ts: listed already" in second.log(), timeout=30, message="the re-send")
    time.sleep(0.5)
    published(second, segments_dir, bucket, segment_source, range(6, 7), poller)
    newest = m3u8.loads(poller.texts[-1])  # the window of 5 slid by one
    assert [s.uri for s in newest.segments] == [f"seg-{n:05d}.ts" for n in range(2, 7)]
    assert newest.media_sequence == 2


def test_an_ended_stream_stays_ended_for_a_re_send_and_a_new_run_continues_its_numbering(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    with watched(seaweed, bucket) as poller:
        first = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
        published(first, segments_dir, bucket, segment_source, range(1, 5), poller, end_at=4)
        ended = poller.texts[-1]
        first.kill()
        second = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="replacement")
        send(second, segments_dir, bucket, segment_source, range(4, 5), end_at=4)  # a re-send of the end
        wait_for(lambda: "segment seg-00004.ts: listed already as media sequence 4" in second.log(), timeout=30,
                 message="the re-send found listed")
        second.stop()
        assert poller.texts[-1] == ended
    # A new run under the same name, by a daemon with no state of it: the numbering goes on. (A
    # viewer of the ended playlist reloads it no more: a new one watches the new run.)
    third = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="third")
    send(third, segments_dir, bucket, segment_source, range(5, 8))
    wait_for(lambda: "#EXT-X-ENDLIST" not in http_get(seaweed.object_url(bucket, PLAYLIST)).text, timeout=30,
             message="the new run's first playlist")
    with watched(seaweed, bucket) as poller:
        published(third, segments_dir, bucket, segment_source, range(8, 9), poller)
        newest = m3u8.loads(poller.texts[-1])
    assert newest.media_sequence == 5 and not newest.is_endlist and newest.segments[0].discontinuity
    assert newest.discontinuity_sequence == 0
    assert "a new run continues its numbering at media sequence 5" in third.log()


def test_a_spool_restored_from_a_backup_does_not_take_the_playlist_back(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, tmp_path: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
    published(daemon, segments_dir, bucket, segment_source, range(1, 4), poller)
    assert daemon.stop() == 0
    backup = tmp_path / "backup"
    shutil.copytree(daemon.spool_dir, backup)
    daemon.start()
    published(daemon, segments_dir, bucket, segment_source, range(4, 8), poller)
    assert daemon.stop() == 0
    shutil.rmtree(daemon.spool_dir)
    shutil.copytree(backup, daemon.spool_dir)  # the operator restores last night's spool
    daemon.start()
    published(daemon, segments_dir, bucket, segment_source, range(8, 10), poller)
    newest = m3u8.loads(poller.texts[-1])
    assert [s.uri for s in newest.segments][-3:] == ["seg-00007.ts", "seg-00008.ts", "seg-00009.ts"]
    assert newest.media_sequence + len(newest.segments) - 1 == 9
    assert "goes on from its playlist in the store, at media sequence 7 (this spool was at 3" in daemon.log()


def test_a_daemon_another_overtook_is_refused_by_the_store_and_stops_writing_the_stream(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller,
) -> None:
    # A partition: the owner is paused (SIGSTOP) with a message in hand; a second daemon takes
    # the stream over and publishes; the first is resumed and tries to go on from what it knew.
    old = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
    published(old, segments_dir, bucket, segment_source, range(1, 4), poller)
    new = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="new")
    old.signal(signal.SIGSTOP)
    try:
        published(new, segments_dir, bucket, segment_source, range(4, 7), poller)
    finally:
        old.signal(signal.SIGCONT)
    taken_over = poller.texts[-1]
    # The old owner's spool still says its playlist is the version listing seg 3: its next PUT
    # names that version, and the store refuses it.
    with old.connect() as client:
        assert client.send(ext_message(segments_dir, bucket, 4)) == Ack(4)
    line = wait_for(lambda: [x for x in old.log().splitlines() if "another writer replaced its playlist" in x],
                    timeout=30, message="the old owner's one line")
    assert len(line) == 1 and " ERROR " in line[0] and "stops writing the stream" in line[0]
    with old.connect() as client:  # later messages are not taken: the segmenter sends them to another daemon
        reply = client.send(ext_message(segments_dir, bucket, 5))
        assert isinstance(reply, Reject) and reply.is_transient, reply
        assert "another daemon writes stream" in reply.reason and "send to another daemon" in reply.reason
        probe = dataclasses.replace(ext_message(segments_dir, bucket, 0), writer="ab" * 16, confirm=True, probe=True)
        assert client.send(probe) == reply  # its queue will not be published: asking it how far is no use
    published(new, segments_dir, bucket, segment_source, range(7, 8), poller)
    assert poller.texts.index(taken_over) < len(poller.texts) - 1
    assert "published" not in old.log().split("another writer replaced its playlist")[-1]
    assert len([x for x in old.log().splitlines() if "another writer replaced its playlist" in x]) == 1
    assert "segment seg-00004.ts published" not in old.log()


def test_without_s3_getobject_a_stream_goes_on_from_its_spool_and_the_operator_is_told_once(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, proxy: S3ErrorProxy,
) -> None:
    # A policy with s3:PutObject only: the playlist cannot be read back, but it can still be
    # written as a chain (If-Match needs no read), and nothing is held or lost.
    proxy.fail_next(1000, s3_error(403, "AccessDenied"), methods=("GET",))
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
    published(daemon, segments_dir, bucket, segment_source, range(1, 4), poller)
    assert daemon.stop() == 0
    daemon.start()  # its spool knows the version it wrote last
    published(daemon, segments_dir, bucket, segment_source, range(4, 6), poller, end_at=5)
    lines = [line for line in daemon.log(all_runs=True).splitlines() if "may not read its playlists back" in line]
    assert len(lines) == 2 and "fix: grant the daemon's credentials s3:GetObject" in lines[0]  # once per run
    assert " held" not in daemon.log(all_runs=True)
    assert [s.uri for s in m3u8.loads(poller.texts[-1]).segments][-1] == "seg-00005.ts"


def test_a_playlist_put_whose_reply_was_lost_is_not_taken_for_another_writer(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, proxy: S3ErrorProxy,
) -> None:
    # The store takes the PUT, its reply is lost (a 503 instead): the retry names the version
    # before it and gets 412, but what is there is this daemon's own playlist.
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
    published(daemon, segments_dir, bucket, segment_source, range(1, 3), poller)
    proxy.fail_next(1, Answer(503, b"<Error><Code>ServiceUnavailable</Code></Error>", "application/xml",
                              forward=True), path_ends=".m3u8")
    published(daemon, segments_dir, bucket, segment_source, range(3, 5), poller)
    # The viewer may read the version the lost reply was for before the retry is answered.
    wait_for(lambda: "segment seg-00004.ts published" in daemon.log(), timeout=30, message="the retry")
    playlist_puts = [status for method, path, status in proxy.answered
                     if method == "PUT" and path.split("?")[0].endswith(".m3u8")]
    assert 503 in playlist_puts and 412 in playlist_puts, playlist_puts
    assert "another writer" not in daemon.log()


@pytest.mark.parametrize("playlist_type", ["vod", "event"])
def test_an_ended_recording_is_kept_whole_by_a_daemon_with_a_fresh_spool(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    s3: Any, playlist_type: str,
) -> None:
    # EVENT and VOD playlists are recordings: ended, they never change (RFC 8216 6.2.1), and no
    # new run may replace them or delete what they list.
    options = ("--allow-dir", str(segments_dir), "--keep-segment-files", "--playlist-type", playlist_type,
               "--cdn-allowance", "0")
    first = start_uploader(*options)
    send(first, segments_dir, bucket, segment_source, range(1, 5), end_at=4)
    url = seaweed.object_url(bucket, PLAYLIST)
    ended = wait_for(lambda: "#EXT-X-ENDLIST" in (text := http_get(url).text) and text, timeout=30,
                     message="the recording's end")
    first.kill()
    second = start_uploader(*options, name="replacement")
    send(second, segments_dir, bucket, segment_source, range(5, 7))
    wait_for(lambda: second.log().count("the stream has ended: its playlist is final") == 2, timeout=30,
             message="the new segments refused")
    time.sleep(2)  # what a deletion queued with --cdn-allowance 0 would have had time for
    assert http_get(url).text == ended
    listed = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix="live/one/seg-")["Contents"]]
    assert [f"live/one/seg-{n:05d}.ts" for n in range(1, 5)] == sorted(listed)[:4]
    assert "a new run" not in second.log()


def test_a_playlist_deleted_under_an_aws_like_store_is_written_anew(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    s3: Any, proxy: S3ErrorProxy,
) -> None:
    # AWS answers an If-Match PUT on a missing key 404 NoSuchKey (SeaweedFS: 412). The proxy
    # answers as AWS does; the daemon takes it for "gone", not for a missing bucket.
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", "--endpoint-url", proxy.url)
    send(daemon, segments_dir, bucket, segment_source, range(1, 3))
    wait_for(lambda: "segment seg-00002.ts published" in daemon.log(), timeout=30, message="two segments")
    s3.delete_object(Bucket=bucket, Key=PLAYLIST)
    proxy.fail_next(1, s3_error(404, "NoSuchKey"), path_ends=".m3u8")
    send(daemon, segments_dir, bucket, segment_source, range(3, 4))
    wait_for(lambda: "segment seg-00003.ts published" in daemon.log(), timeout=30, message="the next segment")
    assert "was gone from the store; it is written anew" in daemon.log()
    assert " held" not in daemon.log() and "another writer" not in daemon.log()
    assert s3.get_object(Bucket=bucket, Key=PLAYLIST)["Body"].read().decode().rstrip().endswith("seg-00003.ts")


def test_a_confirming_sender_is_told_how_far_its_stream_is_published_and_a_probe_claims_nothing(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller,
) -> None:
    writer, other = "ab" * 16, "cd" * 16
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
    with daemon.connect() as client:
        for number in (1, 2, 3):
            place_segment(segment_source, segments_dir, "seg", number)
            reply = client.send(dataclasses.replace(ext_message(segments_dir, bucket, number), writer=writer,
                                                    confirm=True))
            assert isinstance(reply, Ack) and reply.last_segment == number and reply.published is not None
            assert reply.published <= number  # queued; published too, if the store was quick
        wait_for(lambda: lists(poller, "seg-00003.ts"), timeout=30, message="seg 3 in the playlist")
        probe = dataclasses.replace(ext_message(segments_dir, bucket, 0), first_segment=1, writer=other,
                                    confirm=True, probe=True)
        assert client.send(probe) == Ack(0, None, 3)
        # The probe of another writer took nothing: this writer's next segment is still taken; without
        # confirm=1 the OK is as before.
        place_segment(segment_source, segments_dir, "seg", 4)
        assert client.send(dataclasses.replace(ext_message(segments_dir, bucket, 4), writer=writer)) == Ack(4)
    assert "taken over" not in daemon.log()


def test_published_counts_only_what_a_playlist_in_the_store_lists(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    # A VOD playlist goes out once, complete: until then its segments are stored but listed by no
    # playlist, and a daemon lost with its disk would take the only record of them with it.
    writer = "ab" * 16
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", "--playlist-type", "vod")
    with daemon.connect() as client:
        for number in (1, 2, 3):
            place_segment(segment_source, segments_dir, "seg", number)
            client.send(dataclasses.replace(ext_message(segments_dir, bucket, number), writer=writer, confirm=True))
        wait_for(lambda: "segment seg-00003.ts published" in daemon.log(), timeout=30, message="seg 3 through")
        probe = dataclasses.replace(ext_message(segments_dir, bucket, 0), writer=writer, confirm=True, probe=True)
        assert client.send(probe) == Ack(0, None, 0)
        place_segment(segment_source, segments_dir, "seg", 4)
        client.send(dataclasses.replace(ext_message(segments_dir, bucket, 4, end=True), writer=writer, confirm=True))
        wait_for(lambda: client.send(probe) == Ack(0, None, 4), timeout=30, message="published=4 once the VOD is out")
    assert "#EXT-X-ENDLIST" in http_get(seaweed.object_url(bucket, PLAYLIST)).text


def test_a_fresh_spool_keeps_the_renditions_the_master_in_the_store_lists_and_ignores_what_is_no_rendition(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    s3: Any,
) -> None:
    first = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
    with first.connect() as client:
        for number in range(1, 4):
            for name in ("a", "b"):
                place_segment(segment_source, segments_dir, name, number)
                message = ext_message(segments_dir, bucket, number, index=f"{name}.m3u8", output_prefix=name)
                assert client.send(message) == Ack(number)
    # Killed once done: a PUT of the killed daemon that the store takes late would be another
    # writer's to the fresh daemon, which then stops writing the stream (as when overtaken).
    wait_for(lambda: all(f"segment {name}-00003.ts published" in first.log() for name in "ab"), timeout=30,
             message="the first daemon done with what it was sent")
    master_key = "live/one/master.m3u8"
    assert "b.m3u8" in http_get(seaweed.object_url(bucket, master_key)).text
    first.kill()
    # Someone edits the master by hand: a rendition that has no playlist, names that are no
    # stream's, a signed URL of b's playlist.
    text = s3.get_object(Bucket=bucket, Key=master_key)["Body"].read().decode()
    text += "#EXT-X-STREAM-INF:BANDWIDTH=1\nc.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\n..\n\n"
    text += "#EXT-X-STREAM-INF:BANDWIDTH=1\nhttps://cdn.example/live/one/b.m3u8?Expires=1&Signature=x\n\u00e9.m3u8\n"
    s3.put_object(Bucket=bucket, Key=master_key, Body=text.encode())
    second = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="fresh")
    with second.connect() as client:  # only a's segmenter has moved to it
        place_segment(segment_source, segments_dir, "a", 4)
        assert client.send(ext_message(segments_dir, bucket, 4, index="a.m3u8", output_prefix="a")) == Ack(4)
    wait_for(lambda: "master playlist uploaded" in second.log(), timeout=30, message="the fresh daemon's master")
    master = m3u8.loads(http_get(seaweed.object_url(bucket, master_key)).text)
    assert sorted(playlist.uri for playlist in master.playlists) == ["a.m3u8", "b.m3u8"]
    assert all(playlist.stream_info.bandwidth > 1 for playlist in master.playlists)
    assert "rendition b.m3u8, listed by the master in the store, kept in it" in second.log()


def test_the_master_names_a_rendition_only_once_its_playlist_is_in_the_store(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    proxy: S3ErrorProxy,
) -> None:
    # a-00001's segment PUT is retried long enough for a-00002 to be queued, so its playlist is
    # left to a-00002's, which the store refuses a while: meanwhile no master names a.m3u8 (a
    # viewer would get 404 for it, for good if the daemon died then).
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", "--endpoint-url", proxy.url)

    def send(name: str, numbers: range) -> None:
        with daemon.connect() as client:
            for number in numbers:
                place_segment(segment_source, segments_dir, name, number)
                message = ext_message(segments_dir, bucket, number, index=f"{name}.m3u8", output_prefix=name)
                assert client.send(message) == Ack(number)

    def refused_playlists() -> int:
        return sum(1 for method, path, status in list(proxy.answered)
                   if method == "PUT" and path.split("?")[0].endswith("/a.m3u8") and status == 503)

    def stored(key: str) -> str | None:
        reply = http_get(seaweed.object_url(bucket, f"live/one/{key}"))
        return reply.text if reply.status == 200 else None

    send("b", range(1, 3))
    proxy.fail_next(6, s3_error(503, "SlowDown"), path_ends="/a-00001.ts")  # ~1 s of jittered backoff
    proxy.fail_next(8, s3_error(503, "SlowDown"), path_ends="/a.m3u8")  # ~1.5 s more
    send("a", range(1, 3))
    superseded = False  # a-00001 done (the master could name a.m3u8 from then on), a.m3u8 still refused
    while refused_playlists() < 8:
        superseded = superseded or "a-00001.ts published as media sequence 1 (listed by the next playlist)" \
            in daemon.log()
        assert "a.m3u8" not in (stored("master.m3u8") or ""), "the master names a playlist the store has not got"
        time.sleep(0.02)
    assert superseded, "a-00001 was not left to the next playlist, or not within the refusals of a.m3u8"
    wait_for(lambda: "a.m3u8" in (stored("master.m3u8") or ""), timeout=30, message="a master naming a and b")
    assert stored("a.m3u8") is not None


def test_a_master_put_replaces_only_the_version_its_daemon_last_saw(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    # Two daemons without leases each publish renditions of one program: each master PUT names
    # the version it replaces, so neither drops a rendition only the other knows.
    def publish(daemon: UploaderDaemon, name: str, numbers: range) -> None:
        with daemon.connect() as client:
            for number in numbers:
                place_segment(segment_source, segments_dir, name, number)
                message = ext_message(segments_dir, bucket, number, index=f"{name}.m3u8", output_prefix=name)
                assert client.send(message) == Ack(number)

    def listed() -> list[str]:
        reply = http_get(seaweed.object_url(bucket, "live/one/master.m3u8"))
        return sorted(p.uri for p in m3u8.loads(reply.text).playlists) if reply.status == 200 else []

    first = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="first")
    second = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", name="second")
    publish(first, "a", range(1, 3))
    publish(first, "b", range(1, 3))
    wait_for(lambda: listed() == ["a.m3u8", "b.m3u8"], timeout=30, message="the first daemon's master of a and b")
    publish(second, "c", range(1, 3))  # reads the master, keeps a and b
    wait_for(lambda: listed() == ["a.m3u8", "b.m3u8", "c.m3u8"], timeout=30, message="the second daemon's master")
    publish(first, "d", range(1, 3))  # its master version is stale: refused, read again, c kept
    wait_for(lambda: listed() == ["a.m3u8", "b.m3u8", "c.m3u8", "d.m3u8"], timeout=30, message="a master of all four")
    assert "rendition c.m3u8, listed by the master in the store, kept in it" in first.log()


def test_a_daemon_going_on_from_another_ones_playlist_deletes_what_that_one_had_queued_for_deletion(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: Any,
) -> None:
    # Retention on, no CDN allowance: segments 1-3 leave the window of 5 and wait their RFC 8216
    # 6.2.2 time for deletion in the first daemon's spool, which is lost with its host.
    def stored() -> set[str]:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="live/one/seg-")
        return {item["Key"].rsplit("/", 1)[1] for item in listing.get("Contents", [])}

    options = ("--allow-dir", str(segments_dir), "--keep-segment-files", "--cdn-allowance", "0")
    first = start_uploader(*options)
    published(first, segments_dir, bucket, segment_source, range(1, 9), poller)
    first.kill()
    assert {f"seg-{n:05d}.ts" for n in range(1, 4)} <= stored()
    second = start_uploader(*options, name="replacement")
    published(second, segments_dir, bucket, segment_source, range(9, 10), poller)
    # Due the window's length (10 s) and a segment after the takeover: 1-3 go, and 4, which 9
    # pushed out of the window; 5-9 stay.
    wait_for(lambda: stored() == {f"seg-{n:05d}.ts" for n in range(5, 10)}, timeout=40, interval=0.5,
             message="segments 1-4 deleted")
