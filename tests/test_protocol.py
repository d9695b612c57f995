"""The wire format: the original's bytes, every rejection rule, framing, replies, tags."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import hmac
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    CLOSED,
    NEED_DATA,
    Ack,
    Challenge,
    ChallengeSession,
    Hello,
    IndexMessage,
    MessageDecoder,
    PayloadData,
    PayloadEnd,
    ProtocolError,
    Reject,
    ReplyDecoder,
    encode_message,
    encode_reply,
    parse_message,
    parse_reply,
    segment_file_name,
    segment_number,
    sign,
    verify,
    writer_label,
)
from protocol.message import is_key_prefix
from tests.support.messages import ORIGINAL, ORIGINAL_MESSAGE


def decode_all(data: bytes, *, chunk: int | None = None, eof: bool = True, **limits: int) -> list[object]:
    """Every event (or ProtocolError reason) the decoder gives for ``data``."""
    decoder = MessageDecoder(**limits)
    events: list[object] = []
    broken = False
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]

    def drain() -> None:
        nonlocal broken
        while not broken:
            try:
                event = decoder.next_event()
            except ProtocolError as error:
                events.append(("error", error.reason))
                broken = not error.recoverable  # a real server closes the connection here
                continue
            if event is NEED_DATA or event is CLOSED:
                if event is CLOSED:
                    events.append(CLOSED)
                return
            events.append(event)

    for piece in pieces:
        if broken:
            break
        decoder.receive_data(piece)
        drain()
    if eof and not broken:
        decoder.receive_eof()
        drain()
    return _merge_payload(events)


def _merge_payload(events: list[object]) -> list[object]:
    """Join consecutive PayloadData so chunked and whole feeding compare equal."""
    merged: list[object] = []
    for event in events:
        if isinstance(event, PayloadData) and merged and isinstance(merged[-1], PayloadData):
            merged[-1] = PayloadData(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


# The original's message, byte for byte.


def test_original_message_decodes_to_its_fields() -> None:
    assert parse_message(ORIGINAL) == ORIGINAL_MESSAGE


def test_v1_message_encodes_to_the_original_bytes() -> None:
    assert encode_message(ORIGINAL_MESSAGE) == ORIGINAL
    assert encode_message(ORIGINAL_MESSAGE, newline=True) == ORIGINAL + b"\n"


def test_original_client_sends_one_message_then_eof_without_newline() -> None:
    assert decode_all(ORIGINAL) == [ORIGINAL_MESSAGE, CLOSED]
    assert decode_all(ORIGINAL, chunk=1) == [ORIGINAL_MESSAGE, CLOSED]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_endings_end_a_message(ending: bytes) -> None:
    assert decode_all(ORIGINAL + ending) == [ORIGINAL_MESSAGE, CLOSED]
    assert decode_all(ORIGINAL + ending, eof=False) == [ORIGINAL_MESSAGE]


@pytest.mark.parametrize("separator", [b",", b",  ", b",\t", b", \t  "])
def test_any_white_space_may_follow_a_comma(separator: bytes) -> None:
    assert parse_message(ORIGINAL.replace(b", ", separator)) == ORIGINAL_MESSAGE


def test_several_messages_on_one_connection_in_order() -> None:
    messages = [dataclasses.replace(ORIGINAL_MESSAGE, last_segment=n, duration=9.96) for n in range(1, 6)]
    data = b"".join(encode_message(message, newline=True) for message in messages)
    assert decode_all(data) == [*messages, CLOSED]
    assert decode_all(data, chunk=1) == [*messages, CLOSED]
    assert decode_all(data, chunk=7) == [*messages, CLOSED]


def test_blank_lines_between_messages_are_skipped() -> None:
    assert decode_all(b"\n\r\n" + ORIGINAL + b"\n\n") == [ORIGINAL_MESSAGE, CLOSED]


def test_a_blank_line_before_a_message_on_an_open_connection_does_not_hold_it_back() -> None:
    # A client that keeps the connection open waits for the reply before it sends more.
    assert decode_all(b"\n" + ORIGINAL + b"\n", eof=False) == [ORIGINAL_MESSAGE]
    assert decode_all(b"\n" + ORIGINAL + b"\n", chunk=1, eof=False) == [ORIGINAL_MESSAGE]


@pytest.mark.parametrize("line", [b"X", b"\x0b", b"\x0c"])
def test_only_spaces_tabs_and_a_cr_make_a_blank_line(line: bytes) -> None:
    events = decode_all(line + b"\n" + ORIGINAL + b"\n")
    assert events == [("error", "expected 10 comma-separated fields, got 1"), ORIGINAL_MESSAGE, CLOSED]


def test_startup_message_with_last_segment_zero_parses() -> None:
    startup = ORIGINAL.replace(b", 1, 5, 0,", b", 1, 0, 0,")
    assert parse_message(startup).last_segment == 0


def test_segment_names_are_five_digits_then_wider() -> None:
    assert segment_file_name("sample_128k", 1) == "sample_128k-00001.ts"
    assert segment_file_name("s", 99999) == "s-99999.ts"
    assert segment_file_name("s", 100000) == "s-100000.ts"
    assert ORIGINAL_MESSAGE.segment_key == "stream0001/sample_128k-00005.ts"
    assert ORIGINAL_MESSAGE.playlist_key == "stream0001/stream-128k.m3u8"
    assert dataclasses.replace(ORIGINAL_MESSAGE, key_prefix="").playlist_key == "stream-128k.m3u8"


def test_a_segment_name_gives_its_number_back_only_for_its_own_prefix() -> None:
    for number in (1, 99999, 100000):
        assert segment_number(segment_file_name("low-a", number), "low-a") == number
    for name in ("low-a-0001.ts", "low-a-000001.ts", "low-00001.ts", "low-a-00001.ts.part", "low-a-0000x.ts",
                 "low-a-\u0661\u0662\u0663\u0664\u0665.ts", "other-00001.ts", "low-a-00001.mp4"):
        assert segment_number(name, "low-a") is None, name


# Extensions.


def test_extensions_round_trip_and_follow_the_tenth_field() -> None:
    message = dataclasses.replace(
        ORIGINAL_MESSAGE,
        duration=2.002,
        discontinuity=True,
        start=12.5,
        bandwidth=2_000_000,
        resolution="1280x720",
        codecs="avc1.64001f,mp4a.40.2",
        frame_rate=29.97,
        size=1234,
        sent_at_ms=1_700_000_000_000,
        extras=(("future", "a b,c"),),
    )
    wire = encode_message(message)
    assert wire.startswith(ORIGINAL + b", duration=2.002, discontinuity=1, start=12.5,")
    assert b"codecs=avc1.64001f%2Cmp4a.40.2" in wire
    assert parse_message(wire) == message


def test_times_under_a_millisecond_are_sent_as_plain_decimals() -> None:
    # One 90 kHz tick to the microsecond (1.1e-05 in Python), and a time below a microsecond.
    message = dataclasses.replace(ORIGINAL_MESSAGE, start=0.000011, duration=0.0000005)
    wire = encode_message(message)
    assert wire.endswith(b", duration=0.0000005, start=0.000011")
    assert parse_message(wire) == message


def test_unknown_extension_keys_are_kept() -> None:
    message = parse_message(ORIGINAL + b", colour=blue, level=3")
    assert message.extras == (("colour", "blue"), ("level", "3"))


def test_discontinuity_zero_is_the_default() -> None:
    assert parse_message(ORIGINAL + b", discontinuity=0") == ORIGINAL_MESSAGE


def test_an_equals_sign_in_a_value_belongs_to_the_value() -> None:
    # A key never holds "=", so the first one ends it; a client that leaves base64 padding
    # unencoded is still understood, and the message is re-encoded the documented way.
    message = parse_message(ORIGINAL + b", note=YQ==")
    assert message.extras == (("note", "YQ=="),)
    assert encode_message(message) == ORIGINAL + b", note=YQ%3D%3D"


REJECTIONS = [
    (b"a.m3u8, /tmp/, 10", "expected 10 comma-separated fields, got 3"),
    (ORIGINAL.replace(b", 10,", b", ten,"), "segment_duration 'ten' is not a non-negative integer"),
    (ORIGINAL.replace(b", 10,", b", -10,"), "segment_duration '-10' is not a non-negative integer"),
    (ORIGINAL.replace(b", 10,", b", 1.5,"), "segment_duration '1.5' is not a non-negative integer"),
    (ORIGINAL.replace(b", 10,", b", 0,"), "segment_duration 0 is outside 1..3600"),
    (ORIGINAL.replace(b", 1, 5,", b", 1, 99999999999999999999,"), "last_segment '99999999999999999999' is not"),
    (ORIGINAL.replace(b", 1, 5,", b", 1, 4294967296,"), "last_segment 4294967296 is outside"),
    (ORIGINAL.replace(b", 1, 5,", ", ٣, 5,".encode()), "first_segment '٣' is not a non-negative integer"),
    (ORIGINAL.replace(b", 1, 5,", b", 4294967296, 5,"), "first_segment 4294967296 is outside 0..2147483647"),
    (ORIGINAL.replace(b", 1, 5,", b", 6, 5,"), "first_segment 6 is after last_segment 5"),
    (ORIGINAL.replace(b", 5, 0,", b", 5, 2,"), "end '2' must be 0 or 1"),
    (ORIGINAL.replace(b"stream-128k.m3u8", b"stream-128k.txt"), "must end in .m3u8"),
    (ORIGINAL.replace(b"stream-128k.m3u8", b"../x.m3u8"), "index '../x.m3u8' is not a plain file name"),
    (ORIGINAL.replace(b"stream-128k.m3u8", b"a/x.m3u8"), "is not a plain file name"),
    (ORIGINAL.replace(b"stream-128k.m3u8", b""), "index is empty"),
    (ORIGINAL.replace(b"sample_128k", b""), "output_prefix is empty"),
    (ORIGINAL.replace(b"sample_128k", b"../sample"), "output_prefix '../sample' is not a plain file name"),
    (ORIGINAL.replace(b"sample_128k", "sample\u2215x".encode()), "is not a plain file name"),
    (ORIGINAL.replace(b", stream0001", b", /stream0001"), "must be relative (no leading /)"),
    (ORIGINAL.replace(b", stream0001", b", a/../b"), "has an empty, . or .. path segment"),
    (ORIGINAL.replace(b", stream0001", b", a//b"), "has an empty, . or .. path segment"),
    (ORIGINAL.replace(b", stream0001", b", a/./b"), "key_prefix 'a/./b' has an empty, . or .. path segment"),
    (ORIGINAL.replace(b", stream0001", b", .."), "has an empty, . or .. path segment"),
    (ORIGINAL.replace(b", stream0001", ", a\u2024\u2024/b".encode()), "characters outside"),
    (ORIGINAL.replace(b"ionlivestream", b"Ion_Live"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"ab"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"192.168.1.10"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"a..b"), "bucket 'a..b' is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"a.-b"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"a-.b"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"xn--ionlive"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"ionlivestream", b"ionlive-s3alias"), "is not a valid S3 bucket name"),
    (ORIGINAL.replace(b"http://d3vmly3syseqo9", b"ftp://d3vmly3syseqo9"), "is not an http(s) URL"),
    (ORIGINAL.replace(b"http://d3vmly3syseqo9.cloudfront.net", b"cdn"), "http_prefix 'cdn/stream0001/' is not an http(s) URL"),
    (ORIGINAL.replace(b"d3vmly3syseqo9.cloudfront", b"cdn example"), "is not an http(s) URL"),
    (ORIGINAL.replace(b"d3vmly3syseqo9.cloudfront", "caf\u00e9".encode()), "is not an http(s) URL"),
    (ORIGINAL.replace(b"/tmp/", b""), "output_directory is empty"),
    (ORIGINAL.replace(b"/tmp/", b"/tmp/\x00"), "field 2 contains a control character"),
    (ORIGINAL + b"\x0c", "field 10 contains a control character"),
    (ORIGINAL.replace(b"/tmp/", b"/tmp/\xff"), "message is not valid UTF-8"),
    (ORIGINAL + b", duration", "field 11 'duration' is not key=value"),
    (ORIGINAL + b", Duration=1", "is not key=value"),
    (ORIGINAL + b", duration=1, duration=2", "extension 'duration' appears twice"),
    (ORIGINAL + b", duration=nan", "duration 'nan' is not a plain decimal number"),
    (ORIGINAL + b", duration=1e3", "duration '1e3' is not a plain decimal number"),
    (ORIGINAL + b", duration=0", "duration 0.0 is outside"),
    (ORIGINAL + b", discontinuity=yes", "discontinuity 'yes' must be 0 or 1"),
    (ORIGINAL + b", resolution=1280*720", "resolution '1280*720' is not WIDTHxHEIGHT"),
    (ORIGINAL + b", codecs=avc1%3Bx", "codecs 'avc1;x' is not an RFC 6381 codecs list"),
    (ORIGINAL + b", size=-1", "size '-1' is not a non-negative integer"),
    (ORIGINAL + b", tag=abc", "tag must be 64 lowercase hex digits"),
    (ORIGINAL + b", size=3, sha256=ABC", "sha256 'ABC' is not 64 lowercase hex digits"),
    (ORIGINAL + b", tag=" + b"0" * 64 + b", duration=1", "tag must be the last field"),
    (ORIGINAL + b", note=%ff", "is not valid UTF-8 once percent-decoded"),
    (ORIGINAL + b", note=%00", "has a control character"),
]


@pytest.mark.parametrize(("line", "reason"), REJECTIONS)
def test_each_rule_rejects_with_a_one_line_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(line)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason and len(caught.value.reason) < 200
    assert caught.value.recoverable


def test_a_long_bad_value_is_cut_short_so_the_err_line_still_says_what_is_wrong() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(ORIGINAL.replace(b"stream-128k.m3u8", b"s" * 250 + b".txt"))
    assert Reject.because(caught.value.reason).reason.endswith("must end in .m3u8")


# Each range, inclusive at both ends: (name in the reason, a value at the edge, one just past it).
EDGES = [
    ("segment_duration", {"segment_duration": 1}, {"segment_duration": 0}),
    ("segment_duration", {"segment_duration": 3600}, {"segment_duration": 3601}),
    ("first_segment", {"first_segment": 0}, {"first_segment": 2**31, "last_segment": 2**31 - 1}),
    ("last_segment", {"last_segment": 2**31 - 1}, {"last_segment": 2**31}),
    ("output_directory", {"output_directory": "/" * 4096}, {"output_directory": "/" * 4097}),
    ("index", {"index": "i" * 250 + ".m3u8"}, {"index": "i" * 251 + ".m3u8"}),
    ("output_prefix", {"output_prefix": "p" * 255}, {"output_prefix": "p" * 256}),
    ("key_prefix", {"key_prefix": "k" * 700}, {"key_prefix": "k" * 701}),
    ("duration", {"duration": 0.000001}, {"duration": 0.0}),
    ("duration", {"duration": 3600.0}, {"duration": 3600.000001}),
    ("start", {"start": 0.0}, {"start": -0.000001}),
    ("start", {"start": 999_999_999_999.0}, {"start": 1e12}),
    ("start", {"start": 999_999_999_999.0}, {"start": 999_999_999_999.5}),  # 12 digits, but past the limit
    ("bandwidth", {"bandwidth": 1}, {"bandwidth": 0}),
    ("bandwidth", {"bandwidth": 10**12}, {"bandwidth": 10**12 + 1}),
    ("codecs", {"codecs": "a" * 200}, {"codecs": "a" * 201}),
    ("frame_rate", {"frame_rate": 0.5}, {"frame_rate": 0.0}),
    ("frame_rate", {"frame_rate": 1000.0}, {"frame_rate": 1000.5}),
    ("size", {"size": 0}, {"size": -1}),
    ("size", {"size": 10**12}, {"size": 10**12 + 1}),
    ("ts", {"sent_at_ms": 0}, {"sent_at_ms": -1}),
    ("ts", {"sent_at_ms": 10**15}, {"sent_at_ms": 10**15 + 1}),
    ("n", {"counter": 1}, {"counter": 0}),
    ("n", {"counter": 2**53}, {"counter": 2**53 + 1}),
    ("key_id", {"key_id": "k" * 64}, {"key_id": "k" * 65}),
    ("key_id", {"key_id": "cam-east.1_b"}, {"key_id": "-cam"}),
    ("key_id", {"key_id": "A"}, {"key_id": "cam/east"}),
]


@pytest.mark.parametrize(("name", "edge", "past"), EDGES)
def test_every_limit_takes_its_edge_value_and_refuses_the_next(name: str, edge: dict[str, Any], past: dict[str, Any]) -> None:
    assert getattr(dataclasses.replace(ORIGINAL_MESSAGE, **edge), next(iter(edge))) == next(iter(edge.values()))
    with pytest.raises(ProtocolError) as caught:
        dataclasses.replace(ORIGINAL_MESSAGE, **past)
    assert caught.value.reason.startswith(name)


# What the segmenter builds from its settings must be refused there, not sent as a line the daemon
# would read differently.
UNSENDABLE = [
    ({"output_directory": "/tmp/a,b"}, "output_directory contains a comma"),
    ({"output_directory": "/tmp/\n"}, "output_directory contains a control character"),
    ({"key_prefix": " stream0001"}, "key_prefix has leading or trailing white space"),
    ({"bucket": None}, "bucket must be text"),
    ({"end": 1}, "end must be 0 or 1"),
    ({"discontinuity": 1}, "discontinuity must be 0 or 1"),
    ({"independent": "yes"}, "independent must be 0 or 1"),
    ({"bandwidth": 2.5e6}, "bandwidth must be an integer"),
    ({"size": True}, "size must be an integer"),
    ({"duration": True}, "duration must be a finite number"),
    ({"start": math.inf}, "start must be a finite number"),
    ({"frame_rate": "25"}, "frame_rate must be a finite number"),
    # The wire's decimals have at most 12 digits each side of the point (encode, then parse back).
    ({"duration": 0.1 + 0.2}, "duration 0.30000000000000004 has more digits than a message carries"),
    ({"resolution": "1280x720p"}, "resolution '1280x720p' is not WIDTHxHEIGHT"),
    ({"size": 1, "payload_sha256": "AB" * 32}, "sha256 must be 64 lowercase hex digits"),
    ({"tag": "0" * 63}, "tag must be 64 lowercase hex digits"),
    ({"writer": "0123456789ABCDEF"}, "writer '0123456789ABCDEF' is not 16 to 32 lowercase hex digits"),
    ({"writer": "0123456789abcdef", "takeover": 1}, "takeover must be 0 or 1"),
    ({"extras": (("Colour", "blue"),)}, "extension key 'Colour' is not [a-z][a-z0-9_-]*"),
    ({"extras": (("size", "3"),)}, "extension 'size' appears twice"),
    ({"extras": (("colour", "blue"), ("colour", "red"))}, "extension 'colour' appears twice"),
    ({"extras": (("colour", 3),)}, "extension 'colour' has a control character"),
    ({"extras": (("colour", "bl\tue"),)}, "extension 'colour' has a control character"),
]


@pytest.mark.parametrize(("changes", "reason"), UNSENDABLE)
def test_a_message_that_would_not_survive_the_wire_cannot_be_built(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        dataclasses.replace(ORIGINAL_MESSAGE, **changes)
    assert reason in caught.value.reason


def test_hls_uploadd_checks_a_configured_key_prefix_by_the_rule_messages_are_checked_by() -> None:
    # --key-prefix and a peer's key prefixes (uploader/config.py, uploader/peers.py) use
    # is_key_prefix, so a prefix the daemon accepts is one a message may carry, and no other.
    for prefix in ("", "stream0001", "live/cam-1/~x.y"):
        assert is_key_prefix(prefix)
        assert dataclasses.replace(ORIGINAL_MESSAGE, key_prefix=prefix).key_prefix == prefix
    for prefix in ("/live", "live//cam", "live/../cam", "live cam", "k" * 701):
        assert not is_key_prefix(prefix)
        with pytest.raises(ProtocolError, match="key_prefix"):
            dataclasses.replace(ORIGINAL_MESSAGE, key_prefix=prefix)


def test_a_rejected_line_does_not_stop_the_next_one() -> None:
    events = decode_all(b"garbage\n" + ORIGINAL + b"\n")
    assert events == [("error", "expected 10 comma-separated fields, got 1"), ORIGINAL_MESSAGE, CLOSED]


def test_over_long_line_is_refused_without_buffering_it_whole() -> None:
    decoder = MessageDecoder()
    reasons = []
    for _ in range(256):  # 1 MiB in 4 KiB pieces, never a newline
        decoder.receive_data(b"x" * 4096)
        try:
            assert decoder.next_event() is NEED_DATA
        except ProtocolError as error:
            reasons.append(error.reason)
        assert len(decoder._buffer) <= 2 * 4096
    assert reasons == ["line longer than 4096 bytes"]
    decoder.receive_data(b"tail of the long line\n" + ORIGINAL + b"\n")
    assert decoder.next_event() == ORIGINAL_MESSAGE


def test_over_long_line_before_a_good_one_in_one_chunk() -> None:
    events = decode_all(b"y" * 5000 + b"\n" + ORIGINAL + b"\n")
    assert events == [("error", "line longer than 4096 bytes"), ORIGINAL_MESSAGE, CLOSED]


def test_over_long_line_fed_byte_by_byte_is_refused_once_and_the_next_message_read() -> None:
    events = decode_all(b"y" * 5000 + b"\n" + ORIGINAL + b"\n" + ORIGINAL + b"\n", chunk=1)
    assert events == [("error", "line longer than 4096 bytes"), ORIGINAL_MESSAGE, ORIGINAL_MESSAGE, CLOSED]


def test_a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_not() -> None:
    padded = ORIGINAL + b", pad=" + b"p" * (4096 - len(ORIGINAL) - 6)
    assert len(padded) == 4096
    assert decode_all(padded + b"\n") == [parse_message(padded), CLOSED]
    assert decode_all(padded + b"\n", chunk=4096) == [parse_message(padded), CLOSED]  # newline comes later
    assert decode_all(padded + b"p\n") == [("error", "line longer than 4096 bytes"), CLOSED]


# Inline payloads.


def test_payload_follows_its_message() -> None:
    body = bytes(range(256)) * 40
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=len(body))
    data = encode_message(message, newline=True) + body + ORIGINAL + b"\n"
    expected = [message, PayloadData(body), PayloadEnd(len(body)), ORIGINAL_MESSAGE, CLOSED]
    assert decode_all(data) == expected
    assert decode_all(data, chunk=1) == expected
    assert decode_all(data, chunk=1000) == expected


def test_empty_payload() -> None:
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=0)
    assert decode_all(encode_message(message, newline=True)) == [message, PayloadEnd(0), CLOSED]


def test_truncated_payload_is_a_fatal_error() -> None:
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=100)
    events = decode_all(encode_message(message, newline=True) + b"z" * 60)
    assert events == [message, PayloadData(b"z" * 60), ("error", "connection closed after 60 of 100 payload bytes")]


def test_a_payload_of_exactly_the_limit_is_read() -> None:
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=1000)
    events = decode_all(encode_message(message, newline=True) + b"z" * 1000, max_payload_bytes=1000)
    assert events == [message, PayloadData(b"z" * 1000), PayloadEnd(1000), CLOSED]


def test_oversized_payload_is_refused_before_reading_it() -> None:
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=1001)
    events = decode_all(encode_message(message, newline=True) + b"z" * 1001, max_payload_bytes=1000)
    assert events == [("error", "payload of 1001 bytes is over the limit of 1000")]


# Replies.


def test_replies_encode_and_decode() -> None:
    assert encode_reply(Ack(5)) == b"OK 5\n"
    assert encode_reply(Reject("bucket 'x' is not allowed")) == b"ERR bucket 'x' is not allowed\n"
    assert parse_reply(b"OK 12\r\n") == Ack(12)
    assert parse_reply(b"ERR no space left\n") == Reject("no space left")
    for bad in (b"OK", b"OK x", b"ERR", b"HELLO 1", b"HELLO nonce=" + b"A" * 32 + b" time=1",
                b"HELLO nonce=" + b"a" * 31 + b" time=1", b"HELLO nonce=" + b"a" * 32 + b" time=-1",
                b"HELLO nonce=" + b"a" * 32):
        with pytest.raises(ProtocolError):
            parse_reply(bad)


def test_the_challenge_reply_round_trips() -> None:
    challenge = Challenge("0123456789abcdef" * 2, 1_700_000_000_123)
    assert encode_reply(challenge) == b"HELLO nonce=0123456789abcdef0123456789abcdef time=1700000000123\n"
    assert parse_reply(encode_reply(challenge)) == challenge
    with pytest.raises(ProtocolError, match="32 lowercase hex"):
        Challenge("00" * 15, 1)


def test_every_challenge_the_daemon_can_build_reads_back_as_sent() -> None:
    # time= carries 1 to 15 digits: a clock reading the line cannot carry is refused when built.
    nonce = "0123456789abcdef" * 2
    for time_ms in (0, 10**15 - 1):
        assert parse_reply(encode_reply(Challenge(nonce, time_ms))) == Challenge(nonce, time_ms)
    for bad in (-1, 10**15, True, "1700000000000", 1.7e12):
        with pytest.raises(ProtocolError, match="HELLO time"):
            Challenge(nonce, bad)  # type: ignore[arg-type]


def test_reject_reasons_are_made_one_printable_line() -> None:
    assert Reject.because("bad\nthing\x00 here").reason == "bad thing? here"
    assert len(Reject.because("x" * 1000).reason) == 200
    with pytest.raises(ProtocolError):
        Reject("two\nlines")


def test_try_again_marks_a_transient_refusal() -> None:
    busy = Reject.try_again("spool full")
    assert encode_reply(busy) == b"ERR try again: spool full\n"
    assert parse_reply(encode_reply(busy)).is_transient
    assert not Reject.because("bucket 'x' is not allowed").is_transient


def test_reply_decoder_splits_a_stream_of_replies() -> None:
    decoder = ReplyDecoder()
    decoder.receive_data(b"OK 1\nOK 2\nER")
    assert [decoder.next_reply(), decoder.next_reply(), decoder.next_reply()] == [Ack(1), Ack(2), None]
    decoder.receive_data(b"R full\n")
    assert decoder.next_reply() == Reject("full")


def test_a_writer_and_a_takeover_round_trip_and_are_checked() -> None:
    writer = "0123456789abcdef" * 2
    message = dataclasses.replace(ORIGINAL_MESSAGE, last_segment=0, writer=writer, takeover=True)
    wire = encode_message(message)
    assert wire.endswith(f", writer={writer}, takeover=1".encode())
    assert parse_message(wire) == message
    assert b"takeover" not in encode_message(dataclasses.replace(message, takeover=False))
    for bad, reason in [
        (", writer=0123", "writer '0123' is not 16 to 32 lowercase hex digits"),
        (", writer=" + "A" * 16, "is not 16 to 32 lowercase hex digits"),
        (", writer=" + "a" * 33, "is not 16 to 32 lowercase hex digits"),
        (", takeover=1", "takeover without writer"),
        (f", writer={writer}, takeover=2", "takeover '2' must be 0 or 1"),
    ]:
        with pytest.raises(ProtocolError, match=re.escape(reason)):
            parse_message(ORIGINAL + bad.encode())


def test_a_writer_is_named_by_a_fingerprint_of_its_id_never_by_the_id() -> None:
    # docs/protocol.md "Stream ownership": the daemon's refusals and logs and hls-segment's stop
    # line name a writer the same way, so an operator can match them without the id being shown.
    writer = "0123456789abcdef" * 2
    label = writer_label(writer)
    assert label == "writer #" + hashlib.sha256(writer.encode()).hexdigest()[:8]
    assert writer[:8] not in label
    assert writer_label("fedcba9876543210" * 2) != label
    assert not writer_label(None).startswith("writer #")  # a v1 sender, which names no writer


def test_the_reply_to_a_writers_start_up_says_where_the_stream_is() -> None:
    assert encode_reply(Ack(0, 42)) == b"OK 0 last=42\n"
    assert parse_reply(b"OK 0 last=42\n") == Ack(0, 42)
    assert parse_reply(b"OK 0\n") == Ack(0, None)
    for bad in (b"OK 0 last=\n", b"OK 0 last=-1\n", b"OK 0 published=x\n", b"OK 0 first\n", b"OK 0  last=3\n"):
        with pytest.raises(ProtocolError, match="not a reply line"):
            parse_reply(bad)


def test_an_ok_says_how_far_the_stream_is_published_and_later_fields_are_ignored() -> None:
    assert encode_reply(Ack(7, published=5)) == b"OK 7 published=5\n"
    assert encode_reply(Ack(0, 9, 8)) == b"OK 0 last=9 published=8\n"
    for line, ack in ((b"OK 7 published=5\n", Ack(7, None, 5)), (b"OK 0 last=9 published=8\n", Ack(0, 9, 8)),
                      (b"OK 0 published=8 last=9\n", Ack(0, 9, 8)), (b"OK 7 future=x%2Cy published=6\n", Ack(7, None, 6))):
        assert parse_reply(line) == ack, line


def test_confirm_and_probe_travel_as_flags_and_a_probe_is_a_start_up_only() -> None:
    probe = dataclasses.replace(ORIGINAL_MESSAGE, last_segment=0, first_segment=1, writer="ab" * 8, confirm=True, probe=True)
    line = encode_message(probe)
    assert line.endswith(b", writer=abababababababab, confirm=1, probe=1")
    assert parse_message(line) == probe
    assert parse_message(encode_message(ORIGINAL_MESSAGE)).confirm is False
    for wrong in ({"probe": True}, {"probe": True, "last_segment": 0, "takeover": True, "writer": "ab" * 8}):
        with pytest.raises(ProtocolError, match="probe asks where the stream is"):
            dataclasses.replace(ORIGINAL_MESSAGE, **wrong)


def test_a_refusal_of_the_writer_is_final_and_marked() -> None:
    refusal = parse_reply(encode_reply(Reject.not_writer("stream b/i.m3u8 is written by writer " + "a" * 32)))
    assert isinstance(refusal, Reject) and refusal.is_not_writer and not refusal.is_transient
    assert refusal.reason.startswith("not the writer: stream b/i.m3u8")
    assert not Reject.because("bucket x is not allowed").is_not_writer


def test_ok_names_a_segment_number_and_zero_is_one() -> None:
    # OK 0 acknowledges the original's start-up message (last_segment 0).
    assert parse_reply(b"OK 0\n") == Ack(0)
    for bad in (-1, True, "3", 2.0):
        with pytest.raises(ProtocolError, match="non-negative segment number"):
            Ack(bad)  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match="non-negative segment number"):
            Ack(0, bad)  # type: ignore[arg-type]  # the stream's position, OK 0 last=N


@pytest.mark.parametrize("line", [b"OK 5 \n", b"OK \xff\n", b"ERR caf\xc3\xa9\n", b"\xff\xfe", b"ERR two  spaces \n"])
def test_a_reply_line_is_exact_ascii_or_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="not a reply line|one-line reason"):
        parse_reply(line)


@pytest.mark.parametrize("reason", ["X", "spool full X", "try again: busy X"])
def test_reasons_come_back_as_they_were_sent(reason: str) -> None:
    assert parse_reply(encode_reply(Reject.because(reason))) == Reject(reason)


def test_reasons_are_cut_only_past_the_longest_reason() -> None:
    assert Reject.because("x" * 200).reason == "x" * 200
    assert Reject.because("x" * 201).reason == "x" * 197 + "..."
    assert Reject.because(" \n\t").reason == "refused"  # an ERR always says something


def test_reply_decoder_refuses_an_endless_line_but_not_many_short_ones() -> None:
    from protocol import MAX_LINE_BYTES

    decoder = ReplyDecoder()
    decoder.receive_data(b"OK 1\n" * 1000)  # a backlog of acks: long, but made of lines
    assert [decoder.next_reply() for _ in range(1000)] == [Ack(1)] * 1000
    decoder.receive_data(b"E" * MAX_LINE_BYTES)  # as long as a line may be
    with pytest.raises(ProtocolError, match="longer than") as refused:
        decoder.receive_data(b"R")
    assert not refused.value.recoverable  # the stream has lost its framing


def test_a_blank_reply_line_is_a_protocol_error_not_a_wait() -> None:
    decoder = ReplyDecoder()
    decoder.receive_data(b"\nOK 1\n")
    with pytest.raises(ProtocolError, match="not a reply line"):
        decoder.next_reply()
    assert decoder.next_reply() == Ack(1)


# Authentication tags.


NONCE = "00112233445566778899aabbccddeeff"


def test_signed_message_verifies_and_tampering_does_not() -> None:
    secret = b"s3cret"
    signed = sign(ORIGINAL_MESSAGE, secret, NONCE, 7, "cam-east")
    wire = encode_message(signed)
    assert wire.endswith(b", key_id=cam-east, n=7, tag=" + signed.tag.encode())
    received = parse_message(wire)
    assert verify(received, secret, NONCE)
    assert not verify(received, b"other secret", NONCE)
    assert not verify(received, secret, "f" * 32)  # another connection's nonce
    assert not verify(dataclasses.replace(received, last_segment=6), secret, NONCE)
    assert not verify(dataclasses.replace(received, counter=8), secret, NONCE)
    assert not verify(dataclasses.replace(received, key_id="cam-west"), secret, NONCE)
    assert not verify(ORIGINAL_MESSAGE, secret, NONCE)  # untagged


def test_a_client_that_encodes_values_as_the_protocol_doc_says_is_verified() -> None:
    # docs/protocol.md: values keep letters, digits and ./:+-_~ as they are, all else is %XX; the
    # tag is the HMAC of the line without its tag field. A client written from that text alone
    # (not with encode_message) must get its signed messages through.
    # The tag covers the line "nonce=<the HELLO's nonce>\n" followed by the message.
    secret = b"0123456789abcdef"
    line = ORIGINAL + b", codecs=avc1.64001f%2Cec+3, n=1, origin=http://a.example/x_y-z~1.ts%20b"
    tag = hmac.new(secret, b"nonce=" + NONCE.encode() + b"\n" + line, hashlib.sha256).hexdigest()
    received = parse_message(line + b", tag=" + tag.encode())
    assert received.codecs == "avc1.64001f,ec+3"
    assert received.extras == (("origin", "http://a.example/x_y-z~1.ts b"),)
    assert encode_message(received.unsigned()) == line
    assert verify(received, secret, NONCE)


def test_every_character_of_the_tag_counts() -> None:
    # Changing any one of the 64 hex digits, or cutting the tag short, makes it fail: a check on
    # a prefix (half the tag, say) would let a forger go through with 2^128 times less work.
    secret = b"0123456789abcdef"
    signed = sign(ORIGINAL_MESSAGE, secret, NONCE, 1)
    tag = signed.tag
    assert tag is not None and len(tag) == 64
    for position in range(len(tag)):
        other = "0" if tag[position] != "0" else "1"
        forged = dataclasses.replace(signed, tag=tag[:position] + other + tag[position + 1:])
        assert not verify(forged, secret, NONCE), f"a tag differing at digit {position} was accepted"
    for length in (32, 63):  # a shortened tag is no tag: refused by the message or by verify
        try:
            shortened = dataclasses.replace(signed, tag=tag[:length])
        except ProtocolError:
            continue
        assert not verify(shortened, secret, NONCE)


# Properties.

_name = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}", fullmatch=True)
_bucket = st.from_regex(r"[a-z][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
_key = st.lists(st.from_regex(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,10}", fullmatch=True), max_size=3).map("/".join)
_decimal = st.floats(min_value=0.001, max_value=3600, allow_nan=False).map(lambda x: round(x, 6))


@st.composite
def messages(draw: st.DrawFn) -> IndexMessage:
    last = draw(st.integers(0, 2**31 - 1))
    return IndexMessage(
        index=draw(_name) + ".m3u8",
        output_directory=draw(st.from_regex(r"/[A-Za-z0-9_./-]{0,40}", fullmatch=True)),
        segment_duration=draw(st.integers(1, 3600)),
        output_prefix=draw(_name),
        http_prefix=draw(st.sampled_from(["", "http://cdn.example.net/live/", "https://x.example/a?b=c&"])),
        first_segment=draw(st.integers(0, last)) if last else 1,
        last_segment=last,
        end=draw(st.booleans()),
        bucket=draw(_bucket),
        key_prefix=draw(_key),
        duration=draw(st.none() | _decimal),
        discontinuity=draw(st.booleans()),
        start=draw(st.none() | st.floats(0, 1e9).map(lambda x: round(x, 6))),
        bandwidth=draw(st.none() | st.integers(1, 10**9)),
        resolution=draw(st.none() | st.sampled_from(["320x240", "1920x1080"])),
        codecs=draw(st.none() | st.sampled_from(["avc1.64001f", "avc1.64001f,mp4a.40.2", "mp4a.40.2"])),
        frame_rate=draw(st.none() | st.sampled_from([25.0, 29.97, 59.94])),
        size=draw(st.none() | st.integers(0, 10**6)),
        sent_at_ms=draw(st.none() | st.integers(0, 2**42)),
        key_id=draw(st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", fullmatch=True)),
        counter=draw(st.none() | st.integers(1, 2**53)),
        writer=(writer := draw(st.none() | st.from_regex(r"[0-9a-f]{16,32}", fullmatch=True))),
        takeover=writer is not None and draw(st.booleans()),
        extras=tuple(draw(st.dictionaries(st.from_regex(r"x[a-z0-9_-]{0,8}", fullmatch=True), st.text(st.characters(min_codepoint=32, blacklist_categories=("Cc", "Cs"))), max_size=3)).items()),
        tag=draw(st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    )


@settings(max_examples=300)
@given(messages())
def test_encode_then_decode_is_the_identity(message: IndexMessage) -> None:
    assert parse_message(encode_message(message)) == message
    assert parse_message(encode_message(message, newline=True)) == message


@settings(max_examples=100)
@given(st.lists(messages().map(lambda m: dataclasses.replace(m, size=None)), min_size=1, max_size=4), st.integers(1, 50))
def test_chunked_feeding_gives_the_same_messages_as_whole(batch: list[IndexMessage], chunk: int) -> None:
    data = b"".join(encode_message(message, newline=True) for message in batch)
    assert decode_all(data) == decode_all(data, chunk=chunk) == [*batch, CLOSED]


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        parse_message(data)
    except ProtocolError:
        pass
    decode_all(data, chunk=17, max_line_bytes=256, max_payload_bytes=64)  # raises nothing else


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b",", b", ", b"=", b"\n", b"%", b"%2C", b"1", b"a", b"size=3", b"tag=", b".m3u8", b"\xff", b"\x00"]), max_size=40))
def test_near_miss_bytes_decode_or_raise_protocol_error(tokens: list[bytes]) -> None:
    data = ORIGINAL + b"".join(tokens)
    decode_all(data)
    decode_all(data, chunk=3)


# The protocol package does no I/O.

_ALLOWED_IMPORTS = {"__future__", "collections.abc", "ipaddress", "tomllib", "typing", "dataclasses", "decimal", "enum", "hashlib", "heapq", "hmac", "math", "re", "typing", "urllib.parse"}


def test_protocol_imports_nothing_that_does_io() -> None:
    package = Path(__file__).resolve().parent.parent / "protocol"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert set(names) <= _ALLOWED_IMPORTS, f"{source.name} imports {names}"
    probe = "import sys, protocol; print(sorted({'socket','asyncio','boto3','botocore','ssl','selectors','subprocess','http.client','urllib.request'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=package.parent)
    assert loaded.stdout.strip() == "[]"


# Settings shared by both commands.


def test_addresses_parse_with_a_default_port() -> None:
    from common.settings import ConfigError, is_loopback, parse_address

    assert parse_address("127.0.0.1:10234") == ("127.0.0.1", 10234)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("example.net") == ("example.net", 10234)
    assert parse_address(":7000") == ("127.0.0.1", 7000)
    for bad in ("h:port", "h:70000"):
        with pytest.raises(ConfigError, match="address"):
            parse_address(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_settings_precedence_and_unknown_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from common.options import INTEGER, TEXT, Option, settings_from_toml, with_options
    from common.settings import ConfigError, parse_toml
    from tests.support.options import command_settings

    options = (
        Option("window", INTEGER, 5, "Segments."),
        Option("max_inflight", INTEGER, 16, "Uploads."),
        Option("listen", TEXT, "127.0.0.1:10234", "Address."),
    )

    def fail(error: ConfigError) -> NoReturn:
        raise error

    app = typer.Typer()

    @app.command()
    @with_options(options, env_prefix="TEST_", section="uploadd", fail=fail, program="test")
    def run(**settings: Any) -> None:
        """Takes the three settings."""

    config_file = tmp_path / "f.toml"
    config_file.write_text("[uploadd]\nwindow = 7\nmax-inflight = 3\n")
    monkeypatch.setenv("TEST_MAX_INFLIGHT", "4")
    merged = command_settings(app, "--config", str(config_file))
    assert merged == {"window": 7, "max_inflight": 4, "listen": "127.0.0.1:10234"}  # env > file > default
    assert command_settings(app, "--config", str(config_file), "--max-inflight", "2")["max_inflight"] == 2
    with pytest.raises(ConfigError, match="unknown setting"):
        settings_from_toml(options, "[uploadd]\nwindw = 3\n", source="f.toml", section="uploadd")
    with pytest.raises(ConfigError, match="--window must be an integer, not 'seven'"):
        settings_from_toml(options, "[uploadd]\nwindow = 'seven'\n", source="f.toml", section="uploadd")
    with pytest.raises(ConfigError, match="f.toml"):
        parse_toml("window = ", source="f.toml", section="uploadd")


def test_every_example_message_in_the_protocol_doc_parses() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    examples = [
        line.removeprefix("> ")
        for line in doc.splitlines()
        if ".m3u8, " in line and not line.startswith(("INDEX", "message =")) and "<" not in line
    ]
    assert len(examples) >= 8
    for example in examples:
        if "duration=nan" in example:
            with pytest.raises(ProtocolError, match="not a plain decimal"):
                parse_message(example.encode())
        else:
            assert encode_message(parse_message(example.encode())) == example.encode()


# Authentication: the challenge exchange, pure.

SECRETS = {"default": b"0123456789abcdef", "cam-east": b"east-secret-0123456789"}


def test_a_session_accepts_its_signed_messages_in_increasing_n_only() -> None:
    session = ChallengeSession(SECRETS)
    assert session.hello(NONCE, 1_700_000_000_000) == Challenge(NONCE, 1_700_000_000_000)
    first = sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1)
    assert session.refusal(first) is None
    replayed = session.refusal(first)
    assert replayed is not None and replayed.reason.startswith("n=1 is not above n=1")
    assert session.refusal(sign(ORIGINAL_MESSAGE, SECRETS["cam-east"], NONCE, 5, "cam-east")) is None
    # Gaps are fine (a message refused for its content does not stall the counter); going back is not.
    older = session.refusal(sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 3))
    assert older is not None and "n=3 is not above n=5" in older.reason
    assert session.refusal(sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 6)) is None


def test_a_message_signed_for_one_connection_is_refused_on_every_other() -> None:
    # A restarted daemon, a second daemon with the same secret, another connection: a new nonce each.
    captured = sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1)
    elsewhere = ChallengeSession(SECRETS)
    elsewhere.hello("ff" * 16, 0)
    refused = elsewhere.refusal(captured)
    assert refused is not None and refused.reason.startswith("wrong authentication tag")


def test_each_refusal_of_the_exchange_tells_the_operator_what_to_fix() -> None:
    # The reason goes back on the wire as the ERR line and into the segmenter's log.
    session = ChallengeSession(SECRETS)
    signed = sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1)
    assert "send HELLO first" in session.refusal(signed).reason
    assert "send HELLO first" in session.refusal(dataclasses.replace(signed, counter=None)).reason  # no ts either
    older_sender = dataclasses.replace(ORIGINAL_MESSAGE, sent_at_ms=1_700_000_000_000, tag="0" * 64)
    assert "upgrade hls-segment" in session.refusal(older_sender).reason
    session.hello(NONCE, 0)
    assert "HELLO was already answered" in session.hello("ee" * 16, 0).reason
    assert "not signed" in session.refusal(ORIGINAL_MESSAGE).reason
    unknown = sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1, "cam-west")
    assert session.refusal(unknown).reason.startswith("unknown key_id 'cam-west'")
    wrong = sign(ORIGINAL_MESSAGE, b"not the secret of cam-east", NONCE, 1, "cam-east")
    assert session.refusal(wrong).reason == "wrong authentication tag (check the secret of key_id 'cam-east')"
    no_n = dataclasses.replace(signed, counter=None)
    assert "has no n=" in session.refusal(no_n).reason
    assert session.last_counter == 0  # nothing refused moved the counter
    with pytest.raises(ProtocolError):
        ChallengeSession(SECRETS).hello("not hex", 0)


def test_each_refusal_of_the_exchange_is_the_err_line_the_protocol_doc_lists() -> None:
    # docs/protocol.md's table is where an operator looks an ERR up. A row ending in "..." gives
    # the start of the line; 'x' is the key id, 3 and 5 the numbers n.
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    section = doc.split("## Authentication: the HELLO exchange", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^  \| `(ERR [^`]+)` \|", section, flags=re.MULTILINE)
    session = ChallengeSession(SECRETS)
    signed = sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1)
    refusals = [
        session.refusal(ORIGINAL_MESSAGE),
        session.refusal(signed),
        session.refusal(dataclasses.replace(ORIGINAL_MESSAGE, sent_at_ms=1_700_000_000_000, tag="0" * 64)),
    ]
    session.hello(NONCE, 0)
    refusals.append(session.refusal(sign(ORIGINAL_MESSAGE, SECRETS["default"], NONCE, 1, "x")))
    refusals.append(session.refusal(dataclasses.replace(signed, counter=None)))
    peer_x = ChallengeSession({"x": b"the secret of peer x"})
    peer_x.hello(NONCE, 0)
    refusals.append(peer_x.refusal(sign(ORIGINAL_MESSAGE, b"not the secret of peer x", NONCE, 1, "x")))
    assert peer_x.refusal(sign(ORIGINAL_MESSAGE, b"the secret of peer x", NONCE, 5, "x")) is None
    refusals.append(peer_x.refusal(sign(ORIGINAL_MESSAGE, b"the secret of peer x", NONCE, 3, "x")))
    refusals.append(peer_x.hello("ee" * 16, 0))
    lines = ["ERR " + refusal.reason for refusal in refusals]
    assert len(rows) == len(lines) == 8
    for row, line in zip(rows, lines):
        assert line == row or (row.endswith("...") and line.startswith(row[: -len("...")])), (row, line)


def test_hello_is_a_request_line_of_its_own() -> None:
    decoder = MessageDecoder()
    decoder.receive_data(b"HELLO\r\n" + encode_message(ORIGINAL_MESSAGE, newline=True) + b"HELLO")
    decoder.receive_eof()
    assert decoder.next_event() == Hello()
    assert decoder.next_event() == ORIGINAL_MESSAGE
    assert decoder.next_event() == Hello()
    assert decoder.next_event() is CLOSED
    # Only spaces, tabs and a CR may surround it, as around a blank line.
    for near in (b"HELLO x\n", b"hello\n", b"HELLO, 1\n", b"HELLOX\n", b"XHELLO\n", b"HELLO\x0c\n", b"\x0bHELLO\n"):
        decoder = MessageDecoder()
        decoder.receive_data(near)
        with pytest.raises(ProtocolError):
            decoder.next_event()


def test_payload_digest_and_independent_round_trip() -> None:
    message = dataclasses.replace(ORIGINAL_MESSAGE, size=10, payload_sha256="ab" * 32, independent=True)
    line = encode_message(message)
    assert line.endswith(b", independent=1, sha256=" + b"ab" * 32)
    assert parse_message(line) == message
    with pytest.raises(ProtocolError, match="sha256 without size"):
        dataclasses.replace(ORIGINAL_MESSAGE, payload_sha256="ab" * 32)
