"""The MPEG-TS fast path at the edges of its input: pause filling across a new timeline, PES
headers split across packets, PUSI packets with little or no payload, adaptation fields, PSI
edge cases."""

from __future__ import annotations

from collections import Counter

import pytest

from segmenter.tsfast import DROPPED, OPEN
from tests.support.media import MediaCache

from .test_silence import adts_frames, pes_units
from .test_tsfast import (
    find_program,
    get_timestamp,
    interleave,
    packets_by_pid,
    shift_timestamps,
    split,
)

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
