"""hls-uploadd end to end: real sockets, a real SeaweedFS, real TS files, the daemon as a process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocol import Ack, IndexMessage, Reject
from tests.support.daemon import place_segment
from tests.support.rfc8216 import History
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import fetch_playlist, http_get, read_playlist, wait_for

from .conftest import StartUploader
from .original_rule import comparable, ruby_index

HTTP_PREFIX = "http://cdn.example.net/stream0001/"


def v1_line(directory: Path, bucket: str, last: int, *, end: int = 0, http_prefix: str = HTTP_PREFIX,
            prefix: str = "sample_128k") -> bytes:
    """The original C client's exact bytes (its sprintf format), no newline."""
    return (
        f"stream-128k.m3u8, {directory}/, 10, {prefix}, {http_prefix}, 1, {last}, {end}, {bucket}, stream0001"
    ).encode()


def test_original_v1_message_over_a_raw_socket(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    assert str(segments_dir) in daemon.startup_line and "store s3" in daemon.startup_line
    place_segment(segment_source, segments_dir, "sample_128k", 1)
    assert daemon.send_v1(v1_line(segments_dir, bucket, 1)) == b"OK 1\n"

    playlist_url = seaweed.object_url(bucket, "stream0001/stream-128k.m3u8")
    playlist = wait_for(lambda: (r := http_get(playlist_url)).status == 200 and r, message="the playlist")
    assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert playlist.headers["Cache-Control"] == "max-age=1"
    assert playlist.text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:1\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        f"#EXTINF:10,\n{HTTP_PREFIX}sample_128k-00001.ts\n"
    )
    segment = http_get(seaweed.object_url(bucket, "stream0001/sample_128k-00001.ts"))
    assert segment.status == 200
    assert segment.body == segment_source.read_bytes()
    assert segment.headers["Content-Type"] == "video/MP2T"
    assert segment.headers["Cache-Control"] == "max-age=31536000, immutable"


def test_v1_playlists_follow_the_original_window_rule(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    playlist_url = seaweed.object_url(bucket, "stream0001/stream-128k.m3u8")
    assert daemon.send_v1(v1_line(segments_dir, bucket, 0)) == b"OK 0\n"  # the original's start-up message
    for last in range(1, 13):
        place_segment(segment_source, segments_dir, "sample_128k", last)
        assert daemon.send_v1(v1_line(segments_dir, bucket, last)) == f"OK {last}\n".encode()
        expected = ruby_index(10, "sample_128k", HTTP_PREFIX, 1, last)
        wait_for(lambda: comparable(http_get(playlist_url).text) == expected, message=f"playlist for last={last}")
    for number in range(1, 13):  # every segment was uploaded, not only the listed ones
        assert http_get(seaweed.object_url(bucket, f"stream0001/sample_128k-{number:05d}.ts")).status == 200


def test_an_original_segmenter_restarted_from_one_opens_a_discontinuity(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    # The original client has no discontinuity flag: a restart shows only as numbers starting
    # over (here under a new OUTPUT_PREFIX, as an operator restarting it would give). Its first
    # segment is a new timeline for players (RFC 8216 4.3.2.3).
    daemon = start_uploader("--allow-dir", str(segments_dir))
    playlist_url = seaweed.object_url(bucket, "stream0001/stream-128k.m3u8")
    history = History()
    runs = [("sample_128k", [1, 2, 3]), ("sample_128k_b", [1, 2])]
    for prefix, numbers in runs:
        for last in numbers:
            place_segment(segment_source, segments_dir, prefix, last)
            end = int(prefix == runs[-1][0] and last == numbers[-1])
            assert daemon.send_v1(v1_line(segments_dir, bucket, last, end=end, prefix=prefix)) == f"OK {last}\n".encode()
            name = f"{HTTP_PREFIX}{prefix}-{last:05d}.ts"
            history.add(wait_for(lambda: name in (text := http_get(playlist_url).text) and text,
                                 message=f"{name} listed"))
    assert history.problems == []
    final = history.last
    assert final is not None and final.endlist
    assert [(s.uri.rsplit("/", 1)[1], s.discontinuity) for s in final.segments] == [
        ("sample_128k-00001.ts", False), ("sample_128k-00002.ts", False), ("sample_128k-00003.ts", False),
        ("sample_128k_b-00001.ts", True), ("sample_128k_b-00002.ts", False),
    ]


@pytest.mark.parametrize("kind", ["event", "vod"])
def test_event_and_vod_playlists_keep_every_segment_whatever_the_window(
    kind: str, start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    # --window bounds a live playlist only: an EVENT playlist never removes a segment, and a VOD
    # one is published once, complete (RFC 8216 4.3.3.5, 6.2.1).
    daemon = start_uploader("--allow-dir", str(segments_dir), "--playlist-type", kind, "--window", "3")
    playlist_url = seaweed.object_url(bucket, "live/one/index.m3u8")
    history = History(kind)
    count = 6
    with daemon.connect() as client:
        for number in range(1, count + 1):
            place_segment(segment_source, segments_dir, "seg", number)
            assert client.send(ext_message(segments_dir, bucket, number, end=number == count)) == Ack(number)
            wait_for(lambda: f"segment seg-{number:05d}.ts published" in daemon.log(), message=f"segment {number}")
            reply = http_get(playlist_url)
            if kind == "vod" and number < count:
                assert reply.status == 404, "a VOD playlist was published before the stream ended"
                continue
            assert reply.status == 200
            history.add(reply.text)
    assert history.problems == []
    final = history.last
    assert final is not None and final.endlist and final.playlist_type == kind.upper()
    assert [segment.uri for segment in final.segments] == [f"seg-{n:05d}.ts" for n in range(1, count + 1)]
    assert final.media_sequence == 1


def ext_message(directory: Path, bucket: str, last: int, **fields: object) -> IndexMessage:
    values: dict[str, object] = {
        "index": "index.m3u8",
        "output_directory": str(directory),
        "segment_duration": 2,
        "output_prefix": "seg",
        "http_prefix": "",
        "first_segment": 1,
        "last_segment": last,
        "end": False,
        "bucket": bucket,
        "key_prefix": "live/one",
        "duration": 2.0,
    }
    values.update(fields)
    return IndexMessage(**values)  # type: ignore[arg-type]


DURATIONS = [1.96, 2.04, 2.002, 1.8, 2.2, 2.0, 1.999, 2.001]


def test_extension_messages_on_one_connection(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    playlist_url = seaweed.object_url(bucket, "live/one/index.m3u8")
    targets: set[int] = set()
    with daemon.connect() as client:
        for number, duration in enumerate(DURATIONS, start=1):
            place_segment(segment_source, segments_dir, "seg", number)
            message = ext_message(segments_dir, bucket, number, duration=duration, end=number == len(DURATIONS))
            assert client.send(message) == Ack(number)
            reply = http_get(playlist_url)
            if reply.status == 200:
                targets.add(fetch_playlist(playlist_url).target_duration)
    final = wait_for(lambda: (p := fetch_playlist_or_none(playlist_url)) is not None and p.is_endlist and p,
                     message="the ended playlist")
    targets.add(final.target_duration)
    assert targets == {2}  # constant for the whole stream, and no rounded EXTINF above it
    assert [segment.duration for segment in final.segments] == DURATIONS[-5:]
    assert final.media_sequence == len(DURATIONS) - 4
    text = http_get(playlist_url).text
    assert "#EXTINF:2.002,\nseg-00003.ts" not in text  # slid out of the window
    assert "#EXTINF:2.2,\nseg-00005.ts\n" in text and text.endswith("#EXT-X-ENDLIST\n")
    for segment in final.segments:  # relative URIs resolve next to the playlist
        assert http_get(segment.absolute_uri).status == 200


def fetch_playlist_or_none(url: str):  # type: ignore[no-untyped-def]
    return fetch_playlist(url) if http_get(url).status == 200 else None


def test_resent_messages_are_idempotent(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    for number in (1, 2):
        place_segment(segment_source, segments_dir, "seg", number)
    with daemon.connect() as client:
        assert client.send(ext_message(segments_dir, bucket, 1)) == Ack(1)
        assert client.send(ext_message(segments_dir, bucket, 2)) == Ack(2)
    with daemon.connect() as client:  # a segmenter reconnects and re-sends what it is unsure of
        assert client.send(ext_message(segments_dir, bucket, 1)) == Ack(1)
        assert client.send(ext_message(segments_dir, bucket, 2, end=True)) == Ack(2)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p)
    assert [s.uri for s in final.segments] == ["seg-00001.ts", "seg-00002.ts"]
    assert final.media_sequence == 1


def test_a_reader_never_sees_a_playlist_naming_a_missing_segment(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    import threading

    daemon = start_uploader("--allow-dir", str(segments_dir), "--window", "3")
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    count = 20
    for number in range(1, count + 1):
        place_segment(segment_source, segments_dir, "seg", number)
    stop = threading.Event()
    problems: list[str] = []
    versions: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            reply = http_get(url)
            if reply.status != 200:
                continue
            playlist = fetch_playlist_from_text(reply.text, url)
            if versions and playlist.media_sequence < versions[-1]:
                problems.append(f"media sequence went back from {versions[-1]} to {playlist.media_sequence}")
            versions.append(playlist.media_sequence)
            for segment in playlist.segments:
                status = http_get(segment.absolute_uri).status
                if status != 200:
                    problems.append(f"{segment.uri} listed but GET gave {status}")
            if playlist.is_endlist:
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with daemon.connect() as client:
            for number in range(1, count + 1):
                client.send_only(ext_message(segments_dir, bucket, number, end=number == count))
            assert [client.reply() for _ in range(count)] == [Ack(n) for n in range(1, count + 1)]
        thread.join(timeout=60)
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert len(set(versions)) > 2, "the reader should have seen the playlist move"
    assert versions[-1] == count - 2


def fetch_playlist_from_text(text: str, url: str):  # type: ignore[no-untyped-def]
    return read_playlist(url, text)


def test_two_streams_one_failing(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir))
    good_dir, bad_dir = segments_dir / "good", segments_dir / "bad"
    for number in range(1, 7):
        place_segment(segment_source, good_dir, "seg", number)
        if number != 3:  # the failing stream's segment 3 never reaches the disk
            place_segment(segment_source, bad_dir, "seg", number)
    with daemon.connect() as good, daemon.connect() as bad:
        for number in range(1, 7):
            end = number == 6
            assert bad.send(ext_message(bad_dir, bucket, number, key_prefix="live/bad", end=end)) == Ack(number)
            assert good.send(ext_message(good_dir, bucket, number, key_prefix="live/good", end=end)) == Ack(number)
    good_url = seaweed.object_url(bucket, "live/good/index.m3u8")
    bad_url = seaweed.object_url(bucket, "live/bad/index.m3u8")
    good_final = wait_for(lambda: (p := fetch_playlist_or_none(good_url)) is not None and p.is_endlist and p)
    bad_final = wait_for(lambda: (p := fetch_playlist_or_none(bad_url)) is not None and p.is_endlist and p)
    assert [s.uri for s in good_final.segments] == [f"seg-{n:05d}.ts" for n in range(2, 7)]
    assert [s.uri for s in bad_final.segments] == [f"seg-{n:05d}.ts" for n in (1, 2, 4, 5, 6)]
    assert [s.discontinuity for s in bad_final.segments] == [False, False, True, False, False]
    assert bad_final.media_sequence == 1  # gap-free numbering: 1..5 for the five published
    assert http_get(seaweed.object_url(bucket, "live/bad/seg-00003.ts")).status == 404
    log = daemon.log()
    assert f"stream {bucket}/live/bad/index.m3u8 segment seg-00003.ts failed permanently" in log
    assert "does not exist" in log
    assert "live/good/index.m3u8 segment seg-00003.ts failed" not in log


def test_refusals_get_a_reason_and_the_daemon_keeps_serving(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    place_segment(segment_source, outside, "seg", 1)
    (segments_dir / "escape").symlink_to(outside)
    daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket)
    with daemon.connect() as client:
        reply = client.send(ext_message(outside, bucket, 1))
        # Reject.because cuts a long reason (a long tmp path) as the daemon does.
        assert reply == Reject.because(f"output directory {outside} is not allowed (add --allow-dir {outside})")
        reply = client.send(ext_message(segments_dir / "escape", bucket, 1))
        assert isinstance(reply, Reject) and "is not allowed" in reply.reason
        reply = client.send(ext_message(segments_dir, "other-bucket", 1))
        assert reply == Reject("bucket other-bucket is not allowed for unsigned messages (add --bucket other-bucket)")
        reply = client.send(b"this is not a message\n")
        assert reply == Reject("expected 10 comma-separated fields, got 1")
        assert client.send(b"x" * 5000 + b"\n") == Reject("line longer than 4096 bytes")
        reply = client.send(dataclasses.replace(ext_message(segments_dir, bucket, 1), output_directory="tmp/x"))
        assert reply == Reject("output directory tmp/x must be an absolute path")
        reply = client.send(ext_message(segments_dir, "other-bucket", 1, size=3))
        assert reply == Reject("bucket other-bucket is not allowed for unsigned messages (add --bucket other-bucket)")
        client.send_only(b"abc")  # the refused message's payload: skipped, the framing holds
        place_segment(segment_source, segments_dir, "seg", 1)
        assert client.send(ext_message(segments_dir, bucket, 1, end=True)) == Ack(1)
    assert daemon.send_v1(b"garbage") == b"ERR expected 10 comma-separated fields, got 1\n"
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist)
    log = daemon.log()
    assert "refused: output directory" in log and "add --allow-dir" in log


def test_a_symlinked_segment_file_is_never_uploaded(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"SECRET")
    (segments_dir / "seg-00001.ts").symlink_to(secret)
    place_segment(segment_source, segments_dir, "seg", 2)
    daemon = start_uploader("--allow-dir", str(segments_dir))
    with daemon.connect() as client:
        assert client.send(ext_message(segments_dir, bucket, 1)) == Ack(1)  # the directory is fine
        assert client.send(ext_message(segments_dir, bucket, 2, end=True)) == Ack(2)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p)
    assert [s.uri for s in final.segments] == ["seg-00002.ts"]
    assert http_get(seaweed.object_url(bucket, "live/one/seg-00001.ts")).status == 404
    assert "seg-00001.ts failed permanently" in daemon.log() and "symlink" in daemon.log()


def test_file_store(start_uploader: StartUploader, segments_dir: Path, segment_source: Path, tmp_path: Path) -> None:
    root = tmp_path / "www"
    daemon = start_uploader("--allow-dir", str(segments_dir), "--store", f"file://{root}")
    assert f"store file://{root}" in daemon.startup_line
    place_segment(segment_source, segments_dir, "seg", 1)
    with daemon.connect() as client:
        assert client.send(ext_message(segments_dir, "bucket", 1, end=True)) == Ack(1)
    playlist = root / "bucket/live/one/index.m3u8"
    wait_for(lambda: playlist.exists() and playlist.read_text().endswith("#EXT-X-ENDLIST\n"))
    assert (root / "bucket/live/one/seg-00001.ts").read_bytes() == segment_source.read_bytes()


def test_player_page_and_script_are_uploaded_beside_the_playlist(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--player-page")
    place_segment(segment_source, segments_dir, "seg", 1)
    with daemon.connect() as client:
        assert client.send(ext_message(segments_dir, bucket, 1)) == Ack(1)
    page_url = seaweed.object_url(bucket, "live/one/index.html")
    page = wait_for(lambda: (r := http_get(page_url)).status == 200 and r, message="the player page")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<video id="video"' in page.text and 'href="index.m3u8"' in page.text
    assert '<script src="hls.light.min.js">' in page.text
    script = http_get(seaweed.object_url(bucket, "live/one/hls.light.min.js"))
    assert script.status == 200 and script.headers["Content-Type"] == "text/javascript"
    assert b"isSupported" in script.body and len(script.body) > 100_000
    assert http_get(seaweed.object_url(bucket, "live/one/index.m3u8")).status == 200
