"""Leases: which daemon publishes a program, decided in the store itself. Pure: no I/O.

With several daemons over one store (docs/architecture.md, "Leases"), each program (bucket and
key prefix: its renditions and its master) is published by one daemon at a time, the holder of
its lease: a small object beside its playlists (``LEASE_NAME``) written only with conditional
PUTs (If-None-Match: * to create it, If-Match: the version read to change it), so that of any
number of daemons racing for it exactly one wins. Its body names the holder, a fencing number
that grows by one at every change of holder, and the lease's time to live. The holder renews it
(a new version) every third of that time; a lease not renewed for its time to live, measured by
the store's own clock (the age ``stores.Version`` reads off Date and Last-Modified, so no two
daemons' clocks are compared), has lapsed and may be taken. A holder stops writing before a
taker could find its lease lapsed (``SAFE_FRACTION``), and a taker re-reads each playlist before
replacing it, so the holder's late playlist PUTs, conditional on a version the taker has
replaced, are refused by the store (RFC 9110 13.1.1).
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, replace

# The lease object's name, under the program's key prefix (``IndexMessage.key_for``).
LEASE_NAME = "hls-lease.json"

# S3's Last-Modified and Date are whole seconds: an age read off them can be up to 1 s over.
CLOCK_STEP_S = 1.0

# A lease's time to live, seconds (--lease-ttl): renewed every third of it, with the clock's step
# allowed; at most five minutes, so that a lease object someone else wrote cannot stall a
# program for longer.
MIN_TTL_S = 2.0
MAX_TTL_S = 300.0

# The largest lease object read as one (``lease_body`` writes about 100 bytes), and its holder's
# id: printable ASCII, no spaces (``leases.daemon_id``), so that it goes into a log line as is.
MAX_BODY_BYTES = 1024
_OWNER = re.compile(r"[\x21-\x7e]{0,200}")

# Fencing numbers stay below this (JSON numbers every reader keeps exact); past it, 1 again.
MAX_FENCE = 2**53

# A holder counts its lease as its own for this part of the time to live after it sent its last
# renewal that the store took; a taker waits the whole time to live plus ``CLOCK_STEP_S``.
SAFE_FRACTION = 0.8

# A lease renewed within this part of its time to live (and ``CLOCK_STEP_S``) is that of a
# daemon that is running, which renews it every third: messages of its program go to it instead.
ALIVE_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class Lease:
    """One version of a program's lease object. ``owner``: the holding daemon's id ("" once it
    released the lease); ``fence``: the fencing number, 1 for the first holder and one more at
    every take; ``ttl_s``: seconds after its last renewal (the store's clock) that it lapses;
    ``renewal``: counts this holder's renewals, so that each is a new version (a new entity tag)."""

    owner: str
    fence: int
    ttl_s: float
    renewal: int = 0

    @property
    def released(self) -> bool:
        return not self.owner


class Standing(enum.Enum):
    """What a daemon may do with a program's lease as it read it (``standing``)."""

    OURS = "ours"  # this daemon holds it: renew it
    FREE = "free"  # none, released, or unreadable and lapsed: take it
    LAPSED = "lapsed"  # its holder stopped renewing it: take it
    HELD = "held"  # another daemon holds it: wait


def lease_body(lease: Lease) -> bytes:
    """The object ``read_lease`` reads: one line of ASCII JSON."""
    fields = {"owner": lease.owner, "fence": lease.fence, "ttl_s": lease.ttl_s, "renewal": lease.renewal}
    return json.dumps(fields, separators=(",", ":")).encode("ascii") + b"\n"


def read_lease(body: bytes) -> Lease | None:
    """The lease ``body`` holds; None when it is no lease: over ``MAX_BODY_BYTES``, not JSON (or
    nested too deep to read), a field missing or of the wrong type, an owner that is not
    printable ASCII without spaces, a fence outside 1..``MAX_FENCE``, a time to live outside
    ``MIN_TTL_S``..``MAX_TTL_S``."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    owner, fence, ttl_s, renewal = (fields.get(name) for name in ("owner", "fence", "ttl_s", "renewal"))
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        return None
    if not _count(fence, least=1, most=MAX_FENCE) or not _count(renewal, least=0, most=MAX_FENCE):
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) \
            or not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        return None
    return Lease(owner, fence, float(ttl_s), renewal)


def standing(found: Lease | None, *, exists: bool, age_s: float | None, me: str, ttl_s: float) -> Standing:
    """What daemon ``me`` may do with a program's lease object: ``found`` as ``read_lease`` read
    it (None: none there when not ``exists``, else unreadable), ``age_s`` seconds after it was
    last written by the store's clock (None: unknown, taken as new). An unreadable object lapses
    after ``ttl_s``, this daemon's own time to live; a lease after its own."""
    if not exists:
        return Standing.FREE
    if found is not None and found.owner == me:
        return Standing.OURS
    if found is not None and found.released:
        return Standing.FREE
    lives_s = found.ttl_s if found is not None else ttl_s
    return Standing.LAPSED if lapsed(age_s, lives_s) else Standing.HELD


def lapsed(age_s: float | None, ttl_s: float) -> bool:
    """Whether a lease last written ``age_s`` seconds ago (the store's clock) has outlived ``ttl_s``."""
    return age_s is not None and age_s >= ttl_s + CLOCK_STEP_S


def alive(age_s: float | None, ttl_s: float) -> bool:
    """Whether a lease last written ``age_s`` seconds ago is that of a holder still renewing it
    (``ALIVE_FRACTION``); an unknown age counts as alive."""
    return age_s is None or age_s <= ttl_s * ALIVE_FRACTION + CLOCK_STEP_S


def taken(found: Lease | None, me: str, ttl_s: float) -> Lease:
    """The lease daemon ``me`` writes to take a program whose lease object holds ``found``
    (None: none, or unreadable): the next fencing number (1 after ``MAX_FENCE``, or when there
    was none to go on from)."""
    fence = found.fence if found is not None else 0
    return Lease(me, fence + 1 if fence < MAX_FENCE else 1, ttl_s)


def renewed(lease: Lease) -> Lease:
    """``lease`` renewed by its holder: a new version, the same fencing number."""
    return replace(lease, renewal=lease.renewal + 1 if lease.renewal < MAX_FENCE else 0)


def released(lease: Lease) -> Lease:
    """``lease`` given up by its holder: any daemon may take it at once."""
    return replace(renewed(lease), owner="")


def _count(value: object, *, least: int, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most
