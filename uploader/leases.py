"""The leases one daemon holds in one store: taken before a program is published, renewed in the
background while it is, given up when it goes quiet or the daemon stops. The rules are
``uploader/lease.py``'s; this is the I/O around them (docs/architecture.md, "Leases")."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from common.logs import Throttle

from .lease import (
    LEASE_NAME,
    SAFE_FRACTION,
    Lease,
    Standing,
    alive,
    lease_body,
    read_lease,
    released,
    renewed,
    standing,
    taken,
)
from .stores import Store, StoreError, VersionConflict

log = logging.getLogger("uploader.leases")

T = TypeVar("T")
Program = tuple[str, str]  # (bucket, key prefix)

# A program none of whose messages was published for this long (and at least this many times
# the time to live) gives its lease up, so that a daemon its segmenters moved to takes it at once.
IDLE_RELEASE_S = 30.0
IDLE_RELEASE_TTLS = 5

# How long another daemon's lease, as read, answers whether it holds the program (at most a third
# of the time to live): a segmenter told to send elsewhere tries again within seconds.
SEEN_FOR_S = 1.0

# While it waits for a lease, a worker looks this often whether the daemon stops, or whether
# another read found the lease given up.
STOP_CHECK_S = 0.5

# The renewer looks at least this often which leases are due (seconds).
RENEW_CHECK_S = 0.25

# Threads for the lease requests, beside the --max-inflight upload threads (and as many more
# connections in the S3 client's pool).
LEASE_THREADS = 4

# A lease that cannot be read or renewed is reported at most this often per program.
WARN_INTERVAL_S = 30.0

LEASE_CONTENT_TYPE = "application/json"


def daemon_id() -> str:
    """This run's name in the leases it holds: host, process and a random part (a restart, or a
    second daemon in the same process, is another holder). Printable ASCII without spaces, as
    ``lease.read_lease`` takes a holder id: anything else in the host name becomes "?"."""
    host = re.sub(r"[^\x21-\x7e]", "?", socket.gethostname())[:100]
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class _Held:
    lease: Lease
    etag: str
    renewed_at: float  # monotonic: when the PUT the store last took of it was sent
    used_at: float  # monotonic: when a message of the program was last published
    due_at: float  # monotonic: when it is renewed next


@dataclass(frozen=True, slots=True)
class _Seen:
    """Another daemon's lease as last read."""

    owner: str | None  # None: an object that is no lease (``lease.read_lease``)
    ttl_s: float
    age_s: float | None
    at: float  # monotonic


class Leases:
    def __init__(self, store: Store, call: Callable[[Callable[[], T]], Awaitable[T]], *, ttl_s: float,
                 me: str | None = None, clock: Callable[[], float] = time.monotonic,
                 count: Callable[[str], None] = lambda event: None) -> None:
        """The leases this daemon (``me``, default ``daemon_id()``) holds in ``store``, each with a
        time to live of ``ttl_s`` seconds; ``call`` runs one store request off the event loop
        (``Publisher._store_call``); ``count(event)`` is told each lease "taken", "taken_over",
        "lost" and "released" (``DestinationMetrics.lease``)."""
        self._store = store
        self._call = call
        self.me = me or daemon_id()
        self.ttl_s = ttl_s
        self._clock = clock
        self._count = count
        self._held: dict[Program, _Held] = {}
        self._seen: dict[Program, _Seen] = {}
        self._known: set[Program] = set()  # programs whose lease this daemon read or tried to take this run
        self._locks: dict[Program, asyncio.Lock] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._failing = Throttle(WARN_INTERVAL_S)  # per program
        self._rng = random.Random()
        self._unreadable = Throttle(WARN_INTERVAL_S)  # per program

    # What the publisher and the intake ask.

    async def hold(self, bucket: str, key_prefix: str, *,
                   stopping: Callable[[], bool] = lambda: False) -> int | None:
        """Return once this daemon holds the lease of program (``bucket``, ``key_prefix``) for long
        enough to publish: at once when it is held and renewed, else after taking it (free, or
        lapsed) or waiting for its holder to give it up or stop renewing it. A store that fails
        is asked again, each failure logged. Returns the lease's fencing number: a new one means
        another daemon may have written the program since this one last did; None when
        ``stopping()`` became true while it waited (the daemon stops: nothing is published)."""
        program = (bucket, key_prefix)
        while not stopping():
            held = self._held.get(program)
            if held is not None and self._safe(held):
                held.used_at = self._clock()
                return held.lease.fence
            async with self._locks.setdefault(program, asyncio.Lock()):
                try:
                    wait_s = await self._claim(program)
                except StoreError as error:
                    self._warn(program, "cannot be read or written", error)
                    wait_s = self.ttl_s / 3
            held_elsewhere = program in self._seen
            while wait_s > 0 and not stopping():
                await asyncio.sleep(min(wait_s, STOP_CHECK_S))
                wait_s -= STOP_CHECK_S
                if held_elsewhere and program not in self._seen:
                    break  # another read (a new message's) found it given up or lapsed: take it now
        return None

    def holds(self, bucket: str, key_prefix: str) -> bool:
        """Whether this daemon may write program (``bucket``, ``key_prefix``) now."""
        held = self._held.get((bucket, key_prefix))
        return held is not None and self._safe(held)

    async def elsewhere(self, bucket: str, key_prefix: str) -> str | None:
        """Why a message of program (``bucket``, ``key_prefix``) is better sent to another daemon,
        or None: another daemon holds its lease and still renews it (``lease.alive``), as last
        read (read again when older than ``SEEN_FOR_S``), or this daemon, not holding it, cannot
        read it (the store is out of its reach, not perhaps of another's). None when this daemon
        holds it, or it is free or lapsing (the message waits here for it), or the daemon has not
        dealt with the program yet this run: its worker tries to take the lease, and the
        program's next message is answered by what it found (no read per new program at start)."""
        program = (bucket, key_prefix)
        if self.holds(bucket, key_prefix) or program not in self._known:
            return None
        seen = self._seen.get(program)
        if seen is None or self._clock() - seen.at > min(SEEN_FOR_S, self.ttl_s / 3):
            try:
                await self._read(program)
            except StoreError as error:
                return f"this daemon cannot read the lease of program {bucket}/{key_prefix}: {error}"
            seen = self._seen.get(program)
        if seen is None or not alive(seen.age_s, seen.ttl_s):
            return None
        if seen.owner is None:
            return f"the lease of program {bucket}/{key_prefix} is an object this daemon cannot read (it is taken once" \
                   f" it is {seen.ttl_s + 1:g} s old)"
        return f"daemon {seen.owner} holds the lease of program {bucket}/{key_prefix}"

    def lost(self, bucket: str, key_prefix: str) -> None:
        """A write of the program was refused (another writer's version there): read its lease
        again before the next."""
        self._held.pop((bucket, key_prefix), None)

    async def release_all(self) -> None:
        """Give up every lease held (at the daemon's stop), so that another daemon takes them at once."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for program, held in list(self._held.items()):
            try:
                try:
                    await self._call(partial(self._put, program, released(held.lease), held.etag))
                except VersionConflict:
                    # A renewal cut off above may have gone out: give up the version there if it is ours.
                    verdict, found, etag, _ = await self._read(program)
                    if verdict is not Standing.OURS or found is None:
                        continue
                    await self._call(partial(self._put, program, released(found), etag))
                log.info("program %s/%s: its lease given up", *program)
                self._count("released")
            except StoreError as error:
                log.warning("program %s/%s: its lease could not be given up (another daemon takes it when it lapses,"
                            " in %.0f s): %s", *program, self.ttl_s, error)
        self._held.clear()

    # The requests.

    def _key(self, program: Program) -> str:
        return f"{program[1]}/{LEASE_NAME}" if program[1] else LEASE_NAME

    def _put(self, program: Program, lease: Lease, replaces: str | None) -> str:
        return self._store.put_version(program[0], self._key(program), lease_body(lease),
                                       content_type=LEASE_CONTENT_TYPE, cache_control="no-store", metadata={},
                                       replaces=replaces)

    async def _read(self, program: Program) -> tuple[Standing, Lease | None, str | None, float | None]:
        self._known.add(program)
        found = await self._call(partial(self._store.get_version, program[0], self._key(program)))
        lease = read_lease(found.body) if found is not None else None
        age_s = found.age_s if found is not None else None
        verdict = standing(lease, exists=found is not None, age_s=age_s, me=self.me, ttl_s=self.ttl_s)
        if found is not None and lease is None and \
                (left_out := self._unreadable.due(program, self._clock())) is not None:
            log.warning("program %s/%s: its lease object %s is no lease this daemon can read (%d bytes%s); it is taken"
                        " once it is %g s old", *program, self._key(program), len(found.body),
                        f", {left_out} more such reads since the last report" if left_out else "", self.ttl_s + 1)
        if verdict is Standing.HELD:
            self._seen[program] = _Seen(lease.owner if lease is not None else None,
                                        lease.ttl_s if lease is not None else self.ttl_s, age_s, self._clock())
        else:
            self._seen.pop(program, None)
        return verdict, lease, found.etag if found is not None else None, age_s

    async def _claim(self, program: Program) -> float:
        """Read the program's lease and take or renew it when this daemon may; the first time in
        a run, try to create it first (one conditional PUT for a program nobody holds). Returns
        how long to wait before asking again (0: held now, or read again at once)."""
        if program not in self._known:
            self._known.add(program)
            if await self._take(program, Standing.FREE, None, None, None):
                return 0.0
        verdict, found, etag, age_s = await self._read(program)
        if verdict is Standing.HELD:
            lives_s = found.ttl_s if found is not None else self.ttl_s
            return min(self.ttl_s / 3, max(0.1, lives_s + 1.0 - (age_s or 0.0)))
        await self._take(program, verdict, found, etag, age_s)
        return 0.0  # held now, or another daemon wrote it first: read what it wrote

    async def _take(self, program: Program, verdict: Standing, found: Lease | None, etag: str | None,
                    age_s: float | None) -> bool:
        """Write the lease ``verdict`` allows over version ``etag`` of ``found`` (None: create
        it). Returns whether this daemon holds it now (False: another daemon wrote first)."""
        lease = renewed(found) if verdict is Standing.OURS and found is not None else taken(found, self.me, self.ttl_s)
        sent = self._clock()
        try:
            new_etag = await self._call(partial(self._put, program, lease, etag))
        except VersionConflict:
            return False
        # The first renewal comes after a random part of the period, so that leases taken together
        # (a daemon's start) are renewed spread over it, not in one burst of PUTs.
        self._held[program] = _Held(lease, new_etag, sent, sent, sent + self.ttl_s / 3 * (1 - self._rng.random() / 2))
        self._start_renewing()
        if verdict is not Standing.OURS:
            self._count("taken_over" if verdict is Standing.LAPSED else "taken")
        if verdict is Standing.LAPSED:
            log.warning("program %s/%s: its lease taken over from %s, which stopped renewing it %.0f s ago"
                        " (fencing number %d)", *program, f"daemon {found.owner}" if found else "an unreadable lease",
                        age_s or 0.0, lease.fence)
        elif verdict is Standing.FREE:
            log.info("program %s/%s: its lease taken (fencing number %d)", *program, lease.fence)
        return True

    def _warn(self, program: Program, what: str, error: StoreError, then: str = "") -> None:
        if (left_out := self._failing.due(program, self._clock())) is not None:
            log.warning("program %s/%s: its lease %s: %s%s%s", *program, what, error, then,
                        f" ({left_out} more such failure(s) since the last report)" if left_out else "")

    def _safe(self, held: _Held) -> bool:
        return self._clock() - held.renewed_at < self.ttl_s * SAFE_FRACTION

    # Renewing.

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_all(), name="leases")

    async def _renew_all(self) -> None:
        """Renew each lease held a third of the time to live after its last renewal was sent (the
        leases due together at once), or give it up once its program has been quiet
        (``IDLE_RELEASE_S``)."""
        idle_s = max(IDLE_RELEASE_S, IDLE_RELEASE_TTLS * self.ttl_s)
        while self._held:
            next_due = min(held.due_at for held in self._held.values())
            await asyncio.sleep(min(RENEW_CHECK_S, max(0.0, next_due - self._clock())))
            now = self._clock()
            due = [(program, held) for program, held in list(self._held.items()) if held.due_at <= now]
            await asyncio.gather(*(self._renew(program, held, idle_s) for program, held in due))

    async def _renew(self, program: Program, held: _Held, idle_s: float) -> None:
        """Renew one lease, or give it up when quiet for ``idle_s``. A lease found taken is
        dropped, with a WARNING."""
        quiet = self._clock() - held.used_at > idle_s
        lease = released(held.lease) if quiet else renewed(held.lease)
        sent = self._clock()
        try:
            async with self._locks.setdefault(program, asyncio.Lock()):
                if self._held.get(program) is not held:
                    return
                etag = await self._call(partial(self._put, program, lease, held.etag))
        except VersionConflict:
            self._held.pop(program, None)
            self._count("lost")
            log.warning("program %s/%s: its lease was taken by another daemon (this one had not renewed it for"
                        " %.1f s): this daemon stops writing the program", *program, self._clock() - held.renewed_at)
            return
        except StoreError as error:
            self._warn(program, "could not be renewed", error,
                       "" if self._safe(held) else "; the program is not written until it is")
            held.due_at = self._clock() + min(1.0, self.ttl_s / 6)  # tried again soon, not at once
            return
        if quiet:
            self._held.pop(program, None)
            self._count("released")
            log.info("program %s/%s: its lease given up (nothing published for %.0f s)", *program, idle_s)
        else:
            held.lease, held.etag, held.renewed_at, held.due_at = lease, etag, sent, sent + self.ttl_s / 3

