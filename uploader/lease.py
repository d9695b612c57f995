"""Leases: which daemon publishes a program, decided in the store itself. Pure: no I/O.

With several daemons over one store (docs/architecture.md, "Leases"), each program (bucket and
key prefix: its renditions and its master) is published by one daemon at a time, the holder of
its lease: a small object beside its playlists (``LEASE_NAME``) that names the holder and a
fencing number, one more at every change of holder. It is written only when it changes hands
(taken, given up), and only with conditional PUTs (If-None-Match: * to create it, If-Match: the
version read to change it), so that of any number of daemons racing for it exactly one wins.

Whether its holder still runs is told by the holder's heartbeat: one object per daemon and bucket
(``heartbeat_key``), which the daemon renews (a new version) every third of its time to live,
whatever the number of programs it holds there. A heartbeat not renewed for its time to live,
measured by the store's own clock (the age ``stores.Version`` reads off Date and Last-Modified,
so no two daemons' clocks are compared), has lapsed: a taker first writes it over as dead (a
conditional PUT on the version it found lapsed, so that it races the holder's own renewal and
exactly one of the two wins), then takes the leases it wants. The holder's next renewal is
refused, and it learns that every lease it held in that bucket may be gone. A holder stops
writing before a taker could find its heartbeat lapsed (``SAFE_FRACTION``), and a taker re-reads
each playlist before replacing it, so the holder's late playlist PUTs, conditional on a version
the taker has replaced, are refused by the store (RFC 9110 13.1.1).
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, replace

# The lease object's name, under the program's key prefix (``IndexMessage.key_for``).
LEASE_NAME = "hls-lease.json"

# Where each daemon's heartbeat lives in a bucket it holds leases in.
HEARTBEAT_PREFIX = ".hls-uploadd/daemons/"

# S3's Last-Modified and Date are whole seconds: an age read off them can be up to 1 s over.
CLOCK_STEP_S = 1.0

# A heartbeat's time to live, seconds (--lease-ttl): renewed every third of it, with the clock's
# step allowed; at most five minutes, so that an object someone else wrote cannot stall a
# program for longer.
MIN_TTL_S = 2.0
MAX_TTL_S = 300.0

# The largest lease or heartbeat object read as one (each is under 150 bytes), and a holder's id:
# letters, digits and ``._:?-`` (``leases.daemon_id``), so that it goes into a log line and an
# object key as is.
MAX_BODY_BYTES = 1024
_OWNER = re.compile(r"[A-Za-z0-9._:?-]{1,200}")

# Fencing numbers and beats stay below this (JSON numbers every reader keeps exact); past it, 1 again.
MAX_FENCE = 2**53

# A holder counts its leases in a bucket as its own for this part of the time to live after it
# sent the last renewal of its heartbeat there that the store took; a taker waits the whole time
# to live plus ``CLOCK_STEP_S``.
SAFE_FRACTION = 0.8

# A heartbeat renewed within this part of its time to live (and ``CLOCK_STEP_S``) is that of a
# daemon that is running, which renews it every third: messages of its programs go to it instead.
ALIVE_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class Lease:
    """One version of a program's lease object. ``owner``: the holding daemon's id ("" once it
    gave the lease up); ``fence``: the fencing number, 1 for the first holder and one more at
    every take."""

    owner: str
    fence: int

    @property
    def released(self) -> bool:
        return not self.owner


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One version of a daemon's heartbeat in a bucket. ``ttl_s``: seconds after its last renewal
    (the store's clock) that it lapses; ``beat`` counts renewals, so that each is a new version (a
    new entity tag); ``dead``: written over by a daemon that found it lapsed (every lease naming
    ``owner`` in the bucket may be taken at once)."""

    owner: str
    ttl_s: float
    beat: int = 0
    dead: bool = False


class Standing(enum.Enum):
    """What a daemon may do with a program's lease as it read it (``lease_standing``, ``holder_standing``)."""

    OURS = "ours"  # this daemon holds it
    FREE = "free"  # none, or given up: take it
    NAMED = "named"  # another daemon's: its heartbeat tells (``holder_standing``)
    LAPSED = "lapsed"  # its holder stopped: take it (an unreadable object, or a holder's heartbeat lapsed)
    HELD = "held"  # another daemon holds it: wait


def heartbeat_key(owner: str) -> str:
    """The key of daemon ``owner``'s heartbeat in a bucket."""
    return f"{HEARTBEAT_PREFIX}{owner}.json"


def lease_body(lease: Lease) -> bytes:
    """The object ``read_lease`` reads: one line of ASCII JSON."""
    return _body({"owner": lease.owner, "fence": lease.fence})


def heartbeat_body(heartbeat: Heartbeat) -> bytes:
    """The object ``read_heartbeat`` reads: one line of ASCII JSON."""
    return _body({"owner": heartbeat.owner, "ttl_s": heartbeat.ttl_s, "beat": heartbeat.beat, "dead": heartbeat.dead})


def read_lease(body: bytes) -> Lease | None:
    """The lease ``body`` holds; None when it is no lease (``_fields``), its owner neither "" nor
    an id ``daemon_id`` could make, or its fence outside 1..``MAX_FENCE``."""
    fields = _fields(body)
    if fields is None:
        return None
    owner, fence = fields.get("owner"), fields.get("fence")
    if not isinstance(owner, str) or (owner and not _OWNER.fullmatch(owner)) or not _count(fence, least=1):
        return None
    return Lease(owner, fence)


def read_heartbeat(body: bytes) -> Heartbeat | None:
    """The heartbeat ``body`` holds; None when it is none (``_fields``), its owner no id
    ``daemon_id`` could make, its beat outside 0..``MAX_FENCE``, its time to live outside
    ``MIN_TTL_S``..``MAX_TTL_S``, or ``dead`` not a boolean."""
    fields = _fields(body)
    if fields is None:
        return None
    owner, ttl_s, beat, dead = (fields.get(name) for name in ("owner", "ttl_s", "beat", "dead"))
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner) or not _count(beat, least=0) \
            or not isinstance(dead, bool):
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) \
            or not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        return None
    return Heartbeat(owner, float(ttl_s), beat, dead)


def lease_standing(found: Lease | None, *, exists: bool, age_s: float | None, me: str, ttl_s: float) -> Standing:
    """What daemon ``me`` may do with a program's lease object: ``found`` as ``read_lease`` read
    it (None: none there when not ``exists``, else unreadable), ``age_s`` seconds after it was
    last written by the store's clock. An unreadable object lapses after ``ttl_s``, this daemon's
    own time to live (nobody renews it); another daemon's lease is ``NAMED``: its holder's
    heartbeat tells."""
    if not exists or (found is not None and found.released):
        return Standing.FREE
    if found is None:
        return Standing.LAPSED if lapsed(age_s, ttl_s) else Standing.HELD
    return Standing.OURS if found.owner == me else Standing.NAMED


def holder_standing(found: Heartbeat | None, *, exists: bool, age_s: float | None, ttl_s: float) -> Standing:
    """Whether the holder a lease names still holds it, by its heartbeat: ``found`` as
    ``read_heartbeat`` read it (None: none there when not ``exists``, else unreadable), ``age_s``
    seconds old by the store's clock. ``LAPSED`` when there is none (its daemon stopped and
    removed it), it was written over as dead, or it has not been renewed for its time to live
    (an unreadable one: this daemon's ``ttl_s``); else ``HELD``."""
    if not exists or (found is not None and found.dead):
        return Standing.LAPSED
    return Standing.LAPSED if lapsed(age_s, found.ttl_s if found is not None else ttl_s) else Standing.HELD


def lapsed(age_s: float | None, ttl_s: float) -> bool:
    """Whether an object last written ``age_s`` seconds ago (the store's clock; None: unknown,
    taken as new) has outlived ``ttl_s``."""
    return age_s is not None and age_s >= ttl_s + CLOCK_STEP_S


def alive(age_s: float | None, ttl_s: float) -> bool:
    """Whether a heartbeat last written ``age_s`` seconds ago is that of a daemon still renewing
    it (``ALIVE_FRACTION``); an unknown age counts as alive."""
    return age_s is None or age_s <= ttl_s * ALIVE_FRACTION + CLOCK_STEP_S


def taken(found: Lease | None, me: str) -> Lease:
    """The lease daemon ``me`` writes to take a program whose lease object holds ``found``
    (None: none, or unreadable): the next fencing number (1 after ``MAX_FENCE``, or when there
    was none to go on from)."""
    fence = found.fence if found is not None else 0
    return Lease(me, fence + 1 if fence < MAX_FENCE else 1)


def released(lease: Lease) -> Lease:
    """``lease`` given up by its holder: any daemon may take it at once."""
    return replace(lease, owner="")


def beaten(heartbeat: Heartbeat) -> Heartbeat:
    """``heartbeat`` renewed: a new version."""
    return replace(heartbeat, beat=heartbeat.beat + 1 if heartbeat.beat < MAX_FENCE else 0)


def declared_dead(found: Heartbeat | None, owner: str, ttl_s: float) -> Heartbeat:
    """What a taker writes over daemon ``owner``'s lapsed heartbeat ``found`` (None: unreadable)."""
    return replace(beaten(found) if found is not None else Heartbeat(owner, ttl_s), dead=True)


def _body(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("ascii") + b"\n"


def _fields(body: bytes) -> dict[str, object] | None:
    """A JSON object of at most ``MAX_BODY_BYTES``; None for anything else (or nested too deep)."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return fields if isinstance(fields, dict) else None


def _count(value: object, *, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= MAX_FENCE
