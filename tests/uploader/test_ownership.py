"""The ownership rule on its own (uploader/ownership.py): one writer at a time per stream."""

from __future__ import annotations

import hashlib

import pytest

from protocol import writer_label
from uploader.ownership import Claim, Owner, OwnershipRule, Refused, Taken

STREAM = ("media", "cams/east", "live.m3u8")
A, B, C = "a" * 32, "b" * 32, "c" * 16
RULE = OwnershipRule(takeover_after_s=30.0)
TARGET_S = 2  # three target durations (6 s) are below --takeover-after: 30 s rules


def claim(writer: str | None, at: float, *, takeover: bool = False, peer: str = "10.0.0.2",
          may_take_over: bool = False) -> Claim:
    return Claim(writer, takeover, peer, at, may_take_over)


def test_an_unowned_stream_takes_its_first_writer() -> None:
    verdict = RULE.decide(STREAM, Owner(), claim(A, 100.0), TARGET_S)
    assert verdict == Taken(Owner(A, "10.0.0.2", 100.0, None))


def test_the_owner_is_taken_and_stays_live() -> None:
    verdict = RULE.decide(STREAM, Owner(A, "10.0.0.1", 100.0), claim(A, 129.0, peer="10.0.0.1"), TARGET_S)
    assert verdict == Taken(Owner(A, "10.0.0.1", 129.0, None))


def test_a_second_writer_on_a_live_stream_is_refused_naming_the_stream_its_writer_and_peer() -> None:
    verdict = RULE.decide(STREAM, Owner(A, "10.0.0.1", 100.0), claim(B, 110.0), TARGET_S)
    assert isinstance(verdict, Refused)
    assert "stream media/cams/east/live.m3u8" in verdict.reason
    assert f"written by {writer_label(A)} of peer 10.0.0.1" in verdict.reason
    assert verdict.reason.endswith("heard 10 s ago: refused as a second writer")


def test_a_message_without_writer_on_a_live_owned_stream_is_refused() -> None:
    verdict = RULE.decide(STREAM, Owner(A, "10.0.0.1", 100.0), claim(None, 101.0), TARGET_S)
    assert isinstance(verdict, Refused) and "refused as a second writer" in verdict.reason


def test_a_message_without_writer_on_an_unowned_stream_works_as_before() -> None:
    verdict = RULE.decide(STREAM, Owner(), claim(None, 100.0), TARGET_S)
    assert verdict == Taken(Owner(None, "10.0.0.2", 100.0, None))


@pytest.mark.parametrize("writer", [B, None])
def test_silence_past_the_takeover_time_lets_another_writer_take_over(writer: str | None) -> None:
    owner = Owner(A, "10.0.0.1", 100.0)
    assert isinstance(RULE.decide(STREAM, owner, claim(writer, 130.0), TARGET_S), Refused)  # not past it
    verdict = RULE.decide(STREAM, owner, claim(writer, 130.5), TARGET_S)
    assert verdict == Taken(Owner(writer, "10.0.0.2", 130.5, A), took_over=owner)


def test_the_takeover_time_is_at_least_three_target_durations() -> None:
    owner = Owner(A, "10.0.0.1", 100.0)
    assert RULE.silence_limit(20) == 60.0
    assert isinstance(RULE.decide(STREAM, owner, claim(B, 159.0), 20), Refused)
    assert isinstance(RULE.decide(STREAM, owner, claim(B, 161.0), 20), Taken)


@pytest.mark.parametrize("peer, may_take_over", [("10.0.0.1", False), ("10.0.0.2", True)])
def test_takeover_1_takes_a_live_stream_over_at_once_from_its_own_peer_or_when_allowed(
        peer: str, may_take_over: bool) -> None:
    owner = Owner(A, "10.0.0.1", 100.0)
    verdict = RULE.decide(STREAM, owner, claim(B, 100.5, takeover=True, peer=peer, may_take_over=may_take_over),
                          TARGET_S)
    assert verdict == Taken(Owner(B, peer, 100.5, A), took_over=owner)


def test_takeover_1_from_another_peer_not_allowed_to_is_refused_while_the_owner_is_live() -> None:
    owner = Owner(A, "cam-east", 100.0)
    verdict = RULE.decide(STREAM, owner, claim(B, 100.5, takeover=True, peer="lobby"), TARGET_S)
    assert isinstance(verdict, Refused)
    assert verdict.reason == ("peer lobby may not take over a live stream of another peer (takeover = true in"
                              " [peers.lobby]): stream media/cams/east/live.m3u8 is written by"
                              f" {writer_label(A)} of peer cam-east")
    # Once the owner is silent past the takeover time, it may, as any writer may.
    assert isinstance(RULE.decide(STREAM, owner, claim(B, 131.0, takeover=True, peer="lobby"), TARGET_S), Taken)


def test_the_owners_writer_id_sent_by_another_peer_is_another_writer() -> None:
    owner = Owner(A, "cam-east", 100.0)
    verdict = RULE.decide(STREAM, owner, claim(A, 101.0, peer="lobby"), TARGET_S)
    assert isinstance(verdict, Refused) and "refused as a second writer" in verdict.reason


def test_refusals_name_a_writer_by_a_fingerprint_never_by_its_id() -> None:
    verdict = RULE.decide(STREAM, Owner(A, "10.0.0.1", 100.0), claim(B, 101.0), TARGET_S)
    assert isinstance(verdict, Refused) and A not in verdict.reason and A[:8] not in verdict.reason
    assert writer_label(A) == "writer #" + hashlib.sha256(A.encode()).hexdigest()[:8]
    assert writer_label(A) != writer_label(B)


def test_the_writer_taken_over_is_told_so_while_the_new_one_is_live() -> None:
    owner = Owner(B, "10.0.0.2", 200.0, former=A)
    verdict = RULE.decide(STREAM, owner, claim(A, 205.0, peer="10.0.0.1"), TARGET_S)
    assert isinstance(verdict, Refused)
    assert verdict.reason.startswith(f"stream media/cams/east/live.m3u8 was taken over by {writer_label(B)} of peer 10.0.0.2")
    assert "--take-over takes it back" in verdict.reason
    # Another writer still gets the second-writer line.
    other = RULE.decide(STREAM, owner, claim(C, 205.0), TARGET_S)
    assert isinstance(other, Refused) and "refused as a second writer" in other.reason


def test_the_writer_taken_over_may_take_it_back_once_the_new_one_is_silent() -> None:
    owner = Owner(B, "10.0.0.2", 200.0, former=A)
    verdict = RULE.decide(STREAM, owner, claim(A, 231.0, peer="10.0.0.1"), TARGET_S)
    assert verdict == Taken(Owner(A, "10.0.0.1", 231.0, B), took_over=owner)


def test_a_clock_that_went_back_does_not_make_a_writer_silent() -> None:
    verdict = RULE.decide(STREAM, Owner(A, "10.0.0.1", 100.0), claim(B, 50.0), TARGET_S)
    assert isinstance(verdict, Refused) and "heard 0 s ago" in verdict.reason
