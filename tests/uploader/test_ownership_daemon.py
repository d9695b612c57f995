"""Stream ownership through a real hls-uploadd (issue 15, point 2): messages on the wire, replies,
the daemon's log and the published playlist (a file store)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocol import Ack, IndexMessage, Reject, encode_message, writer_label
from tests.support.daemon import UploaderDaemon, legit_message, place_segment
from tests.support.rfc8216 import History
from tests.support.viewer import wait_for

from .conftest import StartUploader

BUCKET = "media"
A, B = "a" * 32, "b" * 32


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def daemon(start_uploader: StartUploader, segments_dir: Path, store: Path) -> UploaderDaemon:
    return start_uploader("--allow-dir", str(segments_dir), "--store", f"file://{store}", "--bucket", BUCKET,
                          "--keep-segment-files")


def message(segments_dir: Path, number: int, writer: str | None, **changes: object) -> IndexMessage:
    return dataclasses.replace(legit_message(segments_dir, BUCKET, number), writer=writer, **changes)


def playlist(store: Path) -> str:
    return (store / BUCKET / "legit" / "legit.m3u8").read_text()


def test_v1_messages_on_a_stream_a_live_writer_owns_are_refused(
        daemon: UploaderDaemon, segments_dir: Path, segment_source: Path, store: Path) -> None:
    for number in (1, 2, 3):
        place_segment(segment_source, segments_dir, "legit", number)
    with daemon.connect() as client:
        assert client.send(message(segments_dir, 0, A)) == Ack(0, 0)
        assert client.send(message(segments_dir, 1, A)) == Ack(1)
        # The original client's bytes, and an extension client that names no writer.
        daemon.send_v1(encode_message(message(segments_dir, 2, None)))
        reply = client.send(message(segments_dir, 3, None, duration=1.0))
    assert isinstance(reply, Reject) and reply.is_not_writer
    assert f"is written by {writer_label(A)} of peer 127.0.0.1" in reply.reason
    assert reply.reason.endswith("refused as a second writer")
    wait_for(lambda: "legit-00002.ts refused: stream media/legit/legit.m3u8 is written by writer" in daemon.log(),
             timeout=20, message="the v1 message's refusal in the log")
    wait_for(lambda: (store / BUCKET / "legit" / "legit.m3u8").exists(), timeout=20, message="the playlist")
    assert "legit-00002.ts" not in playlist(store) and "legit-00003.ts" not in playlist(store)
    assert not (store / BUCKET / "legit" / "legit-00002.ts").exists()


def test_a_restarted_writer_is_the_same_writer_and_learns_where_the_stream_is(
        daemon: UploaderDaemon, segments_dir: Path, segment_source: Path) -> None:
    for number in (1, 2, 3):
        place_segment(segment_source, segments_dir, "legit", number)
    with daemon.connect() as client:
        assert client.send(message(segments_dir, 0, A)) == Ack(0, 0)
        assert client.send(message(segments_dir, 1, A, discontinuity=True)) == Ack(1)
        assert client.send(message(segments_dir, 2, A)) == Ack(2)
    with daemon.connect() as client:  # the same OUTPUT_DIR's segmenter, started again
        assert client.send(message(segments_dir, 0, A)) == Ack(0, 2)
        assert client.send(message(segments_dir, 3, A, discontinuity=True, end=True)) == Ack(3)


def test_an_ended_stream_is_not_reopened_by_a_replay_nor_a_takeover(
        daemon: UploaderDaemon, segments_dir: Path, segment_source: Path, store: Path) -> None:
    for number in (1, 2, 3, 4):
        place_segment(segment_source, segments_dir, "legit", number)
    first = message(segments_dir, 1, A, discontinuity=True)
    with daemon.connect() as client:
        assert client.send(message(segments_dir, 0, A)) == Ack(0, 0)
        assert client.send(first) == Ack(1)
        assert client.send(message(segments_dir, 2, A)) == Ack(2)
        assert client.send(message(segments_dir, 3, A, end=True)) == Ack(3)
    wait_for(lambda: (store / BUCKET / "legit" / "legit.m3u8").exists()
             and "#EXT-X-ENDLIST" in playlist(store), timeout=20, message="the stream's end published")
    final = playlist(store)
    with daemon.connect() as client:
        replayed = client.send(first)  # a run's first message again: a re-send, nothing added
        startup = client.send(message(segments_dir, 0, B, takeover=True))
        taken = client.send(message(segments_dir, 4, B, takeover=True, discontinuity=True))
        same_writer = client.send(message(segments_dir, 4, A, discontinuity=True))
    assert replayed == Ack(1)
    for reply in (startup, taken, same_writer):
        assert isinstance(reply, Reject) and "has ended and its playlist is final" in reply.reason, reply
    assert "taken over" not in daemon.log()
    # Still the one final version.
    history = History()
    for text in (final, playlist(store)):
        history.add(text)
    assert playlist(store) == final and not history.problems


def test_on_a_daemon_without_secrets_an_unchecked_key_id_does_not_name_the_owners_peer(
        daemon: UploaderDaemon, segments_dir: Path, segment_source: Path) -> None:
    for number in (1, 2):
        place_segment(segment_source, segments_dir, "legit", number)
    with daemon.connect() as client:
        # A key id and a tag nobody checks here: the owner is recorded by its address.
        claimed = message(segments_dir, 1, A, key_id="cam-east", counter=1, tag="0" * 64)
        assert client.send(claimed) == Ack(1)
        reply = client.send(message(segments_dir, 2, B))
    assert isinstance(reply, Reject) and reply.is_not_writer
    assert f"is written by {writer_label(A)} of peer 127.0.0.1" in reply.reason and "cam-east" not in reply.reason
