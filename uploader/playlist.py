"""Media playlist text from a stream's state (RFC 8216). Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .stream import StreamState

# Fractional EXTINF needs version 3 (RFC 8216 7); nothing we write needs more.
PLAYLIST_VERSION = 3


class PlaylistType(enum.StrEnum):
    LIVE = "live"  # sliding window, no EXT-X-PLAYLIST-TYPE
    EVENT = "event"  # every segment kept, EXT-X-PLAYLIST-TYPE:EVENT
    VOD = "vod"  # every segment kept, published once the stream ends


@dataclass(frozen=True, slots=True)
class PlaylistOptions:
    window: int  # segments listed by a live playlist
    playlist_type: PlaylistType = PlaylistType.LIVE


def format_duration(duration_s: float) -> str:
    """Microsecond precision without trailing zeros: 10 -> "10", 2.0020 -> "2.002"."""
    return f"{duration_s:.6f}".rstrip("0").rstrip(".")


def playlist_lines(state: StreamState, options: PlaylistOptions) -> list[str]:
    """The playlist's lines: the last ``window`` segments live, every kept segment otherwise."""
    if state.target_duration_s is None:
        raise ValueError("a stream without a target duration has no playlist yet")
    segments = state.segments
    if options.playlist_type is PlaylistType.LIVE and len(segments) > options.window:
        dropped, segments = segments[: -options.window], segments[-options.window :]
    else:
        dropped = ()
    discontinuity_sequence = state.discontinuity_sequence + sum(1 for s in dropped if s.discontinuity)
    first_sequence = segments[0].media_sequence if segments else state.next_media_sequence
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{state.target_duration_s}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}",
    ]
    if discontinuity_sequence or any(segment.discontinuity for segment in segments):
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if options.playlist_type is not PlaylistType.LIVE:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{options.playlist_type.value.upper()}")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{format_duration(segment.duration_s)},", segment.uri]
    if state.ended:
        lines.append("#EXT-X-ENDLIST")
    return lines


def media_playlist(state: StreamState, options: PlaylistOptions) -> str:
    """The m3u8 text of ``state``."""
    return "".join(line + "\n" for line in playlist_lines(state, options))


def should_publish(state: StreamState, options: PlaylistOptions) -> bool:
    """A VOD playlist must never change (RFC 8216 6.2.1), so it goes out once, when complete."""
    return options.playlist_type is not PlaylistType.VOD or state.ended
