"""Leases in the store (--lease-ttl): of several daemons given one program, exactly one publishes
at any time, a daemon that stops renewing loses the program to another within the lease's time
to live, and its late writes are refused by the store itself (uploader/lease.py, leases.py).
Real daemons, real SeaweedFS; every playlist version read goes through the RFC 8216 checker and
its media sequence must never go back (``watched``)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import m3u8
import pytest

from protocol import Ack, IndexMessage, Reject, Reply
from tests.support.daemon import Client, UploaderDaemon, place_segment
from tests.support.pipeline import PlaylistPoller
from tests.support.proxy import DelayProxy
from tests.support.scrape import endpoint_of, scrape
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.lease import LEASE_NAME, heartbeat_key, read_lease

from .conftest import StartUploader
from .test_daemon import ext_message
from .test_store_state import PLAYLIST, lists, published, watched

LEASE = f"live/one/{LEASE_NAME}"
TTL = "2"  # seconds: a lease lapses 3 s after its last renewal (a second for the store clock's step)


@pytest.fixture
def poller(seaweed: SeaweedServer, bucket: str) -> Iterator[PlaylistPoller]:
    with watched(seaweed, bucket) as watching:
        yield watching


def leased(start_uploader: StartUploader, segments_dir: Path, *options: str, ttl: str, name: str) -> UploaderDaemon:
    """A daemon holding leases of ``ttl`` seconds, reading ``segments_dir`` and keeping its files."""
    return start_uploader("--allow-dir", str(segments_dir), "--keep-segment-files", "--lease-ttl", ttl, *options,
                          name=name)


def lease_of(s3: object, bucket: str) -> tuple[str, int]:
    """The holder and fencing number the program's lease object names now."""
    body = s3.get_object(Bucket=bucket, Key=LEASE)["Body"].read()  # type: ignore[attr-defined]
    lease = read_lease(body)
    assert lease is not None, body
    return lease.owner, lease.fence


def send_to_all(clients: dict[int, Client], message: IndexMessage) -> dict[int, Reply]:
    """``message`` sent to every daemon, as many times as it takes one to take it (a segmenter
    is told "try again" while the lease holder is alive); each daemon's last reply."""
    def sent() -> dict[int, Reply] | None:
        for client in clients.values():
            client.send_only(message)
        replies = {n: client.reply() for n, client in clients.items()}
        return replies if Ack(message.last_segment) in replies.values() else None
    return wait_for(sent, timeout=30, interval=0.2, message=f"a daemon taking segment {message.last_segment}")


def is_try_again_elsewhere(reply: Reply) -> bool:
    return isinstance(reply, Reject) and reply.is_transient and "holds the lease of program" in reply.reason


def test_eight_daemons_racing_for_one_program_exactly_one_publishes_at_a_time(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: object,
) -> None:
    daemons = [leased(start_uploader, segments_dir, ttl=TTL, name=f"racer{n}") for n in range(8)]
    with contextlib.ExitStack() as stack:
        clients = {n: stack.enter_context(daemon.connect()) for n, daemon in enumerate(daemons)}
        # Every daemon is sent every message: the one holding the lease takes it; the others
        # queue it before they know who holds the lease, and answer "try again" after.
        accepted: dict[int, list[int]] = {}
        killed: int | None = None
        for number in range(1, 15):
            place_segment(segment_source, segments_dir, "seg", number)
            replies = send_to_all(clients, ext_message(segments_dir, bucket, number, end=number == 14))
            accepted[number] = [n for n, reply in replies.items() if reply == Ack(number)]
            refused = [reply for reply in replies.values() if reply != Ack(number)]
            assert all(map(is_try_again_elsewhere, refused)), refused
            wait_for(lambda: lists(poller, f"seg-{number:05d}.ts" if number < 14 else "#EXT-X-ENDLIST"), timeout=30,
                     message=f"segment {number} listed")
            if number == 6:  # the holder's host dies
                holders = [n for n, daemon in enumerate(daemons) if "its lease taken (fencing number 1)" in daemon.log()]
                assert len(holders) == 1, holders
                killed = holders[0]
                daemons[killed].kill()
                clients.pop(killed).sock.close()
    assert killed is not None
    # While the holder lived, each message after the first was taken by it alone.
    assert all(accepted[number] == [killed] for number in range(2, 7)), accepted
    logs = [daemon.log() for daemon in daemons]
    takeovers = [n for n, log in enumerate(logs) if "taken over from daemon" in log and "(fencing number 2)" in log]
    assert len(takeovers) == 1, takeovers
    assert not any("fencing number 3" in log for log in logs)
    # No two daemons ever wrote the playlist at once: none had a write refused over another's version.
    assert not any("its lease and playlist are read again" in log for log in logs)
    listed_by = [re.findall(r"segment (seg-\d+\.ts) published as media sequence (\d+)", log) for log in logs]
    writers = [n for n, found in enumerate(listed_by) if found]
    assert sorted(writers) == sorted({killed, *takeovers}), writers
    final = m3u8.loads(poller.texts[-1])
    numbered = [(segment.uri, number) for number, segment in enumerate(final.segments, final.media_sequence)]
    assert numbered == [(f"seg-{n:05d}.ts", n) for n in range(15 - len(numbered), 15)], numbered
    # Each segment published once, by one daemon, at its own number.
    everything = [pair for found in listed_by for pair in found]
    assert sorted(everything, key=lambda pair: int(pair[1])) == [(f"seg-{n:05d}.ts", str(n)) for n in range(1, 15)]
    assert lease_of(s3, bucket)[1] == 2


def test_a_daemon_paused_past_its_lease_has_its_late_writes_refused_by_the_store(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: object,
) -> None:
    # The old holder reaches the store through a link that can be slowed: its playlist PUT is
    # on its way when the host pauses (SIGSTOP, a VM frozen, a long GC), and reaches the store
    # only after another daemon took the lease and published.
    link = DelayProxy(("127.0.0.1", seaweed.s3_port))
    link.start()
    try:
        old = leased(start_uploader, segments_dir, "--endpoint-url", link.url, "--metrics-listen", "127.0.0.1:0",
                     ttl=TTL, name="old")
        new = leased(start_uploader, segments_dir, "--metrics-listen", "127.0.0.1:0", ttl=TTL, name="new")
        with old.connect() as client:
            for number in range(1, 5):
                place_segment(segment_source, segments_dir, "seg", number)
                assert client.send(ext_message(segments_dir, bucket, number)) == Ack(number)
            wait_for(lambda: lists(poller, "seg-00004.ts"), timeout=30, message="segment 4 listed")
            link.delay_s = 1.5
            place_segment(segment_source, segments_dir, "seg", 5)
            assert client.send(ext_message(segments_dir, bucket, 5)) == Ack(5)
            wait_for(lambda: "segment seg-00005.ts queued" in old.log(), timeout=10, message="segment 5 queued")
            time.sleep(0.3)
            assert old.proc is not None
            old.proc.send_signal(signal.SIGSTOP)
        try:
            # The segmenter moves on: "try again" while the old lease is fresh, then taken.
            with new.connect() as client:
                for number in range(5, 8):
                    place_segment(segment_source, segments_dir, "seg", number)
                    message = ext_message(segments_dir, bucket, number)
                    wait_for(lambda: client.send(message) == Ack(number), timeout=30, interval=0.2,
                             message=f"the new daemon taking segment {number}")
            wait_for(lambda: lists(poller, "seg-00007.ts"), timeout=30, message="the new daemon publishing")
            assert "taken over from daemon" in new.log()
            assert lease_of(s3, bucket)[1] == 2
        finally:
            link.delay_s = 0.0
            old.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: "its lease and playlist are read again" in old.log(), timeout=30,
                 message="the old daemon's late playlist PUT refused")
        time.sleep(2)  # the old daemon waits for a lease the new one renews: it writes nothing more
        final = m3u8.loads(s3.get_object(Bucket=bucket, Key=PLAYLIST)["Body"].read().decode())  # type: ignore[attr-defined]
        assert final.segments[-1].uri == "seg-00007.ts"
        assert "seg-00005.ts published as media sequence" not in old.log()
        assert lease_of(s3, bucket)[1] == 2
        counted = {name: {event: scrape(endpoint_of(daemon.log())).value("hls_uploadd_leases_total", event=event)
                          for event in ("taken", "taken_over", "lost")} for name, daemon in (("old", old), ("new", new))}
        assert counted["old"]["taken"] == 1 and counted["new"]["taken_over"] == 1, counted
        assert counted["new"]["taken"] is None and counted["old"]["taken_over"] is None, counted
        with new.connect() as client:  # and the program goes on at the new holder
            place_segment(segment_source, segments_dir, "seg", 8)
            assert client.send(ext_message(segments_dir, bucket, 8, end=True)) == Ack(8)
        wait_for(lambda: lists(poller, "#EXT-X-ENDLIST"), timeout=30, message="the ended playlist")
    finally:
        link.stop()


def test_a_daemon_stopping_gives_its_lease_up_and_another_takes_it_at_once(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: object,
) -> None:
    first = leased(start_uploader, segments_dir, ttl="60", name="first")
    second = leased(start_uploader, segments_dir, ttl="60", name="second")
    with first.connect() as client:
        for number in range(1, 4):
            place_segment(segment_source, segments_dir, "seg", number)
            assert client.send(ext_message(segments_dir, bucket, number)) == Ack(number)
    wait_for(lambda: lists(poller, "seg-00003.ts"), timeout=30, message="segment 3 listed")
    place_segment(segment_source, segments_dir, "seg", 4)
    with second.connect() as client:
        # A program new to it: the message is taken and waits while its worker finds the lease
        # held and renewed by the first; from then on, the program's messages go there instead.
        assert client.send(ext_message(segments_dir, bucket, 4)) == Ack(4)
        wait_for(lambda: is_try_again_elsewhere(client.send(ext_message(segments_dir, bucket, 5))), timeout=10,
                 interval=0.2, message="the second daemon sending the program's messages to the holder")
    assert "programs are published under leases of 60 s in" in first.log()
    first.stop()  # SIGTERM: drained, and the lease given up
    assert "its lease given up" in first.log()
    owner, fence = lease_of(s3, bucket)
    # Given up; or already taken by the second, whose waiting worker may have read it since.
    assert (owner, fence) == ("", 1) or (fence == 2 and f"as holder {owner}" in second.log()), (owner, fence)
    place_segment(segment_source, segments_dir, "seg", 5)
    with second.connect() as client:  # its next message finds the lease free: taken at once, not in 60 s
        message = ext_message(segments_dir, bucket, 5, end=True)
        wait_for(lambda: client.send(message) == Ack(5), timeout=5, interval=0.2, message="the lease found free")
    wait_for(lambda: lists(poller, "#EXT-X-ENDLIST"), timeout=15, message="the ended playlist")
    assert "its lease taken (fencing number 2)" in second.log()
    final = m3u8.loads(poller.texts[-1])
    assert [segment.uri for segment in final.segments][-2:] == ["seg-00004.ts", "seg-00005.ts"]
    assert json.loads(s3.get_object(Bucket=bucket, Key=LEASE)["Body"].read())["fence"] == 2  # type: ignore[attr-defined]


def test_a_message_queued_while_another_daemon_held_the_lease_is_not_listed_again(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller,
) -> None:
    # The holder looks gone for a while (paused): the other daemon takes a message and waits for
    # the lease. The holder comes back, publishes that segment and five more, then dies: the
    # other takes over with a message in its queue the playlist has listed and slid past.
    ttl = "10"  # renewed every 3.3 s; alive while read at most 6 s old, lapsed at 11
    holder = leased(start_uploader, segments_dir, ttl=ttl, name="holder")
    other = leased(start_uploader, segments_dir, ttl=ttl, name="other")
    published(holder, segments_dir, bucket, segment_source, range(1, 7), poller)
    place_segment(segment_source, segments_dir, "seg", 7)
    assert holder.proc is not None
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        with other.connect() as client:
            message = ext_message(segments_dir, bucket, 7)
            wait_for(lambda: client.send(message) == Ack(7), timeout=15, interval=0.2,
                     message="the other daemon taking segment 7 from a holder that looks gone")
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    with holder.connect() as client:
        # Segment 7 listed before the next ones come: a backlog past the window would slide it
        # out of every playlist unlisted (catch-up), and this test is about what comes after.
        assert client.send(ext_message(segments_dir, bucket, 7)) == Ack(7)
        wait_for(lambda: lists(poller, "seg-00007.ts"), timeout=30, message="segment 7 listed by the holder")
        for number in range(8, 13):
            place_segment(segment_source, segments_dir, "seg", number)
            assert client.send(ext_message(segments_dir, bucket, number)) == Ack(number)
    wait_for(lambda: lists(poller, "seg-00012.ts"), timeout=30, message="segment 12 listed by the holder")
    assert "taken over" not in other.log()
    # The other daemon, waiting for the lease with segment 7 queued, is restarted: it stops at
    # once (nothing cut off at the drain's deadline), and the message stays queued.
    assert other.stop() == 0
    assert "stream(s) stopped mid-upload" not in other.log() and "1 message(s) left queued" in other.log()
    other.start()
    holder.kill()
    with other.connect() as client:
        place_segment(segment_source, segments_dir, "seg", 13)
        message = ext_message(segments_dir, bucket, 13, end=True)
        wait_for(lambda: client.send(message) == Ack(13), timeout=30, interval=0.5, message="segment 13 taken")
    wait_for(lambda: lists(poller, "#EXT-X-ENDLIST"), timeout=40, message="the ended playlist")
    assert "segment seg-00007.ts: listed already before its window" in other.log()
    sequence_of: dict[str, int] = {}  # each segment at one media sequence number, in every version
    for text in poller.texts:
        version = m3u8.loads(text)
        for number, segment in enumerate(version.segments, version.media_sequence):
            assert sequence_of.setdefault(segment.uri, number) == number, (segment.uri, number)
    assert sequence_of == {f"seg-{n:05d}.ts": n for n in range(1, 14)}, sequence_of


def test_a_daemon_cut_off_from_the_store_sends_its_segmenters_to_another_which_takes_the_program_over(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller,
) -> None:
    link = DelayProxy(("127.0.0.1", seaweed.s3_port))
    link.start()
    try:
        cut_off = leased(start_uploader, segments_dir, "--endpoint-url", link.url, ttl=TTL, name="cut-off")
        other = leased(start_uploader, segments_dir, ttl=TTL, name="other")
        published(cut_off, segments_dir, bucket, segment_source, range(1, 4), poller)
        for number in (4, 5):
            place_segment(segment_source, segments_dir, "seg", number)
        with cut_off.connect() as client:
            link.refuse = True
            link.drop_connections()
            # Once its lease is no longer surely its own, it cannot say who holds the program.
            message = ext_message(segments_dir, bucket, 4)

            def refused() -> Reply | None:
                reply = client.send(message)
                return reply if reply != Ack(4) else None

            reply = wait_for(refused, timeout=15, interval=0.2, message="the cut-off daemon sending segment 4 on")
        assert isinstance(reply, Reject) and reply.is_transient, reply
        assert "this daemon cannot read the lease of program" in reply.reason, reply
        with other.connect() as client:
            for number in (4, 5):
                message = ext_message(segments_dir, bucket, number, end=number == 5)
                wait_for(lambda: client.send(message) == Ack(number), timeout=30, interval=0.2,
                         message=f"the other daemon taking segment {number}")
        wait_for(lambda: lists(poller, "#EXT-X-ENDLIST"), timeout=30, message="the ended playlist")
        assert "its lease taken over from daemon" in other.log()
        final = m3u8.loads(poller.texts[-1])
        assert [s.uri for s in final.segments][-3:] == ["seg-00003.ts", "seg-00004.ts", "seg-00005.ts"]
    finally:
        link.stop()


# Objects that are no lease, or no heartbeat of the daemon a lease names: (lease object,
# heartbeat object of daemon "x" or None, what the daemon reports it cannot read).
GARBAGE = {
    "nested": (b"[" * 100_000, None, "lease"),
    "hostile-owner": (b'{"owner":"a\\nFAKE LOG LINE","fence":1}', None, "lease"),
    "endless-heartbeat": (b'{"owner":"x","fence":1}', b'{"owner":"x","ttl_s":1e308,"beat":0,"dead":false}',
                          "heartbeat"),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_an_object_that_is_no_lease_or_heartbeat_is_reported_once_and_taken_when_it_is_the_time_to_live_old(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    poller: PlaylistPoller, s3: Any, garbage: tuple[bytes, bytes | None, str],
) -> None:
    lease, heartbeat, what = garbage
    s3.put_object(Bucket=bucket, Key=LEASE, Body=lease)
    if heartbeat is not None:
        s3.put_object(Bucket=bucket, Key=heartbeat_key("x"), Body=heartbeat)
    daemon = leased(start_uploader, segments_dir, ttl=TTL, name="daemon")
    place_segment(segment_source, segments_dir, "seg", 1)
    message = ext_message(segments_dir, bucket, 1, end=True)
    replies: list[Reply] = []
    with daemon.connect() as client:
        wait_for(lambda: replies.append(client.send(message)) or replies[-1] == Ack(1), timeout=15, interval=0.2,
                 message="the daemon taking the message")
    refused = [reply for reply in replies if reply != Ack(1)]
    assert all(isinstance(r, Reject) and r.is_transient and "is an object this daemon cannot read" in r.reason
               for r in refused), refused
    wait_for(lambda: lists(poller, "#EXT-X-ENDLIST"), timeout=30, message="the ended playlist")
    log = daemon.log()
    assert log.count(f"is no {what} this daemon can read") == 1, log
    taker = "an unreadable lease" if what == "lease" else "daemon x"
    assert f"its lease taken over from {taker}" in log and "Traceback" not in log
    assert "FAKE LOG LINE" not in log
    assert lease_of(s3, bucket)[1] == (1 if what == "lease" else 2)
