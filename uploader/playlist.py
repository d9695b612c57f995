"""Media playlist text from a stream's state (RFC 8216). Pure: one type per tag, then text."""

from __future__ import annotations

from dataclasses import dataclass

from .config import PlaylistType
from .stream import StreamState

# Fractional EXTINF needs version 3 (RFC 8216 7); nothing we write needs more.
PLAYLIST_VERSION = 3


@dataclass(frozen=True, slots=True)
class PlaylistOptions:
    window: int  # segments listed by a live playlist
    playlist_type: PlaylistType = PlaylistType.LIVE


@dataclass(frozen=True, slots=True)
class Header:
    def line(self) -> str:
        return "#EXTM3U"


@dataclass(frozen=True, slots=True)
class Version:
    number: int

    def line(self) -> str:
        return f"#EXT-X-VERSION:{self.number}"


@dataclass(frozen=True, slots=True)
class TargetDuration:
    seconds: int

    def line(self) -> str:
        return f"#EXT-X-TARGETDURATION:{self.seconds}"


@dataclass(frozen=True, slots=True)
class MediaSequence:
    number: int

    def line(self) -> str:
        return f"#EXT-X-MEDIA-SEQUENCE:{self.number}"


@dataclass(frozen=True, slots=True)
class DiscontinuitySequence:
    number: int

    def line(self) -> str:
        return f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.number}"


@dataclass(frozen=True, slots=True)
class PlaylistTypeTag:
    kind: PlaylistType

    def line(self) -> str:
        return f"#EXT-X-PLAYLIST-TYPE:{self.kind.value.upper()}"


@dataclass(frozen=True, slots=True)
class Discontinuity:
    def line(self) -> str:
        return "#EXT-X-DISCONTINUITY"


@dataclass(frozen=True, slots=True)
class ExtInf:
    duration_s: float

    def line(self) -> str:
        return f"#EXTINF:{format_duration(self.duration_s)},"


@dataclass(frozen=True, slots=True)
class Uri:
    text: str

    def line(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class EndList:
    def line(self) -> str:
        return "#EXT-X-ENDLIST"


Tag = (
    Header
    | Version
    | TargetDuration
    | MediaSequence
    | DiscontinuitySequence
    | PlaylistTypeTag
    | Discontinuity
    | ExtInf
    | Uri
    | EndList
)


def format_duration(duration_s: float) -> str:
    """Microsecond precision without trailing zeros: 10 -> "10", 2.0020 -> "2.002"."""
    return f"{duration_s:.6f}".rstrip("0").rstrip(".")


def playlist_tags(state: StreamState, options: PlaylistOptions) -> list[Tag]:
    """The playlist as tags: the last ``window`` segments live, every kept segment otherwise."""
    if state.target_duration_s is None:
        raise ValueError("a stream without a target duration has no playlist yet")
    segments = state.segments
    if options.playlist_type is PlaylistType.LIVE and len(segments) > options.window:
        dropped, segments = segments[: -options.window], segments[-options.window :]
    else:
        dropped = ()
    discontinuity_sequence = state.discontinuity_sequence + sum(1 for s in dropped if s.discontinuity)
    first_sequence = segments[0].media_sequence if segments else state.next_media_sequence
    tags: list[Tag] = [
        Header(),
        Version(PLAYLIST_VERSION),
        TargetDuration(state.target_duration_s),
        MediaSequence(first_sequence),
    ]
    if discontinuity_sequence or any(segment.discontinuity for segment in segments):
        tags.append(DiscontinuitySequence(discontinuity_sequence))
    if options.playlist_type is not PlaylistType.LIVE:
        tags.append(PlaylistTypeTag(options.playlist_type))
    for segment in segments:
        if segment.discontinuity:
            tags.append(Discontinuity())
        tags += [ExtInf(segment.duration_s), Uri(segment.uri)]
    if state.ended:
        tags.append(EndList())
    return tags


def render(tags: list[Tag]) -> str:
    return "".join(tag.line() + "\n" for tag in tags)


def media_playlist(state: StreamState, options: PlaylistOptions) -> str:
    """The m3u8 text of ``state``."""
    return render(playlist_tags(state, options))


def should_publish(state: StreamState, options: PlaylistOptions) -> bool:
    """A VOD playlist must never change (RFC 8216 6.2.1), so it goes out once, when complete."""
    return options.playlist_type is not PlaylistType.VOD or state.ended
