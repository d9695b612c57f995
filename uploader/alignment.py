"""Do the renditions of a program line up? Same segment number -> same start, within a frame. Pure.

With the grid cut rule, renditions encoded from one source with the same GOP are cut at the same
timestamps and numbered alike, so a player can switch between them at any segment boundary. The
first rendition to report a segment number is the reference for that number; a later one whose
``start`` is more than one frame away from it is drifting, and is named in the warning.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

# Segment numbers remembered per program: renditions arrive within a few segments of each other;
# a rendition more than this far behind is not compared (and costs no memory).
ALIGNMENT_MEMORY = 64

# Used when neither rendition reports its frame rate: one frame at 25 fps.
DEFAULT_FRAME_S = 0.04


@dataclass(frozen=True, slots=True)
class Reported:
    rendition: str
    start_s: float
    frame_s: float


@dataclass(slots=True)
class AlignmentTracker:
    """Per program: segment number -> the first rendition's start. Feed ``check`` every segment."""

    memory: int = ALIGNMENT_MEMORY
    _first: collections.OrderedDict[int, Reported] = field(default_factory=collections.OrderedDict)

    def check(self, rendition: str, number: int, start_s: float | None, frame_rate: float | None) -> str | None:
        """A warning naming ``rendition`` when its segment ``number`` does not line up, else None."""
        if start_s is None:
            return None
        frame_s = 1.0 / frame_rate if frame_rate else DEFAULT_FRAME_S
        reference = self._first.get(number)
        if reference is None:
            self._first[number] = Reported(rendition, start_s, frame_s)
            while len(self._first) > self.memory:
                self._first.popitem(last=False)
            return None
        if reference.rendition == rendition:
            self._first[number] = Reported(rendition, start_s, frame_s)  # re-sent or restarted
            return None
        drift_s = start_s - reference.start_s
        allowed_s = max(frame_s, reference.frame_s)
        if abs(drift_s) <= allowed_s + 1e-6:
            return None
        return (
            f"rendition {rendition} drifts: its segment {number} starts at {start_s:.3f} s,"
            f" {drift_s:+.3f} s from {reference.rendition} ({reference.start_s:.3f} s), more than one frame"
            f" ({allowed_s:.3f} s); players switching renditions will skip or repeat"
        )
