"""The cut rule at its edges: stragglers of tracks that were silent before a jump. Synthetic
packet sequences through the pure Cutter, as in test_cutter.py."""

from __future__ import annotations

import pytest

from segmenter.cutter import DISCONTINUITY_GAP_S
from tests.segmenter.test_cutter import (
    AUDIO,
    AUDIO_20MS,
    SECOND_AUDIO,
    VIDEO,
    Packet,
    audio_at,
    run,
    timed,
    video_at,
    written,
)

GAP = DISCONTINUITY_GAP_S * 90000


# -- stragglers after a jump --------------------------------------------------------------------


def silent_track_straggling(case: str) -> tuple[list, list[Packet], list[Packet]]:
    """Video and audio on one timeline for 12 s, then a new timeline whose first keyframe comes
    before two packets of the old one from a track that was silent before the jump: the audio
    paused (from 3 s) and resumes just before the jump, or a second audio track starts there.
    Returns the streams, the packets and those two stragglers."""
    old_base = 600 * 90000 if case.endswith("backward") else 0
    new_base = 0 if case.endswith("backward") else 600 * 90000
    old_end = old_base + 12 * 90000
    streams = [VIDEO, AUDIO]
    old = video_at(old_base, old_end)
    if case == "starting-late":
        streams = [VIDEO, AUDIO, SECOND_AUDIO]
        old += audio_at(old_base, old_end)
        straggler_index, resume = 2, old_end - 2 * AUDIO_20MS
        new_second = audio_at(new_base, new_base + 6 * 90000, index=2)
    else:
        paused = audio_at(old_base, old_base + 3 * 90000)
        old += paused
        straggler_index, new_second = 1, []
        last = paused[-1][0]
        resume = {
            "paused-forward": old_end - 2 * AUDIO_20MS,
            "paused-backward": last + GAP + AUDIO_20MS,
            "paused-exactly-the-gap-backward": last + GAP,
        }[case]
    stragglers = [Packet(straggler_index, True, ts, ts, AUDIO_20MS) for ts in (resume, resume + AUDIO_20MS)]
    new = timed(video_at(new_base, new_base + 6 * 90000) + audio_at(new_base, new_base + 6 * 90000) + new_second)
    return streams, timed(old) + new[:1] + stragglers + new[1:], stragglers


@pytest.mark.parametrize(
    "case",
    [
        # The encoder restarts further on; the audio had paused longer than DISCONTINUITY_GAP_S.
        "paused-forward",
        # The encoder restarts at a lower time: the old timeline's packet is far ahead of the
        # program's clock, which went back with the video, and more than DISCONTINUITY_GAP_S past
        # the audio's own last packet: still the old timeline, not a jump of the audio.
        "paused-backward",
        # A pause of exactly DISCONTINUITY_GAP_S is a pause, whatever the clock.
        "paused-exactly-the-gap-backward",
        # A track whose first packets come after the jump, from the old timeline.
        "starting-late",
    ],
)
def test_old_timeline_packets_of_a_track_silent_before_a_jump_are_dropped_as_stragglers(case: str) -> None:
    streams, packets, stragglers = silent_track_straggling(case)
    result = run(streams, packets, "6")
    new_start = 0.0 if case.endswith("backward") else 600.0
    old_start = 600.0 if case.endswith("backward") else 0.0
    assert [(t.start_s, t.duration_s, t.discontinuity) for t in result.timings] == [
        (old_start, 6.0, False), (old_start + 6, 6.0, False), (new_start, 6.0, True)]
    # Their segment is closed: dropped, not written into the new timeline's.
    assert result.dropped == stragglers
    # Nothing of the new timeline is lost: the track follows the jump with its next packet.
    assert not result.released
    for index in {p.index for p in stragglers}:
        assert written(result, index) == sum(1 for p in packets if p.index == index) - len(stragglers)
