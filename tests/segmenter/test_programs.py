"""One program of a multi-program MPEG-TS, never merged; and what the PMT says of each stream survives.

A mux like a DVB or IPTV capture (a radio program, then a TV program with two audio tracks in two
languages, one for the hearing impaired) is segmented on both paths: every segment holds the one
program chosen (``--program N``, else the first with video), under a PAT that names it alone, with
each audio track's ISO 639 language and audio type; a program the input does not have is a
one-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import av
import pytest

from segmenter.errors import InputError
from segmenter.input import Program, choose_program, input_programs, parse_programs
from segmenter.psi import (
    PAT_PID,
    ProgramFilter,
    ProgramWatch,
    crc32_mpeg2,
    packet_pid,
    pat_programs,
    section,
    single_program_pat,
)
from segmenter.tsfast import find_program
from tests.support.listener import Listener
from tests.support.media import MediaCache
from tests.support.segmenter_media import concatenate, run_segmenter, segment_files

TS = 188
VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
RADIO, TV = 7, 9
# Program 7: a radio program (audio only, English). Program 9: video, German audio, and French
# audio for the hearing impaired. Elementary PIDs as ffmpeg numbers them, in this order.
RADIO_AUDIO_PID, TV_VIDEO_PID, TV_GERMAN_PID, TV_FRENCH_PID = 0x100, 0x101, 0x102, 0x103


def ffmpeg(path: Path, *args: str) -> Path:
    if not path.exists():
        part = path.with_suffix(".part")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, "-f", "mpegts", str(part)],
                       check=True, timeout=120)
        os.replace(part, path)
    return path


def two_programs(media: MediaCache) -> Path:
    """Six seconds of a mux of two programs: radio (7) first, TV (9) second."""
    return ffmpeg(
        media.directory / "programs-radio-tv.ts",
        "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", *VIDEO,
        "-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000",
        "-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000",
        "-map", "0", "-map", "1", "-map", "2", "-map", "3",
        "-program", f"program_num={RADIO}:title=Radio:st=0", "-program", f"program_num={TV}:title=TV:st=1:st=2:st=3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=deu", "-metadata:s:a:2", "language=fra",
        "-disposition:a:2", "hearing_impaired", "-t", "6",
    )


def two_languages(media: MediaCache) -> Path:
    """Six seconds of one program: video and two audio tracks, English and French."""
    return ffmpeg(
        media.directory / "programs-two-languages.ts", *VIDEO,
        "-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000",
        "-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000",
        "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-t", "6",
    )


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_programs", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)


def streams_of(info: dict) -> list[tuple[str, str | None, bool]]:
    """(codec type, language, hearing impaired) of each stream of the one program in ``info``."""
    (program,) = info["programs"]
    return [(s["codec_type"], s.get("tags", {}).get("language"), bool(s["disposition"]["hearing_impaired"]))
            for s in program["streams"]]


def pids(path: Path) -> set[int]:
    data = path.read_bytes()
    return {packet_pid(data[i : i + TS]) for i in range(0, len(data), TS)}


def pat_of(path: Path) -> tuple[tuple[int, int], ...]:
    """The programs of the segment's first packet, a PAT."""
    table = section(path.read_bytes()[:TS])
    assert table is not None and crc32_mpeg2(table) == 0
    return pat_programs(table)


# -- choosing ------------------------------------------------------------------------------------

def test_the_programs_ffmpeg_found(media: MediaCache) -> None:
    with av.open(str(two_programs(media))) as container:
        assert input_programs(container) == (Program(RADIO, (0,), "Radio"), Program(TV, (1, 2, 3), "TV"))
    with av.open(str(media.ts(seconds=2))) as container:
        assert [p.streams for p in input_programs(container)] == [(0, 1)]
    listing = "Input #0, mp4\n  Stream #0:0: Video: h264\n"  # a format without programs
    assert parse_programs(listing) == ()
    listing = ("  Program 3 \n    Metadata:\n      service_name    : A b\n  Stream #0:1[0x101]: Audio\n"
               "    Metadata:\n      service_name    : not the program's\n  Program 4 \n  No Program\n"
               "  Stream #0:0[0x1ff]: Data\n")
    assert parse_programs(listing) == (Program(3, (1,), "A b"), Program(4, ()))


def test_the_choice() -> None:
    radio, tv, other_tv = Program(7, (0,)), Program(9, (1, 2)), Program(11, (3,))
    video = {1, 3}.__contains__
    assert choose_program((radio, tv, other_tv), video, None) == (
        tv, "program 9 (the first with video); not copied: program 7 (1 streams), program 11 (1 streams)")
    assert choose_program((radio, tv), video, 7)[0] == radio
    assert choose_program((radio,), video, None) == (radio, "")  # one program: nothing to say
    assert choose_program((radio, Program(8, (4,), "Talk")), video, None)[1] == (
        "program 7 (the first; none has video); not copied: program 8 'Talk' (1 streams)")
    assert choose_program((), video, None) == (None, "")
    with pytest.raises(InputError, match=r"^--program 5: the input has no such program \(it has 7, 9\)$"):
        choose_program((radio, tv), video, 5)
    with pytest.raises(InputError, match="no program table"):
        choose_program((), video, 5)


# -- the fast path's program filter and watch --------------------------------------------------------

def test_the_filter_keeps_one_program_under_a_pat_naming_it_alone(media: MediaCache) -> None:
    data = two_programs(media).read_bytes()
    program = find_program(data, TV)
    assert program.others and program.number == TV
    assert pat_programs(section(program.pat_packet)) == ((TV, program.pmt_pid),)  # type: ignore[arg-type]
    kept, count = program.program_filter().keep(data, len(data) // TS)  # type: ignore[union-attr]
    assert len(kept) == count * TS
    packets = [kept[i : i + TS] for i in range(0, len(kept), TS)]
    wanted = {PAT_PID, program.pmt_pid, TV_VIDEO_PID, TV_GERMAN_PID, TV_FRENCH_PID}
    assert {packet_pid(p) for p in packets} == wanted
    for pid in wanted - {PAT_PID}:  # every packet of the program, none other
        assert sum(packet_pid(p) == pid for p in packets) == sum(
            packet_pid(data[i : i + TS]) == pid for i in range(0, len(data), TS))
    pats = [p for p in packets if packet_pid(p) == PAT_PID]
    assert pats and all(pat_programs(section(p)) == ((TV, program.pmt_pid),) for p in pats)  # type: ignore[arg-type]
    counters = [p[3] & 0x0F for p in pats]  # the input's continuity counters, kept
    assert counters == [(counters[0] + n) % 16 for n in range(len(counters))]
    assert find_program(data).number == RADIO  # no number: the PAT's first
    single = media.ts(seconds=2)
    assert find_program(single.read_bytes()).program_filter() is None


def test_a_pat_that_cannot_be_rewritten() -> None:
    pat = bytearray(b"\x47\x40\x00\x10\x00" + b"\x00\xb0\x11\x00\x01\xc1\x00\x00\x00\x07\xf0\x00\x00\x09\xf0\x01")
    pat += crc32_mpeg2(bytes(pat[5:])).to_bytes(4, "big")
    pat = bytes(pat.ljust(TS, b"\xff"))
    assert pat_programs(section(single_program_pat(pat, 9, 0x1001))) == ((9, 0x1001),)  # type: ignore[arg-type]
    broken = pat[:10] + bytes([pat[10] ^ 1]) + pat[11:]
    assert single_program_pat(broken, 9, 0x1001) is None  # a bad CRC
    assert ProgramFilter(9, 0x1001, [0x101]).keep(broken + pat, 2) == (single_program_pat(pat, 9, 0x1001), 1)


def changed_pmt(packet: bytes) -> bytes:
    """The PMT packet with its last stream's type changed (AAC to AC-3), CRC made right."""
    offset = 5 + packet[4]
    length = ((packet[offset + 1] & 0x0F) << 8) | packet[offset + 2]
    body = bytearray(packet[offset : offset + 3 + length - 4])
    position = 12 + (((body[10] & 0x0F) << 8) | body[11])
    last = position
    while position + 5 <= len(body):
        last = position
        position += 5 + (((body[position + 3] & 0x0F) << 8) | body[position + 4])
    body[last] = 0x81
    section_bytes = bytes(body) + crc32_mpeg2(bytes(body)).to_bytes(4, "big")
    return (packet[:offset] + section_bytes).ljust(TS, b"\xff")


def test_the_watch_follows_the_chosen_program_only(media: MediaCache) -> None:
    data = two_programs(media).read_bytes()
    radio, tv = find_program(data, RADIO), find_program(data, TV)
    head = data[: 40 * TS]  # the first PAT and both PMTs
    for followed, changed, counts in [(None, radio, True), (TV, radio, False), (TV, tv, True), (RADIO, tv, False)]:
        watch = ProgramWatch()
        assert watch.feed(head) == head and watch.change is None
        watch.follow(followed)
        assert bool(watch.feed(changed_pmt(changed.pmt_packet))) is not counts
        assert (watch.change is not None) is counts, (followed, changed.number)
    # A PAT that drops the other program is no change of the followed one; one that moves it is.
    watch = ProgramWatch()
    watch.feed(head)
    watch.follow(TV)
    alone = single_program_pat(radio.pat_packet, TV, tv.pmt_pid)
    assert watch.feed(alone) == alone and watch.change is None  # type: ignore[arg-type]
    moved = single_program_pat(radio.pat_packet, TV, tv.pmt_pid + 1)
    assert watch.feed(moved) == b"" and "PAT now lists programs 9" in (watch.change or "")  # type: ignore[arg-type]


# -- end to end through hls-segment -----------------------------------------------------------------

def segment(source: Path, tmp_path: Path, port: int, *options: str) -> tuple[list[Path], str]:
    with Listener(port) as listener:
        result = run_segmenter(source, "2", tmp_path, port, *options)
    assert result.returncode == 0, result.stderr
    files = segment_files(tmp_path)
    assert len(files) == len(listener.messages) >= 3
    return files, result.stderr


def decodes(files: list[Path], tmp_path: Path) -> None:
    with av.open(str(concatenate(files, tmp_path / "all.ts"))) as container:
        frames = sum(1 for packet in container.demux() for _ in packet.decode())
    assert frames


def test_the_first_program_with_video_by_default(segmenter_path: str, media: MediaCache, tmp_path: Path,
                                                 free_port: int) -> None:
    files, log = segment(two_programs(media), tmp_path, free_port)
    assert ("MPEG-TS fast path: cutting" in log) is (segmenter_path == "fast-path"), log
    assert "copying program 9 'TV' (the first with video); not copied: program 7 'Radio' (1 streams)" in log
    for file in files:
        info = probe(file)
        assert [p["program_num"] for p in info["programs"]] == [TV], file.name
        assert streams_of(info) == [("video", None, False), ("audio", "deu", False), ("audio", "fra", True)]
        assert len(info["streams"]) == 3  # nothing outside the program either
        assert [number for number, _ in pat_of(file)] == [TV]
        if segmenter_path == "fast-path":  # the input's packets: its PIDs, the radio's left out
            assert RADIO_AUDIO_PID not in pids(file)
            assert {TV_VIDEO_PID, TV_GERMAN_PID, TV_FRENCH_PID} <= pids(file)
    decodes(files, tmp_path)


def test_program_n(segmenter_path: str, media: MediaCache, tmp_path: Path, free_port: int) -> None:
    files, log = segment(two_programs(media), tmp_path, free_port, "--program", str(RADIO))
    assert "copying program 7 'Radio' (--program); not copied: program 9 'TV' (3 streams)" in log
    assert "MPEG-TS fast path not used: no video stream" in log or segmenter_path == "pyav"
    for file in files:
        info = probe(file)
        assert [p["program_num"] for p in info["programs"]] == [RADIO]
        assert streams_of(info) == [("audio", "eng", False)]
        assert len(info["streams"]) == 1
    decodes(files, tmp_path)


def test_a_program_the_input_does_not_have(segmenter_path: str, media: MediaCache, tmp_path: Path,
                                           free_port: int) -> None:
    with Listener(free_port) as listener:
        result = run_segmenter(two_programs(media), "2", tmp_path, free_port, "--program", "5")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "hls-segment:" in line]
    assert errors == ["hls-segment: --program 5: the input has no such program (it has 7, 9)"], result.stderr
    assert "Traceback" not in result.stderr
    assert not listener.messages and not segment_files(tmp_path)


@pytest.mark.parametrize("value", ["0", "65536", "x"])
def test_program_values_out_of_range(value: str, tmp_path: Path, free_port: int) -> None:
    result = run_segmenter(b"", "2", tmp_path, free_port, "--program", value)
    assert result.returncode == 2
    assert "--program" in result.stderr and "Traceback" not in result.stderr


def test_languages_of_two_audio_tracks_survive(segmenter_path: str, media: MediaCache, tmp_path: Path,
                                               free_port: int) -> None:
    files, log = segment(two_languages(media), tmp_path, free_port)
    assert ("MPEG-TS fast path: cutting" in log) is (segmenter_path == "fast-path"), log
    for file in files:
        assert streams_of(probe(file)) == [("video", None, False), ("audio", "eng", False), ("audio", "fra", False)]
        with av.open(str(file)) as container:
            assert [s.metadata.get("language") for s in container.streams.audio] == ["eng", "fra"]
