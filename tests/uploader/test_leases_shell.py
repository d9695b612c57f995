"""The lease shell (uploader/leases.py) on a real local-directory store, its clock driven by the
test: taking, renewing the heartbeat, a holder seen alive or gone, leases lost to another daemon,
giving up when quiet. A heartbeat's age comes from the file's mtime (``FileStore.get_version``),
set here to make a holder look gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from uploader.lease import (
    HEARTBEAT_PREFIX,
    LEASE_NAME,
    Lease,
    beaten,
    heartbeat_body,
    heartbeat_key,
    lease_body,
    read_heartbeat,
    read_lease,
)
from uploader.leases import IDLE_RELEASE_S, Leases, daemon_id
from uploader.stores import FileStore, TransientStoreError, Version

T = TypeVar("T")
TTL_S = 2.0
RENEWER_PASS_S = 0.3  # longer than the renewer's look (RENEW_CHECK_S)


async def direct(call: Callable[[], T]) -> T:
    return call()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def daemon(store: FileStore, name: str, clock: Clock, events: list[str], *,
           call: Callable[[Callable[[], T]], Awaitable[T]] = direct, ttl_s: float = TTL_S) -> Leases:
    """The leases of daemon ``name`` in ``store``, its requests made by ``call`` (at once by default)."""
    return Leases(store, call, ttl_s=ttl_s, me=name, clock=clock, count=events.append)


def lease_file(root: Path, prefix: str = "live") -> Path:
    return root / "bucket" / prefix / LEASE_NAME


def heartbeat_file(root: Path, owner: str) -> Path:
    return root / "bucket" / heartbeat_key(owner)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_holder_is_seen_alive_until_it_stops_renewing_then_its_lease_is_taken_over_and_it_learns_so(
    tmp_path: Path,
) -> None:
    store, events = FileStore(tmp_path), []
    paused, running = Clock(), Clock()  # the first's clock stands still while it is paused

    async def run() -> None:
        first, second = daemon(store, "host-a:1:aa", paused, events), daemon(store, "host-b:2:bb", running, events)
        assert await first.hold("bucket", "live") == 1
        assert first.holds("bucket", "live")
        assert await second.elsewhere("bucket", "live") is None  # a program new to it: its worker tries
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second.hold("bucket", "live"), 0.2)  # and waits
        assert await second.elsewhere("bucket", "live") == "daemon host-a:1:aa holds the lease of program bucket/live"
        # The first is paused: its heartbeat grows old (the store's clock) while the second runs on.
        age(heartbeat_file(tmp_path, "host-a:1:aa"), TTL_S + 2)
        running.now += TTL_S
        assert await second.elsewhere("bucket", "live") is None  # gone: messages are taken, and wait
        assert await second.hold("bucket", "live") == 2
        heartbeat = read_heartbeat(heartbeat_file(tmp_path, "host-a:1:aa").read_bytes())
        assert heartbeat is not None and heartbeat.dead  # written over by the taker
        # The first wakes: its own clock says it may no longer count its leases as its own, and
        # its next renewal is refused by the store: it drops the lease.
        paused.now += TTL_S
        assert not first.holds("bucket", "live")
        await asyncio.sleep(RENEWER_PASS_S)
        assert not first.holds("bucket", "live")
        assert await first.elsewhere("bucket", "live") == "daemon host-b:2:bb holds the lease of program bucket/live"
        await first.release_all()
        await second.release_all()

    asyncio.run(run())
    assert events.count("taken") == 1 and events.count("taken_over") == 1 and events.count("lost") == 1, events
    assert events.count("released") == 1  # the second's; the first held nothing any more
    lease = read_lease(lease_file(tmp_path).read_bytes())
    assert lease is not None and lease.released and lease.fence == 2
    assert not heartbeat_file(tmp_path, "host-b:2:bb").exists()  # removed at the stop


def test_a_program_quiet_for_long_gives_its_lease_up_and_the_next_message_takes_it_again(tmp_path: Path) -> None:
    store, clock, events = FileStore(tmp_path), Clock(), []

    async def run() -> None:
        leases = daemon(store, "host-a:1:aa", clock, events)
        assert await leases.hold("bucket", "live") == 1
        clock.now += IDLE_RELEASE_S + 1  # no message published since
        await asyncio.sleep(TTL_S / 3 + 0.3)
        assert not leases.holds("bucket", "live")
        assert read_lease(lease_file(tmp_path).read_bytes()).released  # type: ignore[union-attr]
        assert await leases.hold("bucket", "live") == 2  # taken afresh: playlists are read again
        await leases.release_all()

    asyncio.run(run())
    assert events == ["taken", "released", "taken", "released"], events


def test_a_renewal_the_store_refuses_stops_the_holder_writing_until_one_goes_through(tmp_path: Path) -> None:
    store, clock, events = FileStore(tmp_path), Clock(), []

    async def run() -> None:
        leases = daemon(store, "host-a:1:aa", clock, events)
        assert await leases.hold("bucket", "live") == 1
        folder = heartbeat_file(tmp_path, "host-a:1:aa").parent
        folder.rename(tmp_path / "aside")
        folder.write_bytes(b"")  # a file where the heartbeats' folder was: every write there fails
        clock.now += TTL_S * 0.8
        await asyncio.sleep(TTL_S / 3 + 0.3)  # a renewal, refused
        assert not leases.holds("bucket", "live")  # nothing of the program is written meanwhile
        folder.unlink()
        (tmp_path / "aside").rename(folder)
        assert await leases.hold("bucket", "live") == 1  # still its own: renewed once it can be
        assert leases.holds("bucket", "live")
        await leases.release_all()

    asyncio.run(run())
    assert events == ["taken", "released"], events


def test_a_holder_id_made_of_any_host_name_reads_back_as_this_daemons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "caf\u00e9 host\n/../" + "x" * 300)
    me = daemon_id()
    assert me.startswith("caf?" + "?host??..?") and len(me) < 200
    assert "/" not in heartbeat_key(me).removeprefix(HEARTBEAT_PREFIX)
    lease = read_lease(lease_body(Lease(me, 1)))
    assert lease is not None and lease.owner == me


class CountingStore(FileStore):
    """A local-directory store that counts the versions written under each key, and can run a
    step the test gives between reading a key and handing the version back."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: dict[str, int] = {}
        self.after_read: dict[str, Callable[[], None]] = {}

    def put_version(self, bucket: str, key: str, body: bytes, **kwargs: object) -> str:
        self.writes[key] = self.writes.get(key, 0) + 1
        return super().put_version(bucket, key, body, **kwargs)  # type: ignore[arg-type]

    def get_version(self, bucket: str, key: str) -> Version | None:
        found = super().get_version(bucket, key)
        if (step := self.after_read.pop(key, None)) is not None:
            step()
        return found


def test_a_daemon_holding_many_programs_renews_one_heartbeat_not_each_lease(tmp_path: Path) -> None:
    store, clock, events = CountingStore(tmp_path), Clock(), []
    programs = [f"live/p{n:03d}" for n in range(50)]

    async def run() -> None:
        leases = daemon(store, "host-a:1:aa", clock, events)
        for prefix in programs:
            assert await leases.hold("bucket", prefix) == 1
        for _ in range(6):  # two times to live, each program publishing meanwhile
            clock.now += TTL_S / 3
            for prefix in programs:
                assert await leases.hold("bucket", prefix) == 1
            await asyncio.sleep(RENEWER_PASS_S)
        assert all(leases.holds("bucket", prefix) for prefix in programs)
        await leases.release_all()

    asyncio.run(run())
    assert all(store.writes[f"{prefix}/{LEASE_NAME}"] == 2 for prefix in programs), store.writes  # taken, given up
    assert 5 <= store.writes[heartbeat_key("host-a:1:aa")] <= 8, store.writes  # written, then one per third
    assert events == ["taken"] * 50 + ["released"] * 50


def test_a_holder_renewing_between_a_takers_read_and_its_write_keeps_its_leases(tmp_path: Path) -> None:
    store, clock, events = CountingStore(tmp_path), Clock(), []

    async def run() -> None:
        first, second = daemon(store, "host-a:1:aa", clock, events), daemon(store, "host-b:2:bb", clock, events)
        assert await first.hold("bucket", "live") == 1
        beat = heartbeat_file(tmp_path, "host-a:1:aa")
        age(beat, TTL_S + 2)  # looks lapsed to the second ...

        def renewal_lands() -> None:  # ... which reads it; then the first's renewal reaches the store
            state = first._beats["bucket"]
            state.heartbeat = beaten(state.heartbeat)
            state.etag = store.put_version("bucket", heartbeat_key("host-a:1:aa"), heartbeat_body(state.heartbeat),
                                           content_type="application/json", cache_control="no-store", metadata={},
                                           replaces=state.etag)

        store.after_read[heartbeat_key("host-a:1:aa")] = renewal_lands
        with contextlib.suppress(TimeoutError):  # and the second's write over it as dead is refused
            await asyncio.wait_for(second.hold("bucket", "live"), 0.3)
        assert first.holds("bucket", "live") and not second.holds("bucket", "live")
        heartbeat = read_heartbeat(beat.read_bytes())
        assert heartbeat is not None and not heartbeat.dead
        assert await second.elsewhere("bucket", "live") == "daemon host-a:1:aa holds the lease of program bucket/live"
        await first.release_all()
        await second.release_all()

    asyncio.run(run())
    assert events == ["taken", "released"], events
    assert read_lease(lease_file(tmp_path).read_bytes()) == Lease("", 1)


class Gate:
    """A ``call`` for the shell that can hold a request of a given kind (``_put_lease``,
    ``_put_beat``, ``get_version``) until the test opens it, fail it before it reaches the store,
    or fail it after (a reply lost: the store took it)."""

    def __init__(self) -> None:
        self.held: dict[str, asyncio.Event] = {}
        self.fail_before: set[str] = set()
        self.fail_after: set[str] = set()

    async def __call__(self, call: Callable[[], T]) -> T:
        name = getattr(getattr(call, "func", None), "__name__", "")
        if name in self.fail_before:
            self.fail_before.discard(name)
            raise TransientStoreError("the store is down")
        if (gate := self.held.pop(name, None)) is not None:
            await gate.wait()
        result = call()
        if name in self.fail_after:
            self.fail_after.discard(name)
            raise TransientStoreError("the reply was lost")
        return result


def test_a_lease_written_after_its_heartbeat_was_declared_dead_is_not_held(tmp_path: Path) -> None:
    store, paused, running, gate, events = FileStore(tmp_path), Clock(), Clock(), Gate(), []

    async def run() -> None:
        first = daemon(store, "host-a:1:aa", paused, events, call=gate, ttl_s=6)
        second = daemon(store, "host-b:2:bb", running, [])
        assert await first.hold("bucket", "p1") == 1
        opened = gate.held["_put_lease"] = asyncio.Event()
        taking = asyncio.create_task(first.hold("bucket", "p2"))  # its lease PUT is on its way ...
        await asyncio.sleep(0.05)
        age(heartbeat_file(tmp_path, "host-a:1:aa"), 10)  # ... when the first hangs
        assert await second.hold("bucket", "p1") == 2  # its heartbeat declared dead
        paused.now += 5
        await asyncio.sleep(RENEWER_PASS_S)  # the first wakes: its renewal refused
        assert await first.hold("bucket", "p3") == 1  # under a new heartbeat
        new_id = first._beats["bucket"].heartbeat.owner
        opened.set()  # the p2 PUT, in the dead heartbeat's name, lands now: not held under it ...
        assert await asyncio.wait_for(taking, 5) == 3  # ... but taken over from it, under the new one
        assert read_lease(lease_file(tmp_path, "p2").read_bytes()) == Lease(new_id, 3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second.hold("bucket", "p2"), 0.3)
        assert first.holds("bucket", "p2") and not second.holds("bucket", "p2")
        await first.release_all()
        await second.release_all()

    asyncio.run(run())


def test_a_renewal_whose_reply_was_lost_is_taken_as_renewed(tmp_path: Path) -> None:
    store, clock, gate, events = FileStore(tmp_path), Clock(), Gate(), []

    async def run() -> None:
        leases = daemon(store, "host-a:1:aa", clock, events, call=gate)
        assert await leases.hold("bucket", "live") == 1
        gate.fail_after.add("_put_beat")
        clock.now += 0.7
        await asyncio.sleep(RENEWER_PASS_S)  # the renewal lands, its reply is lost
        clock.now += 1.0
        await asyncio.sleep(RENEWER_PASS_S)  # sent again: 412, and the version there is the one sent
        assert leases.holds("bucket", "live")
        assert await leases.elsewhere("bucket", "live") is None
        assert await leases.hold("bucket", "live") == 1
        await leases.release_all()

    asyncio.run(run())
    assert events == ["taken", "released"], events


def test_a_request_that_hangs_delays_no_heartbeat(tmp_path: Path) -> None:
    store, clock, gate = FileStore(tmp_path), Clock(), Gate()

    async def run() -> None:
        leases = daemon(store, "host-a:1:aa", clock, [], call=gate)
        await leases.hold("x", "quiet")
        await leases.hold("y", "busy")
        opened = asyncio.Event()
        for second in range(40):
            clock.now += 1
            if second == 25:
                gate.held["_put_lease"] = opened  # the quiet program's release hangs (read timeout: 30 s)
            await asyncio.sleep(RENEWER_PASS_S)
            assert leases.holds("y", "busy"), second  # renewed all along
            assert await leases.hold("y", "busy") == 1
        opened.set()
        await leases.release_all()

    asyncio.run(run())


def test_a_message_during_an_idle_release_takes_the_lease_afresh_and_no_other_daemon_gets_it(tmp_path: Path) -> None:
    store, clock, gate, events = FileStore(tmp_path), Clock(), Gate(), []

    async def run() -> None:
        first = daemon(store, "host-a:1:aa", clock, events, call=gate)
        second = daemon(store, "host-b:2:bb", Clock(), [])
        assert await first.hold("bucket", "live") == 1
        opened = gate.held["_put_lease"] = asyncio.Event()
        clock.now += IDLE_RELEASE_S + 1
        await asyncio.sleep(RENEWER_PASS_S)  # its release is on its way ...
        assert not first.holds("bucket", "live")
        publishing = asyncio.create_task(first.hold("bucket", "live"))  # ... when a message comes
        await asyncio.sleep(0.05)
        opened.set()
        assert await asyncio.wait_for(publishing, 5) == 2  # taken afresh: its playlists are read again
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second.hold("bucket", "live"), 0.3)
        assert first.holds("bucket", "live") and not second.holds("bucket", "live")
        await first.release_all()
        await second.release_all()

    asyncio.run(run())
    assert events == ["taken", "released", "taken", "released"], events
