"""Media playlist text from a stream's state (RFC 8216). Pure."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .stream import PublishedSegment, StreamState, first_kept, format_duration, refilling

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


def playlist_lines(state: StreamState, options: PlaylistOptions,
                   uri: Callable[[PublishedSegment], str] | None = None) -> list[str]:
    """The playlist's lines (RFC 8216 4.3). Live: the tail of the kept segments that
    ``stream.first_kept`` picks (at least ``window`` segments and 3 x the target duration, 6.2.2),
    with EXT-X-DISCONTINUITY-SEQUENCE from the first version on.
    EVENT and VOD: every kept segment; they never remove one, so they never carry
    EXT-X-DISCONTINUITY-SEQUENCE, which would be a header line added to a playlist that may only
    be appended to (6.2.1). ``uri``: the URI each segment is listed by (a signed URL,
    uploader/urls.py); by default the one it was recorded with.

    Raises ValueError when ``state`` has no target duration yet (nothing was published or failed).
    """
    if state.target_duration_s is None:
        raise ValueError("a stream without a target duration has no playlist yet")
    live = options.playlist_type is PlaylistType.LIVE
    segments = listed_segments(state, options)
    dropped = state.segments[:len(state.segments) - len(segments)]
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
        lines += [f"#EXTINF:{format_duration(segment.duration_s)},", segment.uri if uri is None else uri(segment)]
    if state.ended:
        lines.append("#EXT-X-ENDLIST")
    return lines


def listed_segments(state: StreamState, options: PlaylistOptions) -> tuple[PublishedSegment, ...]:
    """The segments the playlist lists: live, the tail ``stream.first_kept`` picks; EVENT and
    VOD, every kept one. ``state`` must have a target duration."""
    if options.playlist_type is not PlaylistType.LIVE or state.target_duration_s is None:
        return state.segments
    return state.segments[first_kept(state.segments, options.window, state.target_duration_s):]


def media_playlist(state: StreamState, options: PlaylistOptions,
                   uri: Callable[[PublishedSegment], str] | None = None) -> str:
    """The m3u8 text of ``state`` (``uri`` as ``playlist_lines`` takes it)."""
    return "".join(line + "\n" for line in playlist_lines(state, options, uri))


def should_publish(state: StreamState, options: PlaylistOptions) -> bool:
    """A VOD playlist must never change (RFC 8216 6.2.1), so it goes out once, when complete. A
    live window refilling after lost segments were dropped (``stream.refilling``) waits until it
    lasts three target durations again (6.2.2)."""
    if options.playlist_type is PlaylistType.VOD:
        return state.ended
    return options.playlist_type is not PlaylistType.LIVE or not refilling(state)
