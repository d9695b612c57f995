"""Published segments are never overwritten (issue 15 point 3): segment PUTs are create-only.

A name already taken by the same bytes is a redo and publishes; by other bytes it is refused
loudly and the published object keeps its bytes. Real SeaweedFS (which enforces If-None-Match),
the real file store, a proxy only for what SeaweedFS never does (a lost reply, a refused GET, a
store that ignores the condition).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer, s3_client
from tests.support.viewer import read_playlist, wait_for
from uploader.stores import (
    CorrectableStoreError,
    FileStore,
    ObjectTakenError,
    S3Store,
    Store,
    TransientStoreError,
    check_writable,
)

from .conftest import StartUploader
from .test_correctable import s3_error
from .test_daemon import ext_message, fetch_playlist_or_none

REUSED = "segment name reused: another writer or run published different bytes under this name"
KEY = "live/one/seg-00001.ts"


def put_segment(store: Store, bucket: str, body: bytes | Path) -> None:
    content = body if isinstance(body, bytes) else (lambda: body.open("rb"))
    store.put(bucket, KEY, content, content_type="video/MP2T", cache_control="max-age=60", create_only=True)


def stored(s3: BaseClient, bucket: str, key: str = KEY) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def other_bytes(source: Path, directory: Path) -> Path:
    """A copy of ``source`` with one payload byte changed: still MPEG-TS (sync bytes, PAT), other bytes."""
    data = bytearray(source.read_bytes())
    data[188 * 5 + 100] ^= 0xFF
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "other.ts"
    target.write_bytes(bytes(data))
    return target


@pytest.fixture
def proxied(proxy: S3ErrorProxy) -> Iterator[S3Store]:
    """An S3Store that talks to SeaweedFS through ``proxy``, retries off as in the daemon."""
    client = s3_client(proxy.url, max_attempts=1)
    yield S3Store(client)
    client.close()


# The stores.


def test_s3_create_only_put_keeps_what_is_published(s3: BaseClient, bucket: str, tmp_path: Path) -> None:
    store = S3Store(s3)
    assert check_writable(store, bucket)  # SeaweedFS enforces If-None-Match
    put_segment(store, bucket, b"G first bytes")
    put_segment(store, bucket, b"G first bytes")  # a redo: the same bytes, no error
    with pytest.raises(ObjectTakenError, match=f"s3://{bucket}/{KEY}: an object with other bytes"):
        put_segment(store, bucket, b"G other bytes")
    source = tmp_path / "other.ts"
    source.write_bytes(b"G other bytes from a file")
    with pytest.raises(ObjectTakenError):
        put_segment(store, bucket, source)
    assert stored(s3, bucket) == b"G first bytes"
    # Playlists stay plain PUTs, replaced each time.
    for text in (b"#EXTM3U\n", b"#EXTM3U\n#EXT-X-VERSION:3\n"):
        store.put(bucket, "live/one/index.m3u8", text, content_type="x", cache_control="y")
    assert stored(s3, bucket, "live/one/index.m3u8") == b"#EXTM3U\n#EXT-X-VERSION:3\n"


def test_file_store_create_only_put_keeps_what_is_published(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert check_writable(store, "b")
    target = tmp_path / "store/b" / KEY
    put_segment(store, "b", b"G first bytes")
    put_segment(store, "b", b"G first bytes")
    with pytest.raises(ObjectTakenError, match=f"{target}: an object with other bytes"):
        put_segment(store, "b", b"G other bytes")
    source = tmp_path / "other.ts"
    source.write_bytes(b"G other bytes from a file")
    with pytest.raises(ObjectTakenError):
        put_segment(store, "b", source)
    assert target.read_bytes() == b"G first bytes"
    assert [name for name in os.listdir(target.parent) if name.startswith(".")] == []  # no temp file left
    source.write_bytes(b"G first bytes")
    target.unlink()
    put_segment(store, "b", source)  # a new name: created from the file
    assert target.read_bytes() == b"G first bytes"


def test_a_store_that_ignores_the_condition_is_found_and_checked_with_a_head(
    proxy: S3ErrorProxy, proxied: S3Store, s3: BaseClient, bucket: str
) -> None:
    """An S3 clone that ignores If-None-Match (the proxy drops the header): the start-up check
    finds it, and a create-only PUT then HEADs first, so it still never replaces a segment."""
    proxy.drop_headers = frozenset({"if-none-match"})
    assert not check_writable(proxied, bucket)
    put_segment(proxied, bucket, b"G first bytes")
    put_segment(proxied, bucket, b"G first bytes")
    with pytest.raises(ObjectTakenError):
        put_segment(proxied, bucket, b"G other bytes")
    assert stored(s3, bucket) == b"G first bytes"
    assert [method for method, path, _ in proxy.answered if path.endswith(KEY)] == [
        "HEAD", "PUT", "HEAD", "GET", "HEAD", "GET"]
    proxy.drop_headers = frozenset()
    assert check_writable(proxied, bucket)  # the store enforces it again: no HEAD any more
    with pytest.raises(ObjectTakenError):
        put_segment(proxied, bucket, b"G other bytes")
    assert [method for method, path, _ in proxy.answered if path.endswith(KEY)][6:] == ["PUT", "GET"]


def test_a_taken_name_that_cannot_be_read_is_held_with_the_fix(
    proxy: S3ErrorProxy, proxied: S3Store, s3: BaseClient, bucket: str
) -> None:
    """Without s3:GetObject a redo cannot be told from a reuse: held for the operator, not guessed."""
    put_segment(proxied, bucket, b"G first bytes")
    proxy.fail_next(1, s3_error(403, "AccessDenied"), methods=("GET",))
    with pytest.raises(CorrectableStoreError) as raised:
        put_segment(proxied, bucket, b"G first bytes")
    assert "cannot be read to compare it" in str(raised.value)
    assert f"s3:GetObject on arn:aws:s3:::{bucket}/*" in raised.value.fix
    put_segment(proxied, bucket, b"G first bytes")  # granted: the redo goes through


def test_a_taken_name_gone_before_it_is_compared_is_tried_again(
    proxy: S3ErrorProxy, proxied: S3Store, s3: BaseClient, bucket: str
) -> None:
    """The object went between the 412 and the GET (a retention deletion): transient, and the next
    attempt creates it."""
    put_segment(proxied, bucket, b"G first bytes")
    proxy.fail_next(1, s3_error(404, "NoSuchKey"), methods=("GET",))
    with pytest.raises(TransientStoreError, match="gone at the GET"):
        put_segment(proxied, bucket, b"G first bytes")
    s3.delete_object(Bucket=bucket, Key=KEY)
    put_segment(proxied, bucket, b"G second run")
    assert stored(s3, bucket) == b"G second run"


# The daemon.


def send(daemon: UploaderDaemon, directory: Path, bucket: str, number: int, **fields: object) -> None:
    with daemon.connect() as client:
        assert client.send(ext_message(directory, bucket, number, **fields)) == Ack(number)


# The second run: another stream in the same key prefix (another segmenter's OUTPUT_DIR), or the
# same stream's next run numbering from 1 again (a pruned OUTPUT_DIR, a wrong --start-number).
SECOND_RUNS = {"another stream": {"index": "other.m3u8"}, "the same stream restarted": {"discontinuity": True}}


def reuse_attack(daemon: UploaderDaemon, bucket: str, tmp_path: Path, source: Path, second: dict[str, object]) -> str:
    """A first run publishes seg-00001.ts and seg-00002.ts; a second run (``second``: its message
    fields) sends other bytes under seg-00001.ts. Returns the log once that message was handled."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for number in (1, 2):
        place_segment(source, first_dir, "seg", number)
    place_segment(other_bytes(source, tmp_path / "made"), second_dir, "seg", 1)
    send(daemon, first_dir, bucket, 1)
    send(daemon, first_dir, bucket, 2)
    wait_for(lambda: "/live/one/index.m3u8 segment seg-00002.ts published" in daemon.log(),
             timeout=30, message="the first run's segment 2 published")
    send(daemon, second_dir, bucket, 1, **second)
    return wait_for(lambda: ("failed permanently" in (log := daemon.log())
                             or log.count(" segment seg-00001.ts published") == 2) and log,
                    timeout=30, message="the second run's segment 1 handled")


def assert_refused(log: str, second: dict[str, object], where: str, kept: bytes, original: bytes) -> None:
    assert kept == original, "the published segment was overwritten"
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert f"/live/one/{second.get('index', 'index.m3u8')} segment seg-00001.ts failed" in errors[0], errors[0]
    assert where in errors[0] and REUSED in errors[0], errors[0]


@pytest.mark.parametrize("second", SECOND_RUNS.values(), ids=SECOND_RUNS.keys())
def test_a_second_run_reusing_a_published_name_is_refused(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, tmp_path: Path,
    segment_source: Path, second: dict[str, object],
) -> None:
    """The attack (issue 15): before create-only PUTs the second run's bytes replaced the
    published segment."""
    daemon = start_uploader("--allow-dir", str(tmp_path))
    log = reuse_attack(daemon, bucket, tmp_path, segment_source, second)
    assert_refused(log, second, f"s3://{bucket}/{KEY}", stored(s3, bucket), segment_source.read_bytes())
    for index in ("index.m3u8", "other.m3u8"):
        playlist = fetch_playlist_or_none(seaweed.object_url(bucket, f"live/one/{index}"))
        listed = [segment.uri for segment in playlist.segments] if playlist is not None else []
        assert listed.count("seg-00001.ts") <= 1 and (index == "index.m3u8" or not listed), (index, listed)


@pytest.mark.parametrize("second", SECOND_RUNS.values(), ids=SECOND_RUNS.keys())
def test_a_second_run_reusing_a_published_name_is_refused_by_the_file_store(
    start_uploader: StartUploader, tmp_path: Path, segment_source: Path, second: dict[str, object],
) -> None:
    root = tmp_path / "store"
    daemon = start_uploader("--allow-dir", str(tmp_path), "--store", f"file://{root}")
    log = reuse_attack(daemon, "media", tmp_path, segment_source, second)
    target = root / "media" / KEY
    assert_refused(log, second, str(target), target.read_bytes(), segment_source.read_bytes())


def test_a_put_whose_reply_was_lost_publishes_once(
    start_uploader: StartUploader, proxy: S3ErrorProxy, seaweed: SeaweedServer, s3: BaseClient, bucket: str,
    segments_dir: Path, segment_source: Path,
) -> None:
    """S3 stored the segment, the reply was lost (a 500 instead): the retry finds the name taken by
    the same bytes (412, then a GET), and the segment is published, once, with no error."""
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
    proxy.fail_next(1, Answer(500, b"<html>lost</html>", forward=True), path_ends="seg-00001.ts")
    for number in (1, 2):
        place_segment(segment_source, segments_dir, "seg", number)
    send(daemon, segments_dir, bucket, 1)
    send(daemon, segments_dir, bucket, 2, end=True)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == ["seg-00001.ts", "seg-00002.ts"]
    assert [(m, status) for m, path, status in proxy.answered if path.split("?")[0].endswith(KEY)] == [
        ("PUT", 500), ("PUT", 412), ("GET", 200)]
    assert stored(s3, bucket) == segment_source.read_bytes()
    log = daemon.log()
    assert " ERROR " not in log and "upload of seg-00001.ts failed (attempt 1)" in log
    assert log.count("segment seg-00001.ts published") == 1


def test_a_redo_after_a_kill_between_put_and_record_publishes_once(
    start_uploader: StartUploader, proxy: S3ErrorProxy, seaweed: SeaweedServer, s3: BaseClient, bucket: str,
    segments_dir: Path, segment_source: Path,
) -> None:
    """kill -9 after S3 took the segment and before the spool recorded it (the playlist PUT refused
    meanwhile makes the moment): the restarted daemon's create-only PUT gets 412, finds the same
    bytes, and publishes with no error."""
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
    proxy.fail_next(1000, s3_error(403, "AccessDenied"), path_ends=".m3u8")
    place_segment(segment_source, segments_dir, "seg", 1)
    send(daemon, segments_dir, bucket, 1, end=True)
    wait_for(lambda: " held: upload of live/one/index.m3u8" in daemon.log(), timeout=30, message="playlist held")
    assert stored(s3, bucket) == segment_source.read_bytes()
    daemon.kill()
    proxy.clear()
    daemon.start()
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == ["seg-00001.ts"]
    assert ("PUT", 412) in [(m, status) for m, path, status in proxy.answered if path.split("?")[0].endswith(KEY)]
    # The playlist is readable before the daemon writes the line that says so.
    log = wait_for(lambda: "segment seg-00001.ts published" in (text := daemon.log()) and text, timeout=30,
                   message="the published line")
    assert " ERROR " not in log


def test_a_redo_after_a_kill_between_put_and_record_publishes_once_in_the_file_store(
    start_uploader: StartUploader, tmp_path: Path, segments_dir: Path, segment_source: Path
) -> None:
    """kill -9 after the store took the segment and before the spool recorded it: the message is
    still queued, and the restarted daemon's create-only PUT finds the same bytes there.

    The moment is made by killing the daemon while its store refuses the playlist (a read-only
    playlist name: the segment is stored, the message not yet recorded)."""
    root = tmp_path / "store"
    daemon = start_uploader("--allow-dir", str(segments_dir), "--store", f"file://{root}")
    playlist = root / "media/live/one/index.m3u8"
    playlist.mkdir(parents=True)  # the playlist PUT fails (a directory is in the way) and is held
    place_segment(segment_source, segments_dir, "seg", 1)
    send(daemon, segments_dir, "media", 1, end=True)
    wait_for(lambda: " held: upload of live/one/index.m3u8" in daemon.log(), timeout=30, message="playlist held")
    assert (root / "media" / KEY).read_bytes() == segment_source.read_bytes()
    daemon.kill()
    playlist.rmdir()
    daemon.start()
    wait_for(playlist.is_file, timeout=30, message="the playlist after the restart")
    final = read_playlist(playlist.as_uri(), playlist.read_text())
    assert [s.uri for s in final.segments] == ["seg-00001.ts"] and final.is_endlist
    log = wait_for(lambda: "segment seg-00001.ts published" in (text := daemon.log()) and text, timeout=30,
                   message="the published line")
    assert " ERROR " not in log and "failed permanently" not in log


def test_a_bucket_made_again_gets_its_window_uploaded_again(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    """The bucket is deleted with its objects and made again: the create-only PUTs of the restore
    (``Publisher._restore``) find the names free and upload the window again from the files."""
    daemon = start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files")
    for number in range(1, 6):
        place_segment(segment_source, segments_dir, "seg", number)
    for number in (1, 2, 3):
        send(daemon, segments_dir, bucket, number)
    wait_for(lambda: "segment seg-00003.ts published" in daemon.log(), timeout=30, message="segment 3 published")
    s3.delete_bucket(Bucket=bucket)  # SeaweedFS deletes its objects with it
    send(daemon, segments_dir, bucket, 4)
    wait_for(lambda: " held: upload of live/one/seg-00004.ts" in daemon.log(), timeout=30, message="segment 4 held")
    s3.create_bucket(Bucket=bucket)
    send(daemon, segments_dir, bucket, 5, end=True)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == [f"seg-{n:05d}.ts" for n in range(1, 6)]
    for number in range(1, 6):
        assert stored(s3, bucket, f"live/one/seg-{number:05d}.ts") == segment_source.read_bytes(), number
    log = daemon.log()
    assert "3 segment(s) of the window were gone from bucket" in log and "failed permanently" not in log


def test_a_daemon_on_a_store_that_ignores_the_condition_warns_and_still_refuses(
    start_uploader: StartUploader, proxy: S3ErrorProxy, s3: BaseClient, bucket: str, tmp_path: Path,
    segment_source: Path,
) -> None:
    """An S3 clone that ignores If-None-Match: one WARNING at start for the --bucket, and the HEAD
    before each segment PUT still refuses a reused name."""
    proxy.drop_headers = frozenset({"if-none-match"})
    daemon = start_uploader("--allow-dir", str(tmp_path), "--endpoint-url", proxy.url, "--bucket", bucket)
    wait_for(lambda: f"bucket {bucket}: the store does not refuse a create-only write" in daemon.log(), timeout=30,
             message="the start-up WARNING")
    second = SECOND_RUNS["another stream"]
    log = reuse_attack(daemon, bucket, tmp_path, segment_source, second)
    assert_refused(log, second, f"s3://{bucket}/{KEY}", stored(s3, bucket), segment_source.read_bytes())
    assert "PUT" not in [method for method, path, _ in proxy.answered if path.split("?")[0].endswith(KEY)][2:]


def mount_tmpfs(directory: Path, *options: str) -> None:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=8m", *options)), "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")


def test_a_file_store_made_again_gets_its_window_uploaded_again(
    start_uploader: StartUploader, tmp_path: Path, segments_dir: Path, segment_source: Path
) -> None:
    """The file store's root is a tmpfs: made read-only (the operator's to correct: held), then
    replaced by an empty one, as a bucket deleted and made again. The restore's create-only PUTs
    find the names free and upload the window again from the files."""
    root = tmp_path / "store"
    root.mkdir()
    mount_tmpfs(root)
    try:
        daemon = start_uploader("--allow-dir", str(segments_dir), "--store", f"file://{root}", "--keep-segment-files")
        for number in range(1, 6):
            place_segment(segment_source, segments_dir, "seg", number)
        for number in (1, 2, 3):
            send(daemon, segments_dir, "media", number)
        wait_for(lambda: "segment seg-00003.ts published" in daemon.log(), timeout=30, message="segment 3 published")
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        send(daemon, segments_dir, "media", 4)
        wait_for(lambda: " held: upload of live/one/seg-00004.ts" in daemon.log(), timeout=30,
                 message="segment 4 held")
        subprocess.run(["umount", str(root)], check=True)
        mount_tmpfs(root)
        send(daemon, segments_dir, "media", 5, end=True)
        playlist = root / "media/live/one/index.m3u8"
        wait_for(lambda: playlist.is_file() and "#EXT-X-ENDLIST" in playlist.read_text(), timeout=30,
                 message="the ended playlist")
        final = read_playlist(playlist.as_uri(), playlist.read_text())
        assert [s.uri for s in final.segments] == [f"seg-{n:05d}.ts" for n in range(1, 6)]
        for number in range(1, 6):
            assert (root / f"media/live/one/seg-{number:05d}.ts").read_bytes() == segment_source.read_bytes(), number
        log = daemon.log()
        assert "3 segment(s) of the window were gone from bucket" in log and "failed permanently" not in log
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_a_restore_without_s3_getobject_counts_a_taken_name_as_there(
    start_uploader: StartUploader, proxy: S3ErrorProxy, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    """A playlist PUT refused once (a policy being edited) makes the daemon check the window; with
    no s3:GetObject its HEADs are refused and the create-only PUT of the segment it has a file for
    gets 412 with a GET it cannot make. The name being taken is all the check needs: the stream
    goes on, not held until someone grants s3:GetObject."""
    daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url)
    for number in range(1, 5):
        place_segment(segment_source, segments_dir, "seg", number)
    for number in (1, 2, 3):
        send(daemon, segments_dir, bucket, number)
    wait_for(lambda: "segment seg-00003.ts published" in daemon.log(), timeout=30, message="segment 3 published")
    proxy.fail_next(1, s3_error(403, "AccessDenied"), path_ends=".m3u8")
    proxy.fail_next(20, s3_error(403, "AccessDenied"), methods=("HEAD", "GET"))
    send(daemon, segments_dir, bucket, 4, end=True)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == [f"seg-{n:05d}.ts" for n in range(1, 5)]
    seg4 = [(m, status) for m, path, status in proxy.answered if path.split("?")[0].endswith("seg-00004.ts")]
    # A request that fails on its way (a pooled connection gone stale: repeats in a row are one
    # step) or whose reply is lost (the proxy closed the connection: logged) is tried again from the
    # PUT; never after a GET that found the name taken and was answered 403.
    steps = [step for step, _ in itertools.groupby(seg4)]
    assert steps[:2] == [("PUT", 200), ("HEAD", 403)]
    pairs = len(steps[2:]) // 2
    assert steps[2:] == [("PUT", 412), ("GET", 403)] * pairs
    lost = [line for line in daemon.log().splitlines() if "upload of live/one/seg-00004.ts failed" in line
            and "Connection was closed before we received a valid response" in line]
    assert 1 <= pairs <= 1 + len(lost), (steps, lost)
    assert "failed permanently" not in daemon.log()
