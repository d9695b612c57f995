"""``Cutter.feed(..., cut_here=True)``: a reference keyframe where the encoding parameters change
starts a segment off the grid; the timeline and the grid go on."""

from __future__ import annotations

from fractions import Fraction

from segmenter.cutter import Action, Cutter, StreamInfo, StreamKind

TB = Fraction(1, 90000)
VIDEO = StreamInfo(0, StreamKind.VIDEO, TB, wraps=True)
AUDIO = StreamInfo(1, StreamKind.AUDIO, TB, wraps=True)
FRAME = 3600  # 25 fps
GOP = 25  # a keyframe every second


def feed_video(cutter: Cutter, frames: int, *, cut_at: set[int] = frozenset(), cut_any: set[int] = frozenset()):
    """Feed 25-fps video with 1-s GOPs; ``cut_at``: frame numbers fed with cut_here (keyframes or
    not). Returns [(frame number of each CUT, cutter.discontinuity, cutter.finished)]."""
    cuts = []
    for n in range(frames):
        ts = n * FRAME
        action = cutter.feed(0, n % GOP == 0, ts, ts, FRAME, cut_here=n in cut_at or n in cut_any)
        if action is Action.CUT:
            cuts.append((n, cutter.discontinuity, cutter.finished))
        else:
            assert action is Action.WRITE
    return cuts


def test_a_keyframe_with_cut_here_between_grid_points_starts_a_segment_and_the_grid_goes_on() -> None:
    cutter = Cutter([VIDEO], Fraction(4))
    cuts = feed_video(cutter, 25 * 13, cut_at={25 * 5})  # the keyframe at 5 s, between 4 and 8
    assert [n // GOP for n, _, _ in cuts] == [0, 4, 5, 8, 12]
    assert not any(discontinuity for _, discontinuity, _ in cuts)
    finished = [timing for _, _, timing in cuts[1:]]
    assert [(t.start_s, t.duration_s) for t in finished] == [(0.0, 4.0), (4.0, 1.0), (5.0, 3.0), (8.0, 4.0)]
    assert not any(t.discontinuity for t in finished)
    assert not cutter.forced


def test_cut_here_on_a_frame_that_is_not_a_keyframe_is_ignored() -> None:
    cutter = Cutter([VIDEO], Fraction(4))
    cuts = feed_video(cutter, 25 * 9, cut_any={25 * 5 + 3})
    assert [n for n, _, _ in cuts] == [0, 25 * 4, 25 * 8]


def test_cut_here_on_the_keyframe_that_opens_a_segment_cuts_once() -> None:
    cutter = Cutter([VIDEO], Fraction(4))
    cuts = feed_video(cutter, 25 * 9, cut_at={0, 25 * 4})
    assert [n for n, _, _ in cuts] == [0, 25 * 4, 25 * 8]


def test_cut_here_on_another_stream_is_ignored() -> None:
    cutter = Cutter([VIDEO, AUDIO], Fraction(4))
    assert cutter.feed(0, True, 0, 0, FRAME) is Action.CUT
    assert cutter.feed(1, True, 1800, 1800, 1920, cut_here=True) is Action.WRITE
    assert cutter.feed(0, False, FRAME, FRAME, FRAME, cut_here=True) is Action.WRITE
    assert cutter.feed(0, True, 2 * FRAME, 2 * FRAME, FRAME, cut_here=True) is Action.CUT
    assert not cutter.discontinuity
