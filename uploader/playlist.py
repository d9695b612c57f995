"""Media playlist text from a stream's state (RFC 8216). Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .stream import StreamState, first_kept, format_duration, refilling

# Fractional EXTINF needs version 3 (RFC 8216 7); nothing we write needs more.
PLAYLIST_VERSION = 3


class PlaylistType(enum.StrEnum):
    LIVE = "live"  # sliding window, no EXT-X-PLAYLIST-TYPE
    EVENT = "event"  # every segment kept, EXT-X-PLAYLIST-TYPE:EVENT
    VOD = "vod"  # every segment kept, published once the stream ends


@dataclass(frozen=True, slots=True)
class PlaylistOptions:
    window: int  # least segments listed by a live playlist (more when they last under 3 x target)
    playlist_type: PlaylistType = PlaylistType.LIVE


def playlist_lines(state: StreamState, options: PlaylistOptions) -> list[str]:
    """The playlist's lines (RFC 8216 4.3). Live: the tail of the kept segments that
    ``stream.first_kept`` picks (at least ``window`` segments and 3 x the target duration, 6.2.2),
    with EXT-X-DISCONTINUITY-SEQUENCE from the first version on.
    EVENT and VOD: every kept segment; they never remove one, so they never carry
    EXT-X-DISCONTINUITY-SEQUENCE, which would be a header line added to a playlist that may only
    be appended to (6.2.1).

    Raises ValueError when ``state`` has no target duration yet (nothing was published or failed).
    """
    if state.target_duration_s is None:
        raise ValueError("a stream without a target duration has no playlist yet")
    segments = state.segments
    live = options.playlist_type is PlaylistType.LIVE
    first = first_kept(segments, options.window, state.target_duration_s) if live else 0
    dropped, segments = segments[:first], segments[first:]
    discontinuity_sequence = state.discontinuity_sequence + sum(1 for s in dropped if s.discontinuity)
    first_sequence = segments[0].media_sequence if segments else state.next_media_sequence
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{state.target_duration_s}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}",
    ]
    # Live: always, so that the header never gains a line (6.2.1 allows only incrementing it) and
    # the count can grow as tags slide out (6.2.2). EVENT, VOD: only a count carried over from an
    # earlier run as live, present from the start.
    if live or discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if not live:
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
    """A VOD playlist must never change (RFC 8216 6.2.1), so it goes out once, when complete. A
    live window refilling after lost segments were dropped (``stream.refilling``) waits until it
    lasts three target durations again (6.2.2)."""
    if options.playlist_type is PlaylistType.VOD:
        return state.ended
    return options.playlist_type is not PlaylistType.LIVE or not refilling(state)
