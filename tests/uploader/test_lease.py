"""The lease rules (uploader/lease.py): who may take a program's lease, keep it or must wait, read
off one version of its lease object and of its holder's heartbeat, with their ages by the
store's clock."""

from __future__ import annotations

import pytest

from uploader.lease import (
    CLOCK_STEP_S,
    HEARTBEAT_PREFIX,
    MAX_FENCE,
    Heartbeat,
    Lease,
    Standing,
    alive,
    beaten,
    declared_dead,
    heartbeat_body,
    heartbeat_key,
    holder_standing,
    lapsed,
    lease_body,
    lease_standing,
    read_heartbeat,
    read_lease,
    released,
    taken,
)

ME, OTHER = "host-a:100:abc", "host-b:200:def"


def test_a_lease_and_a_heartbeat_read_back_as_written() -> None:
    lease, heartbeat = Lease(OTHER, 7), Heartbeat(OTHER, 6.0, 42)
    assert read_lease(lease_body(lease)) == lease and read_heartbeat(heartbeat_body(heartbeat)) == heartbeat
    for body in (lease_body(lease), heartbeat_body(heartbeat)):
        assert body.endswith(b"\n") and body.isascii() and len(body) < 150
    assert heartbeat_key(OTHER) == f"{HEARTBEAT_PREFIX}{OTHER}.json"


GARBAGE = [
    b"", b"not json", b"[]", b'"text"',
    b"[" * 100_000,  # nested past the JSON reader's recursion limit
    b'{"owner":"a","fence":1,"ttl_s":6,"beat":0,"dead":false,"pad":"' + b"x" * 2000 + b'"}',  # over MAX_BODY_BYTES
    b'{"owner":"a b","fence":1,"ttl_s":6,"beat":0,"dead":false}',  # an owner goes into log lines and keys as is
    b'{"owner":"a\\nFAKE LOG LINE","fence":1,"ttl_s":6,"beat":0,"dead":false}',
    b'{"owner":"../../x","fence":1,"ttl_s":6,"beat":0,"dead":false}',
    b'{"owner":"\\u00e9","fence":1,"ttl_s":6,"beat":0,"dead":false}',
    b'{"owner":1,"fence":1,"ttl_s":6,"beat":0,"dead":false}',
]


@pytest.mark.parametrize("body", [
    *GARBAGE,
    b'{"fence":1}',  # no owner
    b'{"owner":"a","fence":0}',  # fencing numbers start at 1
    b'{"owner":"a","fence":true}',
    b'{"owner":"a","fence":1.5}',
    b'{"owner":"a","fence":9007199254740993}',  # past MAX_FENCE
])
def test_anything_else_is_no_lease(body: bytes) -> None:
    assert read_lease(body) is None


@pytest.mark.parametrize("body", [
    *GARBAGE,
    b'{"owner":"","ttl_s":6,"beat":0,"dead":false}',  # a heartbeat always names its daemon
    b'{"owner":"a","ttl_s":6,"beat":-1,"dead":false}',
    b'{"owner":"a","ttl_s":6,"beat":0,"dead":0}',
    b'{"owner":"a","ttl_s":0,"beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":"6","beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":true,"beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":Infinity,"beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":NaN,"beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":1,"beat":0,"dead":false}',  # time to live outside --lease-ttl's 2..300
    b'{"owner":"a","ttl_s":301,"beat":0,"dead":false}',
    b'{"owner":"a","ttl_s":1e308,"beat":0,"dead":false}',  # a program stalled for ever
])
def test_anything_else_is_no_heartbeat(body: bytes) -> None:
    assert read_heartbeat(body) is None


def test_none_there_is_free_and_the_first_taker_gets_fencing_number_1() -> None:
    assert lease_standing(None, exists=False, age_s=None, me=ME, ttl_s=6) is Standing.FREE
    assert taken(None, ME) == Lease(ME, 1)


def test_fencing_numbers_and_beats_wrap_before_a_reader_would_refuse_them() -> None:
    last = Lease(OTHER, MAX_FENCE)
    assert read_lease(lease_body(last)) == last and taken(last, ME).fence == 1
    assert beaten(Heartbeat(ME, 6.0, MAX_FENCE)).beat == 0


def test_a_lease_of_this_daemon_is_its_own_however_old_the_object() -> None:
    mine = Lease(ME, 3)
    assert lease_standing(mine, exists=True, age_s=1000.0, me=ME, ttl_s=6) is Standing.OURS  # not renewed: never is


def test_a_released_lease_is_free_at_once_and_taken_with_the_next_fencing_number() -> None:
    gone = released(Lease(OTHER, 4))
    assert gone == Lease("", 4) and gone.released and read_lease(lease_body(gone)) == gone
    assert lease_standing(gone, exists=True, age_s=0.0, me=ME, ttl_s=6) is Standing.FREE
    assert taken(gone, ME) == Lease(ME, 5)


def test_another_daemons_lease_is_decided_by_its_heartbeat() -> None:
    assert lease_standing(Lease(OTHER, 2), exists=True, age_s=3600.0, me=ME, ttl_s=6) is Standing.NAMED


@pytest.mark.parametrize(("age_s", "expected"), [
    (None, Standing.HELD),  # a store that does not say how old it is: never taken by age
    (0.0, Standing.HELD),
    (6.0, Standing.HELD),
    (6.0 + CLOCK_STEP_S - 0.01, Standing.HELD),
    (6.0 + CLOCK_STEP_S, Standing.LAPSED),  # whole seconds: read 7, it is more than 6 s old
    (3600.0, Standing.LAPSED),
])
def test_a_heartbeat_lapses_a_second_after_its_own_time_to_live(age_s: float | None, expected: Standing) -> None:
    theirs = Heartbeat(OTHER, 6.0, 5)
    assert holder_standing(theirs, exists=True, age_s=age_s, ttl_s=60) is expected  # its time to live, not ours


def test_a_heartbeat_gone_or_declared_dead_lapses_at_once() -> None:
    assert holder_standing(None, exists=False, age_s=None, ttl_s=6) is Standing.LAPSED  # its daemon stopped
    dead = declared_dead(Heartbeat(OTHER, 6.0, 5), OTHER, 60.0)
    assert dead == Heartbeat(OTHER, 6.0, 6, dead=True) and read_heartbeat(heartbeat_body(dead)) == dead
    assert holder_standing(dead, exists=True, age_s=0.0, ttl_s=6) is Standing.LAPSED
    # Over an object that was no heartbeat: one in its daemon's name, with this daemon's time to live.
    assert declared_dead(None, OTHER, 60.0) == Heartbeat(OTHER, 60.0, 0, dead=True)


def test_unreadable_objects_lapse_after_this_daemons_time_to_live() -> None:
    assert lease_standing(None, exists=True, age_s=2.0, me=ME, ttl_s=6) is Standing.HELD
    assert lease_standing(None, exists=True, age_s=7.0, me=ME, ttl_s=6) is Standing.LAPSED
    assert holder_standing(None, exists=True, age_s=2.0, ttl_s=6) is Standing.HELD
    assert holder_standing(None, exists=True, age_s=7.0, ttl_s=6) is Standing.LAPSED
    assert taken(None, ME).fence == 1


def test_a_holder_renewing_every_third_of_its_time_to_live_reads_as_alive_and_stops_before_it_lapses() -> None:
    ttl_s = 6.0
    # Renewed every 2 s; read in whole seconds, up to 3 s old: alive.
    assert all(alive(age, ttl_s) for age in (None, 0.0, 1.0, 2.0, 3.0, 4.0))
    assert not alive(5.0, ttl_s) and not lapsed(5.0, ttl_s)  # looks gone: its messages are taken, and wait
    assert lapsed(7.0, ttl_s) and not lapsed(6.9, ttl_s)
