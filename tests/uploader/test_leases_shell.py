"""The lease shell (uploader/leases.py) on a real local-directory store, its clock driven by the
test: taking, renewing, a holder seen alive or gone, a lease lost to another daemon, giving up
when quiet. A lease's age comes from the file's mtime (``FileStore.get_version``), set here to
make a holder look gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from uploader.lease import LEASE_NAME, Lease, lease_body, read_lease
from uploader.leases import IDLE_RELEASE_S, Leases, daemon_id
from uploader.stores import FileStore

T = TypeVar("T")
TTL_S = 2.0


async def direct(call: Callable[[], T]) -> T:
    return call()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def daemon(store: FileStore, name: str, clock: Clock, events: list[str]) -> Leases:
    return Leases(store, direct, ttl_s=TTL_S, me=name, clock=clock, count=events.append)


def lease_file(root: Path) -> Path:
    return root / "bucket" / "live" / LEASE_NAME


def test_a_holder_is_seen_alive_until_it_stops_renewing_then_its_lease_is_taken_over_and_it_learns_so(
    tmp_path: Path,
) -> None:
    store, clock, events = FileStore(tmp_path), Clock(), []

    async def run() -> None:
        first, second = daemon(store, "host-a:1:aa", clock, events), daemon(store, "host-b:2:bb", clock, events)
        assert await first.hold("bucket", "live") == 1
        assert first.holds("bucket", "live")
        assert await second.elsewhere("bucket", "live") is None  # a program new to it: its worker tries
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second.hold("bucket", "live"), 0.2)  # and waits
        assert await second.elsewhere("bucket", "live") == "daemon host-a:1:aa holds the lease of program bucket/live"
        # The first stops renewing: its lease file grows old (the store's clock), and its own
        # clock says it may no longer count the lease as its own.
        old = time.time() - (TTL_S + 2)
        os.utime(lease_file(tmp_path), (old, old))
        clock.now += TTL_S
        assert not first.holds("bucket", "live")
        assert await second.elsewhere("bucket", "live") is None  # gone: messages are taken, and wait
        assert await second.hold("bucket", "live") == 2
        # The first's next renewal is refused by the store: it drops the lease.
        await asyncio.sleep(TTL_S / 3 + 0.3)
        assert not first.holds("bucket", "live")
        assert await first.elsewhere("bucket", "live") == "daemon host-b:2:bb holds the lease of program bucket/live"
        await first.release_all()
        await second.release_all()

    asyncio.run(run())
    assert events.count("taken") == 1 and events.count("taken_over") == 1 and events.count("lost") == 1, events
    assert events.count("released") == 1  # the second's; the first held nothing any more
    lease = read_lease(lease_file(tmp_path).read_bytes())
    assert lease is not None and lease.released and lease.fence == 2


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
        folder = lease_file(tmp_path).parent
        folder.rename(tmp_path / "aside")
        folder.write_bytes(b"")  # a file where the program's folder was: every write there fails
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
    monkeypatch.setattr(socket, "gethostname", lambda: "caf\u00e9 host\n" + "x" * 300)
    me = daemon_id()
    assert me.startswith("caf?" + "?host?") and len(me) < 200
    lease = read_lease(lease_body(Lease(me, 1, TTL_S)))
    assert lease is not None and lease.owner == me
