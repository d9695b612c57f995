"""The master playlist of a program: one EXT-X-STREAM-INF per rendition (RFC 8216 4.3.4.2). Pure.

The renditions of a program are the streams that share (bucket, key_prefix); the master is
``--master-name`` under that prefix, written once two or more of them have a playlist. BANDWIDTH
is the measured peak segment bit rate (bits / duration of each published segment, the max), or
the declared ``--bandwidth`` when that is higher: BANDWIDTH must be an upper bound, and a
measurement over the first few segments can only under-estimate the encoder's cap.
AVERAGE-BANDWIDTH is the measured mean (all bits / all seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .stream import StreamState

# Renditions needed before a master is written: one stream is its own playlist.
MIN_RENDITIONS = 2

# A measured bandwidth that moved less than this fraction since the master was last uploaded
# does not re-upload it: each segment nudges the numbers, and a CDN-cached master should not
# change every few seconds for noise. Appearing, ending or changing renditions always do.
BANDWIDTH_TOLERANCE = 0.10

MASTER_VERSION = 3

# Published segments a rendition needs before the master counts it as independent. A stream's
# first segment starts at the encoder's first picture, an IDR even in an open-GOP stream; the
# second starts at the first cut the segmenter made, the first evidence of what the encoder puts
# at its later keyframes. EXT-X-INDEPENDENT-SEGMENTS applies to every segment (RFC 8216 4.3.5.1),
# so a master that said it on the first segment's word would be withdrawn at the second.
INDEPENDENCE_EVIDENCE_SEGMENTS = 2


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendition as the master names it."""

    uri: str  # the rendition's playlist, relative to the master
    bandwidth: int
    average_bandwidth: int | None
    codecs: str | None
    resolution: str | None
    frame_rate: float | None
    independent: bool  # every published segment said independent=1, and enough have been (variant())
    ended: bool

    def lines(self, uri: str | None = None) -> list[str]:
        """EXT-X-STREAM-INF and the URI line: ``uri``, else the rendition's own."""
        attributes = [f"BANDWIDTH={self.bandwidth}"]
        if self.average_bandwidth:
            attributes.append(f"AVERAGE-BANDWIDTH={self.average_bandwidth}")
        if self.codecs:
            attributes.append(f'CODECS="{self.codecs}"')
        if self.resolution:
            attributes.append(f"RESOLUTION={self.resolution}")
        if self.frame_rate:
            attributes.append(f"FRAME-RATE={self.frame_rate:.3f}")
        return ["#EXT-X-STREAM-INF:" + ",".join(attributes), self.uri if uri is None else uri]


def variant(index: str, state: StreamState) -> Variant | None:
    """The variant of a stream, or None while it has no measured segment (no playlist yet).
    It is ``independent`` once INDEPENDENCE_EVIDENCE_SEGMENTS segments were published and every
    published one said independent=1; it stays so until one says otherwise (docs/uploader.md,
    "Master playlist")."""
    if not state.published_any or state.peak_bps <= 0:
        return None
    info = state.info
    return Variant(
        uri=index,
        bandwidth=max(state.peak_bps, info.declared_bandwidth or 0),
        average_bandwidth=state.average_bps or None,
        codecs=info.codecs,
        resolution=info.resolution,
        frame_rate=info.frame_rate,
        independent=state.independent and state.next_media_sequence > INDEPENDENCE_EVIDENCE_SEGMENTS,
        ended=state.ended,
    )


def sorted_variants(variants: list[Variant]) -> tuple[Variant, ...]:
    """Lowest bandwidth first (players start with the first one listed), then by name."""
    return tuple(sorted(variants, key=lambda v: (v.bandwidth, v.uri)))


def master_playlist(variants: tuple[Variant, ...], uri: Callable[[str], str] | None = None) -> str:
    """The m3u8 text. EXT-X-INDEPENDENT-SEGMENTS only when every variant is ``independent``
    (RFC 8216 4.3.5.1). ``uri``: the URI each rendition's playlist (by its name) is listed by (a
    signed URL, uploader/urls.py); by default its name."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{MASTER_VERSION}"]
    if variants and all(v.independent for v in variants):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for v in sorted_variants(list(variants)):
        lines += v.lines(None if uri is None else uri(v.uri))
    return "".join(line + "\n" for line in lines)


def needs_upload(published: tuple[Variant, ...] | None, current: tuple[Variant, ...]) -> bool:
    """Whether the master must go out again: a rendition appeared, ended or changed, or a
    bandwidth moved by more than BANDWIDTH_TOLERANCE."""
    if len(current) < MIN_RENDITIONS:
        return False
    if published is None:
        return True
    old = {v.uri: v for v in published}
    if set(old) != {v.uri for v in current}:
        return True
    return any(variant_changed(old[new.uri], new) for new in current)


def variant_changed(before: Variant | None, after: Variant | None) -> bool:
    """Whether one rendition's entry in the master must change: it appeared or went, ended, its
    codecs, resolution, frame rate or independence changed, or a bandwidth moved by more than
    BANDWIDTH_TOLERANCE."""
    if before is None or after is None:
        return before is not after
    if (after.codecs, after.resolution, after.frame_rate, after.independent, after.ended) != (
        before.codecs, before.resolution, before.frame_rate, before.independent, before.ended
    ):
        return True
    return _moved(before.bandwidth, after.bandwidth) or _moved(before.average_bandwidth, after.average_bandwidth)


class Program:
    """The renditions of one program, now and as its master was last uploaded, kept up to date
    one rendition at a time: judging a rendition's publish costs the same whatever the number of
    renditions (only an upload, which a change calls for, renders them all).

    ``update`` says whether the master must go out again, with ``needs_upload``'s rule;
    ``uploaded`` records that it went out.
    """

    def __init__(self, variants: Iterable[Variant] = ()) -> None:
        self._current: dict[str, Variant] = {v.uri: v for v in variants}
        self._published: dict[str, Variant] | None = None
        # Renditions whose entry differs from the master last uploaded (``variant_changed``).
        self._differing: set[str] = set()

    @property
    def ever_uploaded(self) -> bool:
        return self._published is not None

    def update(self, uri: str, found: Variant | None) -> bool:
        """Rendition ``uri`` is now ``found`` (None: it has no variant, or its stream is gone);
        whether the master must be uploaded again."""
        if found is None:
            self._current.pop(uri, None)
        else:
            self._current[uri] = found
        if self._published is not None and variant_changed(self._published.get(uri), found):
            self._differing.add(uri)
        else:
            self._differing.discard(uri)
        if len(self._current) < MIN_RENDITIONS:
            return False
        return self._published is None or bool(self._differing)

    def variants(self) -> tuple[Variant, ...]:
        """The current renditions, as ``sorted_variants`` orders them."""
        return sorted_variants(list(self._current.values()))

    def uploaded(self, variants: tuple[Variant, ...]) -> None:
        """The master of ``variants`` (from ``variants()``) was uploaded."""
        self._published = {v.uri: v for v in variants}
        self._differing.clear()

    def lost(self) -> None:
        """The store lost the master last uploaded (its bucket deleted and made again): the next
        ``update`` that has enough renditions calls for an upload, as the first one did."""
        self._published = None
        self._differing.clear()


def _moved(before: int | None, now: int | None) -> bool:
    if not before or not now:
        return before != now
    return abs(now - before) > BANDWIDTH_TOLERANCE * before
