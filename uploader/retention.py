"""What is deleted when: segments that left a live window, and streams whose segmenter went
silent. Pure: the spool and the housekeeper (uploader/housekeeping.py) act on these verdicts.

A segment removed from a live playlist must stay downloadable "for a period of time equal to the
duration of the segment plus the duration of the longest Playlist file distributed by the server
containing that segment" (RFC 8216 6.2.2). The daemon deletes its object after that time plus an
allowance for caches in front of the store (--cdn-allowance), counted from the moment the spool
recorded the removal, which is after the playlist without it was uploaded.
"""

from __future__ import annotations

import enum
import math
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol import segment_file_name, segment_number

from .resume import segment_name
from .stream import PublishedSegment


@dataclass(frozen=True, slots=True)
class Deletion:
    """One object to delete once the wall clock reaches ``due_at`` (seconds since the epoch)."""

    key: str
    due_at: float
    size_bytes: int | None = None  # of the object, when known (for the cost sheet's storage)


def deletions(
    removed: Iterable[PublishedSegment], *, longest_playlist_s: float, removed_at: float, allowance_s: float
) -> list[Deletion]:
    """The deletions of the segments a live playlist just removed (``stream.Transition.removed``).

    ``longest_playlist_s``: the longest playlist of the stream so far (``StreamState
    .longest_playlist_s``), an upper bound of the longest one that contained each segment;
    ``removed_at``: wall clock of the removal, seconds; ``allowance_s``: --cdn-allowance.
    Each is due at ``removed_at`` + its duration + ``longest_playlist_s`` + ``allowance_s``
    (RFC 8216 6.2.2). A segment without a ``key`` (recorded before the daemon noted the keys it
    wrote) is never deleted: only objects this daemon wrote are.
    """
    return [
        Deletion(segment.key, removed_at + segment.duration_s + longest_playlist_s + allowance_s, segment.size_bytes)
        for segment in removed
        if segment.key is not None
    ]


# The most deletions ``left_behind`` queues after one takeover.
MAX_LEFT_BEHIND = 1000


def left_behind(window: Sequence[PublishedSegment], *, output_prefix: str, longest_playlist_s: float,
                allowance_s: float, now: float) -> list[Deletion]:
    """After going on from a playlist another daemon wrote (``window``, its segments as read back
    from the store): the deletions that daemon had queued and lost with its spool. Those are the
    objects of ``output_prefix`` numbered just below the window's first segment of it, as many as
    can have left a live window within RFC 8216 6.2.2's time plus ``allowance_s`` (one per
    shortest segment of the window, at most MAX_LEFT_BEHIND), each due as if it left at ``now``.
    Only segments whose object key is known (a playlist this program wrote) count; a key already
    deleted is deleted again, which a store answers as done."""
    numbered = [(number, segment) for segment in window if segment.key is not None
                and (number := segment_number(segment_name(segment.uri), output_prefix)) is not None]
    if not numbered:
        return []
    first, segment = min(numbered, key=lambda pair: pair[0])
    shortest_s = max(0.1, min(s.duration_s for _, s in numbered))
    count = min(MAX_LEFT_BEHIND, math.ceil((longest_playlist_s + allowance_s) / shortest_s))
    folder = posixpath.dirname(segment.key)  # type: ignore[arg-type]  # not None: filtered above
    due_at = now + shortest_s + longest_playlist_s + allowance_s
    return [Deletion(posixpath.join(folder, segment_file_name(output_prefix, number)), due_at)
            for number in range(max(1, first - count), first)]


# A deletion the store refused waits this long before its next attempt at most, seconds.
MAX_DELETION_RETRY_DELAY_S = 300.0


def retry_at(now: float, attempts: int, *, base_s: float = 1.0) -> float:
    """When a deletion that failed ``attempts`` times (1 or more) is tried again: doubling from
    ``base_s``, capped at MAX_DELETION_RETRY_DELAY_S. A refused delete (missing s3:DeleteObject)
    is something an operator fixes, so it is retried, never dropped."""
    return now + min(MAX_DELETION_RETRY_DELAY_S, base_s * 2 ** min(attempts - 1, 20))


class Silence(enum.Enum):
    """What a stream's silence calls for."""

    KEEP = "keep"
    END = "end"  # no message for --end-silent-after: queue its end (EXT-X-ENDLIST)
    FORGET = "forget"  # ended and quiet for --forget-ended-after: remove its state from the spool


def silence_verdict(
    *, end_queued: bool, ended: bool, queued: bool, quiet_s: float, end_after_s: float, forget_after_s: float
) -> Silence:
    """What to do with a stream that had no message and no publish for ``quiet_s`` seconds.

    ``end_queued``: its end is queued or published; ``ended``: its final playlist is published;
    ``queued``: messages of it wait in the spool (a stream with work is never silent: a store
    outage is not the segmenter's silence). ``end_after_s`` and ``forget_after_s``: the
    options, 0 for never.
    """
    if queued:
        return Silence.KEEP
    if not end_queued:
        return Silence.END if end_after_s > 0 and quiet_s >= end_after_s else Silence.KEEP
    if ended and forget_after_s > 0 and quiet_s >= forget_after_s:
        return Silence.FORGET
    return Silence.KEEP
