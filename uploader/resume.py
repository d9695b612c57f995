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
import math
import posixpath
import re
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
    recorded under the URI ``uri_of(listed URI)``; its object key is ``key_of(name)`` of its file
    name (``segment_name``) only when ``metadata`` says this program wrote the playlist
    (``STATE_METADATA``), else None: retention never deletes an object of a playlist another tool
    wrote, nor of one a store without metadata kept.

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
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-TARGETDURATION":
            target = _integer(tag, value, least=1)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            first_sequence = _integer(tag, value, least=0)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            discontinuity_sequence = _integer(tag, value, least=0)
        elif tag == "#EXT-X-DISCONTINUITY":
            tagged = True
        elif tag == "#EXTINF":
            duration = _seconds(tag, value.partition(",")[0])
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif not line.startswith("#"):
            if duration is None:
                raise UnreadablePlaylist(f"URI {line[:80]!r} has no EXTINF before it")
            listed.append((line, duration, tagged))
            duration, tagged = None, False
    if target is None:
        raise UnreadablePlaylist("it has no EXT-X-TARGETDURATION")
    ours = STATE_METADATA in metadata
    segments = tuple(
        PublishedSegment(first_sequence + n, uri_of(uri), seconds, tag, key_of(segment_name(uri)) if ours else None)
        for n, (uri, seconds, tag) in enumerate(listed))
    extra = _metadata_fields(metadata)
    listed_s = sum(segment.duration_s for segment in segments)
    return StreamState(
        segments=segments,
        next_media_sequence=first_sequence + len(segments),
        discontinuity_sequence=discontinuity_sequence,
        target_duration_s=target,
        ended=ended,
        pending_discontinuity=extra.get("pending") is True,
        peak_bps=int(_number(extra, "peak_bps") or 0),
        total_bits=int(_number(extra, "total_bits") or 0),
        total_seconds=_number(extra, "total_seconds") or 0.0,
        independent=extra.get("independent") is not False,
        info=RenditionInfo(_text(extra, "codecs"), _text(extra, "resolution"), _number(extra, "frame_rate"),
                           None if (bandwidth := _number(extra, "bandwidth")) is None else int(bandwidth)),
        longest_playlist_s=max(listed_s, _number(extra, "longest_s") or 0.0),
        version=version,
    )


def follows(new: StreamState, old: StreamState) -> bool:
    """Whether a playlist of ``new`` may replace one of ``old`` without taking anything back from a
    viewer of it (RFC 8216 6.2.1, 6.2.2): its numbering not behind, the same target duration, the
    same segment at every media sequence number both list, no discontinuity sequence going back,
    and nothing added after an EXT-X-ENDLIST. A version of the same playlist with its URLs signed
    afresh follows it; another writer's different segment under the same number does not."""
    if old.ended and not (new.ended and new.next_media_sequence == old.next_media_sequence):
        return False
    if new.next_media_sequence < old.next_media_sequence or new.discontinuity_sequence < old.discontinuity_sequence:
        return False
    if old.target_duration_s is not None and new.target_duration_s != old.target_duration_s:
        return False
    names = {segment.media_sequence: segment_name(segment.uri) for segment in new.segments}
    return all(names.get(segment.media_sequence, segment_name(segment.uri)) == segment_name(segment.uri)
               for segment in old.segments)


def new_run(state: StreamState) -> StreamState:
    """A new run of the ended stream ``state``, its numbering continued: no segment kept, the next
    one at the next media sequence number and marked EXT-X-DISCONTINUITY, the discontinuity
    sequence counting the tags of the segments left behind (their objects are kept, as the last
    window of any ended stream is). As after any removal from the front, its playlist waits until
    it lasts three target durations (``stream.refilling``, RFC 8216 6.2.2)."""
    tags = sum(1 for segment in state.segments if segment.discontinuity)
    return replace(StreamState(), next_media_sequence=state.next_media_sequence,
                   discontinuity_sequence=state.discontinuity_sequence + tags, pending_discontinuity=True,
                   version=state.version)


_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def _integer(tag: str, value: str, *, least: int) -> int:
    if not _INTEGER.fullmatch(value) or int(value) < least:
        raise UnreadablePlaylist(f"{tag} {value[:40]!r} is not an integer of at least {least}")
    return int(value)


def _seconds(tag: str, value: str) -> float:
    if not _DECIMAL.fullmatch(value):
        raise UnreadablePlaylist(f"{tag} {value[:40]!r} is not a decimal number of seconds")
    return float(value)


def _metadata_fields(metadata: Mapping[str, str]) -> dict[str, object]:
    try:
        fields = json.loads(metadata.get(STATE_METADATA, "{}"))
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _number(fields: Mapping[str, object], name: str) -> float | None:
    """A finite, non-negative number of ``fields`` below 1e18, or None (absent, or anything else)."""
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return float(value) if 0 <= value < 10**18 else None
    return value if math.isfinite(value) and 0 <= value < 1e18 else None


def _text(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) else None
