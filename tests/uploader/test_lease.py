"""The lease rules (uploader/lease.py): who may take, renew or must wait, read off one version of
a program's lease object and its age by the store's clock."""

from __future__ import annotations

import pytest

from uploader.lease import (
    CLOCK_STEP_S,
    MAX_FENCE,
    Lease,
    Standing,
    alive,
    lapsed,
    lease_body,
    read_lease,
    released,
    renewed,
    standing,
    taken,
)

ME, OTHER = "host-a:100:abc", "host-b:200:def"


def test_a_lease_reads_back_as_written() -> None:
    lease = Lease(OTHER, 7, 6.0, 42)
    assert read_lease(lease_body(lease)) == lease
    assert lease_body(lease).endswith(b"\n") and lease_body(lease).isascii()


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"text"',
    b'{"fence":1,"ttl_s":6,"renewal":0}',  # no owner
    b'{"owner":1,"fence":1,"ttl_s":6,"renewal":0}',
    b'{"owner":"a","fence":0,"ttl_s":6,"renewal":0}',  # fencing numbers start at 1
    b'{"owner":"a","fence":true,"ttl_s":6,"renewal":0}',
    b'{"owner":"a","fence":1.5,"ttl_s":6,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":6,"renewal":-1}',
    b'{"owner":"a","fence":1,"ttl_s":0,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":-6,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":"6","renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":true,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":Infinity,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":NaN,"renewal":0}',
    b'{"owner":"a","fence":9007199254740993,"ttl_s":6,"renewal":0}',  # past MAX_FENCE
    b'{"owner":"a","fence":1,"ttl_s":1,"renewal":0}',  # time to live outside --lease-ttl's 2..300
    b'{"owner":"a","fence":1,"ttl_s":301,"renewal":0}',
    b'{"owner":"a","fence":1,"ttl_s":1e308,"renewal":0}',  # a program stalled for ever
    b'{"owner":"a b","fence":1,"ttl_s":6,"renewal":0}',  # an owner goes into log lines as is
    b'{"owner":"a\\nFAKE LOG LINE","fence":1,"ttl_s":6,"renewal":0}',
    b'{"owner":"\\u00e9","fence":1,"ttl_s":6,"renewal":0}',
    b"[" * 100_000,  # nested past the JSON reader's recursion limit
    b'{"owner":"a","fence":1,"ttl_s":6,"renewal":0,"pad":"' + b"x" * 2000 + b'"}',  # over MAX_BODY_BYTES
])
def test_anything_else_is_no_lease(body: bytes) -> None:
    assert read_lease(body) is None


def test_none_there_is_free_and_the_first_taker_gets_fencing_number_1() -> None:
    assert standing(None, exists=False, age_s=None, me=ME, ttl_s=6) is Standing.FREE
    assert taken(None, ME, 6.0) == Lease(ME, 1, 6.0, 0)


def test_fencing_numbers_and_renewals_wrap_before_a_reader_would_refuse_them() -> None:
    last = Lease(OTHER, MAX_FENCE, 6.0, MAX_FENCE)
    assert read_lease(lease_body(last)) == last
    assert taken(last, ME, 6.0).fence == 1
    assert renewed(last).renewal == 0 and read_lease(lease_body(released(last))) is not None


def test_a_lease_of_this_daemon_is_renewed_keeping_its_fencing_number() -> None:
    mine = Lease(ME, 3, 6.0, 9)
    assert standing(mine, exists=True, age_s=1000.0, me=ME, ttl_s=6) is Standing.OURS  # even late: nobody took it
    assert renewed(mine) == Lease(ME, 3, 6.0, 10)
    assert lease_body(renewed(mine)) != lease_body(mine)  # a new version, a new entity tag


def test_a_released_lease_is_free_at_once_and_taken_with_the_next_fencing_number() -> None:
    gone = released(Lease(OTHER, 4, 60.0, 2))
    assert gone.owner == "" and gone.fence == 4 and gone.released
    assert standing(gone, exists=True, age_s=0.0, me=ME, ttl_s=6) is Standing.FREE
    assert taken(gone, ME, 6.0).fence == 5


@pytest.mark.parametrize(("age_s", "expected"), [
    (None, Standing.HELD),  # a store that does not say how old it is: never taken by age
    (0.0, Standing.HELD),
    (6.0, Standing.HELD),
    (6.0 + CLOCK_STEP_S - 0.01, Standing.HELD),
    (6.0 + CLOCK_STEP_S, Standing.LAPSED),  # whole seconds: read 7, it is more than 6 s old
    (3600.0, Standing.LAPSED),
])
def test_another_daemons_lease_lapses_a_second_after_its_own_time_to_live(age_s: float | None,
                                                                           expected: Standing) -> None:
    theirs = Lease(OTHER, 2, 6.0, 0)
    assert standing(theirs, exists=True, age_s=age_s, me=ME, ttl_s=60) is expected  # its time to live, not ours
    assert taken(theirs, ME, 60.0) == Lease(ME, 3, 60.0, 0)


def test_an_unreadable_lease_object_lapses_after_this_daemons_time_to_live() -> None:
    assert standing(None, exists=True, age_s=2.0, me=ME, ttl_s=6) is Standing.HELD
    assert standing(None, exists=True, age_s=7.0, me=ME, ttl_s=6) is Standing.LAPSED
    assert taken(None, ME, 6.0).fence == 1


def test_a_holder_renewing_every_third_of_its_time_to_live_reads_as_alive_and_stops_before_it_lapses() -> None:
    ttl_s = 6.0
    # Renewed every 2 s; read in whole seconds, up to 3 s old: alive.
    assert all(alive(age, ttl_s) for age in (None, 0.0, 1.0, 2.0, 3.0, 4.0))
    assert not alive(5.0, ttl_s) and not lapsed(5.0, ttl_s)  # looks gone: its messages are taken, and wait
    assert lapsed(7.0, ttl_s) and not lapsed(6.9, ttl_s)
