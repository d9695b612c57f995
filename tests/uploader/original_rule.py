"""The original s3server.rb's playlist rule, transcribed, as the reference the daemon is checked against."""

from __future__ import annotations


def ruby_index(segment_duration: int, output_prefix: str, http_prefix: str, first: int, last: int) -> list[str]:
    """create_index of s3server.rb, line for line (its tags only; it wrote no VERSION)."""
    lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{segment_duration}"]
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{last - 4 if last >= 5 else 1}")
    for index in range(first, last + 1):
        if index > last - 5:
            lines.append(f"#EXTINF:{segment_duration}")
            lines.append(f"{http_prefix}{output_prefix}-{index:05d}.ts")
    return lines


def comparable(text: str) -> list[str]:
    """Our playlist reduced to the original's tags: no VERSION, no DISCONTINUITY-SEQUENCE, EXTINF
    without its comma."""
    return [line.rstrip(",") for line in text.splitlines()
            if not line.startswith(("#EXT-X-VERSION", "#EXT-X-DISCONTINUITY-SEQUENCE"))]
