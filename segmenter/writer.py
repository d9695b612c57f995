"""Writing segment files: one MPEG-TS muxer per segment, under a temp name that ``run.Committer``
renames once the file is durable; and the segment numbers an output directory already holds."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import av.container
import av.stream

from protocol import segment_file_name

from .psi import SYNC_BYTE, TS_PACKET_BYTES, reorder_leading_psi

# PSI packets the muxer writes ahead of the first PES packet: SDT, PAT, PMT. A few suffice.
_LEADING_PSI_PACKETS = 8


class SegmentWriter:
    """One segment being written under ``.NAME.part`` (``temp_path``); ``path`` is NAME, its
    name once committed.

    Each segment gets its own muxer, so each starts with its own PAT and PMT and opens alone.
    Timestamps are written as given (``mpegts_copyts``): segments are continuous and equal to
    the input's. Each output stream carries its input stream's descriptors as FFmpeg's MPEG-TS
    muxer can write them (``carry_descriptors``); the PAT names one program, ``program_number``
    (the input's, when it said; FFmpeg's default 1 otherwise).
    """

    def __init__(self, directory: Path, prefix: str, number: int, streams: list[av.stream.Stream], *,
                 program_number: int | None = None) -> None:
        self.number = number
        self.name = segment_file_name(prefix, number)
        self.path = directory / self.name
        self.temp_path = directory / f".{self.name}.part"
        options = {"mpegts_copyts": "1"}
        if program_number is not None:
            options["mpegts_service_id"] = str(program_number)
        self._container = av.open(str(self.temp_path), "w", format="mpegts", options=options)
        self._outputs = {}
        for stream in streams:
            output = self._container.add_stream_from_template(stream)
            carry_descriptors(stream, output)
            self._outputs[stream.index] = output
        self._mux = self._container.mux_one

    def write(self, index: int, packet: av.Packet) -> None:
        packet.stream = self._outputs[index]
        self._mux(packet)

    def close(self) -> int:
        """Finish the muxer and the file's first bytes. Returns the size in bytes."""
        self._container.close()
        put_psi_first(self.temp_path)
        return self.temp_path.stat().st_size

    def abort(self) -> None:
        try:
            self._container.close()
        except (av.error.FFmpegError, ValueError):
            pass
        self.temp_path.unlink(missing_ok=True)


def carry_descriptors(source: av.stream.Stream, output: av.stream.Stream) -> None:
    """Give ``output`` what the PMT said of ``source``: its metadata (FFmpeg's MPEG-TS demuxer puts
    the ISO 639 language descriptor's languages in ``language``, which the muxer writes back as
    that descriptor) and its disposition (the descriptor's audio_type: clean effects, hearing
    impaired, visual impaired commentary; ISO/IEC 13818-1 2.6.18). A stream copy otherwise keeps
    only the codec parameters, and a player's audio menu shows unnamed tracks."""
    if source.metadata:
        output.metadata.update(source.metadata)
    output.disposition = source.disposition


def put_psi_first(path: Path) -> None:
    """Reorder the muxer's leading PSI packets to PAT, PMT, then the rest (SDT).

    FFmpeg's muxer writes the SDT first; a segment should open with PAT and PMT so that a reader
    starting at its first byte learns the program at once. Packets of one PID keep their order,
    so continuity counters stay valid.
    """
    with open(path, "r+b") as file:
        head = file.read(TS_PACKET_BYTES * _LEADING_PSI_PACKETS)
        packets = [head[i : i + TS_PACKET_BYTES] for i in range(0, len(head) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES)]
        if not packets or any(p[0] != SYNC_BYTE for p in packets):
            return
        ordered = reorder_leading_psi(packets)
        if ordered != packets[: len(ordered)]:
            file.seek(0)
            file.write(b"".join(ordered))


_STALE_PART = re.compile(r"\.(?P<prefix>.+)-(?P<number>[0-9]{5,})\.ts\.part")


def highest_segment_number(directory: Path, prefix: str) -> int:
    """The highest N of PREFIX-N.ts in ``directory`` (0 when there is none)."""
    pattern = re.compile(re.escape(prefix) + r"-([0-9]{5,})\.ts")
    highest = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest


def remove_stale_parts(directory: Path, prefix: str) -> list[str]:
    """Delete ``.PREFIX-N.ts.part`` files an earlier run left when it was killed."""
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _STALE_PART.fullmatch(entry.name)
            if match and match.group("prefix") == prefix:
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed
