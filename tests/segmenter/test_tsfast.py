"""The MPEG-TS fast path: which inputs take it, what its segments hold, garbage between packets."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pytest

from segmenter.cutter import Cutter, SegmentTiming, StreamInfo, StreamKind
from segmenter.psi import find_sync, pat_programs, section
from segmenter.randomaccess import ParameterWatch, VideoCodec
from segmenter.silentframe import silent_frame_or_none
from segmenter.tsfast import (
    CLOSE,
    CONTINUITY,
    DATA,
    DROPPED,
    MAX_EARLY_DATA_BYTES,
    MAX_STREAMS,
    OPEN,
    SKIPPED,
    STREAM_TYPE_H264,
    STREAM_TYPE_HEVC,
    NotEligible,
    ProgramMap,
    Track,
    TsSplitter,
    _key_nal,
    find_program,
)
from tests.support.gop_media import gop_clip
from tests.support.listener import Listener
from tests.support.media import MediaCache, probe
from tests.support.segmenter_media import TS_PACKET_BYTES, run_segmenter, segment_files

from .test_parameter_changes import CHANGES, changing_ts
from .test_programs import TV, TV_FRENCH_PID, TV_GERMAN_PID, TV_VIDEO_PID, two_programs
from .ts_surgery import (
    ID3_PID,
    SCTE35_PID,
    Insertion,
    add_metadata,
    id3_tag,
    pes_pts,
    remove_packets,
    renumbered,
    splice_info_section,
)

FPS = 25
TICKS = Fraction(1, 90000)


def packet_pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def packets(data: bytes) -> list[bytes]:
    return [data[at : at + TS_PACKET_BYTES] for at in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES)]


def packets_by_pid(data: bytes) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = defaultdict(list)
    for packet in packets(data):
        found[packet_pid(packet)].append(packet)
    return found


ADTS = 0x0F  # stream_type of AAC in ADTS frames (ISO/IEC 13818-1 table 2-34)


def split(
    data: bytes, seconds: int, *, chunk: int = 65536, watch: ParameterWatch | None = None, number: int | None = None,
    silence: bool = False, breaks: tuple[int, ...] = (), frame_ticks: int | None = 3600, new_run: bool = False,
    unfilled: tuple[int, ...] = (), look_ahead: int = 0,
) -> tuple[dict[int, bytearray], list[tuple], SegmentTiming | None]:
    """Cut ``data`` as ``hls-segment`` would, fed ``chunk`` bytes at a time (and broken at the
    offsets ``breaks`` too): each segment's bytes, the events, and the last segment's timing
    (which the cutter gives at the end of input).
    ``watch``: the video's parameters, watched as the fast path's shell does; ``number``: the
    program (None: the PAT's first); ``silence``: pauses in AAC audio filled, as the shell does;
    ``frame_ticks``: a video frame's duration as the shell found it (None: not known);
    ``new_run``: the first segment starts a new timeline, as the shell has every run's first;
    ``unfilled``: PIDs of AAC tracks taken for a codec without a frame family (as Opus is), whose
    pauses are not filled; ``look_ahead``: the input's first bytes read ahead, as the probe reads them."""
    program = find_program(data, number)
    video = (STREAM_TYPE_H264, STREAM_TYPE_HEVC)
    tracks = [Track(pid, index, kind in video, kind == STREAM_TYPE_HEVC, frame_ticks if kind in video else None,
                    data=kind in (0x15, 0x86),  # timed ID3, SCTE-35: copied, not cut on
                    codec="aac" if kind == ADTS and pid not in unfilled else "")
              for index, (pid, kind) in enumerate(program.streams)]
    kinds = [StreamKind.VIDEO if track.video else StreamKind.AUDIO for track in tracks if not track.data]
    cutter = Cutter([StreamInfo(n, kind, TICKS, True) for n, kind in enumerate(kinds)], Fraction(seconds),
                    discontinuity=new_run)
    splitter = TsSplitter(program, tracks, cutter, watch, silent_frame_or_none if silence else None,
                          look_ahead=data[:look_ahead])
    files: dict[int, bytearray] = {}
    events: list[tuple] = []
    start = 0
    for end in sorted({*breaks, *range(chunk, len(data), chunk), len(data)}):
        events += splitter.feed(data[start:end])
        start = end
    events += splitter.finish()
    closed: set[int] = set()
    last: SegmentTiming | None = None
    for event in events:
        if event[0] == OPEN:
            files[event[1]] = bytearray(event[2])
        elif event[0] == DATA:
            assert event[1] not in closed, f"bytes for segment {event[1]} after it was closed"
            files[event[1]] += event[2]
        elif event[0] == CLOSE:
            closed.add(event[1])
            last = event[2] if event[2] is not None else last
    assert closed == set(files), "every segment opened is closed"
    return files, events, last


def assert_each_pes_whole_where_it_started(data: bytes, files: dict[int, bytearray]) -> None:
    """The routing rule of the module doc, checked packet by packet against the input: each
    segment starts with the PAT and PMT last seen before it opened; each PES is whole in one
    segment, the one that was newest when it started (or, for audio the cutter held back, the
    next one); every other packet goes to the segment newest when it came, none lost once the
    first segment opened."""
    program = find_program(data)
    elementary = {pid for pid, _ in program.streams}
    source = packets(data)
    at = {pid: [i for i, packet in enumerate(source) if packet_pid(packet) == pid] for pid in packets_by_pid(data)}
    taken: dict[int, int] = defaultdict(int)
    segment_of: dict[int, int] = {}  # input packet index -> segment number
    for number, content in sorted(files.items()):
        for packet in packets(bytes(content))[2:]:
            pid = packet_pid(packet)
            while source[at[pid][taken[pid]]] != packet:
                taken[pid] += 1
            segment_of[at[pid][taken[pid]]] = number
            taken[pid] += 1
    newest = 0
    unit: dict[int, int | None] = {}  # PID -> the segment its current PES went to (None: left out)
    opened: dict[int, int] = {}  # segment -> input index of the PES start that opened it
    reference = program.streams[0][0]  # the video: its PES starts open segments
    for i, packet in enumerate(source):
        pid = packet_pid(packet)
        if pid in elementary:
            if packet[1] & 0x40:
                unit[pid] = segment_of.get(i)
                if unit[pid] is not None:
                    assert unit[pid] >= newest, f"packet {i}: a PES starts in an older segment"
                    # Another stream's PES may go to the next segment (held back for it).
                    if unit[pid] > newest and pid == reference:
                        opened[unit[pid]] = i
                        newest = unit[pid]
            else:
                assert segment_of.get(i) == unit.get(pid), f"packet {i} (PID {pid:#x}) is not with its PES start"
        else:
            assert segment_of.get(i) == (newest or None), f"packet {i} (PID {pid:#x}) is not in the newest segment"
    assert sorted(opened) == sorted(files)
    for number, i in opened.items():
        head = packets(bytes(files[number]))[:2]
        latest = {pid: program.pat_packet if pid == 0 else program.pmt_packet for pid in (0, program.pmt_pid)}
        latest.update({packet_pid(p): p for p in source[:i] if packet_pid(p) in latest and p[1] & 0x40})
        assert head == [latest[0], latest[program.pmt_pid]], f"segment {number}: not the latest PAT and PMT first"


def audio_starts_before_close(events: list[tuple]) -> list[int]:
    """For each segment closed after the next one opened: how many audio PES starts had been
    written into the next one by then."""
    counts: dict[int, int] = defaultdict(int)
    found = []
    for event in events:
        if event[0] == DATA:
            counts[event[1]] += sum(1 for p in packets(bytes(event[2])) if packet_pid(p) == 0x101 and p[1] & 0x40)
        elif event[0] == CLOSE and event[1] + 1 in counts:
            found.append(counts[event[1] + 1])
    return found


def set_timestamp(packet: bytearray, at: int, ticks: int, prefix: int) -> None:
    """Write a 33-bit PTS or DTS field (ISO/IEC 13818-1 2.4.3.7) with its marker bits."""
    ticks %= 2**33
    packet[at : at + 5] = bytes([(prefix << 4) | ((ticks >> 29) & 0x0E) | 1, (ticks >> 22) & 0xFF,
                                 ((ticks >> 14) & 0xFE) | 1, (ticks >> 7) & 0xFF, ((ticks << 1) & 0xFE) | 1])


def get_timestamp(packet: bytes, at: int) -> int:
    b = packet[at : at + 5]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def pes_header_at(packet: bytes) -> int:
    return 4 + (1 + packet[4] if packet[3] & 0x20 else 0)


def shift_timestamps(data: bytes, pid: int, from_ticks: int, by_ticks: int) -> bytes:
    """``data`` with the PTS and DTS of PID ``pid``'s PES packets from PTS ``from_ticks`` on moved by ``by_ticks``."""
    out = [bytearray(packet) for packet in packets(data)]
    for packet in out:
        if packet_pid(packet) != pid or not packet[1] & 0x40:
            continue
        offset = pes_header_at(packet)
        flags = packet[offset + 7]
        if get_timestamp(packet, offset + 9) < from_ticks:
            continue
        set_timestamp(packet, offset + 9, get_timestamp(packet, offset + 9) + by_ticks, 3 if flags & 0x40 else 2)
        if flags & 0x40:
            set_timestamp(packet, offset + 14, get_timestamp(packet, offset + 14) + by_ticks, 1)
    return b"".join(out)


def interleave(data: bytes, delay: int = 40) -> bytes:
    """FFmpeg writes each PES as one run of packets; broadcast muxers interleave them. Delay every
    audio continuation packet behind ``delay`` other packets (PID order kept), so audio PES
    straddle video keyframes."""
    out: list[bytes] = []
    waiting: list[tuple[int, bytes]] = []
    for offset in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        packet = data[offset : offset + TS_PACKET_BYTES]
        audio = (((packet[1] & 0x1F) << 8) | packet[2]) == 0x101
        if audio and packet[1] & 0x40:
            out += [p for _, p in waiting]
            waiting = []
        if audio and not packet[1] & 0x40:
            waiting.append((len(out) + delay, packet))
        else:
            out.append(packet)
        while waiting and waiting[0][0] <= len(out):
            out.append(waiting.pop(0)[1])
    out += [p for _, p in waiting]
    return b"".join(out)


@pytest.mark.parametrize("chunk", [100_003, TS_PACKET_BYTES * 300])  # packets split across feeds, or whole
@pytest.mark.parametrize("interleaved", [False, True])
def test_segments_are_the_input_cut_at_keyframes(media: MediaCache, interleaved: bool, chunk: int) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    if interleaved:
        data = interleave(data)
    files, events, _ = split(data, 6, chunk=chunk)
    # A segment closes once the last PES that started in it is whole: at the next audio PES start,
    # before any of that PES is written.
    assert [e[:2] for e in events if e[0] in (OPEN, CLOSE)] == [
        (OPEN, 1), (OPEN, 2), (CLOSE, 1), (OPEN, 3), (CLOSE, 2), (OPEN, 4), (CLOSE, 3), (CLOSE, 4)]
    assert audio_starts_before_close(events) == [0, 0, 0]
    assert_each_pes_whole_where_it_started(data, files)
    source = packets_by_pid(data)
    joined: dict[int, list[bytes]] = defaultdict(list)
    for number, content in sorted(files.items()):
        pids = packets_by_pid(bytes(content))
        head = [((content[i + 1] & 0x1F) << 8) | content[i + 2] for i in (0, TS_PACKET_BYTES)]
        assert head == [0, 0x1000], "PAT and PMT first"
        for pid in (0x100, 0x101):
            joined[pid] += pids[pid]
            # Whole PES packets only: each stream's first packet in a segment starts a PES, and
            # the PES still arriving at a cut ends in the segment it started in.
            assert pids[pid][0][1] & 0x40, f"segment {number} PID {pid:#x} opens mid-PES"
    # The last audio PES of every segment is whole: its packets carry the PES_packet_length it declares.
    for number, content in sorted(files.items()):
        audio = packets_by_pid(bytes(content))[0x101]
        starts = [i for i, packet in enumerate(audio) if packet[1] & 0x40]
        last = audio[starts[-1]]
        offset = 4 + (1 + last[4] if last[3] & 0x20 else 0)
        declared = (last[offset + 4] << 8) | last[offset + 5]
        payload = sum(188 - (4 + (1 + p[4] if p[3] & 0x20 else 0)) for p in audio[starts[-1]:])
        assert payload >= declared + 6, f"segment {number}: its last audio PES is cut short"
    # Every elementary stream packet, once, in order: continuity counters run on across segments.
    for pid in (0x100, 0x101):
        assert joined[pid] == source[pid]


@pytest.mark.parametrize("chunk", [65536, TS_PACKET_BYTES * 300])
def test_garbage_between_packets_is_skipped(media: MediaCache, chunk: int) -> None:
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    middle = len(data) // 2 // TS_PACKET_BYTES * TS_PACKET_BYTES + 100
    damaged = data[:middle] + os.urandom(20_000).replace(b"\x47", b"\x48") + data[middle:]
    files, events, _ = split(damaged, 6, chunk=chunk)
    skipped = sum(e[1] for e in events if e[0] == SKIPPED)
    assert 20_000 - TS_PACKET_BYTES <= skipped <= 20_000 + TS_PACKET_BYTES
    assert len(files) == 2


def test_a_feed_starting_with_a_sync_byte_inside_a_packet_is_not_taken_for_packets(media: MediaCache) -> None:
    """The input read in pieces that end just before a 0x47 byte in the middle of a packet, the
    next piece one packet long: the segments are those of the input read in one go."""
    data = media.ts(seconds=4, gop_seconds=2, fps=FPS).read_bytes()
    inside = [i for i in range(0, len(data) - TS_PACKET_BYTES) if data[i] == 0x47 and i % TS_PACKET_BYTES][:20]
    files, events, _ = split(data, 2, breaks=tuple(b for i in inside for b in (i, i + TS_PACKET_BYTES)))
    expected, _, _ = split(data, 2, chunk=len(data))
    assert len(inside) == 20 and files == expected
    assert not [e for e in events if e[0] == SKIPPED]


def test_segment_timings_come_from_the_pes_timestamps(media: MediaCache) -> None:
    """PTS and DTS read from PES headers, all 33 bits: a clip with B-frames whose timestamps wrap."""
    path = media.wrapping_ts(seconds=20, wrap_after_seconds=7, gop_seconds=2, fps=FPS, b_frames=2)
    raw = probe(path, raw_timestamps=True).video.keyframe_pts  # type: ignore[union-attr]
    keyframes = sorted(float((pts + (2**33 if pts < 2**32 else 0)) * TICKS) for pts in raw)
    files, events, last = split(path.read_bytes(), 6)
    timings = [e[3] for e in events if e[0] == OPEN][1:] + [last]
    assert [t.start_s for t in timings] == keyframes[::3]  # type: ignore[union-attr]
    assert [t.duration_s for t in timings] == [6.0, 6.0, 6.0, 2.0]  # type: ignore[union-attr]
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4
    assert_each_pes_whole_where_it_started(path.read_bytes(), files)


def test_a_video_only_input_is_cut(media: MediaCache) -> None:
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS, audio=False).read_bytes()
    files, _, _ = split(data, 4)
    assert len(files) == 2
    assert_each_pes_whole_where_it_started(data, files)


def test_up_to_28_elementary_streams_take_the_fast_path(media: MediaCache) -> None:
    program = find_program(media.ts(seconds=2, gop_seconds=2, fps=FPS).read_bytes())
    for count in (0, MAX_STREAMS, MAX_STREAMS + 1):
        tracks = [Track(0x100 + n, n, n == 0, False, None) for n in range(count)]
        infos = [StreamInfo(n, StreamKind.VIDEO if n == 0 else StreamKind.AUDIO, TICKS, True) for n in range(count)]
        cutter = Cutter(infos or [StreamInfo(0, StreamKind.AUDIO, TICKS, True)], Fraction(6))
        if count == MAX_STREAMS:
            TsSplitter(program, tracks, cutter)
        else:
            with pytest.raises(NotEligible):
                TsSplitter(program, tracks, cutter)


def without_random_access_indicators(data: bytes) -> bytes:
    out = [bytearray(packet) for packet in packets(data)]
    for packet in out:
        if packet[3] & 0x20 and packet[4]:
            packet[5] &= ~0x40
    return b"".join(out)


def with_parameter_sets_out_of_sight(data: bytes) -> bytes:
    """Every video PES's first packet made to show only one long SEI NAL unit, as when an
    encoder puts a big SEI first: the keyframes are known by their random_access_indicator alone."""
    out = [bytearray(packet) for packet in packets(data)]
    for packet in out:
        if packet_pid(packet) == 0x100 and packet[1] & 0x40:
            payload = pes_header_at(packet) + 9 + packet[pes_header_at(packet) + 8]
            packet[payload:] = (b"\x00\x00\x01\x06" + b"\xff" * TS_PACKET_BYTES)[: TS_PACKET_BYTES - payload]
    return b"".join(out)


def as_second_video_stream(data: bytes) -> bytes:
    """Without random_access_indicators, and every video PES's stream_id 0xE1 (FFmpeg writes 0xE0):
    the PES header's bytes are no NAL units (0xE1 read as one would be a non-IDR slice)."""
    out = [bytearray(packet) for packet in packets(without_random_access_indicators(data))]
    for packet in out:
        if packet_pid(packet) == 0x100 and packet[1] & 0x40:
            packet[pes_header_at(packet) + 3] = 0xE1
    return b"".join(out)


@pytest.mark.parametrize("hide", [without_random_access_indicators, with_parameter_sets_out_of_sight,
                                  as_second_video_stream])
def test_keyframes_are_known_by_random_access_indicator_or_by_nal_units(media: MediaCache, hide) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    files, events, _ = split(hide(data), 6)
    expected, _, _ = split(data, 6)
    assert [len(packets_by_pid(bytes(f))[0x100]) for f in files.values()] == [
        len(packets_by_pid(bytes(f))[0x100]) for f in expected.values()]
    assert not [e for e in events if e[0] == DROPPED]


@pytest.mark.parametrize("kind", ["hevc-closed", "hevc-cra"])
def test_hevc_keyframes_are_known_by_their_nal_units(media: MediaCache, kind: str) -> None:
    """An HEVC IRAP picture (IDR, or a CRA) starts a segment when no random_access_indicator says so."""
    data = gop_clip(media.directory, kind).read_bytes()
    files, events, _ = split(without_random_access_indicators(data), 2)
    expected, _, _ = split(data, 2)
    assert len(files) == 5
    assert [len(packets_by_pid(bytes(f))[0x100]) for f in files.values()] == [
        len(packets_by_pid(bytes(f))[0x100]) for f in expected.values()]
    assert not [e for e in events if e[0] == DROPPED]


def test_metadata_units_go_whole_into_the_segment_they_start_in(media: MediaCache) -> None:
    """A timed ID3 tag that starts before the first keyframe goes into segment 1, one that starts
    before the keyframe that cuts goes on in the segment it started in; never cut on."""
    early = Insertion(0, "id3", id3_tag("early", padding=400), before=2)
    early_cue = Insertion(0, "scte35", splice_info_section(0, 1), before=1)
    cue = Insertion(60, "scte35", splice_info_section(60 * 3600, 2))
    straddling = Insertion(100, "id3", id3_tag("straddling", padding=400), before=1, pts_offset=-3600)
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(),
                        [early, early_cue, cue, straddling], fps=FPS)
    files, events, _ = split(data, 2)
    found = {number: [p for p in packets(bytes(f)) if packet_pid(p) in (ID3_PID, SCTE35_PID)]
             for number, f in files.items()}
    assert found == {1: early.packets[:2] + early_cue.packets + early.packets[2:],
                     2: cue.packets + straddling.packets, 3: [], 4: []}
    assert not [e for e in events if e[0] == DROPPED]
    expected, _, _ = split(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), 2)
    assert [len(f) for f in files.values()] == [len(f) + sum(len(p) for p in found[n]) for n, f in expected.items()]


def test_an_id3_tag_begun_before_the_first_keyframe_goes_on_in_segment_1(media: MediaCache) -> None:
    """The clip's only metadata PID: the tag's first packet comes before the first keyframe, the
    rest after it; all of it is in segment 1, none in segment 2."""
    early = Insertion(0, "id3", id3_tag("early", padding=400), before=1)
    data = add_metadata(media.ts(seconds=4, gop_seconds=2, fps=FPS).read_bytes(), [early], fps=FPS)
    files, _, _ = split(data, 2)
    assert len(early.packets) == 3
    assert [[p for p in packets(bytes(files[n])) if packet_pid(p) == ID3_PID] for n in (1, 2)] == [early.packets, []]


def test_a_metadata_unit_that_ends_in_its_first_packet_does_not_keep_its_segment_open(media: MediaCache) -> None:
    """An ID3 tag and a SCTE-35 section each in one packet, in the last frame before a cut: the
    segment closes when its audio and video units are whole, as it would without them."""
    plain = media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes()
    tag = Insertion(49, "id3", id3_tag("short"))
    cue = Insertion(49, "scte35", splice_info_section(49 * 3600, 3))
    data = add_metadata(plain, [tag, cue], fps=FPS)
    assert len(tag.packets) == len(cue.packets) == 1
    files, events, _ = split(data, 2)
    _, expected, _ = split(plain, 2)
    assert [e[:2] for e in events if e[0] in (OPEN, CLOSE)] == [e[:2] for e in expected if e[0] in (OPEN, CLOSE)]
    assert audio_starts_before_close(events) == audio_starts_before_close(expected) == [0, 0, 0]
    assert [p for p in packets(bytes(files[1])) if packet_pid(p) in (ID3_PID, SCTE35_PID)] == tag.packets + cue.packets


def test_metadata_before_the_first_keyframe_waits_for_the_first_segment_up_to_a_bound(media: MediaCache) -> None:
    """SCTE-35 sections of one packet each before the first video keyframe: the first
    MAX_EARLY_DATA_BYTES of them go into segment 1, each one after that is left out and reported."""
    kept = MAX_EARLY_DATA_BYTES // TS_PACKET_BYTES
    cues = [Insertion(0, "scte35", splice_info_section(0, n), before=1) for n in range(kept + 3)]
    data = add_metadata(media.ts(seconds=4, gop_seconds=2, fps=FPS).read_bytes(), cues, fps=FPS)
    files, events, _ = split(data, 2)
    assert [p for p in packets(bytes(files[1])) if packet_pid(p) == SCTE35_PID] == [c.packets[0] for c in cues[:kept]]
    assert [e[1] for e in events if e[0] == DROPPED] == [2] * 3  # the SCTE-35 PID's stream index


def with_pes_packet_length(data: bytes, packet: bytes, length: int) -> tuple[bytes, bytes]:
    """``data`` with the PES_packet_length of the PES starting in ``packet`` set to ``length``; and that packet."""
    offset = pes_header_at(packet)
    changed = packet[: offset + 4] + length.to_bytes(2, "big") + packet[offset + 6 :]
    return data.replace(packet, changed), changed


def test_a_metadata_unit_that_goes_on_past_its_first_packet_stays_whole_whatever_its_length(media: MediaCache) -> None:
    """ID3 PES packets that straddle a cut: one whose last few bytes spill into a second packet,
    one over 256 bytes, one of unbounded PES_packet_length (0). Each is whole in the segment
    it started in; the next segment opens without any of it."""
    spill = Insertion(50, "id3", id3_tag("s" * 150, padding=3), before=1)  # 184 bytes and 5
    long = Insertion(100, "id3", id3_tag("long", padding=232), before=1)  # PES_packet_length 0x10A
    unbounded = Insertion(150, "id3", id3_tag("unbounded", padding=300), before=1)
    data = add_metadata(media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes(), [spill, long, unbounded], fps=FPS)
    assert [len(i.packets) for i in (spill, long, unbounded)] == [2, 2, 2]
    assert len(spill.packets[1]) - 1 - spill.packets[1][4] - 4 == 5
    assert (long.packets[0][8], long.packets[0][9]) == (0x01, 0x0A)
    data, unbounded.packets[0] = with_pes_packet_length(data, unbounded.packets[0], 0)
    files, events, _ = split(data, 2)
    found = {number: [p for p in packets(bytes(f)) if packet_pid(p) == ID3_PID] for number, f in files.items()}
    assert found == {1: spill.packets, 2: long.packets, 3: unbounded.packets, 4: []}
    assert not [e for e in events if e[0] == DROPPED]


def with_keyframe_payload_moved_on(data: bytes, keep: int) -> bytes:
    """Every video keyframe PES's first packet made to carry its PES header and only ``keep``
    bytes of its payload (an adaptation field stuffs the rest), the remainder in a packet of its
    own after it; the video's continuity counters renumbered. The sequence parameter set is then
    in the PES's next packets."""
    out: list[bytearray] = []
    for packet in packets(data):
        if packet_pid(packet) == 0x100 and packet[1] & 0x40 and packet[3] & 0x20 and packet[5] & 0x40:
            offset = pes_header_at(packet)
            cut = offset + 9 + packet[offset + 8] + keep
            head, rest = packet[offset:cut], packet[cut:]
            stuffing = 184 - len(head) - 1
            out.append(bytearray(packet[:3]) + bytes([0x30, stuffing, 0x40]) + b"\xff" * (stuffing - 1) + head)
            stuffing = 184 - len(rest) - 1
            out.append(bytearray([0x47, 0x01, 0x00, 0x30, stuffing]) + (b"\x00" + b"\xff" * (stuffing - 1)) + rest)
        else:
            out.append(bytearray(packet))
    return renumbered(out, 0x100)


@pytest.mark.parametrize("keep", [None, 0, 5, 12])
@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_a_keyframe_with_new_parameters_starts_a_segment_that_says_so(
        media: MediaCache, kind: str, keep: int | None) -> None:
    """An encoder reconfigured live (size or frame rate) between two points of the 2 s grid: the
    segment is cut at its first keyframe, whose OPEN gives the new parameters, marked changed;
    every other OPEN gives the parameters of the segment's video, unchanged. With ``keep``, a
    keyframe's first packet holds only that many payload bytes: its sequence parameter set is in
    the packets after it, or (12: after x264's access unit delimiter and the SPS's first bytes)
    split across two."""
    path, _, change_s = changing_ts(media, kind)
    data = path.read_bytes() if keep is None else with_keyframe_payload_moved_on(path.read_bytes(), keep)
    files, events, _ = split(data, 2, watch=ParameterWatch(VideoCodec.H264, TICKS))
    starts = [pes_pts(packets_by_pid(bytes(files[n]))[0x100][0]) for n in sorted(files)]
    changed = starts.index(round(change_s * 90000))  # cut exactly at the change
    videos = [e[6] for e in events if e[0] == OPEN]
    assert [is_changed for _, is_changed in videos] == [n == changed for n in range(len(files))]
    (size1, fps1), (size2, fps2) = CHANGES[kind]
    assert [(p.parameters.resolution, p.frame_rate) for p, _ in videos] == (
        [(size1, fps1)] * changed + [(size2, fps2)] * (len(files) - changed))
    assert not [e for e in events if e[0] == DROPPED]
    assert_each_pes_whole_where_it_started(data, files)
    if keep is None:  # fed two packets at a time: each keyframe's SPS is still in the packet it reads first
        _, again, _ = split(data, 2, chunk=2 * TS_PACKET_BYTES, watch=ParameterWatch(VideoCodec.H264, TICKS))
        assert [e[6][1] for e in again if e[0] == OPEN] == [is_changed for _, is_changed in videos]


def test_only_the_chosen_programs_packets_are_cut_under_a_pat_naming_it_alone(media: MediaCache) -> None:
    data = two_programs(media).read_bytes()
    files, events, _ = split(data, 2, number=TV)
    assert len(files) == 3 and not [e for e in events if e[0] == DROPPED]
    program = find_program(data, TV)
    elementary = (TV_VIDEO_PID, TV_GERMAN_PID, TV_FRENCH_PID)
    found = [packets_by_pid(bytes(files[n])) for n in sorted(files)]
    assert {pid for pids in found for pid in pids} == {0, program.pmt_pid, *elementary}
    for pid in elementary:  # every packet of the program, once, in order
        assert [p for pids in found for p in pids[pid]] == packets_by_pid(data)[pid]
    assert {pat_programs(section(p)) for pids in found for p in pids[0]} == {((TV, program.pmt_pid),)}  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [TS_PACKET_BYTES, 65536])
def test_lost_packets_are_reported_where_they_were_lost(media: MediaCache, chunk: int) -> None:
    """A CONTINUITY event comes among the events of the segment the packets were lost from: a
    gap right before the keyframe that cuts is the old segment's, one inside a PES its own."""
    data = media.ts(seconds=8, gop_seconds=2, fps=FPS).read_bytes()
    video = packets_by_pid(data)[0x100]
    starts = [i for i, p in enumerate(video) if p[1] & 0x40]
    keyframe = starts[50]  # frame 50: the cut at 2 s
    middle = next(i for i in starts[75:] if not video[i + 1][1] & 0x40 and not video[i + 2][1] & 0x40)
    assert not video[keyframe - 1][1] & 0x40
    damaged = remove_packets(data, 0x100, {keyframe - 1, middle + 1})
    _, events, _ = split(damaged, 2, chunk=chunk)
    segment, found = 0, []
    for event in events:
        if event[0] == OPEN:
            segment = event[1]
        elif event[0] == CONTINUITY:
            found.append((segment, event[1]))
    assert found == [(1, 0x100), (2, 0x100)]


def pes_timestamps(files: dict[int, bytearray], pid: int) -> list[int]:
    """The PTS of each PES of ``pid`` in the segments, in order (a PES header may span packets)."""
    found: list[int] = []
    unit = b""
    for packet in [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[pid]] + [b"\x47\x40"]:
        if packet[1] & 0x40 and unit:
            found.append(get_timestamp(unit, 9))
        if packet[1] & 0x40:
            unit = b""
        if len(packet) == TS_PACKET_BYTES:
            unit += packet[pes_header_at(packet):]
    return found


def test_audio_that_stops_before_the_video_is_filled_with_silence_to_the_end_of_the_last_frame(
        media: MediaCache) -> None:
    """The tone stops 2.5 s before the picture does: at the end of input the pause is filled
    with silent AAC frames, one PES each, up to the end of the last video frame (no frame more)."""
    data = media.encoder_ts(seconds=8, audio_gap=(5.5, 9)).read_bytes()
    video_pid, audio_pid = (pid for pid, _ in find_program(data).streams)
    end = max(pes_pts(p) for p in packets_by_pid(data)[video_pid] if p[1] & 0x40) + 3600  # type: ignore[type-var]
    plain, _, _ = split(data, 2)
    files, events, _ = split(data, 2, silence=True)
    assert len(files) == len(plain) and not [e for e in events if e[0] == DROPPED]
    before, after = pes_timestamps(plain, audio_pid), pes_timestamps(files, audio_pid)
    filler = sorted(set(after) - set(before))
    assert filler[-10:] == [filler[-1] - 1920 * n for n in range(9, -1, -1)]
    assert end - 1920 < filler[-1] + 1920 <= end


def audio_start_first(data: bytes) -> bytes:
    """The first audio PES's first two packets moved in front of the first video packet, the
    PMT between them; its other packets still come after the video keyframe."""
    source = packets(data)
    video = next(i for i, p in enumerate(source) if packet_pid(p) == 0x100)
    start = next(i for i, p in enumerate(source) if packet_pid(p) == 0x101)
    assert packet_pid(source[video - 1]) == 0x1000 and not source[start + 2][1] & 0x40
    head = [*source[: video - 1], source[start], source[video - 1], source[start + 1]]
    return b"".join(head + [p for i, p in enumerate(source) if i >= video and i not in (start, start + 1)])


def test_a_jump_in_every_stream_opens_a_new_timeline_with_the_audio_that_came_first(media: MediaCache) -> None:
    part = media.ts(seconds=12, gop_seconds=2, fps=FPS, b_frames=2, audio_bitrate=192_000).read_bytes()
    again = audio_start_first(part)
    files, events, _ = split(part + again, 4)
    assert [e[4] for e in events if e[0] == OPEN] == [False, False, False, True, False, False]
    assert [e[:2] for e in events if e[0] in (OPEN, CLOSE)] == [
        (OPEN, 1), (OPEN, 2), (CLOSE, 1), (OPEN, 3), (CLOSE, 2), (OPEN, 4), (CLOSE, 3),
        (OPEN, 5), (CLOSE, 4), (OPEN, 6), (CLOSE, 5), (CLOSE, 6)]
    assert audio_starts_before_close(events) == [0] * 4
    # The audio that jumped first waited for the video's jump: the old timeline's segments hold
    # the first part's audio, the new timeline's the second part's, each PES whole. The old
    # timeline's audio timed past its last segment's target (held for the next cut) is left out:
    # that segment closed at the jump.
    dropped = [e[1:] for e in events if e[0] == DROPPED]
    assert dropped and set(dropped) == {(1, "from before the timestamp jump")}
    old = [p for n in (1, 2, 3) for p in packets_by_pid(bytes(files[n]))[0x101]]
    assert old == packets_by_pid(part)[0x101][: len(old)]
    assert len([p for p in packets_by_pid(part)[0x101][len(old):] if p[1] & 0x40]) == len(dropped)
    new = [p for n in (4, 5, 6) for p in packets_by_pid(bytes(files[n]))[0x101]]
    assert new == packets_by_pid(again)[0x101]
    video = [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x100]]
    assert video == packets_by_pid(part + again)[0x100]


@pytest.mark.parametrize("jump_s, released", [(8, True), (17, False)])
def test_audio_whose_timestamps_jump_alone_is_left_out_until_its_new_timeline_holds(
    media: MediaCache, jump_s: int, released: bool
) -> None:
    """Audio units after a jump the video never follows are held, then dropped: after 5 s of
    the audio's own time its new timeline is taken, or at the end of input if that comes first."""
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    first = get_timestamp(packets_by_pid(data)[0x101][0], pes_header_at(packets_by_pid(data)[0x101][0]) + 9)
    jumped = shift_timestamps(data, 0x101, first + jump_s * 90000, 60 * 90000)
    files, events, _ = split(jumped, 6)
    assert [e[4] for e in events if e[0] == OPEN] == [False] * 4
    dropped = [e[1:] for e in events if e[0] == DROPPED]
    starts = [p for p in packets_by_pid(jumped)[0x101] if p[1] & 0x40]
    held = len([p for p in starts if get_timestamp(p, pes_header_at(p) + 9) >= first + jump_s * 90000])
    audio = [p for f in files.values() for p in packets_by_pid(bytes(f))[0x101]]
    written = [p for p in audio if p[1] & 0x40]
    if released:
        assert [index for index, _ in dropped] == [1] * (len(starts) - len(written))
        assert written == starts[: len(starts) - held] + starts[-len(written) + len(starts) - held :]
    else:
        assert dropped == [(1, "timestamps jumped without the video")] * held
        assert written == starts[: len(starts) - held]
    assert abs(len(written) / len(starts) - (20 - 5 if released else jump_s) / 20) < 0.02
    video = [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x100]]
    assert video == packets_by_pid(jumped)[0x100]


def test_a_second_audio_jump_after_the_first_was_taken_is_held_again(media: MediaCache) -> None:
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    first = get_timestamp(packets_by_pid(data)[0x101][0], pes_header_at(packets_by_pid(data)[0x101][0]) + 9)
    once = shift_timestamps(data, 0x101, first + 6 * 90000, 60 * 90000)
    twice = shift_timestamps(once, 0x101, first + (60 + 16) * 90000, 60 * 90000)
    _, events, _ = split(twice, 6)
    dropped = [e[1] for e in events if e[0] == DROPPED]
    assert set(dropped) == {1} and len(dropped) > 200


def test_pes_packets_without_a_pts_are_written_where_they_come(media: MediaCache) -> None:
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    out = [bytearray(packet) for packet in packets(data)]
    audio_starts = [p for p in out if packet_pid(p) == 0x101 and p[1] & 0x40]
    for packet in audio_starts[1::2]:
        offset = pes_header_at(packet)
        packet[offset + 7] &= 0x3F  # PTS_DTS_flags '00'; the PTS bytes become stuffing bytes
        packet[offset + 9 : offset + 14] = b"\xff" * 5
    without = b"".join(out)
    files, events, _ = split(without, 6)
    assert len(files) == 2 and not [e for e in events if e[0] == DROPPED]
    assert_each_pes_whole_where_it_started(without, files)
    assert [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x101]] == packets_by_pid(without)[0x101]


def test_a_segment_waiting_for_a_stream_that_stopped_closes_two_cuts_later(media: MediaCache) -> None:
    """The audio stops at 5 s in the middle of a PES and comes back 4.5 s later (too soon to be
    a jump), its first packet the tail of a PES whose start was lost: left out."""
    data = media.ts(seconds=20, gop_seconds=2, fps=FPS).read_bytes()
    source = packets(data)
    audio = [i for i, p in enumerate(source) if packet_pid(p) == 0x101]
    starts = [n for n, i in enumerate(audio) if source[i][1] & 0x40]
    back = next(n for n in starts if n > starts[int(9.5 * 47)] and not source[audio[n - 1]][1] & 0x40) - 1
    gone = set(audio[starts[5 * 47] + 1 : back])
    paused = b"".join(p for i, p in enumerate(source) if i not in gone)
    files, events, _ = split(paused, 2)
    # Segment 3 (4 to 6 s) waits for its audio PES to end: at the cut at 8 s it is given up.
    closes = [e[:2] for e in events if e[0] in (OPEN, CLOSE)]
    assert closes[:10] == [(OPEN, 1), (OPEN, 2), (CLOSE, 1), (OPEN, 3), (CLOSE, 2), (OPEN, 4), (CLOSE, 3), (OPEN, 5),
                           (CLOSE, 4), (OPEN, 6)]
    kept = [source[i] for i in audio if i not in gone and i != audio[back]]
    assert [p for n in sorted(files) for p in packets_by_pid(bytes(files[n]))[0x101]] == kept
    assert not [e for e in events if e[0] == DROPPED]


def test_an_input_that_ends_inside_a_packet_reports_the_rest_skipped(media: MediaCache) -> None:
    data = media.ts(seconds=4, gop_seconds=2, fps=FPS).read_bytes()
    files, events, _ = split(data + data[:100], 4)
    assert [e[1] for e in events if e[0] == SKIPPED] == [100]
    assert b"".join(files.values()).endswith(data[-TS_PACKET_BYTES:])


@pytest.mark.parametrize("interleaved", [False, True])
def test_an_input_joined_mid_gop_starts_at_a_keyframe_and_drops_what_came_before_it(
    media: MediaCache, interleaved: bool
) -> None:
    data = media.ts(seconds=12, gop_seconds=2, fps=FPS).read_bytes()
    if interleaved:
        data = interleave(data)
    source = packets(data)
    video_starts = [i for i, p in enumerate(source) if packet_pid(p) == 0x100 and p[1] & 0x40]
    joined = b"".join(source[video_starts[FPS] :])  # 1 s in: half a GOP before the next keyframe
    files, events, _ = split(joined, 4)
    assert [e[1] for e in events if e[0] == DROPPED and e[1] == 0] == [0] * FPS
    assert {e[2] for e in events if e[0] == DROPPED and e[1] == 1} == {"before the first video keyframe"}
    first_video = packets_by_pid(bytes(files[1]))[0x100][0]
    assert first_video[1] & 0x40 and first_video[5] & 0x40, "the first video packet starts the keyframe"
    assert_each_pes_whole_where_it_started(joined, files)


def test_find_program_gives_the_first_pat_and_pmt_packets(media: MediaCache) -> None:
    data = media.ts(seconds=2, gop_seconds=2, fps=FPS).read_bytes()
    sdt, pat, pmt = packets(data)[:3]
    expected = ProgramMap(pat, pmt, 0x1000, 0x100, ((0x100, STREAM_TYPE_H264), (0x101, 0x0F)), number=1)
    assert find_program(data) == expected
    assert find_program(data[TS_PACKET_BYTES:]) == expected
    video = packets(data)[3:6]
    assert find_program(b"".join([sdt, pat, *video, pmt])) == expected  # the PMT the last packet
    with pytest.raises(NotEligible):
        find_program(b"".join([sdt, pat, *video, pmt])[:-1])  # the PMT packet not all there
    with pytest.raises(NotEligible):
        find_program(data, 2)  # a program the PAT does not list


def test_find_program_skips_what_is_not_the_start_of_a_pat_or_pmt(media: MediaCache) -> None:
    """A stream joined in the middle of PSI sections: a PAT and a PMT packet that continue a
    section, a PES start between the PAT and the PMT."""
    data = media.ts(seconds=2, gop_seconds=2, fps=FPS).read_bytes()
    sdt, pat, pmt, video, *rest = packets(data)
    pat_tail, pmt_tail = (bytes([p[0], p[1] & ~0x40, *p[2:]]) for p in (pat, pmt))
    head = [pat_tail, sdt, pat, video, pmt_tail, pmt]
    assert find_program(b"".join(head + rest)) == find_program(data)
    with pytest.raises(NotEligible):  # the packet grid breaks before a PMT
        find_program(b"".join([sdt, pat, *rest[:4], b"\x00" * TS_PACKET_BYTES, pmt, *rest[4:]]))


def test_keyframe_nal_units_at_the_edges_of_the_payload() -> None:
    aud, sps, pps = b"\x00\x00\x01\x09\xf0", b"\x00\x00\x01\x67\x64", b"\x00\x00\x01\x68\xee"
    sei = b"\x00\x00\x01\x06\x05"
    assert _key_nal(aud + sps + pps + sei, hevc=False)  # the IDR slice is in the next packet
    assert _key_nal(aud + sps, hevc=False)
    assert _key_nal(aud + b"\x00\x00\x01\x65", hevc=False)  # an IDR without parameter sets, its header the last byte
    assert not _key_nal(aud + sei, hevc=False)  # nothing that tells yet
    assert not _key_nal(aud + sei + b"\x00\x00\x01", hevc=False)  # a start code with no NAL header after it
    assert not _key_nal(b"\x00\x00\x65\x88", hevc=False)  # no start code at all
    # A PES that starts with a non-IDR picture is no cut point, whatever follows in it.
    assert not _key_nal(aud + b"\x00\x00\x01\x41\x9a" + aud + sps + b"\x00\x00\x01\x65", hevc=False)
    # BLA_W_LP, IDR_W_RADL, CRA, VPS, SPS; TRAIL_R, RASL_R, a reserved type (RSV_IRAP_VCL22: ignored)
    hevc = {16: True, 19: True, 21: True, 32: True, 33: True, 1: False, 9: False, 22: False}
    for kind, key in hevc.items():
        assert _key_nal(b"\x00\x00\x01\x46\x01\x00\x00\x01" + bytes([kind << 1, 0x01]), hevc=True) is key, kind


def test_find_sync_needs_several_packets_in_a_row() -> None:
    packet = b"\x47" + bytes(187)
    data = b"\x47junk" + packet * 5
    assert find_sync(data, 0) == 5
    assert find_sync(packet * 3, 0) is None  # not enough to be sure


def test_keyframe_nal_units() -> None:
    aud = b"\x00\x00\x00\x01\x09\xf0"
    assert _key_nal(aud + b"\x00\x00\x00\x01\x67\x64" + b"\x00\x00\x01\x65", hevc=False)  # SPS, IDR
    assert not _key_nal(aud + b"\x00\x00\x01\x41\x9a", hevc=False)  # non-IDR slice
    assert _key_nal(b"\x00\x00\x01\x46\x01" + b"\x00\x00\x01\x40\x01", hevc=True)  # AUD, VPS
    assert not _key_nal(b"\x00\x00\x01\x02\x01", hevc=True)  # TRAIL_R


def test_find_program_refuses_what_it_cannot_cut() -> None:
    with pytest.raises(NotEligible):
        find_program(os.urandom(10_000).replace(b"\x47", b"\x00"))


def test_which_inputs_take_the_fast_path(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=8, gop_seconds=2, fps=FPS)
    audio_only = media.ts(seconds=8, gop_seconds=2, fps=FPS, video=False)
    cases = [
        (source, {}, (), "MPEG-TS fast path: cutting at 188-byte packet level"),
        (source, {"HLS_SEGMENT_FAST_PATH": "1"}, ("--no-fast-path",), "MPEG-TS fast path not used: turned off"),
        (source, {"HLS_SEGMENT_FAST_PATH": "0"}, (), "MPEG-TS fast path not used: turned off"),
        (audio_only, {}, (), "MPEG-TS fast path not used: no video stream"),
    ]
    for n, (path, env, options, expected) in enumerate(cases):
        old = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            with Listener(free_port):
                result = run_segmenter(path, "4", tmp_path / str(n), free_port, *options)
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr


def test_fast_path_segments_play_alone_and_joined(tmp_path: Path, media: MediaCache, free_port: int) -> None:
    source = media.ts(seconds=12, gop_seconds=2, fps=FPS)
    with Listener(free_port):
        result = run_segmenter(source, "4", tmp_path, free_port)
    assert result.returncode == 0, result.stderr
    files = segment_files(tmp_path)
    assert len(files) == 3
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(f.read_bytes() for f in files))
    for path in [*files, joined]:
        decode = subprocess.run(["ffmpeg", "-v", "warning", "-i", str(path), "-f", "null", "-"],
                                capture_output=True, text=True, check=True)
        assert decode.stderr == "", f"{path.name}: {decode.stderr}"
    assert probe(joined).packet_count == probe(source).packet_count
