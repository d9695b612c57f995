"""Segmenter parts in process: codec strings, configuration, the notifier against a real peer."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from protocol import Ack, Challenge, IndexMessage, Reject, encode_message, verify
from common.settings import ConfigError
from segmenter.cli import app
from segmenter.client import FAILOVER_REPLY_TIMEOUT_S, REPLY_TIMEOUT_S, daemon_order
from segmenter.codecs import aac_codec, codec_string, codecs_list, h264_codec
from segmenter.config import SegmenterConfig, message_directory, parse_segment_seconds
from segmenter.errors import InputError
from segmenter.input import open_input, shown_input
from segmenter.notifier import Notifier
from segmenter.outbox import Outbox
from segmenter.run import Committer
from segmenter.writer import highest_segment_number, put_psi_first, remove_stale_parts
from tests.support.listener import Listener, acknowledge
from tests.support.net import free_ports
from tests.support.media import MediaCache, make_ts
from tests.support.segmenter_media import owed_segments, run_segmenter, segment_args
from tests.support.viewer import wait_for

# -- codecs ------------------------------------------------------------------------------------


def test_h264_codec_from_annex_b_sps_avcc_and_profile() -> None:
    assert h264_codec(b"\x00\x00\x00\x01\x67\x64\x00\x1f\xac", None, None) == "avc1.64001f"
    assert h264_codec(b"\x00\x00\x01\x68\xee\x00\x00\x01\x67\x42\xc0\x0d\x01", None, None) == "avc1.42c00d"
    assert h264_codec(b"\x01\x4d\x40\x1e\xff", None, None) == "avc1.4d401e"
    assert h264_codec(None, "High", 31) == "avc1.64001f"
    assert h264_codec(None, "Main", 30) == "avc1.4d401e"
    assert h264_codec(None, "Unknown", 30) is None


def test_audio_codecs() -> None:
    assert aac_codec(None, "LC") == "mp4a.40.2"
    assert aac_codec(None, "HE-AAC") == "mp4a.40.5"
    assert aac_codec(bytes([0x11, 0x90]), None) == "mp4a.40.2"  # AudioSpecificConfig, LC
    assert codec_string("mp3", None, None, None) == "mp4a.40.34"
    assert codec_string("ac3", None, None, None) == "ac-3"
    assert codec_string("hevc", None, "Main", 93) == "hvc1.1.6.L93.B0"
    assert codec_string("mpeg2video", None, None, None) == "mp4v.61"  # by MP4 object type
    assert codec_string("mp2", None, None, None) == "mp4a.6b"
    assert codec_string("vp9", None, None, None) is None


# The extradata libx264 writes into MPEG-TS, as the probe reports it: SPS (High, level 1.3), then PPS.
X264_EXTRADATA = bytes.fromhex("0000016764000dacb40a0fd0800000030080000019078a15500000000168ef3cb0")
ACCESS_UNIT_DELIMITER = bytes.fromhex("0000000109f0")


def test_the_sps_names_the_h264_codec_whatever_nal_units_come_before_or_after_it() -> None:
    assert h264_codec(X264_EXTRADATA, None, None) == "avc1.64000d"
    assert h264_codec(ACCESS_UNIT_DELIMITER + X264_EXTRADATA, None, None) == "avc1.64000d"
    # Cut right after level_idc: the three bytes are all there.
    assert h264_codec(bytes.fromhex("00000167640028"), None, None) == "avc1.640028"
    assert h264_codec(bytes.fromhex("01640028"), None, None) == "avc1.640028"  # avcC, likewise
    # Cut before level_idc, or no SPS at all: the profile and level decide.
    assert h264_codec(bytes.fromhex("0000016764"), None, None) is None
    assert h264_codec(bytes.fromhex("0000016764"), "Main", 30) == "avc1.4d401e"
    assert h264_codec(bytes.fromhex("0000000168ef3cb0"), "Main", 30) == "avc1.4d401e"


def test_a_level_the_probe_does_not_know_gives_no_codec_string() -> None:
    for level in (None, 0, -99):  # -99: FFmpeg's "unknown"
        assert h264_codec(None, "High", level) is None
        assert codec_string("hevc", None, "Main", level) is None
    assert codec_string("hevc", None, "Rext", 93) is None  # a profile without a known compatibility string


def test_the_audio_specific_config_names_the_aac_object_type() -> None:
    assert aac_codec(bytes.fromhex("2b10"), None) == "mp4a.40.5"  # HE-AAC (SBR), 24 kHz core, stereo
    # USAC (xHE-AAC), 48 kHz, mono: object type 42 is 31 (escape) then 32 + 10.
    assert aac_codec(bytes.fromhex("f94620"), None) == "mp4a.40.42"
    assert aac_codec(bytes.fromhex("f946"), None) == "mp4a.40.42"  # the object type needs only 11 bits


def test_each_field_the_probe_reports_reaches_the_codec_string() -> None:
    constrained_baseline = bytes.fromhex("000000016742c01e")  # an SPS start: profile_idc, constraint flags, level_idc
    assert codec_string("h264", constrained_baseline, "High", 31) == "avc1.42c01e"  # the SPS over the name
    assert codec_string("h264", None, "High", 31) == "avc1.64001f"
    assert codec_string("aac", bytes.fromhex("2b10"), "LC", None) == "mp4a.40.5"  # the config over the name
    assert codec_string("aac", None, "HE-AAC", None) == "mp4a.40.5"


def test_codecs_list_is_all_or_nothing() -> None:
    assert codecs_list(["avc1.64001f", "mp4a.40.2", "mp4a.40.2"]) == "avc1.64001f,mp4a.40.2"
    assert codecs_list(["avc1.64001f", None]) is None


# -- config ------------------------------------------------------------------------------------


def make_config(tmp_path: Path, **settings: object) -> SegmenterConfig:
    return SegmenterConfig.from_settings(
        input="-", segment_duration=str(settings.pop("segment_duration", "2.5")), output_dir=str(tmp_path),
        output_prefix="sample", index_name="s.m3u8", http_prefix="http://cdn.example.net/s/",
        bucket=str(settings.pop("bucket", "mybucket")), key_prefix="s1",
        settings=settings,
    )


def test_config_units_and_fields(tmp_path: Path) -> None:
    config = make_config(tmp_path, uploader="10.0.0.5:9000", wire="v1", start_number="7")
    assert config.segment_seconds == Fraction(5, 2)
    assert config.segment_duration_field == 3
    assert (config.uploaders, config.start_number) == ((("10.0.0.5", 9000),), 7)
    assert config.message(first_segment=7, last_segment=7, end=False).output_directory == str(tmp_path)
    assert message_directory("/tmp/") == "/tmp/"
    assert message_directory("rel") == os.path.abspath("rel")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"segment_duration": "0"}, "SEGMENT_DURATION"),
        ({"segment_duration": "ten"}, "SEGMENT_DURATION"),
        ({"segment_duration": "3601"}, "SEGMENT_DURATION"),
        ({"bucket": "Bad_Bucket"}, "bucket"),
        ({"wire": "v2"}, "--wire"),
        ({"uploader": "host:port"}, "port"),
        ({"uploader": "127.1"}, "--uploader: address '127.1': '127.1' is no IPv4 address"),  # as a config file gives it
        ({"probe_timeout": 0}, "--probe-timeout"),
        ({"start_number": 0}, "--start-number"),
        ({"quiet": "false"}, "--quiet must be true or false, not 'false'"),  # a TOML string, not a bool
        ({"send_segments": 1}, "--send-segments must be true or false"),
    ],
)
def test_config_errors(tmp_path: Path, settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make_config(tmp_path, **settings)


def test_parse_segment_seconds_is_exact() -> None:
    assert parse_segment_seconds("2.5") == Fraction(5, 2)
    assert parse_segment_seconds("0.1") == Fraction(1, 10)


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["-", "6", str(tmp_path), "sample", "s.m3u8", "http://cdn.example.net/", "mybucket", "k"]
    result = runner.invoke(app, args[:3])
    assert result.exit_code == 2
    result = runner.invoke(app, args, env={"HLS_SEGMENT_WIRE": "v9"})
    assert result.exit_code == 2 and "--wire must be ext or v1" in result.output
    config = tmp_path / "segment.toml"
    config.write_text("[segment]\nprobe-timeot = 3\n")
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 2 and "unknown setting(s): probe_timeot" in result.output


# -- writer helpers ------------------------------------------------------------------------------


def ts_packet(pid: int, payload: bytes = b"", start: bool = True) -> bytes:
    header = bytes([0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, 0x10])
    return (header + payload).ljust(188, b"\xff")


def test_put_psi_first_reorders_sdt_pat_pmt(tmp_path: Path) -> None:
    # PAT section: pointer 0, table 0, length 13, ts id, version, section 0/0, program 1 -> PID 0x1000, CRC.
    pat = bytes([0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 1, 2, 3, 4])
    sdt, pat_packet, pmt, pes = ts_packet(0x11), ts_packet(0, pat), ts_packet(0x1000), ts_packet(0x100)
    path = tmp_path / "s.ts"
    path.write_bytes(sdt + pat_packet + pmt + pes)
    put_psi_first(path)
    assert path.read_bytes() == pat_packet + pmt + sdt + pes


def test_numbering_helpers(tmp_path: Path) -> None:
    for name in ("s-00003.ts", "s-100001.ts", "other-99999999.ts", ".s-00009.ts.part", "s-7.ts"):
        (tmp_path / name).write_bytes(b"")
    assert highest_segment_number(tmp_path, "s") == 100001
    assert highest_segment_number(tmp_path, "none") == 0
    assert remove_stale_parts(tmp_path, "s") == [".s-00009.ts.part"]


# -- notifier ----------------------------------------------------------------------------------


def message(n: int, *, end: bool = False) -> IndexMessage:
    return IndexMessage("s.m3u8", "/tmp", 6, "sample", "", 1, n, end, "mybucket", "s1", duration=6.0)


def named_message(directory: Path, n: int, *, end: bool = False) -> IndexMessage:
    """Message ``n`` for a segment file that exists in ``directory`` (renamed, as the committer leaves it)."""
    named = dataclasses.replace(message(n, end=end), output_directory=str(directory))
    (directory / named.segment_name).write_bytes(b"")
    return named


def test_notifier_keeps_owed_messages_in_the_outbox_in_order(tmp_path: Path, free_port: int) -> None:
    path = tmp_path / ".sample.outbox"
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=path)
    notifier.start()
    for n in range(1, 21):
        notifier.put(message(n, end=n == 20))
    assert len(notifier) == 20
    assert owed_segments(tmp_path) == list(range(1, 21))  # on disk, before any was delivered
    with Listener(free_port) as listener:
        listener.wait_for_end()
        report = notifier.close(10)
    assert [m.last_segment for m in listener.messages] == list(range(1, 21))
    assert report.delivered == 20 and not report.undelivered and report.outbox is None
    assert owed_segments(tmp_path) == []


def startup_of(notifier: Notifier) -> IndexMessage:
    """The start-up message a run of ``notifier`` sends first (with --wire ext)."""
    assert notifier.writer is not None
    return dataclasses.replace(message(0), writer=notifier.writer)


def test_a_message_stays_owed_until_the_daemon_says_it_is_published(tmp_path: Path, free_port: int) -> None:
    published = 0  # the daemon's published= watermark, moved by the test

    def reply(sent: IndexMessage) -> Ack:
        return Ack(sent.last_segment, published=published if sent.confirm else None)

    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / ".sample.outbox")
    with Listener(free_port, reply=reply) as daemon:
        notifier.start(startup_of(notifier))
        for n in (1, 2, 3):
            notifier.put(message(n, end=n == 3))
        daemon.wait_for(lambda d: len(d.messages) == 3)
        daemon.wait_for(lambda d: any(m.probe for m in d.startups))  # nothing new to send: it asks
        assert len(notifier) == 3 and owed_segments(tmp_path) == [1, 2, 3]
        published = 2
        wait_for(lambda: len(notifier) == 1, timeout=10, message="1 and 2 done")
        published = 3
        assert notifier.wait_empty(10)
        report = notifier.close(5)
    assert report.delivered == 3 and not report.unconfirmed and not report.undelivered
    assert all(m.confirm for m in daemon.messages) and [m.last_segment for m in daemon.messages] == [1, 2, 3]
    probes = [m for m in daemon.startups if m.probe]
    assert probes and all(not m.takeover and m.confirm for m in probes)


def test_each_message_is_sent_when_every_one_before_it_was_published_and_removed(
    tmp_path: Path, free_port: int
) -> None:
    # The outbox empties between segments; SQLite then gives the next row an id a removed row had.
    def publishing_at_once(sent: IndexMessage) -> Ack:
        return Ack(sent.last_segment, published=sent.last_segment)

    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / ".sample.outbox")
    with Listener(free_port, reply=publishing_at_once) as daemon:
        notifier.start(startup_of(notifier))
        for n in range(1, 5):
            notifier.record(message(n, end=n == 4))
            notifier.put(message(n, end=n == 4), recorded=True)
            assert notifier.wait_empty(10), n
        notifier.close(5)
    assert [m.last_segment for m in daemon.messages] == [1, 2, 3, 4]


def test_at_the_close_what_is_queued_but_unpublished_stays_in_the_outbox_apart_from_the_undelivered(
    tmp_path: Path, free_port: int
) -> None:
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / ".sample.outbox")
    with Listener(free_port, reply=lambda sent: Ack(sent.last_segment, published=1 if sent.confirm else None)):
        notifier.start(startup_of(notifier))
        for n in (1, 2):
            notifier.put(message(n))
        wait_for(lambda: len(notifier) == 1, timeout=10, message="1 done")
        report = notifier.close(0.6)
    assert [m.last_segment for m in report.unconfirmed] == [2] and report.undelivered == []
    assert report.outbox is not None and owed_segments(tmp_path) == [2]


def test_a_daemon_that_stops_answering_is_left_for_the_next_which_gets_what_was_not_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def publishing_one_behind(sent: IndexMessage) -> Ack:
        return Ack(sent.last_segment, published=max(0, sent.last_segment - 1))

    first_port, second_port = free_ports(2)
    notifier = Notifier([("127.0.0.1", first_port), ("127.0.0.1", second_port)], v1=False,
                        outbox_path=tmp_path / ".sample.outbox")
    first = Listener(first_port, reply=publishing_one_behind)
    first.start()
    notifier.start(startup_of(notifier))
    for n in (1, 2):
        notifier.put(message(n))
    wait_for(lambda: len(notifier) == 1, timeout=10, message="1 published, 2 queued")
    with Listener(second_port) as second:
        first.stop()  # its host is gone: 2 was queued there, never published
        notifier.put(message(3, end=True))
        second.wait_for_end()
        report = notifier.close(5)
    assert [m.last_segment for m in second.messages] == [2, 3]
    assert report.delivered == 3 and not report.undelivered and not report.unconfirmed
    moves = [r.getMessage() for r in caplog.records if "moving from the daemon at" in r.getMessage()]
    assert moves == [f"moving from the daemon at 127.0.0.1:{first_port} to the one at 127.0.0.1:{second_port};"
                     " 2 message(s) not confirmed published are sent there"], moves


def test_a_daemon_that_says_try_again_is_left_for_the_next(tmp_path: Path) -> None:
    first_port, second_port = free_ports(2)
    notifier = Notifier([("127.0.0.1", first_port), ("127.0.0.1", second_port)], v1=False,
                        outbox_path=tmp_path / ".sample.outbox")
    with Listener(first_port, reply=lambda sent: Reject.try_again("another daemon writes stream x now")) as first, \
            Listener(second_port) as second:
        notifier.start(startup_of(notifier))
        notifier.put(message(1, end=True))
        second.wait_for_end()
        assert notifier.close(5).delivered == 1
    assert first.messages == [] and [m.last_segment for m in second.messages] == [1]


def test_a_daemon_that_takes_messages_and_never_answers_is_left_after_the_failover_reply_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A host that hangs: its connection is open, nothing answers (a single daemon would get 15 s).
    first_port, second_port = free_ports(2)
    notifier = Notifier([("127.0.0.1", first_port), ("127.0.0.1", second_port)], v1=False,
                        outbox_path=tmp_path / ".sample.outbox")
    with Listener(first_port, reply=lambda sent: None) as hung, Listener(second_port) as second:
        notifier.start()
        notifier.put(message(1, end=True))
        began = time.monotonic()
        second.wait_for_end(timeout_s=20)
        waited_s = time.monotonic() - began
        assert notifier.close(5).delivered == 1
    assert [m.last_segment for m in hung.messages] == [1] and [m.last_segment for m in second.messages] == [1]
    assert FAILOVER_REPLY_TIMEOUT_S <= waited_s < REPLY_TIMEOUT_S, waited_s
    assert any("no answer in time" in r.getMessage() for r in caplog.records)


def test_the_daemons_are_tried_in_an_order_fixed_by_the_program() -> None:
    addresses = [("10.0.0.1", 10234), ("10.0.0.2", 10234), ("10.0.0.3", 10234)]
    firsts = {daemon_order(addresses, "b", f"program{n}")[0] for n in range(60)}
    assert firsts == set(addresses)  # programs spread over every daemon
    for n in range(60):  # the same order for every rendition and every run; one daemon gone moves only its own
        order = daemon_order(addresses, "b", f"program{n}")
        assert order == daemon_order(list(reversed(addresses)), "b", f"program{n}")
        assert daemon_order(addresses[:2], "b", f"program{n}") == [a for a in order if a in addresses[:2]]


SECRET = b"notifier-secret-0123456789"


def test_a_signing_notifier_says_hello_on_each_connection_and_numbers_its_messages(
    tmp_path: Path, free_port: int
) -> None:
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox", secret=SECRET,
                        key_id="cam-east")
    listener = Listener(free_port)
    listener.start()
    notifier.start()
    notifier.put(message(1))
    notifier.put(message(2))
    assert notifier.wait_empty(10)
    listener.stop()  # the next message goes on a new connection, with a new challenge
    listener.start()
    notifier.put(message(3, end=True))
    listener.wait_for_end()
    assert notifier.close(5).delivered == 3
    listener.stop()
    first, second = listener.nonces
    signed = [(m.last_segment, m.key_id, m.counter) for m in listener.messages]
    assert signed == [(1, "cam-east", 1), (2, "cam-east", 2), (3, "cam-east", 1)]
    assert [verify(m, SECRET, nonce) for m, nonce in zip(listener.messages, (first, first, second))] == [True] * 3
    assert all(raw.startswith(b"HELLO\n") for raw in listener.connections)


def test_a_daemon_that_does_not_answer_hello_gets_no_message_and_none_is_lost(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # An hls-uploadd older than the exchange reads HELLO as a message of one field.
    older = Listener(free_port, hello=lambda: Reject("expected 10 comma-separated fields, got 1"))
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox", secret=SECRET)
    with older:
        notifier.start()
        notifier.put(message(1, end=True))
        wait_for(lambda: "did not answer HELLO" in caplog.text, timeout=10)
        report = notifier.close(0.5)
    assert older.messages == [] and len(report.undelivered) == 1 and report.outbox is not None
    warnings = [r.getMessage() for r in caplog.records if "did not answer HELLO" in r.getMessage()]
    assert len(warnings) == 1 and "expected 10 comma-separated fields" in warnings[0], warnings


def test_a_daemon_clock_far_off_is_warned_about_once_and_refuses_nothing(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    ahead = Listener(free_port, hello=lambda: Challenge("ab" * 16, time.time_ns() // 1_000_000 + 40_000))
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox", secret=SECRET)
    ahead.start()
    notifier.start()
    notifier.put(message(1))
    assert notifier.wait_empty(10)
    ahead.stop()
    ahead.start()
    notifier.put(message(2, end=True))
    ahead.wait_for_end()
    assert notifier.close(5).delivered == 2
    ahead.stop()
    warnings = [r for r in caplog.records if "its clock is" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING" and "+40.0 s" in warnings[0].getMessage()


def test_notifier_reconnects_after_the_daemon_restarts(tmp_path: Path, free_port: int) -> None:
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox")
    listener = Listener(free_port)
    listener.start()
    notifier.start()
    notifier.put(message(1))
    assert notifier.wait_empty(10)  # acknowledged
    listener.stop()
    notifier.put(message(2))
    listener.start()
    notifier.put(message(3, end=True))
    listener.wait_for_end()
    report = notifier.close(5)
    listener.stop()
    assert [m.last_segment for m in listener.messages] == [1, 2, 3]
    assert report.delivered == 3


def test_notifier_put_never_blocks_while_the_daemon_hangs(tmp_path: Path, free_port: int) -> None:
    """500 messages owed when the run stops are kept, and the next run sends them, in order."""
    path = tmp_path / ".sample.outbox"
    # A peer that accepts and never replies.
    release = threading.Event()

    def hang(msg: IndexMessage) -> Reject | None:
        release.wait(10)
        return None

    with Listener(free_port, reply=hang):  # type: ignore[arg-type]
        notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=path)
        notifier.start()
        for n in range(1, 501):
            notifier.put(named_message(tmp_path, n, end=n == 500))  # returns at once: the outbox only
        assert len(notifier) == 500
        abort = threading.Event()
        abort.set()
        report = notifier.close(0.2, abort=abort)
        release.set()
    assert [m.last_segment for m in report.undelivered] == list(range(1, 501))
    assert report.outbox == path and owed_segments(tmp_path) == list(range(1, 501))
    with Listener(free_port) as listener:
        notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=path)
        notifier.start()
        listener.wait_for_end()
        report = notifier.close(10)
    assert [m.last_segment for m in listener.messages] == list(range(1, 501))
    assert report.delivered == 500 and owed_segments(tmp_path) == []


def test_a_recorded_message_waits_for_its_put(tmp_path: Path, free_port: int) -> None:
    """Between ``record`` and ``put`` the segment file has no name yet: its message must not go
    out, even to a daemon that just came back and takes the messages owed before it."""
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox")
    notifier.start()
    notifier.put(message(1))  # nobody listens yet: retried
    notifier.record(message(2))
    with Listener(free_port) as listener:
        listener.wait_for(lambda lst: len(lst.messages) >= 1)
        assert not notifier.wait_empty(0.5)
        assert [m.last_segment for m in listener.messages] == [1]
        notifier.put(message(2), recorded=True)
        assert notifier.wait_empty(10)
        notifier.close(0)
    assert [m.last_segment for m in listener.messages] == [1, 2]


def test_notifier_ok_for_another_segment_is_a_protocol_error(tmp_path: Path, free_port: int) -> None:
    answers = iter([acknowledge(message(9))])

    def reply(msg: IndexMessage) -> object:
        return next(answers, acknowledge(msg))

    with Listener(free_port, reply=reply) as listener:  # type: ignore[arg-type]
        notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / "outbox")
        notifier.start()
        notifier.put(message(1, end=True))
        report = notifier.close(10)
    assert report.delivered == 1
    assert [m.last_segment for m in listener.messages] == [1, 1]


@dataclass
class FinishedFile:
    """A closed segment as the committer sees it: written under its temp name."""

    number: int
    name: str
    path: Path
    temp_path: Path

    def abort(self) -> None:
        self.temp_path.unlink(missing_ok=True)


def test_a_segment_is_owed_to_the_daemon_before_its_file_is_visible(tmp_path: Path, free_port: int) -> None:
    """The committer records the message (fsync'd) before the rename: a kill between the two
    leaves no visible segment that no run would announce."""
    path = tmp_path / ".sample.outbox"
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=path)
    segment = FinishedFile(1, "sample-00001.ts", tmp_path / "sample-00001.ts", tmp_path / ".sample-00001.ts.part")
    segment.temp_path.write_bytes(b"\x47" * 188)
    seen_at_record: list[tuple[bool, bool]] = []
    original_record = notifier.record

    def record_and_look(message: IndexMessage) -> None:
        original_record(message)
        seen_at_record.append((segment.path.exists(), owed_segments(tmp_path) == [1]))

    notifier.record = record_and_look  # type: ignore[method-assign]
    directory_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        committer = Committer(notifier, directory_fd)
        committer.put(segment, message(1))
        committer.close()
    finally:
        os.close(directory_fd)
    assert seen_at_record == [(False, True)]  # recorded while the file had only its temp name
    assert segment.path.exists() and len(notifier) == 1
    assert [m.last_segment for m in notifier.close(0).undelivered] == [1]


def segment_from_stdin(source: Path, directory: Path, port: int) -> tuple[Listener, subprocess.CompletedProcess[str]]:
    """hls-segment run on ``source`` piped to its stdin, OUTPUT_PREFIX "sample", against a listener
    that acknowledges everything; it must exit 0."""
    with Listener(port) as listener, source.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "segmenter", "-", "2", str(directory), "sample", "s.m3u8", "", "mybucket", "s1",
             "--uploader", f"127.0.0.1:{port}"],
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr
    return listener, result


def test_a_run_killed_before_a_rename_does_not_announce_that_segment(
    tmp_path: Path, media: MediaCache, free_port: int
) -> None:
    """The outbox owes segments 3 and 4, but only 3 got its name: 3 is re-sent, the unfinished 4
    is not, and the new run's first segment takes number 4."""
    source = media.ts(seconds=4, gop_seconds=2, fps=25)
    for n in (1, 2, 3):
        (tmp_path / f"sample-{n:05d}.ts").write_bytes(source.read_bytes())
    (tmp_path / ".sample-00004.ts.part").write_bytes(b"\x47" * 188)
    owed_messages = [dataclasses.replace(message(n), output_directory=f"{tmp_path}/") for n in (3, 4)]
    outbox = Outbox.open(tmp_path / ".sample.outbox")
    for m in owed_messages:
        outbox.add(m)
    outbox.close()
    listener, result = segment_from_stdin(source, tmp_path, free_port)
    assert "segment sample-00004.ts was never finished" in result.stderr
    numbers = [m.last_segment for m in listener.messages]
    assert numbers == [3, 4, 5], numbers  # 3 re-sent, then the new run's 4 and 5
    assert listener.messages[1].discontinuity  # the new run's first segment
    assert owed_segments(tmp_path) == []


def test_a_segment_whose_file_the_daemon_removed_before_its_publication_was_confirmed_stays_owed(
    tmp_path: Path, media: MediaCache, free_port: int
) -> None:
    """The outbox owes 3 and 4, renamed, sent and published; the daemon removed their files (path
    mode) and the run was killed before a reply confirmed it. No .part: they are re-sent (the
    daemon takes them as duplicates), and the new run numbers after them, never reusing 4."""
    source = media.ts(seconds=4, gop_seconds=2, fps=25)
    outbox = Outbox.open(tmp_path / ".sample.outbox")
    for n in (3, 4):
        outbox.add(dataclasses.replace(message(n), output_directory=f"{tmp_path}/"))
    outbox.close()
    listener, result = segment_from_stdin(source, tmp_path, free_port)
    assert "never finished" not in result.stderr
    numbers = [m.last_segment for m in listener.messages]
    assert numbers == [3, 4, 5, 6], numbers
    assert owed_segments(tmp_path) == []


def test_what_the_previous_version_s_files_owed_is_sent_first(
    tmp_path: Path, media: MediaCache, free_port: int
) -> None:
    """An upgrade in the middle of an outage: the journal (undelivered at a clean exit) and the
    write-ahead record (M lines, one A per message taken off) of the previous version are moved
    into the outbox, in their order, and sent before the new run's segments; the files go."""
    source = media.ts(seconds=4, gop_seconds=2, fps=25)
    for n in (1, 2, 3, 4):
        (tmp_path / f"sample-{n:05d}.ts").write_bytes(source.read_bytes())
    owed = [dataclasses.replace(message(n), output_directory=f"{tmp_path}/") for n in (1, 2, 3, 4)]
    (tmp_path / ".sample.journal").write_bytes(b"".join(encode_message(m, newline=True) for m in owed[:2]))
    (tmp_path / ".sample.unacked").write_bytes(
        b"M " + encode_message(owed[1]) + b"\nA\nM " + encode_message(owed[2]) + b"\nM " + encode_message(owed[3])
        + b"\nthis line is not a message\n"
    )
    listener, result = segment_from_stdin(source, tmp_path, free_port)
    assert "took 4 owed message(s) from .sample.journal and .sample.unacked" in result.stderr
    assert [m.last_segment for m in listener.messages] == [1, 2, 3, 4, 5, 6]
    assert not (tmp_path / ".sample.journal").exists() and not (tmp_path / ".sample.unacked").exists()
    assert owed_segments(tmp_path) == []


def test_a_failed_commit_settles_its_recorded_message(tmp_path: Path, free_port: int) -> None:
    """A record made before a failed rename is dropped (no file has its name), so nothing owed
    waits behind it; made before a failure after the rename, it is released and sent."""
    notifier = Notifier([("127.0.0.1", free_port)], v1=False, outbox_path=tmp_path / ".sample.outbox")
    notifier.record(message(1))
    notifier.settle_recorded(named=False)
    assert len(notifier) == 0
    notifier.record(named_message(tmp_path, 2))
    notifier.settle_recorded(named=True)
    notifier.put(named_message(tmp_path, 3))
    with Listener(free_port):
        notifier.start()
        assert notifier.wait_empty(10)
    report = notifier.close(1)
    assert report.delivered == 2 and not report.undelivered


def test_the_outbox_holding_the_writer_id_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # A daemon takes the writer id as the writer's claim to its stream: other local users must
    # not read it from OUTPUT_DIR.
    outbox = Outbox.open(tmp_path / ".sample.outbox")
    writer = outbox.writer()
    files = sorted(tmp_path.glob(".sample.outbox*"))  # the database, and SQLite's -wal and -shm while open
    modes = {file.name: file.stat().st_mode & 0o777 for file in files}
    outbox.close()
    assert len(writer) == 32 and ".sample.outbox" in modes
    assert modes == dict.fromkeys(modes, 0o600), modes


@pytest.mark.parametrize(("address", "line"), [
    ("127.0.0.1:", "--uploader: address '127.0.0.1:': no port after the colon"),  # once port 10234, silently
    ("a:1 b:2", "--uploader: address 'a:1 b:2': 'a:1 b:2' is neither an IP address nor a host name"
                " (one address is taken here)"),
    ("127.0.0.1:1,,127.0.0.1:2", "--uploader: an empty address in '127.0.0.1:1,,127.0.0.1:2' (addresses are"
                                 " separated by one comma)"),
    ("127.0.0.1:1, 127.0.0.1:1", "--uploader: 127.0.0.1:1 is listed twice"),
    ("127.0.0.1:0", "--uploader needs a port between 1 and 65535"),
    ("127.1:10234", "--uploader: address '127.1:10234': '127.1' is no IPv4 address (a resolver may read it as"
                    " another one, 127.1 as 127.0.0.1): write the IPv4 address in full dotted-quad form, four"
                    " numbers 0..255 without leading zeros (127.0.0.1)"),
])
def test_an_uploader_address_that_is_not_one_is_one_line_and_exit_2(tmp_path: Path, address: str, line: str) -> None:
    result = run_segmenter(None, "2", tmp_path / "out", 1, "--uploader", address)
    assert (result.returncode, result.stderr.splitlines()) == (2, [f"hls-segment: {line}"])
    assert not (tmp_path / "out").exists()


def test_several_daemons_on_the_v1_wire_are_refused_in_one_line(tmp_path: Path) -> None:
    # v1 has no reply: a message is done once written, so failover could not keep what a lost
    # daemon had taken.
    result = run_segmenter(None, "2", tmp_path / "out", 1, "--uploader", "127.0.0.1:1,127.0.0.1:2", "--wire", "v1")
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        "hls-segment: --wire v1 has no replies, so no daemon can say a message is published: several --uploader"
        " addresses need --wire ext"])


def test_a_url_whose_protocol_the_bundled_ffmpeg_lacks_is_refused_with_the_pipe_that_reads_it(
    tmp_path: Path, free_port: int,
) -> None:
    # PyAV's FFmpeg has no SRT (nor RIST): it said "Protocol not found" and left the fix unsaid.
    url = f"srt://127.0.0.1:{free_port}?mode=caller"
    result = subprocess.run(segment_args(url, "2", tmp_path / "out", free_port), capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"hls-segment: {url}: the FFmpeg hls-segment carries cannot open srt:// URLs; have the ffmpeg command line"
        f" read it and pipe it in: ffmpeg -i '{url}' -c copy -f mpegts - | hls-segment - SEGMENT_DURATION ...")


def make_mp4(path: Path) -> Path:
    """A 10-frame MPEG-4 video in MP4 at ``path`` (any name: FFmpeg is given it as ``file:``)."""
    with av.open(f"file:{path}", "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for tick in range(10):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts, frame.time_base = tick, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("name", ["cam:1.mp4", "./a:b.mp4", "a:b:c.mp4"])
def test_a_local_file_whose_name_has_a_colon_is_opened_as_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
) -> None:
    # FFmpeg took "cam:" for a protocol: "cannot open cam:1.mp4:// URLs".
    monkeypatch.chdir(tmp_path)
    make_mp4(tmp_path / name)
    container, source = open_input(name, probe_timeout_s=5, stop=threading.Event())
    with container:
        assert source is None and "mp4" in container.format.name
        assert [stream.type for stream in container.streams] == ["video"]


@pytest.mark.parametrize("name, reason", [
    ("nosuch.ts", "No such file or directory"),
    ("./a:b.mp4", "No such file or directory"),
    ("/no/such/dir/a://b.ts", "No such file or directory"),  # no scheme where a URL's would be
    ("cam:1.ts", "no such file, and FFmpeg has no protocol cam:"),
])
def test_a_missing_local_file_is_one_line_saying_so_colon_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, reason: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as refused:
        open_input(name, probe_timeout_s=5, stop=threading.Event())
    assert str(refused.value) == f"cannot open {name}: {reason}"


@pytest.mark.parametrize("form", ["file:in.mp4", "file:{dir}/in.mp4", "concat:in.mp4"])
def test_ffmpeg_protocol_forms_without_slashes_still_reach_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str,
) -> None:
    # file:, pipe:N, concat: name no file on disk: they are FFmpeg's, not missing paths.
    monkeypatch.chdir(tmp_path)
    make_mp4(tmp_path / "in.mp4")
    container, source = open_input(form.format(dir=tmp_path), probe_timeout_s=5, stop=threading.Event())
    with container:
        assert source is None and [stream.type for stream in container.streams] == ["video"]


@pytest.mark.parametrize(("target", "shown"), [
    ("http://user:s3cret@cam.local/live.ts", "http://user:***@cam.local/live.ts"),
    ("srt://cam.local:9000?mode=caller&passphrase=s3cret&latency=200",
     "srt://cam.local:9000?mode=caller&passphrase=***&latency=200"),
    ("https://cdn.example.net/a.ts?X-Amz-Credential=AKIA&X-Amz-Signature=abc&user_token=t0k&n=1",
     "https://cdn.example.net/a.ts?X-Amz-Credential=***&X-Amz-Signature=***&user_token=***&n=1"),
    ("rtmp://user@cam.local/live", "rtmp://user@cam.local/live"),  # no password to hide
    ("cam:pass=1.ts", "cam:pass=1.ts"),  # a path is shown as it is
])
def test_an_input_urls_secrets_are_never_shown(target: str, shown: str) -> None:
    assert shown_input(target) == shown


def test_an_input_that_cannot_be_opened_is_named_without_its_password() -> None:
    with pytest.raises(InputError) as refused:
        open_input("srt://user:s3cret@127.0.0.1:9?passphrase=s3cret", probe_timeout_s=5, stop=threading.Event())
    assert "s3cret" not in str(refused.value) and "srt://user:***@127.0.0.1:9?passphrase=***" in str(refused.value)


def test_an_input_url_that_cannot_be_reached_says_cannot_open_not_what_the_media_is() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InputError) as refused:
        open_input(f"tcp://127.0.0.1:{port}", probe_timeout_s=5, stop=threading.Event())
    assert str(refused.value) == f"cannot open tcp://127.0.0.1:{port}: Connection refused"


def test_an_input_url_the_server_answers_404_for_says_cannot_open(tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/missing.ts"
        try:
            with pytest.raises(InputError) as refused:
                open_input(url, probe_timeout_s=5, stop=threading.Event())
        finally:
            server.shutdown()
    assert str(refused.value).startswith(f"cannot open {url}: ") and "404" in str(refused.value), refused.value


def test_a_fifo_is_read_as_stdin_is_probe_timeout_and_all(tmp_path: Path) -> None:
    # FFmpeg read it itself: no probe timeout while it was silent, "Invalid data" when it was empty.
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as silent:  # no writer yet: nothing to read, as on a silent stdin
        open_input(str(fifo), probe_timeout_s=0.5, stop=threading.Event())
    assert str(silent.value).startswith(f"nothing arrived on {fifo} in 0.5 s"), silent.value
    data = make_ts(tmp_path / "in.ts", seconds=2).read_bytes()

    def write() -> None:
        time.sleep(0.3)  # after the reader opened it, before the probe gives up
        with open(fifo, "wb") as writer:
            writer.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    container, source = open_input(str(fifo), probe_timeout_s=10, stop=threading.Event())
    writer.join()
    with container:
        assert source is not None and source.name == str(fifo)  # the fast path's bytes, the program watch
        assert sorted(stream.type for stream in container.streams) == ["audio", "video"]
    source.close()
