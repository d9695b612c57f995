"""Opening the input (stdin or anything FFmpeg opens) and describing its streams."""

from __future__ import annotations

import logging
import math
import os
import re
import select
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import av.container
import av.logging

from common.tls import TlsFailure, detail, tls_failure

from . import metrics
from .codecs import codec_string, codecs_list
from .cutter import StreamInfo, StreamKind
from .errors import InputError
from .psi import RESYNC_PACKETS, TS_PACKET_BYTES, ProgramWatch, find_sync

log = logging.getLogger(__name__)

# Say that we are waiting for stdin after this long without a byte (at once on a terminal), so
# an operator who forgot the pipe is told long before the probe timeout.
WAITING_NOTICE_AFTER_S = 2.0

# How often a blocked stdin read wakes up to see whether a signal asked us to stop.
STOP_POLL_S = 0.2

# Bytes asked of the input per read: large enough that the per-call cost vanishes (a slow live
# stream is still passed on as it arrives: a read returns what the pipe has), and whole packets,
# so reads of a file end between packets and the program watch holds nothing back.
READ_CHUNK_BYTES = 188 * 4096


class StallWatch:
    """The stale-input watchdog's clock: a warning after ``warning_s`` without input (once per
    silence, and a line when input resumes), the end of the input after ``end_s`` (0: never).

    The reader calls ``arrived`` whenever input comes, and ``poll`` whenever it waits.
    """

    def __init__(self, warning_s: float = math.inf, end_s: float = 0.0) -> None:
        self.warning_s = warning_s
        self.end_s = end_s
        self._last_data = time.monotonic()
        self._stalled = False

    def arrived(self) -> None:
        """Input came: the silence is over (logged if it had been reported)."""
        now = time.monotonic()
        if self._stalled:
            log.warning("input resumed after %.1f s without data", now - self._last_data)
            self._stalled = False
        self._last_data = now

    def silent_s(self) -> float:
        """Seconds since input last came."""
        return time.monotonic() - self._last_data

    def poll(self, *, may_end: bool = True) -> bool:
        """Look at the silence so far: log a stall once it reaches ``warning_s``, and return True
        once it reaches ``end_s`` (never when ``may_end`` is False): the input is to be ended."""
        silent_s = time.monotonic() - self._last_data
        if may_end and self.end_s and silent_s >= self.end_s:
            log.warning("no input for %.0f s (--stall-end %g): ending the stream", silent_s, self.end_s)
            return True
        if not self._stalled and silent_s >= self.warning_s:
            self._stalled = True
            then = f"the stream ends after {self.end_s:g} s" if self.end_s else "waiting for it"
            log.warning("no input for %.0f s: the encoder may have stalled; %s", silent_s, then)
        return False


class StallMonitor:
    """The watchdog for an input FFmpeg reads itself (a URL): a thread that samples a packet
    count. The end comes from FFmpeg's read timeout (``open_input`` sets it to ``--stall-end``)."""

    POLL_S = 0.5

    def __init__(self, watch: StallWatch, packets: Callable[[], int]) -> None:
        self._watch = watch
        self._packets = packets
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-monitor", daemon=True)

    def __enter__(self) -> StallMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        seen = self._packets()
        while not self._done.wait(self.POLL_S):
            count = self._packets()
            if count != seen:
                seen = count
                self._watch.arrived()
            else:
                self._watch.poll(may_end=False)


class ByteSource:
    """The input's bytes as a file object for PyAV and the fast path: stdin, or an MPEG-TS file.

    A read while probing that sees no byte for ``probe_timeout_s`` raises InputError; later reads
    block (a live stream may pause: the stale-input watchdog warns, and ends the input after
    ``stall_end_s`` if set) but return end of input once ``stop`` is set. An MPEG-TS input is read
    through a ``psi.ProgramWatch``: where its programs change (other codecs, other PIDs) reads
    return end of input, ``program_change`` says what changed, and ``next_program()`` goes on
    with the new program's bytes, for a new probe and a new run.
    """

    def __init__(self, fd: int, name: str, *, probe_timeout_s: float, stop: threading.Event,
                 stall_warning_s: float = math.inf, stall_end_s: float = 0.0) -> None:
        self.name = name
        self._fd = fd
        self._stall = StallWatch(stall_warning_s, stall_end_s)
        metrics.watch(input_bytes=lambda: self.bytes_read, silent_s=self._stall.silent_s)
        self._ended = False
        self._stop = stop
        self._probe_timeout_s = probe_timeout_s
        self._probing = True
        self._noticed = False
        self._started = time.monotonic()
        self._interactive = os.isatty(fd)
        self.bytes_read = 0
        self._watch: ProgramWatch | None = ProgramWatch()
        self._ready = b""  # bytes the watch let through, not read yet
        self._pending = b""  # the next program's bytes the watch held back at a change
        self.program_change: str | None = None
        # Every byte read, until the shell chose a path: the MPEG-TS fast path replays what the
        # probe consumed, the PyAV path forgets it (so memory stays bounded).
        self._recording: bytearray | None = bytearray()

    def probed(self, format_name: str) -> None:
        self._probing = False
        if format_name != "mpegts" and self._watch is not None:
            self._ready += self._watch.flush()  # not MPEG-TS: nothing to watch
            self._watch = None

    def recorded(self) -> bytes:
        """The bytes read so far (only while recording)."""
        return bytes(self._recording or b"")

    def replay(self) -> bytes:
        """The bytes read so far, to be read again; recording stops."""
        data, self._recording = bytes(self._recording or b""), None
        return data

    def forget(self) -> None:
        self._recording = None

    def follow(self, program_number: int | None) -> None:
        """The program being segmented: from now on only its changes end a run (ProgramWatch.follow)."""
        if self._watch is not None:
            self._watch.follow(program_number)

    def next_program(self) -> None:
        """After a program change: go on with the new program's bytes, for a new probe."""
        assert self._watch is not None and self.program_change is not None
        self._pending = self._watch.rest()
        self._watch = ProgramWatch()
        self.program_change = None
        self._probing = True
        self._recording = bytearray()

    def close(self) -> None:
        if self._fd != 0:
            os.close(self._fd)

    def read(self, size: int) -> bytes:
        while not self._ready:
            if self.program_change is not None or self._ended:
                return b""
            if self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._read_raw(self._watch.aligned(size) if self._watch else size)
            if self._watch is None:
                self._ready = data
                if not data:
                    return b""
            elif data:
                self._ready = self._watch.feed(data)
                self.program_change = self._watch.change
            else:
                self._ready = self._watch.flush()
                self._ended = True
        data = self._ready
        if len(data) <= size:
            self._ready = b""
        else:
            data, self._ready = data[:size], data[size:]
        if self._recording is not None:
            self._recording += data
        return data

    def _read_raw(self, size: int) -> bytes:
        """The next bytes of the input, b"" at its end (or on stop, or when the watchdog ended it)."""
        while True:
            if self._stop.is_set() or self._ended:
                return b""
            wait_s = STOP_POLL_S
            if (not self._probing or self.bytes_read) and self._stall.poll():
                self._ended = True
                return b""
            if self._probing and self.bytes_read == 0:
                waited = time.monotonic() - self._started
                if waited >= self._probe_timeout_s:
                    raise InputError(
                        f"nothing arrived on {self.name} in {self._probe_timeout_s:g} s: "
                        "expected an MPEG-TS stream, e.g. ffmpeg ... -f mpegts - | hls-segment - ..."
                    )
                if not self._noticed and (self._interactive or waited >= WAITING_NOTICE_AFTER_S):
                    self._noticed = True
                    log.warning(
                        "waiting for MPEG-TS on %s (giving up after %g s)", self.name, self._probe_timeout_s
                    )
                wait_s = min(wait_s, self._probe_timeout_s - waited)
            readable, _, _ = select.select([self._fd], [], [], max(wait_s, 0.0))
            if readable:
                try:
                    data = os.read(self._fd, min(size, READ_CHUNK_BYTES))
                except BlockingIOError:  # a non-blocking FIFO that had nothing after all
                    continue
                self.bytes_read += len(data)
                self._stall.arrived()
                if not data:
                    self._ended = True
                return data


# Data streams copied into the segments (never cut on), by FFmpeg's codec name, as logs name them.
TIMED_ID3 = "timed_id3"  # ID3 tags in PES packets, stream_type 0x15 (Apple's timed metadata for HLS)
SCTE_35 = "scte_35"  # splice_info_section, stream_type 0x86 (ANSI/SCTE 35)
DATA_KINDS = {TIMED_ID3: "timed ID3 metadata", SCTE_35: "SCTE-35"}


@dataclass(frozen=True, slots=True)
class DataStream:
    """A timed metadata or SCTE-35 stream: copied into the segment its packets fall in, by their
    position in the input, and never cut on."""

    index: int  # the stream's index in the input container
    codec: str  # TIMED_ID3 or SCTE_35
    pid: int  # its PID (the stream's id in an MPEG-TS input)


@dataclass(frozen=True, slots=True)
class InputDescription:
    """What the probe found: the streams to copy and what the messages say about them."""

    streams: tuple[StreamInfo, ...]  # audio and video: what the cutter sees
    format_name: str
    codecs: str | None  # RFC 6381 list
    resolution: str | None  # WIDTHxHEIGHT of the first video stream
    frame_rate: float | None
    skipped: tuple[str, ...]  # streams of the program that are not copied (neither audio, video nor ``data``), described
    data: tuple[DataStream, ...] = ()  # timed metadata and SCTE-35 streams, in input order
    program: int | None = None  # the program_number copied; None: the input has no program table
    program_choice: str = ""  # which program was chosen and why, and what the others are, for the log

    def data_kind(self, index: int) -> str:
        """How logs name data stream ``index``: 'timed ID3 metadata' or 'SCTE-35'."""
        return next(DATA_KINDS[d.codec] for d in self.data if d.index == index)


def log_continuity(number: int, counts: dict[int, int], noun: str) -> None:
    """One line for segment ``number`` if ``counts`` (PID -> how many) holds any loss:
    ``segment 4: PID 0x101 3 continuity errors, PID 0x100 1 continuity error``."""
    metrics.continuity_errors(counts)
    if counts:
        log.warning("segment %d: %s", number, ", ".join(
            f"PID 0x{pid:x} {count} {noun}{'' if count == 1 else 's'}" for pid, count in sorted(counts.items())))


@dataclass(frozen=True, slots=True)
class Program:
    """One program of the input as FFmpeg's demuxer found it: its program_number (MPEG-TS: from
    the PAT), its streams' indexes and its name (the SDT's service_name), if any."""

    number: int
    streams: tuple[int, ...]
    name: str = ""


_PROGRAM_LINE = re.compile(r"^\s*Program (\d+)")
_NO_PROGRAM_LINE = re.compile(r"^\s*No Program")
_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)")
_SERVICE_NAME_LINE = re.compile(r"^\s*service_name\s*: ?(.*)$")


def parse_programs(listing: str) -> tuple[Program, ...]:
    """The programs in FFmpeg's description of an input (``av_dump_format``: "Program N", its
    metadata, then its "Stream #0:K" lines; "No Program" before the streams of none)."""
    programs: list[Program] = []
    current: tuple[int, list[int], list[str]] | None = None
    for line in listing.splitlines():
        if (match := _PROGRAM_LINE.match(line)) or _NO_PROGRAM_LINE.match(line):
            if current is not None:
                programs.append(Program(current[0], tuple(current[1]), current[2][0] if current[2] else ""))
            current = (int(match.group(1)), [], []) if match else None
        elif current is not None and (match := _STREAM_LINE.match(line)):
            current[1].append(int(match.group(1)))
        elif current is not None and not current[1] and (match := _SERVICE_NAME_LINE.match(line)):
            current[2].append(match.group(1).strip())
    if current is not None:
        programs.append(Program(current[0], tuple(current[1]), current[2][0] if current[2] else ""))
    return tuple(programs)


def input_programs(container: av.container.InputContainer) -> tuple[Program, ...]:
    """The input's programs (none for a format without a program table, e.g. MP4).

    PyAV does not expose FFmpeg's programs, but its description of the input lists them, at
    FFmpeg's INFO log level (raised for the call, then restored)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        listing = container.dumps_format()
    finally:
        av.logging.set_level(level)
    return parse_programs(listing)


def choose_program(programs: tuple[Program, ...], has_video: Callable[[int], bool],
                   wanted: int | None) -> tuple[Program | None, str]:
    """The program to copy and the log line that says why: ``wanted`` (``--program``), else the
    first program with a video stream, else the first; None when the input has no programs.

    Raises InputError when ``wanted`` is not one of them.
    """
    if not programs:
        if wanted is not None:
            raise InputError(f"--program {wanted}: the input has no program table (only MPEG-TS has programs)")
        return None, ""
    if wanted is not None:
        chosen = next((p for p in programs if p.number == wanted), None)
        if chosen is None:
            raise InputError(f"--program {wanted}: the input has no such program "
                             f"(it has {', '.join(str(p.number) for p in programs)})")
        why = "--program"
    else:
        chosen = next((p for p in programs if any(map(has_video, p.streams))), programs[0])
        why = "the first with video" if any(map(has_video, chosen.streams)) else "the first; none has video"
    others = [p for p in programs if p is not chosen]
    if not others and wanted is None:
        return chosen, ""  # the usual input: nothing to say
    text = f"program {_program_name(chosen)} ({why})"
    if others:
        text += "; not copied: " + ", ".join(f"program {_program_name(p)} ({len(p.streams)} streams)" for p in others)
    return chosen, text


def _program_name(program: Program) -> str:
    return f"{program.number} {program.name!r}" if program.name else str(program.number)


def open_input(
    target: str, *, probe_timeout_s: float, stop: threading.Event,
    stall_warning_s: float = math.inf, stall_end_s: float = 0.0, ca_file: Path | None = None,
) -> tuple[av.container.InputContainer, ByteSource | None]:
    """Open and probe INPUT. Raises InputError for an empty, silent or unrecognisable input, or
    a TLS input whose certificate is refused (``ca_file``: --input-ca; ``tls_options``).

    stdin, a FIFO, and a regular file that starts with MPEG-TS packets, are read through a
    ByteSource (the fast path's bytes, the program watch, the probe timeout); anything else is
    FFmpeg's to read (URLs, seekable files).
    A path that exists is a file, colons and all (``cam:1.ts``, which FFmpeg alone would take for
    protocol ``cam:``). Anything else that starts with a scheme (``rtmp://``, ``file:``, ``pipe:0``,
    ``concat:``) is FFmpeg's (RFC 3986 3.1); what does not is a missing path: InputError "cannot
    open PATH: No such file or directory".
    """
    try:
        mode = 0 if target == "-" else _mode(target)
        if target == "-":
            fd, name = 0, "stdin"
        elif stat.S_ISFIFO(mode):
            # Opened without waiting for a writer: until one writes, select() finds nothing to
            # read, and the probe timeout runs as it does on stdin.
            fd, name = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), target
        elif stat.S_ISREG(mode) and (fd := _open_mpegts_file(target)) is not None:
            name = target
        else:
            url = _ffmpeg_url(target, exists=mode != 0)
            level = av.logging.get_level()  # FFmpeg's error lines on for the open: its error names the last one
            av.logging.set_level(av.logging.ERROR if level is None or level < av.logging.ERROR else level)
            try:
                container = av.open(url, "r", timeout=(probe_timeout_s, stall_end_s or None),
                                    options=tls_options(url, ca_file))
            finally:
                av.logging.set_level(level)
            if container.format.name == "hls":
                log.warning("%s is HLS: FFmpeg's HLS reader fetches the playlists and segments it names without"
                            " checking their TLS certificates (it does not pass --input-ca on to them); read HLS"
                            " only from a source and network you trust", shown_input(target))
            return container, None
        source = ByteSource(fd, name, probe_timeout_s=probe_timeout_s, stop=stop,
                            stall_warning_s=stall_warning_s, stall_end_s=stall_end_s)
        try:
            return probe_source(source), source
        except BaseException:
            source.close()
            raise
    except av.error.ProtocolNotFoundError:
        scheme, shown = target.partition(":")[0], shown_input(target)
        if "://" not in target:
            raise InputError(f"cannot open {shown}: no such file, and FFmpeg has no protocol {scheme}:") from None
        raise InputError(f"{shown}: the FFmpeg hls-segment carries cannot open {scheme}:// URLs; have the ffmpeg "
                         f"command line read it and pipe it in: ffmpeg -i '{shown}' -c copy -f mpegts - | "
                         f"hls-segment - SEGMENT_DURATION ...") from None
    except av.error.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)
        log_line = getattr(error, "log", None)  # (level, FFmpeg's component, message) of its last error line
        said = log_line[2].strip() if log_line else reason
        if (log_line and log_line[1] == "tls") or urlsplit(target).scheme in TLS_SCHEMES:
            refused, fix = _tls_diagnosis(target, ca_file, said)
            if fix is not None:
                what = "its TLS certificate is refused" if refused else "TLS failed"
                raise InputError(f"cannot open {shown_input(target)}: {what} ({said}): {fix}") from None
            if log_line and log_line[1] == "tls":
                raise InputError(f"cannot open {shown_input(target)}: TLS failed ({said}) against"
                                 f" {_trusted(ca_file)}") from None
        if isinstance(error, (OSError, av.error.HTTPClientError, av.error.HTTPServerError, av.error.HTTPError)):
            # The system's or the server's answer (a refused connection, a timeout, no such file,
            # HTTP 404): nothing was read to judge the media by.
            raise InputError(f"cannot open {shown_input(target)}: {reason}") from None
        raise InputError(f"{shown_input(target)} is not MPEG-TS or any media FFmpeg recognises ({reason})") from None
    except OSError as error:  # a file that cannot be opened
        raise InputError(f"cannot open {target}: {error.strerror or error}") from None


# The schemes of FFmpeg's protocols that speak TLS from their first byte, with their default
# ports: the ffmpeg command line takes its TLS options for these alone.
TLS_SCHEMES = {"https": 443, "tls": None, "rtmps": 443}
# Where distributions keep their CA bundle, for when Python's ssl names no CA file
# (ssl.get_default_verify_paths): Debian and Ubuntu, Fedora and RHEL, Alpine and macOS, SUSE.
_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem",
               "/etc/ssl/ca-bundle.pem")


def input_ca_file(ca_file: Path | None) -> str | None:
    """The CA file a URL input's certificate is checked against: ``ca_file`` (--input-ca), else the
    one Python's ssl trusts (SSL_CERT_FILE, or OpenSSL's default), else a distribution's bundle;
    None when there is none. The GnuTLS in PyAV's wheels must be given one: its own default is
    where its build host keeps one (/etc/pki/tls/cert.pem)."""
    if ca_file is not None:
        return str(ca_file)
    return ssl.get_default_verify_paths().cafile or next((path for path in _CA_BUNDLES if os.path.isfile(path)), None)


def tls_options(url: str, ca_file: Path | None) -> dict[str, str]:
    """FFmpeg's options that make it verify the TLS certificate of a URL input (chain, dates and
    host name; FFmpeg's own default is to verify nothing) against ``input_ca_file(ca_file)``.
    Given for every URL, so that an http:// input redirected to https:// is verified too;
    protocols without TLS leave them unused. {} for a file (``file:``)."""
    if url.startswith("file:"):
        return {}
    cafile = input_ca_file(ca_file)
    return {"tls_verify": "1", **({"ca_file": cafile} if cafile else {})}


def _trusted(ca_file: Path | None) -> str:
    """The CA file a URL input is checked against, as an error names it."""
    if ca_file is not None:
        return f"--input-ca {ca_file}"
    cafile = input_ca_file(None)
    return f"the CA file {cafile}" if cafile else "no CA file (give --input-ca)"


def _tls_diagnosis(url: str, ca_file: Path | None, said: str) -> tuple[bool, str | None]:
    """What is wrong with the TLS of an https://, rtmps:// or tls:// ``url``'s server, found by a
    handshake of Python's ssl against the CA file FFmpeg was given (``input_ca_file``; an
    intermediate there is an anchor, as GnuTLS takes it): (whether its certificate is refused,
    the operator's fix), or (False, None) when that handshake finds nothing wrong or cannot be
    made. FFmpeg's GnuTLS says only "Peer certificate failed verification" for most of these;
    its ``said`` line is believed where it is precise (a name it does not carry)."""
    parts = urlsplit(url)
    port = parts.port or TLS_SCHEMES.get(parts.scheme)
    other_name = f"it does not name {parts.hostname}: give INPUT a host name its certificate carries"
    if "does not match hostname" in said:
        return True, other_name
    if parts.scheme not in TLS_SCHEMES or not parts.hostname or port is None:
        return False, None  # (an http:// input redirected: the server refused is another one)
    context = ssl.create_default_context(cafile=input_ca_file(ca_file))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        with socket.create_connection((parts.hostname, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname):
            return False, None
    except (OSError, ValueError) as error:
        failure, detailed = tls_failure(error), detail(error)
    refusals = {
        TlsFailure.OTHER_NAME: other_name,
        TlsFailure.OUT_OF_DATES: f"it, or a CA certificate of its chain, is out of its dates ({detailed}): renew it, or"
                                 " check this host's clock",
        TlsFailure.UNTRUSTED: f"no CA in {_trusted(ca_file)} signed it (or the server does not send its intermediate"
                              " certificate)" + ("" if ca_file else ": --input-ca names the CA that does"),
        TlsFailure.REFUSED: detailed,
    }
    others = {
        TlsFailure.CERTIFICATE_REQUIRED: "the server asks for a client certificate, which hls-segment does not give",
        TlsFailure.PROTOCOL_VERSION: "the server and hls-segment share no TLS version",
        TlsFailure.NOT_TLS: "the server does not speak TLS on that port: http://, or another port?",
    }
    if failure in refusals:
        return True, refusals[failure]
    return False, others.get(failure) if failure is not None else None


# Query parameters whose values are secrets, by the end of their name (SRT's passphrase, a signed
# URL's X-Amz-Signature and X-Amz-Credential, tokens, keys).
_SECRET_QUERY = re.compile(
    r"((?:^|[&;])[^=&;]*(?:passphrase|password|passwd|pass|pwd|secret|token|key|auth|sig|signature|credential)=)"
    r"[^&;]*", re.I)


def shown_input(target: str) -> str:
    """INPUT as logs and errors show it: a URL's password (RFC 3986 3.2.1 userinfo) and the values
    of query parameters that carry secrets (passphrase, password, token, key, signature...) as
    ``***``; a path as it is."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=_SECRET_QUERY.sub(r"\1***", parts.query)))


# A URI scheme (RFC 3986 3.1), as FFmpeg's protocols are named before their colon.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _mode(target: str) -> int:
    """The st_mode of what path ``target`` names (symbolic links followed), 0 for nothing there."""
    try:
        return os.stat(target).st_mode
    except OSError:
        return 0


def _ffmpeg_url(target: str, *, exists: bool) -> str:
    """What FFmpeg is given to open INPUT ``target``: an existing path as ``file:PATH`` (FFmpeg
    would take ``cam:1.ts`` for protocol ``cam``), a URL or protocol form as it is. Raises
    FileNotFoundError for anything else, a path that does not exist."""
    if exists:
        return f"file:{target}"
    if _SCHEME.match(target):
        return target
    os.stat(target)  # raises: no such file (or a parent directory that is none)
    return f"file:{target}"  # there by now


def _open_mpegts_file(target: str) -> int | None:
    """A read-only descriptor of regular file ``target`` if it starts with MPEG-TS packets (sync
    bytes 188 apart), else None: FFmpeg then opens it itself, seekable."""
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    if find_sync(os.pread(fd, TS_PACKET_BYTES * RESYNC_PACKETS, 0), 0) == 0:
        return fd
    os.close(fd)
    return None


def probe_source(source: ByteSource) -> av.container.InputContainer:
    """Probe what ``source`` reads (at the start, or after a program change)."""
    try:
        container = av.open(source, "r", buffer_size=64 * 1024)
    except av.error.FFmpegError as error:
        if source.bytes_read == 0:
            raise InputError(f"{source.name} is empty: it ended before any byte arrived (expected MPEG-TS)") from None
        reason = getattr(error, "strerror", None) or str(error)
        raise InputError(f"{source.name} is not MPEG-TS or any media FFmpeg recognises ({reason})") from None
    source.probed(container.format.name)
    return container


def describe(container: av.container.InputContainer, program: int | None = None) -> InputDescription:
    """The audio and video streams of one program (``program``, else as ``choose_program`` says),
    in input order, with their codecs and video geometry, and the timed metadata and SCTE-35
    streams of that program to copy along (``data``). Raises InputError for a ``program`` the input
    does not have, or a program with no audio or video stream."""
    streams: list[StreamInfo] = []
    codec_strings: list[str | None] = []
    skipped: list[str] = []
    data: list[DataStream] = []
    resolution: str | None = None
    frame_rate: float | None = None
    wraps = container.format.name == "mpegts"
    programs = input_programs(container)
    chosen, choice = choose_program(programs, lambda index: container.streams[index].type == "video", program)
    # With several programs only the chosen one's streams are copied; with one, every stream.
    copied = set(chosen.streams) if chosen is not None and len(programs) > 1 else None
    for stream in container.streams:
        if copied is not None and stream.index not in copied:
            continue
        kind = {"video": StreamKind.VIDEO, "audio": StreamKind.AUDIO}.get(stream.type)
        context = stream.codec_context
        if stream.type == "data" and stream.name in DATA_KINDS:
            data.append(DataStream(stream.index, stream.name, stream.id))
            continue
        if kind is None or context is None:
            skipped.append(f"#{stream.index} ({stream.type})")
            continue
        time_base = stream.time_base or Fraction(1, 90000)
        streams.append(StreamInfo(stream.index, kind, Fraction(time_base), wraps=wraps and time_base == Fraction(1, 90000)))
        level = getattr(context, "level", None)
        codec_strings.append(codec_string(context.codec.canonical_name, context.extradata, context.profile, level,
                                          sample_rate=getattr(context, "sample_rate", None)))
        if kind is StreamKind.VIDEO and resolution is None and context.width and context.height:
            resolution = f"{context.width}x{context.height}"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate and 0 < rate <= 1000:
                frame_rate = round(float(rate), 3)
    if not streams:
        found = ", ".join(skipped) or "no streams"
        raise InputError(f"input has no audio or video stream to segment ({found})")
    return InputDescription(
        streams=tuple(streams),
        format_name=container.format.name,
        codecs=codecs_list(codec_strings),
        resolution=resolution,
        frame_rate=frame_rate,
        skipped=tuple(skipped),
        data=tuple(data),
        program=chosen.number if chosen is not None else None,
        program_choice=choice,
    )
