"""The MPEG-TS fast path at the edges of its input: pause filling across a new timeline, PES
headers at the very end of a packet or split across two, adaptation field and PES extensions,
keyframes and parameter sets where the NAL units start late or oddly, PSI edge cases, metadata
units that straddle cuts or lost their start."""

from __future__ import annotations

import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial

import pytest

from segmenter.psi import crc32_mpeg2, payload_offset, section
from segmenter.randomaccess import ParameterWatch, VideoCodec, sequence_parameter_set
from segmenter.silence import AUDIO_OVER_FILLER, LATE_UNIT_DROPPED
from segmenter.tsfast import CLOSE, DATA, DROPPED, OPEN, SKIPPED, STREAM_TYPE_H264, NotEligible, ProgramMap
from tests.support.media import MediaCache

from .test_parameter_changes import CHANGES, changing_ts
from .test_psi import pmt_section, psi_packet
from .test_silence import adts_frames, pes_packets, pes_units, pts_field, ts_packet
from .test_tsfast import (
    FPS,
    TICKS,
    TS_PACKET_BYTES,
    as_second_video_stream,
    assert_each_pes_whole_where_it_started,
    audio_start_first,
    find_program,
    get_timestamp,
    interleave,
    packet_pid,
    packets,
    packets_by_pid,
    pes_header_at,
    shift_timestamps,
    split,
    without_random_access_indicators,
)
from .ts_surgery import ID3_PID, SCTE35_PID, Insertion, add_metadata, id3_tag, pes_pts, renumbered, splice_info_section

FRAME = 1920  # an AAC frame at 48 kHz, in 90 kHz ticks
SECOND = 90000


def audio_units(files: dict[int, bytearray], pid: int) -> list[tuple[int, int, bytes]]:
    """(segment, PTS, payload) of each PES of ``pid`` in the segments, in order."""
    found = []
    for number in sorted(files):
        for unit in pes_units(packets_by_pid(bytes(files[number]))[pid]):
            found.append((number, get_timestamp(unit, 9), unit[9 + unit[8] :]))
    return found


def timeline_is_gapless(units: list[tuple[int, int, bytes]]) -> bool:
    """Whether ``units`` (segment, PTS, ADTS payload), sorted by PTS, are one frame after the
    other: no hole, no overlap."""
    ends = sorted((pts, pts + FRAME * adts_frames(payload)) for _, pts, payload in units)
    return all(abs(b[0] - a[1]) <= 1 for a, b in zip(ends, ends[1:]))


def test_the_muxers_late_unit_still_arriving_at_a_new_timeline_goes_on_whole_as_it_came(media: MediaCache) -> None:
    """The audio stops 2.5 s before the picture; the PES the muxer wrote late, at the end of
    the input's first part, has a null packet between its first two packets and its last packet
    after the first picture of the second part, whose streams all jump 60 s on. The PES goes
    whole, as it came, into the new timeline's first segment; the null packet into the newest
    segment when it came, the old timeline's last."""
    part = media.encoder_ts(seconds=8, audio_gap=(5.5, 9)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(part).streams)
    later = media.encoder_ts(seconds=8, audio_gap=(1, 3)).read_bytes()
    later = shift_timestamps(shift_timestamps(later, video_pid, 0, 60 * SECOND), audio_pid, 0, 60 * SECOND)
    head, late = packets(part)[:-3], packets(part)[-3:]
    assert [packet_pid(p) for p in late] == [audio_pid] * 3 and late[0][1] & 0x40
    rest = packets(later)
    jump = next(i for i, p in enumerate(rest) if packet_pid(p) == video_pid and p[1] & 0x40) + 1
    null = b"\x47\x1f\xff\x10" + b"\xff" * 184
    data = b"".join([*head, late[0], null, late[1], *rest[:jump], late[2], *rest[jump:]])
    files, events, _ = split(data, 2, silence=True)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4 + [True] + [False] * 3
    assert not [e for e in events if e[0] == DROPPED]
    assert {n for n, f in files.items() if null in packets(bytes(f))} == {4}
    audio = packets_by_pid(bytes(files[5]))[audio_pid]
    assert audio[audio.index(late[0]) :][:3] == late
    assert all(late[0] not in packets(bytes(files[n])) for n in files if n != 5)


def pes_packet_runs(pid_packets: list[bytes]) -> list[list[bytes]]:
    """The packets of one PID grouped by PES packet: each group from a PUSI packet on."""
    runs: list[list[bytes]] = []
    for packet in pid_packets:
        if packet[1] & 0x40 or not runs:
            runs.append([])
        runs[-1].append(packet)
    return runs


@pytest.mark.parametrize("interleaved", [False, True])
def test_a_pause_is_not_filled_across_a_new_timeline(media: MediaCache, interleaved: bool) -> None:
    """The audio stops 2.5 s before the picture; then every stream jumps 60 s on, and the audio
    pauses from 1 to 3 s of the new timeline. Each pause is filled on its own timeline only. The
    PES the muxer wrote late, just before the jump, ends the old timeline: moved to where its
    filler got to, in its last segment, as the PyAV path writes it; when interleaved, its packets
    still arriving after the jump, it goes on as it came, whole, its PTS not moved onto the new
    timeline."""
    part = media.encoder_ts(seconds=8, audio_gap=(5.5, 9)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(part).streams)
    later = media.encoder_ts(seconds=8, audio_gap=(1, 3)).read_bytes()
    later = shift_timestamps(shift_timestamps(later, video_pid, 0, 60 * SECOND), audio_pid, 0, 60 * SECOND)
    data = interleave(part + later) if interleaved else part + later
    files, events, _ = split(data, 2, silence=True)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4 + [True] + [False] * 3
    assert not [e for e in events if e[0] == DROPPED]
    inputs = [(get_timestamp(unit, 9), unit[9 + unit[8] :]) for unit in pes_units(packets_by_pid(data)[audio_pid])]
    units = audio_units(files, audio_pid)
    real = [(n, pts, payload) for n, pts, payload in units if payload in {p for _, p in inputs}]
    filler = [(n, pts) for n, pts, payload in units if payload not in {p for _, p in inputs}]
    assert Counter(payload for _, _, payload in real) == Counter(payload for _, payload in inputs)
    video = [get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(part)[video_pid])]
    end = max(video) + 3600  # the end of the picture on the first timeline
    old = [pts for n, pts in filler if n <= 4]
    new = [pts for n, pts in filler if n > 4]
    assert old and max(old) + FRAME <= end  # the first pause, no further
    second = sorted(pts for pts, _ in inputs if pts > 60 * SECOND)
    paused, resumed = next((a, b) for a, b in zip(second, second[1:]) if b - a > SECOND)
    assert paused <= min(new) and max(new) < resumed  # the second pause only
    # The new timeline's audio is filled up to the resumed audio, its late PES moved behind the filler.
    assert timeline_is_gapless([u for u in units if u[1] > 60 * SECOND])
    moved = [(n, pts) for n, pts, payload in real if (pts, payload) not in inputs]
    assert [pts > 60 * SECOND for _, pts in moved] == ([True] if interleaved else [False, True])
    if not interleaved:
        assert moved[0][0] == 4 and timeline_is_gapless([u for u in units if u[1] < 60 * SECOND])



def test_audio_held_for_the_next_segment_when_every_stream_jumps_is_left_out_whole(media: MediaCache) -> None:
    """The audio muxed 0.3 s ahead of the picture (timed later than the video beside it) and
    interleaved, so that the audio timed past each segment's target is held for the next cut
    while its last PES is still arriving; then every stream jumps 60 s on. The old timeline's
    audio held when the jump comes is left out, each such PES whole: none of its packets in any
    segment, every other PES whole where it started."""
    part = media.ts(seconds=8, gop_seconds=2, fps=FPS, audio_bitrate=192_000).read_bytes()
    later = shift_timestamps(shift_timestamps(part, 0x100, 0, 60 * SECOND), 0x101, 0, 60 * SECOND)
    data = interleave(shift_timestamps(part + later, 0x101, 0, 3 * SECOND // 10))
    files, events, _ = split(data, 2)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4 + [True] + [False] * 3
    dropped = [e[1:] for e in events if e[0] == DROPPED]
    assert dropped and set(dropped) == {(1, "from before the timestamp jump")}
    assert_each_pes_whole_where_it_started(data, files)
    written = [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x101]]
    gone = [unit for unit in pes_packet_runs(packets_by_pid(data)[0x101]) if unit[0] not in written]
    assert len(gone) == len(dropped) and any(len(unit) > 1 for unit in gone)
    assert len(written) == len(packets_by_pid(data)[0x101]) - sum(map(len, gone))
    assert all(get_timestamp(unit[0], pes_header_at(unit[0]) + 9) < 60 * SECOND for unit in gone)


def with_audio_pes_lengthened(data: bytes, pts: int, times: int) -> bytes:
    """``data`` with the audio PES (PID 0x101) at ``pts`` carrying its payload ``times`` over,
    written as FFmpeg writes it (one run of packets); the PID's continuity counters renumbered."""
    source = packets(data)
    at = next(i for i, p in enumerate(source) if packet_pid(p) == 0x101 and p[1] & 0x40
              and get_timestamp(p, pes_header_at(p) + 9) == pts)
    end = next((i for i in range(at + 1, len(source))
                if packet_pid(source[i]) != 0x101 or source[i][1] & 0x40), len(source))
    (pes,) = pes_units(source[at:end])
    out = source[:at] + pes_packets(pes[9 + pes[8] :] * times, pts) + source[end:]
    return renumbered([bytearray(p) for p in out], 0x101)


def test_the_muxers_late_unit_that_would_reach_the_resumed_audio_is_left_out(media: MediaCache) -> None:
    """The audio pausing from 2.5 s to 6 s, and the PES the muxer wrote late, just before the
    pause, made 63 frames long (1.3 s): moved to where its filler got to, it would reach the
    resumed audio. It is left out and reported so, by the audio's stream index; silence fills
    its time and the pause, up to the resumed audio."""
    data = media.encoder_ts(seconds=10, audio_gap=(2.5, 6)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    assert (video_pid, audio_pid) == (0x100, 0x101)
    starts = [get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(data)[audio_pid])]
    paused = next(a for a, b in zip(starts, starts[1:]) if b - a > SECOND)
    longer = with_audio_pes_lengthened(data, paused, 9)
    files, events, _ = split(longer, 2, silence=True)
    assert [e for e in events if e[0] == DROPPED] == [(DROPPED, 1, LATE_UNIT_DROPPED)]
    late = next(unit[9 + unit[8] :] for unit in pes_units(packets_by_pid(longer)[audio_pid])
                if get_timestamp(unit, 9) == paused)
    units = audio_units(files, audio_pid)
    assert late not in [payload for _, _, payload in units] and timeline_is_gapless(units)
    assert len(units) > len(starts)


def test_a_pause_is_filled_alike_when_every_piece_of_input_begins_with_an_audio_packet(media: MediaCache) -> None:
    """The audio pausing from 2.5 s to 6 s, and the input read in pieces that each begin with an
    audio packet: the segments are those of the input read in one go, the pause filled alike."""
    data = media.encoder_ts(seconds=10, audio_gap=(2.5, 6)).read_bytes()
    starts = tuple(i * TS_PACKET_BYTES for i, p in enumerate(packets(data)) if packet_pid(p) == 0x101)
    expected, _, _ = split(data, 2, silence=True, chunk=len(data))
    files, _, _ = split(data, 2, silence=True, breaks=starts)
    assert files == expected and len(files) == 5
    assert len(audio_units(files, 0x101)) > len(pes_units(packets_by_pid(data)[0x101]))


def test_with_the_frame_duration_unknown_silence_ends_by_the_last_pictures_decode_time(media: MediaCache) -> None:
    """The tone stops 2.5 s before the picture does, the video's frame duration not known, and
    the picture's timestamps moved so that the last picture's decode time is one tick short of a
    whole number of audio frames after the tone's end: the silence stops at the last whole frame
    before that time, never a tick past it."""
    data = media.encoder_ts(seconds=8, audio_gap=(5.5, 9)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    real = [(get_timestamp(unit, 9), unit[9 + unit[8] :]) for unit in pes_units(packets_by_pid(data)[audio_pid])]
    audio_end = max(pts + FRAME * adts_frames(payload) for pts, payload in real)
    last = [p for p in packets_by_pid(data)[video_pid] if p[1] & 0x40][-1]
    assert not last[pes_header_at(last) + 7] & 0x40  # no B-frames: its DTS is its PTS
    shift = (FRAME - 1 - (get_timestamp(last, pes_header_at(last) + 9) - audio_end)) % FRAME
    moved = shift_timestamps(data, video_pid, 0, shift)
    clock = get_timestamp(last, pes_header_at(last) + 9) + shift
    assert (clock - audio_end) % FRAME == FRAME - 1
    files, events, _ = split(moved, 2, silence=True, frame_ticks=None)
    assert not [e for e in events if e[0] == DROPPED]
    units = audio_units(files, audio_pid)
    end = max(pts + FRAME * adts_frames(payload) for _, pts, payload in units)
    assert timeline_is_gapless(units) and len(units) > len(real)
    assert clock - FRAME < end <= clock

# -- PES headers at the end of a packet, or split across two ------------------------------------

def with_pes_headers_at(data: bytes, choose: Callable[[int, int, bytes], int | None], *,
                        extension: bool = False, rewrite: Callable[[bytes], bytes] | None = None) -> bytes:
    """``data`` with the first packet of some PES packets of the video (0x100) and audio (0x101)
    PIDs stuffed by its adaptation field so that the PES start code is at byte ``offset`` of it,
    ``offset = choose(pid, n, packet)`` for the PID's ``n``-th PES, starting in ``packet`` (None:
    left as it is); with ``extension``, its adaptation field has an (empty) adaptation field
    extension too; ``rewrite`` makes its PES packet's first bytes anew. What no longer fits goes
    into a packet of its own after it; each PID's continuity counters are renumbered."""
    out: list[bytearray] = []
    count: dict[int, int] = defaultdict(int)
    for packet in packets(data):
        pid = packet_pid(packet)
        if pid not in (0x100, 0x101) or not packet[1] & 0x40:
            out.append(bytearray(packet))
            continue
        at = pes_header_at(packet)
        offset = choose(pid, count[pid], packet)
        count[pid] += 1
        if offset is None:
            out.append(bytearray(packet))
            continue
        flags = packet[5] if packet[3] & 0x20 and packet[4] else 0
        assert not flags & 0x0F, "only a PCR and flags to carry over"
        pcr = packet[6:12] if flags & 0x10 else b""
        fields = bytes([flags | extension]) + pcr + (b"\x01\x1f" if extension else b"")  # extension: no flag set
        assert len(fields) <= offset - 5
        payload = packet[at:] if rewrite is None else rewrite(packet[at:])
        out.append(bytearray(packet[:3]) + bytes([0x30, offset - 5]) + fields + b"\xff" * (offset - 5 - len(fields))
                   + payload[: TS_PACKET_BYTES - offset])
        rest = payload[TS_PACKET_BYTES - offset :]
        if rest:
            head = bytes([0x47, packet[1] & ~0x40 & 0xFF, packet[2]])
            if len(rest) == 184:
                out.append(bytearray(head + b"\x10" + rest))
            else:
                stuffing = 183 - len(rest)
                out.append(bytearray(head + bytes([0x30, stuffing]) + (b"\x00" + b"\xff" * (stuffing - 1))[:stuffing]
                                     + rest))
    counters: dict[int, int] = defaultdict(int)
    for packet in out:
        pid = packet_pid(packet)
        if pid in (0x100, 0x101):
            packet[3] = (packet[3] & 0xF0) | counters[pid]
            counters[pid] = (counters[pid] + 1) & 0x0F
    assert all(len(p) == TS_PACKET_BYTES for p in out)
    return b"".join(out)


def header_bytes(packet: bytes) -> int:
    """The length of the PES header starting in ``packet``."""
    return 9 + packet[pes_header_at(packet) + 8]


def is_keyframe(packet: bytes) -> bool:
    return bool(packet[3] & 0x20 and packet[4] and packet[5] & 0x40)


def pes_counts(files: dict[int, bytearray]) -> list[tuple[int, int]]:
    """How many video and audio PES packets each segment holds."""
    return [tuple(sum(1 for p in packets_by_pid(bytes(files[n]))[pid] if p[1] & 0x40)  # type: ignore[misc]
                  for pid in (0x100, 0x101)) for n in sorted(files)]


@pytest.mark.parametrize("b_frames", [0, 2])
def test_a_pes_header_that_ends_with_its_first_packet_is_read_whole(media: MediaCache, b_frames: int) -> None:
    """Every PES header moved to the very end of its first packet (a PTS, or with B-frames a PTS
    and a DTS, as its last bytes), its payload in the next: the segments are cut where and
    timed as they are without the move."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS, b_frames=b_frames).read_bytes()
    moved = with_pes_headers_at(data, lambda pid, n, packet: TS_PACKET_BYTES - header_bytes(packet))
    plain, expected, last = split(data, 2)
    files, events, end = split(moved, 2)
    assert [e[3] for e in events if e[0] == OPEN] == [e[3] for e in expected if e[0] == OPEN] and end == last
    assert pes_counts(files) == pes_counts(plain) and len(files) == 4
    assert not [e for e in events if e[0] == DROPPED]
    assert_each_pes_whole_where_it_started(moved, files)



def test_a_pause_is_filled_alike_when_each_pes_header_ends_with_its_first_packet(media: MediaCache) -> None:
    """Pictures in decode order (B-frames: a PTS and a DTS in each picture's PES header), the
    audio pausing from 2.5 s to 6 s, and every video PES header moved to the very end of its
    first packet: the pause is filled up to the same picture's decode time, each filler frame in
    the same segment, as without the move."""
    data = media.encoder_ts(seconds=10, audio_gap=(2.5, 6), b_frames=2).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    assert (video_pid, audio_pid) == (0x100, 0x101)
    moved = with_pes_headers_at(data, lambda pid, n, packet: TS_PACKET_BYTES - header_bytes(packet)
                                if pid == video_pid else None)
    starts = [p for p in packets_by_pid(moved)[video_pid] if p[1] & 0x40]
    assert sum(1 for p in starts if p[TS_PACKET_BYTES - 5] >> 4 == 1) > len(starts) // 2  # a DTS, its last bytes
    plain, expected, last = split(data, 2, silence=True)
    files, events, end = split(moved, 2, silence=True)
    assert [e[3] for e in events if e[0] == OPEN] == [e[3] for e in expected if e[0] == OPEN] and end == last
    assert audio_units(files, audio_pid) == audio_units(plain, audio_pid)
    assert len(audio_units(files, audio_pid)) > len(pes_units(packets_by_pid(data)[audio_pid]))

@pytest.mark.parametrize("b_frames", [0, 2])
def test_a_pes_header_split_across_packets_is_a_unit_without_timestamps_written_where_it_comes(
        media: MediaCache, b_frames: int) -> None:
    """Pictures other than keyframes and every third audio PES with a PES header split across
    two packets (ISO/IEC 13818-1 does not forbid it), cut after 9 to 18 bytes of it, or within the start
    code prefix: each is a unit without timestamps, written whole where it comes; the cuts and
    their timing are the same as without the split."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS, b_frames=b_frames).read_bytes()
    offsets = (170, 172, 175, 179, 180, 181, 185)

    def choose(pid: int, n: int, packet: bytes) -> int | None:
        if (pid == 0x100 and is_keyframe(packet)) or (pid == 0x101 and n % 3) or n > 150:
            return None
        return offsets[n % len(offsets)]

    split_up = with_pes_headers_at(data, choose)
    plain, expected, last = split(data, 2)
    files, events, end = split(split_up, 2)
    assert [e[3] for e in events if e[0] == OPEN] == [e[3] for e in expected if e[0] == OPEN] and end == last
    assert pes_counts(files) == pes_counts(plain)
    assert not [e for e in events if e[0] == DROPPED]
    assert_each_pes_whole_where_it_started(split_up, files)
    for pid in (0x100, 0x101):
        assert [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[pid]] == packets_by_pid(split_up)[pid]


@pytest.mark.parametrize("offset", [180, 185])
def test_a_keyframe_whose_pes_header_is_split_across_packets_is_no_cut_point(media: MediaCache, offset: int) -> None:
    """The keyframe at 4 s has its random_access_indicator but its PES header split across two
    packets: without a timestamp it cannot open a segment; the segment from 2 s goes on to the
    next keyframe. Watching the video's parameters changes nothing."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes()
    split_up = with_pes_headers_at(data, lambda pid, n, packet: offset if pid == 0x100 and n == 4 * FPS else None)
    assert is_keyframe(packets_by_pid(split_up)[0x100][next(
        i for i, p in enumerate(packets_by_pid(split_up)[0x100]) if p[1] & 0x40 and pes_header_at(p) == offset)])
    plain, _, _ = split(data, 2)
    files, events, _ = split(split_up, 2)
    watched, again, _ = split(split_up, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert files == watched and [e[:2] for e in events] == [e[:2] for e in again]
    assert [v for v, _ in pes_counts(plain)] == [2 * FPS] * 4
    video = [v for v, _ in pes_counts(files)]
    assert video[0] == 2 * FPS and video[1] > 2 * FPS and sum(video) == 8 * FPS  # 2 s to the next keyframe
    assert not [e for e in events if e[0] == DROPPED]
    assert_each_pes_whole_where_it_started(split_up, files)


def test_watching_parameters_that_never_change_cuts_on_the_grid_alone(media: MediaCache) -> None:
    """Keyframes every 2 s, segments of 6 s: with the video's parameters watched and never
    changing, the segments are those cut without the watch, none marked changed."""
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    plain, expected, _ = split(data, 6)
    files, events, _ = split(data, 6, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert files == plain and len(files) == 4
    assert [e[:6] for e in events if e[0] == OPEN] == [e[:6] for e in expected if e[0] == OPEN]
    assert [e[6][1] for e in events if e[0] == OPEN] == [False] * 4


# -- PSI ------------------------------------------------------------------------------------------

def pat_packet(entries: list[tuple[int, int]], counter: int = 0) -> bytes:
    """A PAT packet listing ``entries`` (program_number, PID; program 0 names the network PID)."""
    body = bytes([0x00, 0xB0, 9 + 4 * len(entries), 0x00, 0x01, 0xC1, 0x00, 0x00]) + b"".join(
        bytes([number >> 8, number & 0xFF, 0xE0 | (pid >> 8), pid & 0xFF]) for number, pid in entries)
    body += crc32_mpeg2(body).to_bytes(4, "big")
    return (bytes([0x47, 0x40, 0x00, 0x10 | counter, 0x00]) + body).ljust(TS_PACKET_BYTES, b"\xff")


def test_a_pat_naming_one_program_and_the_network_pid_is_copied_as_it_is(media: MediaCache) -> None:
    sdt, _, pmt, *rest = packets(media.ts(seconds=2, gop_seconds=2, fps=FPS).read_bytes())
    pat = pat_packet([(0, 0x0010), (1, 0x1000)])
    program = find_program(b"".join([sdt, pat, pmt, *rest]))
    assert (program.pat_packet, program.number, program.others, program.program_filter()) == (pat, 1, False, None)


def test_programs_sharing_a_pmt_pid_do_not_take_the_fast_path(media: MediaCache) -> None:
    """A PAT listing two programs on one PMT PID: which PMT is whose cannot be told."""
    sdt, _, pmt, *rest = packets(media.ts(seconds=2, gop_seconds=2, fps=FPS).read_bytes())
    for number in (None, 1, 2):
        with pytest.raises(NotEligible, match="share the PMT PID"):
            find_program(b"".join([sdt, pat_packet([(1, 0x1000), (2, 0x1000)]), pmt, *rest]), number)
    assert find_program(b"".join([sdt, pat_packet([(1, 0x1000), (2, 0x1100)]), pmt, *rest]), 1).others


def pid_packet(pid: int, *, payload: bool = True) -> bytes:
    """A packet of ``pid``: with a payload, or an adaptation field only (as a PCR-only PID sends)."""
    header = bytes([0x47, pid >> 8, pid & 0xFF])
    if payload:
        return header + b"\x10" + b"\x00" * 184
    return header + b"\x20" + bytes([183, 0x10]) + b"\x00" * 182


def test_the_chosen_programs_filter_keeps_its_pcr_pid_and_never_null_packets() -> None:
    """Of two programs, the chosen one's PCR on a PID of its own (0x1FF) is kept; a program
    without PCR (PCR_PID 0x1FFF) does not keep null packets for it."""
    pat = pat_packet([(1, 0x1000), (2, 0x1100)])
    stream = [pat, pid_packet(0x1000), pid_packet(0x1FF, payload=False), pid_packet(0x100), pid_packet(0x1FFF),
              pid_packet(0x1100), pid_packet(0x2FF, payload=False), pid_packet(0x200)]
    chunk = b"".join(stream)
    for pcr, kept in ((0x1FF, [0x1000, 0x1FF, 0x100]), (0x1FFF, [0x1000, 0x100]), (0x100, [0x1000, 0x100])):
        program = ProgramMap(pat, stream[1], 0x1000, pcr, ((0x100, STREAM_TYPE_H264),), number=1, others=True)
        only = program.program_filter()
        assert only is not None
        data, count = only.keep(chunk, len(stream))
        assert [packet_pid(p) for p in packets(data)] == [0, *kept] and count == len(kept) + 1, hex(pcr)


def with_streams_listed_in_reverse(data: bytes) -> bytes:
    """``data`` with each PMT (PID 0x1000) listing its elementary streams in reverse order (the
    audio before the video), its CRC made right."""
    out = []
    for packet in packets(data):
        if packet_pid(packet) == 0x1000 and packet[1] & 0x40:
            table = section(packet)
            assert table is not None
            position = 12 + (((table[10] & 0x0F) << 8) | table[11])
            entries = []
            while position + 5 <= len(table) - 4:
                end = position + 5 + (((table[position + 3] & 0x0F) << 8) | table[position + 4])
                entries.append(table[position:end])
                position = end
            body = table[: 12 + (((table[10] & 0x0F) << 8) | table[11])] + b"".join(reversed(entries))
            body += crc32_mpeg2(body).to_bytes(4, "big")
            offset = payload_offset(packet)
            assert offset is not None
            packet = (packet[: offset + 1 + packet[offset]] + body).ljust(TS_PACKET_BYTES, b"\xff")
        out.append(packet)
    return b"".join(out)


@pytest.mark.parametrize("interleaved", [False, True])
def test_a_pmt_listing_the_audio_first_is_cut_as_one_listing_the_video_first(
        media: MediaCache, interleaved: bool) -> None:
    """The same input, its PMT listing the audio before the video: the same segments, each
    audio PES whole in the segment it started in (when interleaved, straddling the cuts)."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    if interleaved:
        data = interleave(data)
    reversed_ = with_streams_listed_in_reverse(data)
    assert [pid for pid, _ in find_program(reversed_).streams] == [0x101, 0x100]
    files, events, last = split(data, 4)
    again, events_again, last_again = split(reversed_, 4)
    assert [e[:2] for e in events_again] == [e[:2] for e in events] and last_again == last
    assert sorted(again) == sorted(files) == [1, 2, 3]
    for number in files:
        for pid in (0x100, 0x101):
            assert packets_by_pid(bytes(again[number]))[pid] == packets_by_pid(bytes(files[number]))[pid]


def test_an_adaptation_field_extension_makes_no_keyframe(media: MediaCache) -> None:
    """Every picture but the keyframes with an adaptation field extension (and no
    random_access_indicator): segments of 3 s are still cut at keyframes only (every 2 s)."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    extended = with_pes_headers_at(data, lambda pid, n, packet: None if pid == 0x101 or is_keyframe(packet) else 24,
                                   extension=True)
    assert sum(1 for p in packets_by_pid(extended)[0x100] if p[3] & 0x20 and p[4] and p[5] & 0x01) == 12 * FPS - 6
    plain, expected, last = split(data, 3)
    files, events, end = split(extended, 3)
    assert pes_counts(files) == pes_counts(plain) and {v % (2 * FPS) for v, _ in pes_counts(files)} == {0}
    assert [e[3] for e in events if e[0] == OPEN] == [e[3] for e in expected if e[0] == OPEN] and end == last


def with_pes_extension(pes: bytes, *, pts: bool) -> bytes:
    """The first bytes of a PES packet with a PTS made to carry a PES extension (its flags
    only: no field follows), keeping its PTS or not; PES_packet_length follows."""
    length = (pes[4] << 8) | pes[5]
    optional = pes[9 : 9 + pes[8]]
    flags = (pes[7] if pts else pes[7] & 0x3F) | 0x01
    fields = (optional[:5] if pts else b"") + b"\x0e"  # PES_extension flags: none set, reserved bits '111'
    rest = pes[9 + pes[8] :]
    new_length = length + len(fields) - len(optional) if length else 0
    return pes[:4] + new_length.to_bytes(2, "big") + bytes([pes[6], flags, len(fields)]) + fields + rest


@pytest.mark.parametrize("pts", [True, False])
def test_a_pes_extension_is_no_timestamp(media: MediaCache, pts: bool) -> None:
    """Every third audio PES with PES_extension_flag set (with its PTS, or without one): the
    extension's bytes are not read as a DTS or a PTS; those units are written where they come,
    the segments cut and timed as without the extension."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes()

    def choose(pid: int, n: int, packet: bytes) -> int | None:
        return None if pid == 0x100 or n % 3 or n > 150 else pes_header_at(packet) + (0 if pts else 4)

    extended = with_pes_headers_at(data, choose, rewrite=partial(with_pes_extension, pts=pts))
    starts = [p for p in packets_by_pid(extended)[0x101] if p[1] & 0x40]
    assert sum(1 for p in starts if p[pes_header_at(p) + 7] & 0x01) > 30
    plain, expected, last = split(data, 2)
    files, events, end = split(extended, 2)
    assert [e[3] for e in events if e[0] == OPEN] == [e[3] for e in expected if e[0] == OPEN] and end == last
    assert pes_counts(files) == pes_counts(plain)
    assert not [e for e in events if e[0] == DROPPED]
    assert [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x101]] == packets_by_pid(extended)[0x101]


# -- metadata units ------------------------------------------------------------------------------

def test_an_id3_tag_begun_before_the_first_keyframe_and_ending_after_the_next_cut_keeps_segment_1_open(
        media: MediaCache) -> None:
    """An ID3 tag's first packet comes before the first keyframe, its other packets only after
    the cut at 2 s: it is whole in segment 1, which stays open for it and closes when the next
    tag starts (at 3 s, in segment 2): the tag is whole then."""
    early = Insertion(0, "id3", id3_tag("early", padding=400), before=1)
    later = Insertion(75, "id3", id3_tag("later"))
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), [early, later], fps=FPS)
    source = packets(data)
    rest = early.packets[1:]
    moved = [p for p in source if p not in rest]
    frame_60 = [i for i, p in enumerate(moved) if packet_pid(p) == 0x100 and p[1] & 0x40][60]
    data = b"".join(moved[:frame_60] + rest + moved[frame_60:])
    files, events, _ = split(data, 2)
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    assert found == {1: early.packets, 2: later.packets, 3: [], 4: []}
    order = [e[:2] for e in events if e[0] in (OPEN, CLOSE)]
    assert order[:3] == [(OPEN, 1), (OPEN, 2), (CLOSE, 1)]
    closed = events.index((CLOSE, 1, None, None, None))
    assert max(i for i, e in enumerate(events) if e[0] == DATA and e[1] == 1) < closed
    assert closed < next(i for i, e in enumerate(events) if e[0] == DATA and later.packets[0] in bytes(e[2]))
    assert not [e for e in events if e[0] == DROPPED]



def test_an_audio_pes_begun_before_the_first_keyframe_goes_on_in_segment_1_beside_an_id3_tag(
        media: MediaCache) -> None:
    """The first audio PES (three packets) has its first packet before the first keyframe, the
    rest after it; an ID3 tag's first packet comes before the keyframe too, its other packets
    only after the cut at 2 s. The audio PES is whole in segment 1, and segment 1 stays open
    for the tag until it is whole, then closes."""
    early = Insertion(0, "id3", id3_tag("early", padding=400), before=1)
    later = Insertion(75, "id3", id3_tag("later"))
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS, audio_bitrate=192_000).read_bytes(),
                        [early, later], fps=FPS)
    source = packets(data)
    video = next(i for i, p in enumerate(source) if packet_pid(p) == 0x100)
    audio = [i for i, p in enumerate(source) if packet_pid(p) == 0x101]
    assert audio[0] > video and not source[audio[1]][1] & 0x40 and not source[audio[2]][1] & 0x40
    source = source[:video] + [source[audio[0]]] + [p for i, p in enumerate(source) if i >= video and i != audio[0]]
    rest = early.packets[1:]
    moved = [p for p in source if p not in rest]
    frame_60 = [i for i, p in enumerate(moved) if packet_pid(p) == 0x100 and p[1] & 0x40][60]
    data = b"".join(moved[:frame_60] + rest + moved[frame_60:])
    files, events, _ = split(data, 2)
    assert packets_by_pid(bytes(files[1]))[0x101][:3] == packets_by_pid(data)[0x101][:3]
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    assert found == {1: early.packets, 2: later.packets, 3: [], 4: []}
    assert_each_pes_whole_where_it_started(data, files)
    closed = events.index((CLOSE, 1, None, None, None))
    assert max(i for i, e in enumerate(events) if e[0] == DATA and e[1] == 1) < closed
    assert not [e for e in events if e[0] == DROPPED]


def long_splice_info_section(events: range) -> bytes:
    """A splice_info_section (ANSI/SCTE 35 9.6) with a time_signal and a segmentation_descriptor
    for each of ``events``: more than one TS packet carries it."""
    table = splice_info_section(0, events[0])
    descriptor = table[-4 - 17 : -4]  # the one segmentation_descriptor, 17 bytes
    descriptors = b"".join(descriptor[:6] + event.to_bytes(4, "big") + descriptor[10:] for event in events)
    body = table[3 : -4 - 19] + len(descriptors).to_bytes(2, "big") + descriptors
    head = bytes([0xFC, 0x30 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF])
    return head + body + crc32_mpeg2(head + body).to_bytes(4, "big")


def test_two_metadata_units_begun_before_the_first_keyframe_both_keep_segment_1_open(media: MediaCache) -> None:
    """An ID3 tag and a SCTE-35 section (two packets each) have their first packet before the
    first keyframe and the rest after the cut at 2 s (the tag's at 2.4 s, the section's at 3.2 s,
    after the next tag started at 3 s): segment 1 stays open for both, each whole in it."""
    early = Insertion(0, "id3", id3_tag("early", padding=150), before=1)
    cue = Insertion(0, "scte35", long_splice_info_section(range(10)), before=1)
    later = Insertion(75, "id3", id3_tag("later"))
    next_cue = Insertion(90, "scte35", splice_info_section(0, 99))
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), [early, cue, later, next_cue],
                        fps=FPS)
    assert len(early.packets) == len(cue.packets) == 2
    source = [p for p in packets(data) if p not in (early.packets[1], cue.packets[1])]
    frames = [i for i, p in enumerate(source) if packet_pid(p) == 0x100 and p[1] & 0x40]
    data = b"".join(source[: frames[60]] + [early.packets[1]] + source[frames[60] : frames[80]] + [cue.packets[1]]
                    + source[frames[80] :])
    files, events, _ = split(data, 2)
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    assert found == {1: early.packets, 2: later.packets, 3: [], 4: []}
    cues = {n: [p for p in packets(bytes(f)) if packet_pid(p) == SCTE35_PID] for n, f in files.items()}
    assert cues == {1: cue.packets, 2: next_cue.packets, 3: [], 4: []}
    assert not [e for e in events if e[0] == DROPPED]


def with_pes_start_alone(data: bytes, unit: list[bytes], keep: int) -> bytes:
    """``data`` with the PES in ``unit`` (its packets, the first one alone, the others in one run)
    written anew: its first packet carrying only its first ``keep`` bytes behind adaptation field
    stuffing, the rest in packets after it; the PID's continuity counters renumbered."""
    pid = packet_pid(unit[0])
    pes = b"".join(p[payload_offset(p) or TS_PACKET_BYTES :] for p in unit)
    head = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x30, 183 - keep, 0x00]) + b"\xff" * (182 - keep)
    rest = [pes[start : start + 184] for start in range(keep, len(pes), 184)]
    made = [head + pes[:keep]] + [bytes([0x47, pid >> 8, pid & 0xFF, 0x10]) + piece if len(piece) == 184 else
                                  bytes([0x47, pid >> 8, pid & 0xFF, 0x30, 183 - len(piece)])
                                  + (b"\x00" + b"\xff" * (182 - len(piece)))[: 183 - len(piece)] + piece
                                  for piece in rest]
    source = packets(data)
    at, after = source.index(unit[0]), source.index(unit[1])
    out = [bytearray(p) for p in source[:at] + made[:1] + source[at + 1 : after] + made[1:]
           + source[after + len(unit) - 1 :]]
    return renumbered(out, pid)


@pytest.mark.parametrize("keep", [3, 5])
def test_an_id3_pes_whose_first_packet_carries_only_its_first_bytes_goes_whole_where_it_starts(
        media: MediaCache, keep: int) -> None:
    """Two ID3 tags whose PES's first packet carries only its first ``keep`` bytes (the start
    code prefix alone, or with the stream_id and half the PES_packet_length), the rest in the
    packets after: the one at 0.4 s whole in segment 1, the one begun before the keyframe that
    cuts at 4 s whole in segment 2, which stays open for it."""
    first = Insertion(10, "id3", id3_tag("first", padding=200))
    straddling = Insertion(100, "id3", id3_tag("straddling", padding=400), before=1, pts_offset=-3600)
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), [first, straddling], fps=FPS)
    data = with_pes_start_alone(with_pes_start_alone(data, straddling.packets, keep), first.packets, keep)
    tags = packets_by_pid(data)[ID3_PID]
    assert [TS_PACKET_BYTES - (payload_offset(p) or 0) for p in tags if p[1] & 0x40] == [keep, keep]
    files, events, _ = split(data, 2)
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    starts = [i for i, p in enumerate(tags) if p[1] & 0x40]
    assert found == {1: tags[: starts[1]], 2: tags[starts[1] :], 3: [], 4: []}
    assert not [e for e in events if e[0] == DROPPED]


def test_a_one_packet_id3_tag_after_a_longer_one_leaves_no_unit_open(media: MediaCache) -> None:
    """Audio PES interleaved across the cut at 2 s, and ID3 tags: two packets at 0.4 s, one
    packet at 1.8 s, then one right after the keyframe at 2 s. The one-packet tag leaves nothing
    open behind it: segment 1 closes only once its last audio PES is whole, every tag and PES
    whole in the segment it started in."""
    tags = [Insertion(10, "id3", id3_tag("long", padding=200)), Insertion(45, "id3", id3_tag("short")),
            Insertion(50, "id3", id3_tag("next"))]
    data = interleave(add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), tags, fps=FPS))
    assert [len(tag.packets) for tag in tags] == [2, 1, 1]
    files, events, _ = split(data, 2)
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    assert found == {1: tags[0].packets + tags[1].packets, 2: tags[2].packets, 3: [], 4: []}
    assert_each_pes_whole_where_it_started(data, files)
    assert not [e for e in events if e[0] == DROPPED]

# -- keyframes known by their NAL units ------------------------------------------------------------

def test_keyframes_of_a_second_video_stream_with_b_frames_are_known_by_their_nal_units(media: MediaCache) -> None:
    """No random_access_indicator, stream_id 0xE1 (which read as a NAL header would be a non-IDR
    slice), and B-frames: the PES headers of the keyframes carry a PTS and a DTS. The NAL units
    after the header still tell the keyframes: the segments are those of the input as it was."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS, b_frames=2).read_bytes()
    hidden = as_second_video_stream(data)
    keyframes = [p for p in packets_by_pid(data)[0x100] if is_keyframe(p)]
    assert keyframes and all(p[pes_header_at(p) + 7] & 0xC0 == 0xC0 for p in keyframes)
    expected, _, _ = split(data, 4)
    files, events, _ = split(hidden, 4)
    assert pes_counts(files) == pes_counts(expected) and len(files) == 3
    assert not [e for e in events if e[0] == DROPPED]


def test_keyframes_behind_adaptation_field_stuffing_are_known_by_their_nal_units(media: MediaCache) -> None:
    """No random_access_indicator, and each keyframe's PES header behind 20 more bytes of
    adaptation field stuffing: the keyframes are known by the NAL units after the PES header,
    the segments those of the input as it was."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    stuffed = without_random_access_indicators(with_pes_headers_at(
        data, lambda pid, n, packet: pes_header_at(packet) + 20 if pid == 0x100 and is_keyframe(packet) else None))
    assert not any(is_keyframe(p) for p in packets_by_pid(stuffed)[0x100])
    expected, _, _ = split(data, 4)
    files, events, _ = split(stuffed, 4)
    assert pes_counts(files) == pes_counts(expected) and len(files) == 3
    assert not [e for e in events if e[0] == DROPPED]

def without_access_unit_delimiter(pes: bytes) -> bytes:
    """The first bytes of a video PES packet opening with an access unit delimiter
    (00 00 00 01 09 f0) then a 4-byte start code: both gone but for the 3-byte start code
    (00 00 01) of the NAL unit after them."""
    start = 9 + pes[8]
    assert pes[start : start + 7] == b"\x00\x00\x00\x01\x09\xf0\x00" and not pes[4] and not pes[5]
    return pes[:start] + pes[start + 7 :]


def test_a_keyframe_whose_payload_opens_with_a_three_byte_start_code_is_known_by_it(media: MediaCache) -> None:
    """No random_access_indicator, and each keyframe's payload opening with its sequence
    parameter set behind a 3-byte start code (no access unit delimiter): the keyframes are known
    by it, the segments those of the input as it was, and so is the video's size and rate."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    opened = without_random_access_indicators(with_pes_headers_at(
        data, lambda pid, n, packet: pes_header_at(packet) + 7 if pid == 0x100 and is_keyframe(packet) else None,
        rewrite=without_access_unit_delimiter))
    starts = [p for p in packets_by_pid(opened)[0x100] if p[1] & 0x40]
    assert sum(1 for p in starts if p[pes_header_at(p) + header_bytes(p):][:4] == b"\x00\x00\x01\x67") == 6
    expected, watched, _ = split(data, 4, watch=ParameterWatch(VideoCodec.H264, TICKS))
    files, events, _ = split(opened, 4, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert pes_counts(files) == pes_counts(expected) and len(files) == 3
    assert not [e for e in events if e[0] == DROPPED]
    # The watch reads the sequence parameter set there too: each segment says what its video is.
    assert videos(events) == videos(watched) == [("320x240", FPS, False)] * 3


def videos(events: list[tuple]) -> list[tuple]:
    """Each segment's video as its OPEN event says: (size, frame rate, changed at its start)."""
    return [(p.parameters.resolution, p.frame_rate, changed) for _, _, _, _, _, _, (p, changed) in
            (e for e in events if e[0] == OPEN)]


def with_video_stream_id(data: bytes, stream_id: int) -> bytes:
    """``data`` with every video PES's stream_id made ``stream_id``."""
    out = [bytearray(packet) for packet in packets(data)]
    for packet in out:
        if packet_pid(packet) == 0x100 and packet[1] & 0x40:
            packet[pes_header_at(packet) + 3] = stream_id
    return b"".join(out)


@pytest.mark.parametrize("b_frames, stuffing", [(0, 0), (2, 0), (0, 20)])
def test_the_parameters_of_video_stream_7_are_read_from_its_pes_payload(
        media: MediaCache, b_frames: int, stuffing: int) -> None:
    """The video's PES carry stream_id 0xE7 (video stream number 7, ISO/IEC 13818-1 table 2-22),
    a byte that read as an H.264 NAL header would be a sequence parameter set: the parameters
    are read from the PES payload alone, and each segment says what its video is. So too with
    B-frames (a PTS and a DTS in the keyframes' PES headers), and with each keyframe's PES
    header behind ``stuffing`` more bytes of adaptation field stuffing."""
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS, b_frames=b_frames).read_bytes()
    if stuffing:
        data = with_pes_headers_at(data, lambda pid, n, packet: pes_header_at(packet) + stuffing
                                   if pid == 0x100 and is_keyframe(packet) else None)
    renumbered = with_video_stream_id(data, 0xE7)
    expected, watched, _ = split(data, 4, watch=ParameterWatch(VideoCodec.H264, TICKS))
    files, events, _ = split(renumbered, 4, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert pes_counts(files) == pes_counts(expected) and len(files) == 3
    assert videos(events) == videos(watched) == [("320x240", FPS, False)] * 3


def test_an_id3_pid_joined_mid_tag_has_its_stray_packets_in_the_newest_segment(media: MediaCache) -> None:
    """The ID3 PID's first packets in the input continue a tag whose start was lost (at 2.4 s,
    after the first cut): with no unit of the PID open they go into the newest segment, as the
    module doc says of every packet no unit claims."""
    tag = Insertion(60, "id3", id3_tag("joined", padding=400))
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), [tag], fps=FPS)
    assert len(tag.packets) == 3
    joined = b"".join(p for p in packets(data) if p != tag.packets[0])
    files, events, _ = split(joined, 2)
    found = {n: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for n, f in files.items()}
    assert found == {1: [], 2: tag.packets[1:], 3: [], 4: []}
    assert not [e for e in events if e[0] == DROPPED]


def with_keyframe_payload_spread(data: bytes, sizes: list[int]) -> bytes:
    """Every video keyframe PES's first packet made to carry its PES header alone, then packets
    carrying ``sizes`` bytes of its payload each, then the rest of what the first packet carried;
    the video's continuity counters renumbered."""
    out: list[bytearray] = []
    for packet in packets(data):
        if packet_pid(packet) == 0x100 and packet[1] & 0x40 and is_keyframe(packet):
            at = pes_header_at(packet)
            head, payload = packet[at : at + header_bytes(packet)], packet[at + header_bytes(packet) :]
            assert packet[4] == 7 and packet[5] & 0x10, "an adaptation field of flags and a PCR"
            stuffing = 184 - len(head) - 1
            out.append(bytearray(packet[:3]) + bytes([0x30, stuffing]) + packet[5:12] + b"\xff" * (stuffing - 7) + head)
            ends = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
            pieces = [payload[a:b] for a, b in zip(ends, ends[1:])] + [payload[ends[-1] :]]
            for piece in pieces:
                stuffing = 183 - len(piece)
                out.append(bytearray([0x47, 0x01, 0x00, 0x30, stuffing]) + (b"\x00" + b"\xff" * stuffing)[:stuffing]
                           + piece)
        else:
            out.append(bytearray(packet))
    assert all(len(p) == TS_PACKET_BYTES for p in out)
    return renumbered(out, 0x100)


@pytest.mark.parametrize("sizes", [[1] * 6, [12]])
@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_new_parameters_later_in_a_keyframes_pes_start_a_segment_that_says_so(
        media: MediaCache, kind: str, sizes: list[int]) -> None:
    """The sequence parameter set of each keyframe in its PES's 8th packet (the 2nd to 7th carry
    a byte each of the access unit delimiter), or split across its 2nd and 3rd (the 2nd carries
    the delimiter and the SPS's first bytes): it is read there, and the keyframe with new
    parameters starts a segment marked changed, as when it is in the first packet."""
    path, _, _ = changing_ts(media, kind)
    data = path.read_bytes()
    spread = with_keyframe_payload_spread(data, sizes)
    files, events, _ = split(spread, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    expected, again, _ = split(data, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert pes_counts(files) == pes_counts(expected)
    changed = [e[6][1] for e in events if e[0] == OPEN]
    assert changed == [e[6][1] for e in again if e[0] == OPEN] and changed.count(True) == 1
    assert not [e for e in events if e[0] == DROPPED]


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_new_parameters_in_the_last_packet_a_feed_brings_start_a_segment_that_says_so(
        media: MediaCache, kind: str) -> None:
    """Each keyframe's sequence parameter set in its PES's 8th packet, and the input read in
    pieces that end with that packet (the rest of the PES in the next piece): it is read there,
    and the keyframe with new parameters starts a segment marked changed."""
    path, _, _ = changing_ts(media, kind)
    data = path.read_bytes()
    spread = with_keyframe_payload_spread(data, [1] * 6)
    source = packets(spread)
    ends = [(i + 8) * TS_PACKET_BYTES for i, p in enumerate(source) if packet_pid(p) == 0x100 and is_keyframe(p)]
    assert all(packet_pid(p) == 0x100 for end in ends for p in source[end // TS_PACKET_BYTES - 8 : end // TS_PACKET_BYTES])
    files, events, _ = split(spread, 2, watch=ParameterWatch(VideoCodec.H264, TICKS), breaks=tuple(ends))
    expected, again, _ = split(data, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert pes_counts(files) == pes_counts(expected)
    changed = [e[6][1] for e in events if e[0] == OPEN]
    assert changed == [e[6][1] for e in again if e[0] == OPEN] and changed.count(True) == 1
    assert videos(events) == videos(again)



def test_a_pause_in_audio_the_video_never_joins_is_filled(media: MediaCache) -> None:
    """The program's video listed but none of its packets in the input, the audio pausing from
    4 to 6 s: the segments are cut on the audio alone, and the pause in it is filled with
    silence (there is no picture's clock to follow)."""
    data = media.encoder_ts(seconds=12, audio_gap=(4, 6)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    audio_only = b"".join(p for p in packets(data) if packet_pid(p) != video_pid)
    files, events, last = split(audio_only, 2, silence=True)
    assert len(files) == 4 and last is not None and last.without_reference
    inputs = [(get_timestamp(unit, 9), unit[9 + unit[8] :]) for unit in pes_units(packets_by_pid(audio_only)[audio_pid])]
    units = audio_units(files, audio_pid)
    assert timeline_is_gapless(units) and units[-1][1] - units[0][1] > 6 * SECOND
    filler = [pts for _, pts, payload in units if payload not in {p for _, p in inputs}]
    starts = sorted(pts for pts, _ in inputs)
    paused, resumed = next((a, b) for a, b in zip(starts, starts[1:]) if b - a > SECOND)
    assert filler and paused < min(filler) and max(filler) < resumed


def test_a_pause_in_audio_the_video_never_joins_is_filled_in_a_run_that_starts_a_new_timeline(
        media: MediaCache) -> None:
    """As the shell has every run's first segment start a new timeline: the program's video
    listed but none of its packets in the input, the first segment is cut on the audio, and the
    audio's pause from 8 to 10 s is filled with silence from the frame before it to the frame
    after it (there is no picture's clock to follow)."""
    data = media.encoder_ts(seconds=14, audio_gap=(8, 10)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    audio_only = b"".join(p for p in packets(data) if packet_pid(p) != video_pid)
    files, events, last = split(audio_only, 2, silence=True, new_run=True)
    assert [e[4] for e in events if e[0] == OPEN] == [True] + [False] * (len(files) - 1)
    assert last is not None and last.without_reference
    came = sorted(get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(audio_only)[audio_pid]))
    paused, resumed = next((a, b) for a, b in zip(came, came[1:]) if b - a > SECOND)
    units = audio_units(files, audio_pid)
    filler = [pts for _, pts, _ in units if pts not in came]
    assert timeline_is_gapless(units) and filler and paused < min(filler) and max(filler) < resumed


def test_a_track_that_stops_in_a_program_whose_video_never_comes_is_filled_from_its_last_frame(
        media: MediaCache) -> None:
    """The program's video listed but none of its packets in the input, and the second of its
    two audio tracks stopping at 8 s of 12 (no PES of it written late): its pause is filled with
    silence, gapless from its last frame on, never past the first track's end."""
    data = media.encoder_ts(seconds=12, second_audio_gap=(8, 13)).read_bytes()
    video_pid, first_pid, second_pid = (pid for pid, _ in find_program(data).streams)
    source = [p for p in packets(data) if packet_pid(p) != video_pid]
    last = max(i for i, p in enumerate(source) if packet_pid(p) == second_pid and p[1] & 0x40)
    stopped = b"".join(p for i, p in enumerate(source) if i < last or packet_pid(p) != second_pid)
    files, events, timing = split(stopped, 2, silence=True)
    assert timing is not None and timing.without_reference
    came = {get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(stopped)[second_pid])}
    units = audio_units(files, second_pid)
    filler = [pts for _, pts, _ in units if pts not in came]
    assert timeline_is_gapless(units) and filler and min(filler) > max(came)
    first = audio_units(files, first_pid)
    assert max(filler) + FRAME <= first[-1][1] + FRAME * adts_frames(first[-1][2])


def test_the_muxers_late_unit_over_silence_in_a_program_whose_video_never_comes_is_left_out(media: MediaCache) -> None:
    """As above, the muxer writing the second track's last PES late, after the first track's
    audio of 2 s later: silence was written for the pause by then, and with no picture's clock
    the PES cannot be told a late unit. It is left out and reported so, by the track's stream
    index, as the PyAV path leaves it: the track's audio has no overlap and no hole. (Cut as
    the shell runs it: the first segment starts a new timeline.)"""
    data = media.encoder_ts(seconds=12, second_audio_gap=(8, 13)).read_bytes()
    video_pid, first_pid, second_pid = (pid for pid, _ in find_program(data).streams)
    source = [p for p in packets(data) if packet_pid(p) != video_pid]
    starts = [(i, packet_pid(p), get_timestamp(p, pes_header_at(p) + 9)) for i, p in enumerate(source)
              if packet_pid(p) in (first_pid, second_pid) and p[1] & 0x40]
    last, _, pts = [s for s in starts if s[1] == second_pid][-1]
    assert any(i < last and pid == first_pid and t > pts + 2 * SECOND for i, pid, t in starts)
    files, events, _ = split(b"".join(source), 2, silence=True, new_run=True)
    assert [e for e in events if e[0] == DROPPED and e[2] == AUDIO_OVER_FILLER] == [(DROPPED, 2, AUDIO_OVER_FILLER)]
    late = pes_units(packets_by_pid(b"".join(source))[second_pid])[-1]
    units = audio_units(files, second_pid)
    assert late[9 + late[8] :] not in [payload for _, _, payload in units] and timeline_is_gapless(units)
    assert all(len(f) % TS_PACKET_BYTES == 0 and {p[0] for p in packets(bytes(f))} == {0x47} for f in files.values())


def test_a_track_whose_audio_was_left_out_over_silence_is_written_when_it_comes_back(media: MediaCache) -> None:
    """The input of the test above, then the same 12 s again, every timestamp 12 s on: the
    second track comes back at 13.4 s, after the late PES left out; every PES it sends from
    there is written (the second part's own late PES is left out in turn)."""
    data = media.encoder_ts(seconds=12, second_audio_gap=(8, 13)).read_bytes()
    video_pid, first_pid, second_pid = (pid for pid, _ in find_program(data).streams)
    once = b"".join(p for p in packets(data) if packet_pid(p) != video_pid)
    again = shift_timestamps(shift_timestamps(once, first_pid, 0, 12 * SECOND), second_pid, 0, 12 * SECOND)
    files, events, _ = split(once + again, 2, silence=True, new_run=True)
    assert [e for e in events if e[0] == DROPPED and e[2] == AUDIO_OVER_FILLER] == [(DROPPED, 2, AUDIO_OVER_FILLER)] * 2
    back = [get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(again)[second_pid])][:-1]
    written = {pts for _, pts, _ in audio_units(files, second_pid)}
    assert back and all(pts in written for pts in back)
    assert all(len(f) % TS_PACKET_BYTES == 0 and {p[0] for p in packets(bytes(f))} == {0x47} for f in files.values())


def test_garbage_right_after_the_inputs_first_packets_is_all_that_is_skipped(media: MediaCache) -> None:
    """The input's first three packets (fewer than the run of packets that finds the grid after
    lost sync), then 996 bytes of garbage (no sync byte in them): the packets are taken as the grid they start, the
    garbage alone is skipped, and the segments are those of the input without it."""
    data = media.ts(seconds=4, gop_seconds=2, fps=FPS).read_bytes()
    garbage = bytes(range(1, 251)).replace(b"\x47", b"") * 4
    head = 3 * TS_PACKET_BYTES
    expected, _, _ = split(data, 2)
    files, events, _ = split(data[:head] + garbage + data[head:], 2)
    assert [e[1] for e in events if e[0] == SKIPPED] == [len(garbage)]
    assert files == expected


def with_null_packets_after_keyframe_starts(data: bytes) -> bytes:
    """``data`` with a null packet (PID 0x1FFF) after the first packet of each video keyframe's
    PES, as a constant-bitrate multiplex puts them anywhere."""
    null = b"\x47\x1f\xff\x10" + b"\xff" * 184
    return b"".join(p + null if packet_pid(p) == 0x100 and is_keyframe(p) else p for p in packets(data))


def test_null_packets_among_a_keyframes_pes_packets_do_not_hide_its_parameters(media: MediaCache) -> None:
    """Each keyframe's sequence parameter set split across its PES's 2nd and 3rd packets, and a
    null packet between its 1st and 2nd: the parameters are read past it, and the keyframe with
    new parameters starts a segment marked changed."""
    path, _, _ = changing_ts(media, "size")
    data = path.read_bytes()
    padded = with_null_packets_after_keyframe_starts(with_keyframe_payload_spread(data, [12]))
    assert len(packets_by_pid(padded)[0x1FFF]) == sum(1 for p in packets_by_pid(data)[0x100] if is_keyframe(p))
    files, events, _ = split(padded, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    expected, again, _ = split(data, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    assert pes_counts(files) == pes_counts(expected)
    changed = [e[6][1] for e in events if e[0] == OPEN]
    assert changed == [e[6][1] for e in again if e[0] == OPEN] and changed.count(True) == 1
    assert videos(events) == videos(again)


def test_video_alone_jumping_to_a_new_timeline_mid_gop_drops_the_pictures_before_its_keyframe(
        media: MediaCache) -> None:
    """A video-only input whose timestamps jump 60 s on, the new timeline joined 1 s into a GOP:
    its pictures before the next keyframe are left out (each reported), their packets in no
    segment; the new timeline's first segment starts at that keyframe."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS, audio=False).read_bytes()
    later = packets(shift_timestamps(data, 0x100, 0, 60 * SECOND))
    starts = [i for i, p in enumerate(later) if packet_pid(p) == 0x100 and p[1] & 0x40]
    joined = data + b"".join(later[starts[FPS] :])
    files, events, _ = split(joined, 2)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4 + [True] + [False] * 2
    assert len([e for e in events if e[0] == DROPPED]) == FPS
    video = [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x100]]
    assert video == packets_by_pid(data)[0x100] + [p for p in later[starts[2 * FPS] :] if packet_pid(p) == 0x100]
    assert [get_timestamp(p, pes_header_at(p) + 9) for p in packets_by_pid(bytes(files[5]))[0x100]
            if p[1] & 0x40][0] == get_timestamp(later[starts[2 * FPS]], pes_header_at(later[starts[2 * FPS]]) + 9)


def first_sps(data: bytes) -> bytes:
    """The sequence parameter set of the first video keyframe in ``data`` (a clip's bytes)."""
    keyframe = next(p for p in packets_by_pid(data)[0x100] if is_keyframe(p))
    sps = sequence_parameter_set(VideoCodec.H264, keyframe[pes_header_at(keyframe) + header_bytes(keyframe) :])
    assert sps is not None
    return sps


def h264_program(pictures: list[bytes], *, audio_listed_first: bool) -> bytes:
    """A program of H.264 video on PID 0x100, one PES per picture of ``pictures`` (Annex B
    access units, 25 a second, in presentation order) over as many packets as it takes, every
    second one followed by an audio PES of one packet on PID 0x101; its PMT lists the audio
    first or last."""
    streams = ((0x101, 0x0F, b""), (0x100, STREAM_TYPE_H264, b""))
    pmt = pmt_section(streams if audio_listed_first else streams[::-1], pcr_pid=0x100)
    out = [pat_packet([(1, 0x1000)]), psi_packet(0x1000, pmt)]
    counter = 0
    for n, picture in enumerate(pictures):
        pts = SECOND + n * TICKS_PER_PICTURE
        pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + pts_field(0x2, pts) + picture
        if IDR in picture:  # random_access_indicator set, as muxers mark an IDR picture
            field = 183 - len(pes[:182])
            out.append(bytes([0x47, 0x41, 0x00, 0x30 | counter % 16, field, 0x40]) + b"\xff" * (field - 1) + pes[:182])
            pes, counter = pes[182:], counter + 1
        for start in range(0, len(pes), 184):
            out.append(ts_packet(pes[start : start + 184], counter, start=not start and IDR not in picture,
                                 pid=0x100))
            counter += 1
        if n % 2:
            out += pes_packets(b"\xaa" * 100, pts, cc=n // 2)
    return b"".join(out)


TICKS_PER_PICTURE = SECOND // FPS
AUD = b"\x00\x00\x00\x01\x09\xf0"
IDR = b"\x00\x00\x01\x65\x88\x84" + bytes(range(16, 60))
NON_IDR = b"\x00\x00\x01\x41\x9a\x02" + bytes(range(16, 40))


@pytest.mark.parametrize("audio_listed_first", [False, True])
def test_a_keyframe_without_parameter_sets_keeps_the_current_ones_whatever_the_next_picture_carries(
        media: MediaCache, audio_listed_first: bool) -> None:
    """IDR pictures every 2 s, the sequence parameter set sent with the first alone (ISO/IEC
    14496-10 does not ask for it again), until the IDR at 1 s brings new ones (640x360), past an
    SEI message that puts them in its PES's second packet. The IDR just before it, at 0.96 s,
    has none and one packet: it keeps the current parameters, and the segment with the new
    ones starts at 1 s, marked changed, none at 0.96 s; whether the PMT lists the audio first
    or the video."""
    old = first_sps(media.ts(seconds=1, gop_seconds=1, fps=FPS, audio=False).read_bytes())
    new = first_sps(media.ts(seconds=1, gop_seconds=1, fps=FPS, audio=False, width=640, height=360).read_bytes())
    sei = b"\x00\x00\x01\x06\x05\xc8" + bytes(16) + b"x" * 184 + b"\x80"  # user_data_unregistered, 200 bytes
    pictures = [AUD + NON_IDR] * (6 * FPS)
    for n in (FPS - 1, 2 * FPS, 4 * FPS):
        pictures[n] = AUD + IDR
    pictures[0] = AUD + b"\x00\x00\x01" + old + IDR
    pictures[FPS] = AUD + sei + b"\x00\x00\x01" + new + IDR
    data = h264_program(pictures, audio_listed_first=audio_listed_first)
    video = packets_by_pid(data)[0x100]
    starts = [i for i, p in enumerate(video) if p[1] & 0x40]
    assert starts[FPS] - starts[FPS - 1] == 1 and new in video[starts[FPS] + 1]
    files, events, _ = split(data, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    opens = [e for e in events if e[0] == OPEN]
    assert [e[3].start_s - 1 for e in opens[1:]] == [0, 1, 2]  # each segment before the next one opens
    assert [(p.parameters.resolution, changed) for *_, (p, changed) in opens] == [
        ("320x240", False), ("640x360", True), ("640x360", False), ("640x360", False)]
    assert [v for v, _ in pes_counts(files)] == [FPS, FPS, 2 * FPS, 2 * FPS]


def hevc_without_vui_timing(media: MediaCache) -> bytes:
    """8 s of HEVC at 25 fps (a keyframe every 2 s) and AAC in MPEG-TS, its sequence parameter
    set without VUI timing information: the frame rate is in no parameter set."""
    path = media.directory / "hevc-no-vui-timing.ts"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.part")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration=8",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8",
             "-c:v", "libx265", "-preset", "veryfast", "-x265-params",
             f"keyint={2 * FPS}:min-keyint={2 * FPS}:scenecut=0:vui-timing-info=0:log-level=error",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", str(tmp)],
            check=True, timeout=120)
        os.replace(tmp, path)
    return path.read_bytes()


def test_the_frame_rate_of_video_without_vui_timing_is_measured_from_its_decode_timestamps(media: MediaCache) -> None:
    """HEVC whose parameter sets carry no frame rate, its parameters watched: each segment says
    its video's frame rate all the same, measured from the pictures' decode timestamps."""
    data = hevc_without_vui_timing(media)
    files, events, _ = split(data, 2, watch=ParameterWatch(VideoCodec.HEVC, TICKS))
    assert len(files) == 4
    assert videos(events) == [("320x240", FPS, False)] * 4


# -- pause filling: where the filler starts, and whose clock it follows ---------------------------

def test_a_pause_after_an_audio_pes_without_timestamps_is_filled_only_when_the_audio_resumes(
        media: MediaCache) -> None:
    """The audio pauses from 3 to 9 s, and the last PES written before the pause has its PES
    header split across two packets (no PTS): where its audio ends is not known, so no silence
    is filled after it, at a picture or at a cut. The muxer's late unit then goes as it came,
    and the pause is filled from its end when the audio resumes: every PES of the input is
    written, none left out, and the audio has no hole and no overlap."""
    data = media.encoder_ts(seconds=12, audio_gap=(3, 9)).read_bytes()
    audio_pid = find_program(data).streams[1][0]
    came = [get_timestamp(unit, 9) for unit in pes_units(packets_by_pid(data)[audio_pid])]
    late = next(n for n in range(len(came) - 1) if came[n + 1] - came[n] > SECOND)  # the muxer's late unit
    untimed = with_pes_headers_at(data, lambda pid, n, packet: 180 if pid == audio_pid and n == late - 1 else None)
    files, events, _ = split(untimed, 2, silence=True)
    assert not [e for e in events if e[0] == DROPPED]
    inputs = Counter(unit[9 + unit[8] :] for unit in pes_units(packets_by_pid(untimed)[audio_pid]))
    units = audio_units(files, audio_pid)
    assert Counter(payload for _, _, payload in units if payload in inputs) == inputs
    filler = [(n, pts) for n, pts, payload in units if payload not in inputs]
    assert filler and min(pts for _, pts in filler) > came[late] and len({n for n, _ in filler}) == 1
    assert timeline_is_gapless(units)


def test_a_track_that_stops_is_filled_to_the_end_of_the_last_picture_whatever_an_unfilled_track_sends(
        media: MediaCache) -> None:
    """Two audio tracks; the first stops 2.5 s before the picture does, the second, whose pauses
    are not filled (a codec without a frame family, as Opus), goes on to the end and sends its
    last PES after the last picture. The program's clock is the video's alone: the first track
    is filled up to the end of the last picture, as without the second, which goes as it came."""
    data = media.encoder_ts(seconds=8, audio_gap=(5.5, 9), second_audio_gap=(20, 21)).read_bytes()
    video_pid, audio_pid, other_pid = (pid for pid, _ in find_program(data).streams)
    source = packets(data)
    last_picture = max(i for i, p in enumerate(source) if packet_pid(p) == video_pid and p[1] & 0x40)
    assert any(i > last_picture and packet_pid(p) == other_pid and p[1] & 0x40 for i, p in enumerate(source))
    end = max(pes_pts(p) for p in packets_by_pid(data)[video_pid] if p[1] & 0x40) + 3600  # type: ignore[type-var]
    plain, _, _ = split(data, 2, unfilled=(other_pid,))
    files, events, _ = split(data, 2, silence=True, unfilled=(other_pid,))
    assert len(files) == len(plain) and not [e for e in events if e[0] == DROPPED]
    assert audio_units(files, other_pid) == audio_units(plain, other_pid)
    units = audio_units(files, audio_pid)
    assert timeline_is_gapless(units)
    assert end - FRAME < max(pts for _, pts, _ in units) + FRAME <= end


def test_a_second_track_starting_late_is_filled_from_the_first_segments_start_when_the_probe_read_its_first_frame(
        media: MediaCache) -> None:
    """The second audio track (PID 0x102) starts 3 s after the video, and the bytes the probe
    read end with the packet that starts its first PES: its first frame is found there, and
    segment 1 is filled from its first picture up to that frame at once."""
    data = media.encoder_ts(seconds=8, second_audio_gap=(0, 3)).read_bytes()
    video_pid, _, late_pid = (pid for pid, _ in find_program(data).streams)
    assert late_pid == 0x102
    source = packets(data)
    first_at = next(i for i, p in enumerate(source) if packet_pid(p) == late_pid and p[1] & 0x40)
    start = next(pes_pts(p) for p in source if packet_pid(p) == video_pid and p[1] & 0x40)
    first = pes_pts(source[first_at])
    assert first is not None and start is not None and first - start > 2 * SECOND
    files, events, _ = split(data, 2, silence=True, look_ahead=(first_at + 1) * TS_PACKET_BYTES)
    assert not [e for e in events if e[0] == DROPPED]
    units = audio_units(files, late_pid)
    filler = [(n, pts) for n, pts, _ in units if pts < first]
    assert {n for n, _ in filler} == {1}
    assert [pts for _, pts in filler] == [start + FRAME * k for k in range(len(filler))]
    assert first - FRAME < filler[-1][1] + FRAME <= first
    assert timeline_is_gapless(units)


def test_audio_coming_first_at_a_new_timeline_while_a_pause_is_filled_is_written_whole(media: MediaCache) -> None:
    """The audio stops 2.5 s before the picture, and its pause is being filled when the encoder
    restarts: every stream goes back to where its timestamps began, the audio's first PES before
    the video (the cutter holds it back until the video follows). Dated before the silence
    written on the old timeline, it is neither the muxer's late unit nor audio over that silence:
    every PES of the new timeline is written, in its segments, none left out."""
    part = media.encoder_ts(seconds=8, audio_gap=(5.5, 9)).read_bytes()
    again = audio_start_first(media.encoder_ts(seconds=8).read_bytes())
    audio_pid = find_program(part).streams[1][0]
    files, events, _ = split(part + again, 2, silence=True)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4 + [True] + [False] * 3
    assert not [e for e in events if e[0] == DROPPED]
    came = [(get_timestamp(unit, 9), unit[9 + unit[8] :]) for unit in pes_units(packets_by_pid(again)[audio_pid])]
    assert [(pts, payload) for n, pts, payload in audio_units(files, audio_pid) if n >= 5] == came
