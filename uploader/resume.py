"""A stream's state as the store holds it: read back from its playlist and the metadata written
beside it, so that any daemon, whatever its spool knows, goes on where viewers are. Pure: no I/O.

A media playlist already says most of what publishing goes on from (RFC 8216 4.3.3): the media
sequence of its first segment, the discontinuity sequence, the target duration, each listed
segment's URI, EXTINF and discontinuity tag, and EXT-X-ENDLIST. The rest, which viewers never
need, goes beside it as S3 user metadata (``STATE_METADATA``, a short JSON object): a gap waiting
for its tag, the measured bit rates of the master playlist, what the segmenter said of the
rendition, and the longest playlist (retention's bound). A store without metadata (a local
directory) resumes from the playlist alone, with those figures measured afresh.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from .stream import PublishedSegment, RenditionInfo, StreamState

# The user metadata key (x-amz-meta-hls-state) of the JSON object ``state_metadata`` writes.
STATE_METADATA = "hls-state"


class UnreadablePlaylist(ValueError):
    """The object under a stream's playlist key is not a media playlist this daemon can go on
    from (no #EXTM3U, no EXT-X-TARGETDURATION, a URI without its EXTINF, a number that is not one)."""


def state_metadata(state: StreamState) -> dict[str, str]:
    """What ``stored_state`` needs beyond the playlist text, as user metadata: one ASCII JSON value
    of about 200 bytes (S3 keeps 2 KB of user metadata per object)."""
    fields = {
        "pending": state.pending_discontinuity,
        "peak_bps": state.peak_bps,
        "total_bits": state.total_bits,
        "total_seconds": state.total_seconds,
        "independent": state.independent,
        "longest_s": state.longest_playlist_s,
        "codecs": state.info.codecs,
        "resolution": state.info.resolution,
        "frame_rate": state.info.frame_rate,
        "bandwidth": state.info.declared_bandwidth,
    }
    return {STATE_METADATA: json.dumps(fields, separators=(",", ":"))}


def segment_name(uri: str) -> str:
    """The file name a listed URI ends with: its path's last part, a signed URL's query left out."""
    return posixpath.basename(urlsplit(uri).path)


def stored_state(text: str, metadata: Mapping[str, str], *, uri_of: Callable[[str], str],
                 key_of: Callable[[str], str], version: str) -> StreamState:
    """The state a media playlist ``text`` (as ``playlist.media_playlist`` writes it) was made from,
    with ``metadata`` (``state_metadata``; missing or unreadable fields take their defaults, the
    bit rates then measured afresh) and ``version`` (its entity tag). Each listed segment is
    recorded under the URI ``uri_of(name)`` and the object key ``key_of(name)`` of its file name
    (``segment_name``), as this daemon would have recorded it.

    Raises UnreadablePlaylist.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise UnreadablePlaylist("it does not start with #EXTM3U")
    target: int | None = None
    first_sequence = 0
    discontinuity_sequence = 0
    ended = False
    duration: float | None = None
    tagged = False
    listed: list[tuple[str, float, bool]] = []
    try:
        for line in lines[1:]:
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-TARGETDURATION":
                target = int(value)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                first_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                discontinuity_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY":
                tagged = True
            elif tag == "#EXTINF":
                duration = float(value.partition(",")[0])
            elif tag == "#EXT-X-ENDLIST":
                ended = True
            elif not line.startswith("#"):
                if duration is None:
                    raise UnreadablePlaylist(f"URI {line[:80]!r} has no EXTINF before it")
                listed.append((segment_name(line), duration, tagged))
                duration, tagged = None, False
    except ValueError as error:
        if isinstance(error, UnreadablePlaylist):
            raise
        raise UnreadablePlaylist(f"a tag's value is not a number: {error}") from None
    if target is None:
        raise UnreadablePlaylist("it has no EXT-X-TARGETDURATION")
    segments = tuple(PublishedSegment(first_sequence + n, uri_of(name), seconds, tag, key_of(name))
                     for n, (name, seconds, tag) in enumerate(listed))
    extra = _metadata_fields(metadata)
    listed_s = sum(segment.duration_s for segment in segments)
    return StreamState(
        segments=segments,
        next_media_sequence=first_sequence + len(segments),
        discontinuity_sequence=discontinuity_sequence,
        target_duration_s=target,
        ended=ended,
        pending_discontinuity=bool(extra.get("pending", False)),
        peak_bps=_number(extra, "peak_bps", int, 0),
        total_bits=_number(extra, "total_bits", int, 0),
        total_seconds=_number(extra, "total_seconds", float, 0.0),
        independent=bool(extra.get("independent", True)),
        info=RenditionInfo(_text(extra, "codecs"), _text(extra, "resolution"),
                           _number(extra, "frame_rate", float, None), _number(extra, "bandwidth", int, None)),
        longest_playlist_s=max(listed_s, _number(extra, "longest_s", float, 0.0)),
        version=version,
    )


def new_run(state: StreamState) -> tuple[StreamState, tuple[PublishedSegment, ...]]:
    """A new run of the ended stream ``state``, its numbering continued: no segment kept, the next
    one at the next media sequence number and marked EXT-X-DISCONTINUITY, the discontinuity
    sequence counting the tags of the segments left behind. Returns it and those segments (their
    objects are for retention to delete). As after any removal from the front, its playlist waits
    until it lasts three target durations (``stream.refilling``, RFC 8216 6.2.2)."""
    tags = sum(1 for segment in state.segments if segment.discontinuity)
    fresh = replace(StreamState(), next_media_sequence=state.next_media_sequence,
                    discontinuity_sequence=state.discontinuity_sequence + tags, pending_discontinuity=True,
                    version=state.version)
    return fresh, state.segments


def _metadata_fields(metadata: Mapping[str, str]) -> dict[str, object]:
    try:
        fields = json.loads(metadata.get(STATE_METADATA, "{}"))
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _number(fields: Mapping[str, object], name: str, kind: type, default: object) -> object:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return kind(value)


def _text(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) else None
