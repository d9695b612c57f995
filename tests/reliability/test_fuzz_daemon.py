"""A corpus of over 10,000 malformed messages against a running hls-uploadd (issue 7).

Hand-written cases (wrong field counts, huge and negative numbers, NUL and control bytes,
non-UTF-8, very long lines, lines without end, Unicode look-alikes of '/' and '.', near-HELLOs),
every field of a valid message replaced by every bad value, and Hypothesis-generated lines. Each
one gets ``ERR`` or a closed connection, never ``OK``; the log never holds a traceback; a
legitimate stream publishes throughout; the daemon's memory and open files stay bounded. The
fuzzing client opens every connection with HELLO, as a signing sender does; against a daemon with
a secret (``signed``) the corpus adds messages signed over other connections' nonces, with wrong
secrets, key ids and numbers, and the legitimate stream signs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import (
    HELLO_REQUEST,
    Ack,
    Challenge,
    ProtocolError,
    Reject,
    ReplyDecoder,
    encode_message,
    parse_message,
    sign,
)
from tests.support.daemon import UploaderDaemon, legit_message, place_segment
from tests.support.pipeline import STORE_CONNECTIONS_BOUND, figures_in_service, peer_fds, process_figures, record
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import http_get, wait_for

REPLY_TIMEOUT_S = 20.0
MIN_CORPUS = 10_000
MAX_BAD_MESSAGES = 20  # uploader/server.py closes a connection after this many refusals
HYPOTHESIS_EXAMPLES = 9_500

# Look-alikes of '/' and '.' (division slash, fraction slash, fullwidth solidus, big solidus,
# one dot leader, fullwidth full stop, ideographic full stop, small full stop) and friends.
LOOKALIKES = ["\u2215", "\u2044", "\uff0f", "\u29f8", "\u2024", "\uff0e", "\u3002", "\ufe52", "\u2025", "\u00b7"]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\ufeff", "\u202e", "\u200b"]

BAD_NAMES = [
    "", ".", "..", "../x.m3u8", "a/b.m3u8", "/abs.m3u8", "a\\b.m3u8", "~/x.m3u8", "x" * 300 + ".m3u8",
    "ｉｎｄｅｘ.m3u8", "name with space.m3u8", "x.m3u8/..", "%2e%2e.m3u8", "$(reboot).m3u8", "`id`.m3u8",
    *(f"a{c}b.m3u8" for c in LOOKALIKES), *(f"{c}{c}.m3u8" for c in LOOKALIKES),
    *(f"x{c}.m3u8" for c in CONTROL),
]
BAD_NUMBERS = [
    "", "-1", "+1", "-0", "1e3", "0x10", "1.5", "1,5", "１", "٣", "໓", "NaN", "inf", "1_000", "  ",
    str(2**31), str(2**63), "9" * 40, "9" * 5000, "0" * 10 + "-1", "\x001", "1\x00", "true", "null",
]
BAD_BUCKETS = [
    "", "ab", "AB", "a" * 64, "bad_bucket", "192.168.1.1", "a..b", "-abc", "abc-", "xn--", ".abc",
    "other-bucket", "not-allowed-bucket", "b\u2024c", "b\uff0ec", "ab/c", "../etc", "a b c",
]
BAD_KEY_PREFIXES = [
    "/abs", "../x", "..", ".", "a/../b", "a/./b", "a//b", "a/", "/", "a\\b", "x" * 701, "~/../x",
    *(f"a{c}b" for c in LOOKALIKES), *(f"{c}{c}/x" for c in LOOKALIKES), *(f"k{c}" for c in CONTROL),
]
BAD_DIRECTORIES = [
    "", "relative/dir", "./", "../", "/etc/", "/", "/proc/self/root/etc/", "/tmp/../etc/",
    *(f"/tmp/x{c}/" for c in CONTROL), "/" + "d" * 5000,
]
BAD_HTTP_PREFIXES = ["ftp://x/", "javascript:alert(1)//", "file:///etc/", "//evil/", "http://a b/", "x" * 5000,
                     *(f"http://cdn{c}/" for c in CONTROL)]
BAD_ENDS = ["2", "-1", "true", "yes", "", "1.0", "１"]
BAD_EXTENSIONS = [
    "duration=nan", "duration=-1", "duration=1e3", "duration=", "duration=inf", "duration=99999",
    "=1", "Duration=1", "1x=1", "duration=1, duration=2", "foo", "foo=", "size=-1", "size=abc",
    "size=99999999999999", "size=1099511627776", "tag=xyz", "tag=" + "A" * 64, "resolution=axb",
    "resolution=-1x-1", "codecs=%zz", "codecs=" + "a" * 300, "discontinuity=2", "start=-5", "bandwidth=0",
    "frame_rate=0", "ts=-1", "independent=2", "sha256=" + "0" * 64, "k\x00=1", "k=\x01", "foo=%00",
]


def field_values(segments_dir: Path, bucket: str) -> list[str]:
    return ["fuzz.m3u8", f"{segments_dir}/", "2", "fz", "", "1", "1", "0", bucket, "fuzz"]


def hand_written(segments_dir: Path, bucket: str) -> Iterator[bytes]:
    """Every field replaced by every bad value, wrong field counts, odd whole lines."""
    good = field_values(segments_dir, bucket)
    per_field = [BAD_NAMES, BAD_DIRECTORIES, BAD_NUMBERS, BAD_NAMES, BAD_HTTP_PREFIXES, BAD_NUMBERS,
                 BAD_NUMBERS, BAD_ENDS, BAD_BUCKETS, BAD_KEY_PREFIXES]
    for position, bad_values in enumerate(per_field):
        for bad in bad_values:
            fields = list(good)
            fields[position] = bad
            yield ", ".join(fields).encode("utf-8", "surrogatepass")
            yield ",".join(fields).encode("utf-8", "surrogatepass")  # no space after the comma
    for extension in BAD_EXTENSIONS:
        yield (", ".join(good) + ", " + extension).encode()
        yield (", ".join(good) + ", duration=2.0, " + extension).encode()
    for count in range(0, 10):
        yield ", ".join(good[:count]).encode() or b","
        yield ", ".join(good[10 - count :]).encode() or b", ,"
    for extra in range(1, 40):
        yield (", ".join(good) + ", x" * extra).encode()
    for field in range(10):
        for junk in (b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x88", b"\x80abc"):
            fields = [value.encode() for value in good]
            fields[field] = fields[field] + junk
            yield b", ".join(fields)
    yield b"GET / HTTP/1.1"
    yield b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a TLS ClientHello's start
    yield b"SSH-2.0-OpenSSH_9.6"
    for near in (b"HELLO x", b"HELLO\x00", b"hello", b"HELLO,", b"HELLO " + b"A" * 5000, b"HELLO\xff",
                 b"HELLO nonce=" + b"0" * 32 + b" time=1", b"\xef\xbb\xbfHELLO", b"HELL0", b"HELLO" * 3):
        yield near
    yield b"OK 1"
    yield b"ERR nothing"
    yield b"," * 4000
    yield b", " * 2000
    yield b"\t,\t,\t,\t,\t,\t,\t,\t,\t,\t"
    yield ("\u2215" * 1500).encode()
    yield b"\x00" * 100
    yield b"A" * 4097
    yield b"A" * 100_000
    yield (", ".join(good) + ", " + "k=" + "v" * 5000).encode()


SECRET = b"fuzz-secret-0123456789abcdef"


def signed_forgeries(segments_dir: Path, bucket: str) -> Iterator[bytes]:
    """Messages a daemon with SECRET must refuse: signed for other connections, with other
    secrets and key ids, without n, with n 0 or past the limit, with a tag cut or changed."""
    for number in range(1, 301):
        message = legit_message(segments_dir, bucket, number)
        nonce = f"{number:032x}"
        yield encode_message(sign(message, SECRET, nonce, 1))  # another connection's nonce
        yield encode_message(sign(message, b"a guessed secret of some length", nonce, number))
        yield encode_message(sign(message, SECRET, nonce, number, f"peer-{number}"))
        tagged = encode_message(sign(message, SECRET, nonce, number))
        yield tagged.replace(b", n=", b", x=")
        yield tagged[:-1] + (b"0" if tagged[-1:] != b"0" else b"1")
        yield tagged[:-32]
        yield tagged.replace(f", n={number},".encode(), b", n=0,")
        yield tagged.replace(f", n={number},".encode(), b", n=" + str(2**53 + 1).encode() + b",")


def expected_refusal(line: bytes, segments_dir: Path, bucket: str, *, signed: bool = False) -> bool:
    """True when the daemon must refuse ``line``: it does not parse, or policy forbids it (with
    ``signed``, a secret: nothing the fuzzer makes carries a right tag)."""
    stripped = line.strip(b" \t\r")
    if not stripped or stripped == HELLO_REQUEST:
        return False  # a blank line is a keep-alive and gets no reply; HELLO gets a challenge
    try:
        message = parse_message(stripped)
    except ProtocolError:
        return True
    if signed:
        return True
    if message.bucket != bucket:
        return True
    if message.last_segment == 0 or message.size is not None:
        return False
    real = os.path.realpath(message.output_directory) if message.output_directory.startswith("/") else ""
    root = str(segments_dir)
    return not (real == root or real.startswith(root + "/"))


class FuzzClient:
    """Sends one line at a time and reads its reply; reconnects when the daemon closes."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.decoder = ReplyDecoder()
        self.sent = 0
        self.errs = 0
        self.closed = 0  # connections the daemon closed on us
        self.connections = 0
        self.on_connection = 0  # lines refused on the current connection

    def _connect(self) -> socket.socket:
        """The connection, opened with HELLO as a signing sender does: fuzz lines follow the challenge."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=REPLY_TIMEOUT_S)
            self.decoder = ReplyDecoder()
            self.connections += 1
            self.on_connection = 0
            self.sock.sendall(HELLO_REQUEST + b"\n")
            challenge = self._reply()
            assert isinstance(challenge, Challenge), f"HELLO was answered {challenge!r}"
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, line: bytes) -> None:
        """One malformed line: assert that it is refused with ERR (or its connection closed)."""
        self.sent += 1
        for attempt in range(2):
            if self.on_connection >= MAX_BAD_MESSAGES:
                self.close()  # the daemon closes after this many; start afresh so each line is heard
            sock = self._connect()
            try:
                sock.sendall(line.replace(b"\n", b" ") + b"\n")
                reply = self._reply()
            except (BrokenPipeError, ConnectionResetError):
                reply = None
            if reply is None:
                # Closed: after a non-recoverable error (its ERR came first), or on our line. Send
                # it once more on a new connection so that it gets its own verdict.
                self.close()
                if attempt == 0:
                    continue
                self.closed += 1
                return
            self.on_connection += 1
            assert isinstance(reply, Reject), f"{line[:200]!r} was answered {reply!r}"
            self.errs += 1
            return

    def _reply(self) -> Ack | Reject | None:
        assert self.sock is not None
        while (reply := self.decoder.next_reply()) is None:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.decoder.receive_data(chunk)
        return reply


def send_without_end(address: tuple[str, int], line: bytes) -> bytes:
    """A line with no newline, then the sending side closed: the original client's way."""
    with socket.create_connection(address, timeout=REPLY_TIMEOUT_S) as sock:
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


class LegitimateStream(threading.Thread):
    """A real segmenter's messages, one segment every 0.1 s, each of which must be OK'd."""

    def __init__(self, daemon: UploaderDaemon, segments_dir: Path, source: Path, bucket: str, *,
                 signed: bool) -> None:
        super().__init__(daemon=True)
        self.signed = signed
        self.daemon_ = daemon
        self.directory = segments_dir
        self.source = source
        self.bucket = bucket
        self.halt = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            number = 0
            with self.daemon_.connect() as client:
                if self.signed:
                    client.hello()
                while True:
                    number += 1
                    end = self.halt.is_set()
                    place_segment(self.source, self.directory, "legit", number)
                    message = legit_message(self.directory, self.bucket, number, end=end)
                    reply = client.send(client.signed(message, SECRET) if self.signed else message)
                    assert reply == Ack(number), reply
                    self.sent = number
                    if end:
                        return
                    self.halt.wait(0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


@pytest.fixture(params=["unsigned", "signed"])
def fuzz_daemon(request: pytest.FixtureRequest, tmp_path: Path, seaweed: SeaweedServer,
                bucket: str) -> Iterator[tuple[UploaderDaemon, Path, bool]]:
    """hls-uploadd reading ``tmp_path/segments`` for ``bucket``; ``signed``: with a secret."""
    signed = request.param == "signed"
    directory = tmp_path / "segments"
    directory.mkdir()
    args = ["--allow-dir", str(directory), "--bucket", bucket]
    if signed:
        secret_file = tmp_path / "secret"
        secret_file.write_bytes(SECRET)
        secret_file.chmod(0o600)
        args += ["--secret-file", str(secret_file)]
    daemon = UploaderDaemon(tmp_path / "uploadd", args).start()
    try:
        yield daemon, directory, signed
    finally:
        daemon.kill()


@pytest.mark.timeout(450)
def test_fuzz_corpus_is_refused_while_a_legitimate_stream_publishes(
    fuzz_daemon: tuple[UploaderDaemon, Path, bool], seaweed: SeaweedServer, bucket: str, segment_source: Path
) -> None:
    daemon, segments_dir, signed = fuzz_daemon
    assert daemon.proc is not None
    pid = daemon.proc.pid
    legit = LegitimateStream(daemon, segments_dir, segment_source, bucket, signed=signed)
    legit.start()
    url = seaweed.object_url(bucket, "legit/legit.m3u8")
    try:
        before = figures_in_service(pid, seaweed.s3_port, url, "legit-00001.ts")
    except AssertionError as error:
        raise AssertionError(f"{error}; the legitimate stream sent {legit.sent}, error {legit.error!r}") from None
    client = FuzzClient(daemon.address)
    began = time.monotonic()
    written = [*hand_written(segments_dir, bucket), *(signed_forgeries(segments_dir, bucket) if signed else ())]
    corpus = [line for line in written if expected_refusal(line, segments_dir, bucket, signed=signed)]
    for line in corpus:
        client.send(line)

    # Lines without end: each alone on a connection, closed after sending, as the original client does.
    without_end = 0
    for line in corpus[::10]:
        reply = send_without_end(daemon.address, line)
        assert reply == b"" or reply.startswith(b"ERR "), (line[:200], reply)
        without_end += 1

    @settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(min_size=1, max_size=600),
        st.lists(st.text(max_size=30), min_size=0, max_size=14).map(lambda f: ", ".join(f).encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from(field_values(segments_dir, bucket) + BAD_NUMBERS[:12] + LOOKALIKES + CONTROL),
                 min_size=1, max_size=13).map(lambda f: ", ".join(f).encode()),
        st.tuples(st.integers(0, 9), st.binary(max_size=40)).map(
            lambda c: b", ".join(v.encode() if i != c[0] else c[1] for i, v in enumerate(field_values(segments_dir, bucket)))),
    ))
    def fuzz(line: bytes) -> None:
        line = line.replace(b"\n", b" ")
        assume(expected_refusal(line, segments_dir, bucket, signed=signed))
        client.send(line)

    fuzz()
    client.close()
    fuzzed = client.sent + without_end
    elapsed = time.monotonic() - began
    during = process_figures(pid)

    legit.halt.set()
    legit.join(30)
    assert legit.error is None, legit.error
    assert daemon.running, "the daemon died"
    wait_for(lambda: "#EXT-X-ENDLIST" in http_get(url).text, timeout=30, message="the legitimate stream's end")
    for number in range(max(1, legit.sent - 4), legit.sent + 1):
        assert http_get(seaweed.object_url(bucket, f"legit/legit-{number:05d}.ts")).status == 200
    after = process_figures(pid, seaweed.s3_port)
    log = daemon.log()
    assert "Traceback" not in log
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:5]
    assert fuzzed >= MIN_CORPUS, fuzzed
    assert client.errs + client.closed == client.sent
    # Bounded: a few MB more than at start at most, and every fuzz connection closed again.
    assert during["VmHWM"] - before["VmRSS"] < 64 * 1024, (before, during)
    assert peer_fds(after) <= peer_fds(before) + 5, (before, after)
    assert after["store_connections"] <= STORE_CONNECTIONS_BOUND, (before, after)
    record(f"fuzz corpus ({'signed' if signed else 'unsigned'})", messages_fuzzed=fuzzed, hand_written=len(corpus), hypothesis=client.sent - len(corpus),
           without_end=without_end, refused_err=client.errs, closed=client.closed,
           connections=client.connections + without_end, legit_segments=legit.sent, seconds=round(elapsed, 1),
           daemon_rss_kb_before=before["VmRSS"], daemon_peak_rss_kb=after["VmHWM"], daemon_fds_after=after["fds"],
           daemon_store_connections_after=after["store_connections"])
