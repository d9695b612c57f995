"""``hls-uploadd status``: the spool's streams as lines for a person or JSON for a script. Pure:
the command reads the spool (``spool.read_summaries``) and prints what these return."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .stream import StreamSummary, stream_label


def _age(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``2 d``: an age for a person, to the unit that matters."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def status_line(summary: StreamSummary, now: float) -> str:
    """One line on one stream (``now``: wall clock, Unix s)::

        live/demo/stream.m3u8: live; last demo-00042.ts (media sequence 42) 1 s ago; queued 0;
        window 5; target 2 s; failed 0
    """
    parts = [f"{stream_label(summary.key)}: {summary.state}"]
    if summary.held_since is not None:
        parts[0] += f" for {_age(now - summary.held_since)} ({summary.held_reason})"
    if summary.last_media_sequence:
        last = f"last {summary.last_uri.rpartition('/')[2] if summary.last_uri else '?'}"
        last += f" (media sequence {summary.last_media_sequence})"
        if summary.published_at is not None:
            last += f" {_age(max(0.0, now - summary.published_at))} ago"
        parts.append(last)
    else:
        parts.append("nothing published yet")
    queued = f"queued {summary.queued}"
    if summary.oldest_queued_at is not None:
        queued += f" (oldest {_age(max(0.0, now - summary.oldest_queued_at))} old)"
    parts += [queued, f"window {summary.listed}",
              f"target {summary.target_duration_s} s" if summary.target_duration_s is not None else "target not set",
              f"failed {summary.failed}"]
    return "; ".join(parts)


def status_json(summaries: Sequence[StreamSummary], now: float) -> str:
    """Every stream as one JSON object in a list; times as Unix seconds and ages in seconds
    (null where there is none)."""
    def entry(summary: StreamSummary) -> dict[str, Any]:
        bucket, key_prefix, index = summary.key
        return {
            "stream": stream_label(summary.key), "bucket": bucket, "key_prefix": key_prefix, "index": index,
            "state": summary.state,
            "held_since": summary.held_since, "held_reason": summary.held_reason,
            "media_sequence": summary.last_media_sequence, "last_segment": summary.last_uri,
            "last_publish_at": summary.published_at,
            "last_publish_age_s": None if summary.published_at is None else max(0.0, now - summary.published_at),
            "queued": summary.queued,
            "oldest_queued_age_s": None if summary.oldest_queued_at is None else max(0.0, now - summary.oldest_queued_at),
            "window": summary.listed, "target_duration_s": summary.target_duration_s,
            "ended": summary.ended, "failed": summary.failed,
        }
    return json.dumps([entry(summary) for summary in summaries], indent=1)
