"""Do the renditions of a program line up? Same segment number -> same start, within a frame. Pure.

With the grid cut rule, renditions encoded from one source with the same GOP are cut at the same
timestamps and numbered alike, so a player can switch between them at any segment boundary. The
first rendition the daemon hears from in a program is its reference; another rendition whose
segment N starts more than one frame away from the reference's segment N is drifting, and is
named in the warning, whichever of the two arrives first.
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
    start_s: float
    frame_s: float


@dataclass(slots=True)
class AlignmentTracker:
    """Per program: segment number -> each rendition's start. Feed ``observe`` every segment."""

    memory: int = ALIGNMENT_MEMORY
    reference: str | None = None
    _starts: collections.OrderedDict[int, dict[str, Reported]] = field(default_factory=collections.OrderedDict)

    def observe(self, rendition: str, number: int, start_s: float | None, frame_rate: float | None) -> list[str]:
        """Record that ``rendition``'s segment ``number`` starts at ``start_s`` (seconds; None: not
        reported, nothing recorded) at ``frame_rate`` (frames/s; None: 25).

        Returns warnings for the log, one line each, naming a rendition whose segment ``number``
        does not line up with the reference's; empty when all do or there is nothing to compare.
        """
        if start_s is None:
            return []
        if self.reference is None:
            self.reference = rendition
        reported = Reported(start_s, 1.0 / frame_rate if frame_rate else DEFAULT_FRAME_S)
        starts = self._starts.get(number)
        if starts is None:
            starts = self._starts[number] = {}
            while len(self._starts) > self.memory:
                self._starts.popitem(last=False)
        starts[rendition] = reported
        reference = starts.get(self.reference)
        if reference is None:
            return []  # compared when the reference's segment arrives
        others = starts.items() if rendition == self.reference else [(rendition, reported)]
        return [
            warning
            for name, other in others
            if name != self.reference and (warning := self._compare(name, number, other, reference))
        ]

    def _compare(self, rendition: str, number: int, other: Reported, reference: Reported) -> str | None:
        drift_s = other.start_s - reference.start_s
        allowed_s = max(other.frame_s, reference.frame_s)
        if abs(drift_s) <= allowed_s + 1e-6:
            return None
        return (
            f"rendition {rendition} drifts: its segment {number} starts at {other.start_s:.3f} s,"
            f" {drift_s:+.3f} s from {self.reference} ({reference.start_s:.3f} s), more than one frame"
            f" ({allowed_s:.3f} s); players switching renditions will skip or repeat"
        )
