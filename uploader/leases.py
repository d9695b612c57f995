"""The leases one daemon holds in one store: taken before a program is published, kept alive by
one heartbeat per bucket renewed in the background, given up when a program goes quiet or the
daemon stops. The rules are ``uploader/lease.py``'s; this is the I/O around them
(docs/architecture.md, "Leases")."""

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
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from common.logs import Throttle

from .lease import (
    LEASE_NAME,
    SAFE_FRACTION,
    Heartbeat,
    Lease,
    Standing,
    alive,
    beaten,
    declared_dead,
    heartbeat_body,
    heartbeat_key,
    holder_standing,
    lease_body,
    lease_standing,
    read_heartbeat,
    read_lease,
    released,
    taken,
)
from .stores import Store, StoreError, VersionConflict

log = logging.getLogger("uploader.leases")

T = TypeVar("T")
Program = tuple[str, str]  # (bucket, key prefix)

# A program none of whose messages was published for this long (and at least this many times
# the time to live) gives its lease up, so that a daemon its segmenters moved to takes it at once;
# a heartbeat with no lease behind it for as long is removed.
IDLE_RELEASE_S = 30.0
IDLE_RELEASE_TTLS = 5

# How long another daemon's lease and heartbeat, as read, answer whether it holds the program (at
# most a third of the time to live): a segmenter told to send elsewhere tries again within seconds.
SEEN_FOR_S = 1.0

# While it waits for a lease, a worker looks this often whether the daemon stops, or whether
# another read found the lease given up.
STOP_CHECK_S = 0.5

# The renewer looks at least this often which heartbeats are due and which programs are quiet (seconds).
RENEW_CHECK_S = 0.25

# Threads for the lease requests (taking, reading, giving up), and for the heartbeats' alone, so
# that no renewal waits behind another request; beside the --max-inflight upload threads, with
# as many more connections in the S3 client's pool (``LEASE_CONNECTIONS``).
LEASE_THREADS = 4
HEARTBEAT_THREADS = 2
LEASE_CONNECTIONS = LEASE_THREADS + HEARTBEAT_THREADS

# A lease or heartbeat that cannot be read or renewed is reported at most this often per object.
WARN_INTERVAL_S = 30.0

LEASE_CONTENT_TYPE = "application/json"


def daemon_id() -> str:
    """A name for this daemon in the leases it holds: host, process and a random part (a restart,
    or a second daemon in the same process, is another holder). Letters, digits and ``._:?-``, as
    ``lease.read_lease`` takes a holder id: anything else in the host name becomes "?"."""
    host = re.sub(r"[^A-Za-z0-9._-]", "?", socket.gethostname())[:100] or "?"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class _Held:
    lease: Lease
    etag: str
    used_at: float  # monotonic: when a message of the program was last published


@dataclass(slots=True)
class _Beat:
    """This daemon's heartbeat in one bucket: its id there, the version last written, when the PUT
    the store last took was sent, when it is renewed next (monotonic), and since when no lease of
    the bucket is held (None: some is)."""

    heartbeat: Heartbeat
    etag: str
    renewed_at: float
    due_at: float
    empty_since: float | None = None
    claims: int = 0  # claims under way in the bucket: it is not removed meanwhile
    programs: set[Program] = field(default_factory=set)
    # A renewal whose reply was lost: the version sent (sent again, so that a 412 can tell a PUT
    # that landed from another daemon's write) and when it was first sent.
    attempt: tuple[Heartbeat, float] | None = None


@dataclass(frozen=True, slots=True)
class _Seen:
    """Another daemon's lease as last read: why its messages go elsewhere, and the age and time to
    live of what tells whether it is alive (its holder's heartbeat, or an unreadable object)."""

    reason: str
    ttl_s: float
    age_s: float | None
    at: float  # monotonic


@dataclass(frozen=True, slots=True)
class _Look:
    """One read of a program's lease (and of its holder's heartbeat when another daemon's)."""

    verdict: Standing
    lease: Lease | None
    etag: str | None  # the lease object's version; None: none there
    age_s: float | None  # the heartbeat's age (of the lease object when it is unreadable)
    beat: Heartbeat | None = None  # another holder's heartbeat as read (None: none, or no heartbeat)
    beat_etag: str | None = None  # its version; None: none there, or written over as dead already


class Leases:
    def __init__(self, store: Store, call: Callable[[Callable[[], T]], Awaitable[T]], *, ttl_s: float,
                 beat_call: Callable[[Callable[[], T]], Awaitable[T]] | None = None, me: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 count: Callable[[str], None] = lambda event: None) -> None:
        """The leases this daemon (``me``, default ``daemon_id()``: its id in the first heartbeat it
        writes in each bucket) holds in ``store``, its heartbeats with a time to live of ``ttl_s``
        seconds; ``call`` runs one store request off the event loop (``Publisher._lease_call``),
        ``beat_call`` one heartbeat request (on threads of its own; default ``call``);
        ``count(event)`` is told each lease "taken", "taken_over", "lost" and "released"
        (``DestinationMetrics.lease``)."""
        self._store = store
        self._call = call
        self._beat_call = beat_call or call
        self.me = me or daemon_id()
        self.ttl_s = ttl_s
        self._clock = clock
        self._count = count
        self._held: dict[Program, _Held] = {}
        self._beats: dict[str, _Beat] = {}
        self._beat_locks: dict[str, asyncio.Lock] = {}
        self._ids_used: set[tuple[str, str]] = set()  # (bucket, id) of every heartbeat written
        # The renewer's renewals, releases and removals under way, by what each works on.
        self._chores: dict[tuple[str, object], asyncio.Task[None]] = {}
        self._seen: dict[Program, _Seen] = {}
        # Programs whose lease this daemon read or tried to take this run, and when it last did.
        self._known: dict[Program, float] = {}
        self._locks: dict[Program, asyncio.Lock] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._failing = Throttle(WARN_INTERVAL_S)  # per program or bucket
        self._rng = random.Random()
        self._unreadable = Throttle(WARN_INTERVAL_S)  # per object

    # What the publisher and the intake ask.

    async def hold(self, bucket: str, key_prefix: str, *,
                   stopping: Callable[[], bool] = lambda: False) -> int | None:
        """Return once this daemon holds the lease of program (``bucket``, ``key_prefix``) for long
        enough to publish: at once when it is held and the bucket's heartbeat renewed, else after
        taking it (free, or its holder's heartbeat lapsed) or waiting for its holder to give it up
        or stop. A store that fails is asked again, each failure logged. Returns the lease's
        fencing number: a new one means another daemon may have written the program since this
        one last did; None when ``stopping()`` became true while it waited (the daemon stops:
        nothing is published)."""
        program = (bucket, key_prefix)
        while not stopping():
            if self.holds(bucket, key_prefix):
                held = self._held[program]
                held.used_at = self._clock()
                return held.lease.fence
            async with self._locks.setdefault(program, asyncio.Lock()):
                try:
                    wait_s = await self._claim(program)
                except StoreError as error:
                    self._warn(program, f"program {bucket}/{key_prefix}: its lease cannot be read or written", error)
                    wait_s = self.ttl_s / 3
            held_elsewhere = program in self._seen
            while wait_s > 0 and not stopping():
                await asyncio.sleep(min(wait_s, STOP_CHECK_S))
                wait_s -= STOP_CHECK_S
                if held_elsewhere and program not in self._seen:
                    break  # another read (a new message's) found it given up or lapsed: take it now
        return None

    def holds(self, bucket: str, key_prefix: str) -> bool:
        """Whether this daemon may write program (``bucket``, ``key_prefix``) now: it holds the
        lease under the id of its heartbeat in the bucket, renewed recently enough (``SAFE_FRACTION``)."""
        held, beat = self._held.get((bucket, key_prefix)), self._beats.get(bucket)
        return held is not None and beat is not None and held.lease.owner == beat.heartbeat.owner and \
            self._safe(beat)

    async def elsewhere(self, bucket: str, key_prefix: str) -> str | None:
        """Why a message of program (``bucket``, ``key_prefix``) is better sent to another daemon,
        or None: another daemon holds its lease and still renews its heartbeat (``lease.alive``), as
        last read (read again when older than ``SEEN_FOR_S``), or this daemon, not holding it,
        cannot read it (the store is out of its reach, not perhaps of another's). None when this
        daemon holds it, or it is free or lapsing (the message waits here for it), or the daemon
        has not dealt with the program yet this run: its worker tries to take the lease, and the
        program's next message is answered by what it found (no read per new program at start)."""
        program = (bucket, key_prefix)
        if self.holds(bucket, key_prefix) or program not in self._known:
            return None
        seen = self._seen.get(program)
        if seen is None or self._clock() - seen.at > min(SEEN_FOR_S, self.ttl_s / 3):
            try:
                await self._look(program)
            except StoreError as error:
                return f"this daemon cannot read the lease of program {bucket}/{key_prefix}: {error}"
            seen = self._seen.get(program)
        if seen is None or not alive(seen.age_s, seen.ttl_s):
            return None
        return seen.reason

    def lost(self, bucket: str, key_prefix: str) -> None:
        """A write of the program was refused (another writer's version there): read its lease
        again before the next."""
        if (bucket, key_prefix) in self._held:
            self._count("lost")
        self._drop((bucket, key_prefix))

    async def release_all(self) -> None:
        """Give up every lease held, together, while the heartbeats are still renewed; then remove
        the heartbeats (at the daemon's stop), so that another daemon takes the programs at once."""
        await asyncio.gather(*(self._release(program) for program in list(self._held)))
        tasks = [task for task in [self._renewer, *self._chores.values()] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bucket in list(self._beats):
            await self._remove_beat(bucket, force=True)

    # The requests.

    def _key(self, program: Program) -> str:
        return f"{program[1]}/{LEASE_NAME}" if program[1] else LEASE_NAME

    def _put_lease(self, program: Program, lease: Lease, replaces: str | None) -> str:
        return self._store.put_version(program[0], self._key(program), lease_body(lease),
                                       content_type=LEASE_CONTENT_TYPE, cache_control="no-store", metadata={},
                                       replaces=replaces)

    def _put_beat(self, bucket: str, heartbeat: Heartbeat, replaces: str | None) -> str:
        return self._store.put_version(bucket, heartbeat_key(heartbeat.owner), heartbeat_body(heartbeat),
                                       content_type=LEASE_CONTENT_TYPE, cache_control="no-store", metadata={},
                                       replaces=replaces)

    async def _look(self, program: Program) -> _Look:
        """Read the program's lease and, when another daemon's, that daemon's heartbeat; remember
        what was seen of a holder alive (for ``elsewhere``)."""
        self._known[program] = self._clock()
        bucket = program[0]
        beat = self._beats.get(bucket)
        found = await self._call(partial(self._store.get_version, bucket, self._key(program)))
        lease = read_lease(found.body) if found is not None else None
        if found is not None and lease is None:
            self._report_unreadable(bucket, self._key(program), len(found.body), "lease")
        age_s = found.age_s if found is not None else None
        # Without a heartbeat in the bucket this daemon holds nothing there: no lease is its own.
        verdict = lease_standing(lease, exists=found is not None, age_s=age_s,
                                 me=beat.heartbeat.owner if beat is not None else "", ttl_s=self.ttl_s)
        look = _Look(verdict, lease, found.etag if found is not None else None, age_s)
        later = f"it is taken once it is {self.ttl_s + 1:g} s old"
        ttl_s = self.ttl_s
        reason = f"the lease of program {bucket}/{program[1]} is an object this daemon cannot read ({later})"
        if verdict is Standing.NAMED:
            assert lease is not None
            owner = lease.owner
            key = heartbeat_key(owner)
            seen = await self._call(partial(self._store.get_version, bucket, key))
            heartbeat = read_heartbeat(seen.body) if seen is not None else None
            if seen is not None and (heartbeat is None or heartbeat.owner != owner):
                self._report_unreadable(bucket, key, len(seen.body), "heartbeat")
                heartbeat = None
            ttl_s = heartbeat.ttl_s if heartbeat is not None else self.ttl_s
            reason = f"daemon {owner} holds the lease of program {bucket}/{program[1]}" + (
                "" if heartbeat is not None else f" (its heartbeat is an object this daemon cannot read: {later})")
            holder = holder_standing(heartbeat, exists=seen is not None, age_s=seen.age_s if seen else None,
                                     ttl_s=self.ttl_s)
            live_etag = seen.etag if seen is not None and not (heartbeat is not None and heartbeat.dead) else None
            look = _Look(holder, lease, look.etag, seen.age_s if seen is not None else None, heartbeat, live_etag)
        if look.verdict is Standing.HELD:
            self._seen[program] = _Seen(reason, ttl_s, look.age_s, self._clock())
        else:
            self._seen.pop(program, None)
        return look

    async def _claim(self, program: Program) -> float:
        """Take or keep the program's lease when this daemon may; the first time in a run, try to
        create it first (one conditional PUT for a program nobody holds). Returns how long to
        wait before asking again (0: held now, or read again at once)."""
        bucket, first_time = program[0], program not in self._known
        self._known[program] = self._clock()  # from now on its messages are answered by what is found
        beat = await self._beating(bucket)
        if beat is None:
            return min(1.0, self.ttl_s / 6)  # its heartbeat could not be written: tried again
        beat.claims += 1
        try:
            if first_time:
                if await self._take(program, beat, Standing.FREE, _Look(Standing.FREE, None, None, None)):
                    return 0.0
            look = await self._look(program)
            if look.verdict is Standing.OURS:
                assert look.lease is not None and look.etag is not None
                self._keep(program, beat, look.lease, look.etag)
                return 0.0  # kept, or its heartbeat was lost meanwhile: read again
            if look.verdict is Standing.HELD:
                ttl_s = look.beat.ttl_s if look.beat is not None else self.ttl_s
                return min(self.ttl_s / 3, max(0.1, ttl_s + 1.0 - (look.age_s or 0.0)))
            if look.verdict is Standing.LAPSED and look.lease is not None and look.beat_etag is not None:
                if not await self._declare_dead(bucket, look):
                    return 0.0  # its holder renewed it meanwhile: read again
            await self._take(program, beat, look.verdict, look)
            return 0.0  # held now, or another daemon wrote it first: read what it wrote
        finally:
            beat.claims -= 1

    async def _declare_dead(self, bucket: str, look: _Look) -> bool:
        """Write the lapsed heartbeat of the lease's holder over as dead, conditional on the version
        read (its holder's own renewal races this PUT; one wins). Returns whether this one did."""
        assert look.lease is not None
        owner = look.lease.owner
        try:
            await self._call(partial(self._put_beat, bucket, declared_dead(look.beat, owner, self.ttl_s),
                                     look.beat_etag))
        except VersionConflict:
            return False
        log.warning("bucket %s: daemon %s stopped renewing its heartbeat %.0f s ago: its leases there may be taken",
                    bucket, owner, look.age_s or 0.0)
        return True

    async def _take(self, program: Program, beat: _Beat, verdict: Standing, look: _Look) -> bool:
        """Write this daemon's lease over version ``look.etag`` of ``look.lease`` (None: create
        it). Returns whether this daemon holds it now (False: another daemon wrote first)."""
        lease = taken(look.lease, beat.heartbeat.owner)
        try:
            etag = await self._call(partial(self._put_lease, program, lease, look.etag))
        except VersionConflict:
            return False
        if not self._keep(program, beat, lease, etag):
            return False  # taken under an id its heartbeat lost meanwhile: read again, and taken over
        self._count("taken_over" if verdict is Standing.LAPSED else "taken")
        if verdict is Standing.LAPSED:
            log.warning("program %s/%s: its lease taken over from %s (fencing number %d)", *program,
                        _whose(look), lease.fence)
        else:
            log.info("program %s/%s: its lease taken (fencing number %d)", *program, lease.fence)
        return True

    def _keep(self, program: Program, beat: _Beat, lease: Lease, etag: str) -> bool:
        """Hold ``lease`` under ``beat``, unless that heartbeat is no longer this daemon's in the
        bucket (declared dead or removed while the lease was written). Returns whether it is held."""
        if self._beats.get(program[0]) is not beat:
            return False
        self._held[program] = _Held(lease, etag, self._clock())
        beat.programs.add(program)
        beat.empty_since = None
        return True

    def _drop(self, program: Program) -> None:
        self._held.pop(program, None)
        beat = self._beats.get(program[0])
        if beat is not None:
            beat.programs.discard(program)
            if not beat.programs:
                beat.empty_since = self._clock()

    async def _release(self, program: Program, quiet_s: float | None = None) -> None:
        """Give the program's lease up: when the daemon stops (``quiet_s`` None), or when none of its
        messages was published for ``quiet_s`` (asked again under its lock: a message that came
        meanwhile keeps it). It is held no more while the PUT is on its way, so that a message
        arriving meanwhile waits for the lock and takes it afresh; a WARNING when the store
        refuses (a quiet one is then held again and given up later)."""
        held = self._held.get(program)
        if held is None:
            return
        async with self._locks.setdefault(program, asyncio.Lock()):
            if self._held.get(program) is not held or (
                    quiet_s is not None and self._clock() - held.used_at <= quiet_s):
                return  # given up meanwhile, or used again
            del self._held[program]
            try:
                await self._call(partial(self._put_lease, program, released(held.lease), held.etag))
            except VersionConflict:
                self._drop(program)
                self._count("lost")
                log.warning("program %s/%s: its lease was taken by another daemon", *program)
                return
            except StoreError as error:
                if quiet_s is not None:
                    self._held[program] = held
                    self._warn(program, f"program {program[0]}/{program[1]}: its lease could not be given up", error)
                    return
                self._drop(program)
                log.warning("program %s/%s: its lease could not be given up (another daemon takes it once this"
                            " daemon's heartbeat is removed or lapses): %s", *program, error)
                return
            self._drop(program)
            self._count("released")
            log.info("program %s/%s: its lease given up%s", *program,
                     f" (nothing published for {quiet_s:.0f} s)" if quiet_s is not None else "")

    def _report_unreadable(self, bucket: str, key: str, size: int, what: str) -> None:
        if (left_out := self._unreadable.due((bucket, key), self._clock())) is not None:
            log.warning("bucket %s: the object %s is no %s this daemon can read (%d bytes%s); it is taken once it is"
                        " %g s old", bucket, key, what, size,
                        f", {left_out} more such reads since the last report" if left_out else "", self.ttl_s + 1)

    def _warn(self, what: object, line: str, error: StoreError, then: str = "") -> None:
        if (left_out := self._failing.due(what, self._clock())) is not None:
            log.warning("%s: %s%s%s", line, error, then,
                        f" ({left_out} more such failure(s) since the last report)" if left_out else "")

    def _safe(self, beat: _Beat) -> bool:
        return self._clock() - beat.renewed_at < self.ttl_s * SAFE_FRACTION

    # Heartbeats.

    async def _beating(self, bucket: str) -> _Beat | None:
        """This daemon's heartbeat in ``bucket``, written first when there is none (its id: ``me``
        the first time, a new one after a heartbeat was removed or declared dead, so that no
        lease naming an id that stopped counts as this daemon's again), renewed first when it is
        no longer safe (a renewal failed). None when that fails."""
        beat = self._beats.get(bucket)
        if beat is not None:
            if not self._safe(beat):
                await self._renew(bucket, beat)
            return beat if self._beats.get(bucket) is beat and self._safe(beat) else None
        async with self._beat_locks.setdefault(bucket, asyncio.Lock()):
            if (beat := self._beats.get(bucket)) is not None:  # written meanwhile
                return beat if self._safe(beat) else None
            owner = self.me if (bucket, self.me) not in self._ids_used else daemon_id()
            self._ids_used.add((bucket, owner))
            heartbeat = Heartbeat(owner, self.ttl_s)
            sent = self._clock()
            etag = await self._beat_call(partial(self._put_beat, bucket, heartbeat, None))
            # The first renewal comes after a random part of the period, so that daemons started
            # together renew spread over it, not in one burst of PUTs.
            first_due = sent + self.ttl_s / 3 * (1 - self._rng.random() / 2)
            beat = self._beats[bucket] = _Beat(heartbeat, etag, sent, first_due, empty_since=sent)
            log.info("bucket %s: heartbeat %s written (renewed every %g s)", bucket, heartbeat_key(owner),
                     self.ttl_s / 3)
            self._start_renewing()
            return beat

    async def _remove_beat(self, bucket: str, beat: _Beat | None = None, *, force: bool = False) -> None:
        """Remove this daemon's heartbeat in ``bucket`` (``beat``, when given, and only while it is
        the one there): at the stop (``force``), or when no lease of the bucket is held and no
        claim is under way (asked again under its lock)."""
        async with self._beat_locks.setdefault(bucket, asyncio.Lock()):
            current = self._beats.get(bucket)
            if current is None or (beat is not None and current is not beat) or (
                    not force and (current.claims or current.programs)):
                return
            del self._beats[bucket]
        try:
            await self._beat_call(partial(self._store.delete, bucket, heartbeat_key(current.heartbeat.owner)))
        except StoreError as error:
            log.warning("bucket %s: heartbeat %s could not be removed (it lapses in %.0f s): %s", bucket,
                        heartbeat_key(current.heartbeat.owner), self.ttl_s, error)

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_all(), name="leases")

    async def _renew_all(self) -> None:
        """Renew each heartbeat a third of the time to live after its last renewal was sent; give
        up the lease of each program quiet for ``IDLE_RELEASE_S``, and remove a heartbeat with no
        lease behind it for as long. Each of these runs as a task of its own, so that a request
        that hangs (up to the client's read timeout) delays nothing else."""
        idle_s = max(IDLE_RELEASE_S, IDLE_RELEASE_TTLS * self.ttl_s)
        while self._beats:
            next_due = min(beat.due_at for beat in self._beats.values())
            await asyncio.sleep(min(RENEW_CHECK_S, max(0.0, next_due - self._clock())))
            now = self._clock()
            for bucket, beat in list(self._beats.items()):
                if beat.due_at <= now:
                    self._chore(("renew", bucket), partial(self._renew, bucket, beat))
                elif beat.claims == 0 and beat.empty_since is not None and now - beat.empty_since > idle_s:
                    self._chore(("remove", bucket), partial(self._remove_beat, bucket, beat))
            for program, held in list(self._held.items()):
                if now - held.used_at > idle_s:
                    self._chore(("release", program), partial(self._release, program, idle_s))
            self._forget(now - idle_s)

    def _chore(self, key: tuple[str, object], work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work()`` as a task of its own, unless one for ``key`` is under way."""
        if key in self._chores:
            return
        task = self._chores[key] = asyncio.ensure_future(work())
        task.add_done_callback(partial(self._chore_done, key))

    def _chore_done(self, key: tuple[str, object], task: asyncio.Task[None]) -> None:
        if self._chores.get(key) is task:
            del self._chores[key]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("leases: %s", error, exc_info=error)

    def _forget(self, before: float) -> None:
        """Drop what is remembered of programs neither held nor read since ``before`` (monotonic)."""
        for program, at in list(self._known.items()):
            lock = self._locks.get(program)
            if program in self._held or at >= before or (lock is not None and lock.locked()):
                continue
            del self._known[program]
            self._seen.pop(program, None)
            self._locks.pop(program, None)

    async def _renew(self, bucket: str, beat: _Beat) -> None:
        """Renew one heartbeat, unless it was renewed meanwhile (the renewer and a claim finding it
        unsafe may both ask). Refused (412), it reads what is there: the version it sent (a
        renewal whose reply was lost landed) is taken as renewed; anything else means another
        daemon declared it dead, and every lease of the bucket is dropped, with a WARNING: the
        next message of each program reads it again."""
        async with self._beat_locks.setdefault(bucket, asyncio.Lock()):
            if self._beats.get(bucket) is not beat or (self._clock() < beat.due_at and self._safe(beat)):
                return
            heartbeat, first_sent = beat.attempt or (beaten(beat.heartbeat), self._clock())
            key = heartbeat_key(heartbeat.owner)
            try:
                try:
                    etag = await self._beat_call(partial(self._put_beat, bucket, heartbeat, beat.etag))
                except VersionConflict:
                    found = await self._beat_call(partial(self._store.get_version, bucket, key)) \
                        if beat.attempt is not None else None
                    if found is None or read_heartbeat(found.body) != heartbeat:
                        self._declared_dead(bucket, beat)
                        return
                    etag = found.etag
            except StoreError as error:
                beat.attempt = (heartbeat, first_sent)
                self._warn(bucket, f"bucket {bucket}: heartbeat {key} could not be renewed", error,
                           "" if self._safe(beat) else "; its programs are not written until it is")
                beat.due_at = self._clock() + min(1.0, self.ttl_s / 6)  # tried again soon, not at once
                return
            beat.heartbeat, beat.etag, beat.renewed_at, beat.attempt = heartbeat, etag, first_sent, None
            beat.due_at = first_sent + self.ttl_s / 3

    def _declared_dead(self, bucket: str, beat: _Beat) -> None:
        self._beats.pop(bucket, None)
        held = [program for program in self._held if program[0] == bucket]
        for program in held:
            self._drop(program)
            self._count("lost")
        log.warning("bucket %s: another daemon found this daemon's heartbeat not renewed for %.1f s and declared it"
                    " dead: this daemon stops writing the %d program(s) it held there until it reads their leases"
                    " again", bucket, self._clock() - beat.renewed_at, len(held))


def _whose(look: _Look) -> str:
    """Whose lease a take over ``look`` took, and why, for its log line."""
    if look.lease is None:
        return "an unreadable lease"
    if look.beat_etag is not None:
        return f"daemon {look.lease.owner}, whose heartbeat was not renewed for {look.age_s or 0.0:.0f} s"
    if look.beat is not None and look.beat.dead:
        return f"daemon {look.lease.owner}, whose heartbeat another daemon declared dead"
    return f"daemon {look.lease.owner}, whose heartbeat is gone (it stopped) or is no heartbeat"
