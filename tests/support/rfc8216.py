"""The project's RFC 8216 checker: what a live origin publishes, judged as strictly as the RFC.

Every playlist version a test sees goes through here. Four levels, each a pure function of text
that returns the problems it found (an empty list: conformant), one line each, naming the rule:

- ``media_playlist_problems(text, playlist_type)``: one version of a media playlist (sections 4.1,
  4.3, 6.2.2's ban on EXT-X-PLAYLIST-TYPE in a live playlist, 7's version rules);
- ``History``: the versions of one media playlist in the order a client saw them (6.2.1's list of
  the only changes a server may make: EXT-X-TARGETDURATION never changes, an EVENT playlist is
  only appended to, nothing changes after EXT-X-ENDLIST; 6.2.2's sliding-window rules, among them
  at least three target durations listed after any removal; VOD);
- ``rendition_problems``: the media playlists of one program side by side (6.2.4);
- ``master_playlist_problems``: a master playlist (4.3.4).

Private streams (``History(signed=True)``) list signed URLs, signed again at every upload: a
segment's URI then keeps its resource (scheme, host, path) and changes only its query (the
signature and expiry). That is the one change beyond 6.2.1's list that expiring URLs need, and
clients do not see it: they follow segments by media sequence number (6.3.5). The history
compares URIs by resource, and reports a URI without a signature.

What text alone cannot show is left to the caller: ``History.removed`` gives, for each segment
that slid out, how long it must stay downloadable (6.2.2), and the poller GETs it then.

Durations are ``Decimal`` seconds so that rounding is exact and halves round up, as 4.3.3.1's
"rounded to the nearest integer" means (Python's round() would take 2.5 to 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PLAYLIST_TYPES = ("live", "event", "vod")

# Tags that apply to the next Media Segment only (4.3.2); tags that apply from where they stand
# until the next of their kind (EXT-X-KEY, EXT-X-MAP) or to the playlist (EXT-X-DATERANGE), and
# may move as segments slide out; and those of the playlist (4.3.3, 4.3.5), each of which MUST NOT
# appear more than once (4.3.3; 4.3.1.2 for EXT-X-VERSION).
_SEGMENT_TAGS = frozenset({"EXTINF", "EXT-X-BYTERANGE", "EXT-X-DISCONTINUITY", "EXT-X-PROGRAM-DATE-TIME"})
_RUNNING_TAGS = frozenset({"EXT-X-KEY", "EXT-X-MAP", "EXT-X-DATERANGE"})
_ONCE_TAGS = frozenset({
    "EXT-X-VERSION", "EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE",
    "EXT-X-ENDLIST", "EXT-X-PLAYLIST-TYPE", "EXT-X-I-FRAMES-ONLY", "EXT-X-INDEPENDENT-SEGMENTS",
    "EXT-X-START",
})
_MEDIA_ONLY_TAGS = (_SEGMENT_TAGS | _RUNNING_TAGS | _ONCE_TAGS) - {"EXT-X-VERSION", "EXT-X-INDEPENDENT-SEGMENTS", "EXT-X-START"}
_MASTER_TAGS = frozenset({
    "EXT-X-MEDIA", "EXT-X-STREAM-INF", "EXT-X-I-FRAME-STREAM-INF", "EXT-X-SESSION-DATA", "EXT-X-SESSION-KEY",
})
_KNOWN_TAGS = _SEGMENT_TAGS | _RUNNING_TAGS | _ONCE_TAGS | _MASTER_TAGS

_DECIMAL_INTEGER = re.compile(r"[0-9]{1,20}")  # 4.2: 0 to 2^64-1, leading zeros allowed
_MAX_DECIMAL_INTEGER = 2**64 - 1
_DECIMAL_FLOAT = re.compile(r"[0-9]+(\.[0-9]+)?")
_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",]*)(?:,|$)')


def rounded(duration: Decimal) -> int:
    """An EXTINF duration rounded to the nearest integer, halves up (4.3.3.1)."""
    return int(duration.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Segment:
    """One Media Segment of one playlist version."""

    media_sequence: int  # its Media Sequence Number (4.3.3.2)
    discontinuity_sequence: int  # its Discontinuity Sequence Number (4.3.3.3)
    uri: str
    duration: Decimal  # EXTINF, seconds
    tags: tuple[str, ...]  # the lines of the tags that apply to it only, as written (4.3.2)

    @property
    def discontinuity(self) -> bool:
        return "#EXT-X-DISCONTINUITY" in self.tags


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """One version of a media playlist, as far as it could be read."""

    version: int  # EXT-X-VERSION, 1 when absent (4.3.1.2)
    target_duration: int | None  # EXT-X-TARGETDURATION, seconds; None when missing
    media_sequence: int  # of the first segment; 0 without the tag (4.3.3.2)
    discontinuity_sequence: int  # 0 without the tag (4.3.3.3)
    has_discontinuity_sequence: bool
    playlist_type: str | None  # "EVENT", "VOD" or None
    endlist: bool
    segments: tuple[Segment, ...]

    @property
    def duration(self) -> Decimal:
        """The playlist's duration: the sum of its EXTINF durations (6.2.2), seconds."""
        return sum((segment.duration for segment in self.segments), Decimal(0))

    @property
    def next_media_sequence(self) -> int:
        return self.media_sequence + len(self.segments)


def _lines(text: str, problems: list[str]) -> list[str]:
    """The playlist's lines, after the checks of 4.1 on the text as a whole."""
    if text.startswith("\ufeff"):
        problems.append("the playlist starts with a byte order mark (4.1)")
        text = text[1:]
    if _CONTROL.search(text):
        problems.append("the playlist holds a control character other than CR and LF (4.1)")
    if text and not text.endswith("\n"):
        problems.append("the last line is not terminated by a line feed (4.1)")
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    return [line.removesuffix("\r") for line in lines]


def _tag(line: str) -> tuple[str, str | None]:
    name, colon, value = line[1:].partition(":")
    return name, value if colon else None


def resource(uri: str) -> str:
    """A URI without its query and fragment: the object a signed URL names."""
    return uri.partition("#")[0].partition("?")[0]


def is_signed(uri: str) -> bool:
    """Whether ``uri`` carries a SigV4 presigned query or a CloudFront signed one."""
    query = uri.partition("?")[2]
    names = {pair.partition("=")[0] for pair in query.split("&")}
    return {"X-Amz-Signature", "X-Amz-Expires"} <= names or {"Signature", "Expires", "Key-Pair-Id"} <= names


def _unsigned(text: str, problems: list[str]) -> str:
    """``text`` with each URI line reduced to its resource; a URI without a signature is a problem."""
    lines = []
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            if not is_signed(line):
                problems.append(f"{line}: not a signed URL in a private stream's playlist")
            line = resource(line)
        lines.append(line)
    return "\n".join(lines)


def read_media_playlist(text: str, problems: list[str]) -> MediaPlaylist:
    """Read one version of a media playlist, adding what breaks sections 4.1-4.3 and 7 to
    ``problems``; what cannot be read is left out of the result (defaults as the RFC gives)."""
    lines = _lines(text, problems)
    if not lines or lines[0] != "#EXTM3U":
        problems.append("the first line is not #EXTM3U (4.3.1.1)")
    counts: dict[str, int] = {}
    values: dict[str, str | None] = {}
    segments: list[Segment] = []
    pending: list[str] = []  # tag lines that apply to the next segment
    duration: Decimal | None = None
    fractional = False
    discontinuities = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # blank lines are ignored (4.1)
        if not line.startswith("#"):
            if line != line.strip() or " " in line:
                problems.append(f"line {number}: URI {line!r} holds white space (4.1, RFC 3986)")
            if duration is None:
                problems.append(f"line {number}: segment {line} has no EXTINF (4.3.2.1)")
                duration = Decimal(0)
            discontinuities += "#EXT-X-DISCONTINUITY" in pending
            segments.append(Segment(len(segments), discontinuities, line, duration, tuple(pending)))
            pending, duration = [], None
            continue
        if not line.startswith("#EXT"):
            continue  # a comment (4.1)
        name, value = _tag(line)
        if name not in _KNOWN_TAGS:
            problems.append(f"line {number}: {line.split(':')[0]} is no RFC 8216 tag")
            continue
        if name in _MASTER_TAGS:
            problems.append(f"line {number}: master playlist tag {name} in a media playlist (4.1, 4.3.4)")
            continue
        if name in _ONCE_TAGS:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == 2:
                problems.append(f"{name} appears more than once (4.3.1.2, 4.3.3)")
            values.setdefault(name, value)
            if name in ("EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE") and segments:
                problems.append(f"line {number}: {name} after the first segment (4.3.3.2, 4.3.3.3)")
            if name == "EXT-X-DISCONTINUITY-SEQUENCE" and (discontinuities or "#EXT-X-DISCONTINUITY" in pending):
                problems.append(f"line {number}: {name} after an EXT-X-DISCONTINUITY (4.3.3.3)")
            continue
        if name in _RUNNING_TAGS:
            continue  # applies from here on; not a change of the segments it moves along with
        pending.append(line)
        if name == "EXTINF":
            if duration is not None:
                problems.append(f"line {number}: a second EXTINF for one segment (4.3.2.1)")
            duration, is_fraction = _extinf(number, value, problems)
            fractional = fractional or is_fraction
        elif name == "EXT-X-DISCONTINUITY" and value is not None:
            problems.append(f"line {number}: EXT-X-DISCONTINUITY takes no value (4.3.2.3)")
    if pending:
        problems.append(f"{', '.join(_tag(line)[0] for line in pending)} at the end, with no segment URI (4.3.2)")

    version = _integer(values.get("EXT-X-VERSION", "1"), "EXT-X-VERSION", problems, default=1)
    target = None
    if "EXT-X-TARGETDURATION" not in values:
        problems.append("EXT-X-TARGETDURATION is missing (4.3.3.1)")
    else:
        target = _integer(values["EXT-X-TARGETDURATION"], "EXT-X-TARGETDURATION", problems, default=None)
    sequence = _integer(values.get("EXT-X-MEDIA-SEQUENCE", "0"), "EXT-X-MEDIA-SEQUENCE", problems, default=0)
    discontinuity_sequence = _integer(values.get("EXT-X-DISCONTINUITY-SEQUENCE", "0"),
                                      "EXT-X-DISCONTINUITY-SEQUENCE", problems, default=0)
    playlist_type = values.get("EXT-X-PLAYLIST-TYPE")
    if "EXT-X-PLAYLIST-TYPE" in values and playlist_type not in ("EVENT", "VOD"):
        problems.append(f"EXT-X-PLAYLIST-TYPE {playlist_type!r} is neither EVENT nor VOD (4.3.3.5)")
    for name in ("EXT-X-ENDLIST", "EXT-X-INDEPENDENT-SEGMENTS", "EXT-X-I-FRAMES-ONLY"):
        if values.get(name, None) is not None:
            problems.append(f"{name} takes no value (4.3.3, 4.3.5.1)")
    if fractional and version < 3:
        problems.append(f"fractional EXTINF durations need EXT-X-VERSION 3 or more, not {version} (4.3.2.1, 7)")
    for segment in segments:
        if target is not None and rounded(segment.duration) > target:
            problems.append(f"{segment.uri}: EXTINF {segment.duration} rounds to {rounded(segment.duration)},"
                            f" over EXT-X-TARGETDURATION {target} (4.3.3.1)")
    numbered = tuple(
        Segment(sequence + s.media_sequence, discontinuity_sequence + s.discontinuity_sequence, s.uri, s.duration, s.tags)
        for s in segments
    )
    return MediaPlaylist(version, target, sequence, discontinuity_sequence,
                         "EXT-X-DISCONTINUITY-SEQUENCE" in values, playlist_type, "EXT-X-ENDLIST" in values,
                         numbered)


def _extinf(number: int, value: str | None, problems: list[str]) -> tuple[Decimal, bool]:
    text = (value or "").partition(",")[0]
    if value is None or "," not in value or not _DECIMAL_FLOAT.fullmatch(text):
        problems.append(f"line {number}: EXTINF {value!r} is not '<duration>,[<title>]' (4.3.2.1)")
        try:
            return Decimal(text), False
        except InvalidOperation:
            return Decimal(0), False
    return Decimal(text), "." in text


def _integer(value: str | None, name: str, problems: list[str], *, default: int | None) -> int | None:
    if value is not None and _DECIMAL_INTEGER.fullmatch(value) and int(value) <= _MAX_DECIMAL_INTEGER:
        return int(value)
    problems.append(f"{name} {value!r} is not a decimal-integer (4.2)")
    return default


def media_playlist_problems(text: str, playlist_type: str = "live") -> list[str]:
    """What one version of a media playlist breaks, for an origin publishing ``playlist_type``
    ("live": a sliding window, which MUST NOT carry EXT-X-PLAYLIST-TYPE, 6.2.2; "event"; "vod")."""
    problems: list[str] = []
    playlist = read_media_playlist(text, problems)
    problems += _type_problems(playlist, playlist_type)
    return problems


def _type_problems(playlist: MediaPlaylist, playlist_type: str) -> list[str]:
    if playlist_type not in PLAYLIST_TYPES:
        raise ValueError(f"playlist_type {playlist_type!r} is not one of {PLAYLIST_TYPES}")
    if playlist_type == "live":
        if playlist.playlist_type is not None:
            return [f"a live playlist carries EXT-X-PLAYLIST-TYPE:{playlist.playlist_type} (6.2.2)"]
        return []
    if playlist.playlist_type != playlist_type.upper():
        return [f"an {playlist_type} playlist carries EXT-X-PLAYLIST-TYPE {playlist.playlist_type} (4.3.3.5)"]
    if playlist_type == "vod" and not playlist.endlist:
        return ["a VOD playlist without EXT-X-ENDLIST: it can never change, so it must be complete (4.3.3.5, 6.2.1)"]
    return []


@dataclass(frozen=True, slots=True)
class Removed:
    """A segment that slid out of the playlist, and until when it must stay downloadable (6.2.2):
    its duration plus that of the longest playlist version listing it, from its removal."""

    uri: str
    available_s: Decimal  # seconds after the removal was seen


@dataclass
class History:
    """The versions of one media playlist in the order a client read them; ``add`` each.

    Versions a client missed between two reads are allowed for: two versions are compared as if
    the ones between were published, as a client reloading less often would see them.
    """

    playlist_type: str = "live"
    signed: bool = False  # a private stream's: every URI a signed URL, compared by resource
    problems: list[str] = field(default_factory=list)
    versions: int = 0
    last: MediaPlaylist | None = None
    last_lines: list[str] | None = None  # the last version's lines, as written
    uri_of: dict[int, str] = field(default_factory=dict)  # media sequence number -> URI
    number_of: dict[str, int] = field(default_factory=dict)  # URI -> media sequence number
    longest_listing: dict[str, Decimal] = field(default_factory=dict)  # URI -> longest playlist listing it

    def add(self, text: str) -> list[Removed]:
        """Check one more version; returns the segments it no longer lists. Problems accumulate
        in ``problems``, each prefixed with the version's position (1-based)."""
        self.versions += 1
        found: list[str] = []
        if self.signed:
            text = _unsigned(text, found)
        playlist = read_media_playlist(text, found)
        lines = _lines(text, [])
        found += _type_problems(playlist, self.playlist_type)
        removed: list[Removed] = []
        if self.last is not None and self.last_lines is not None:
            found += self._compare(self.last, playlist)
            found += self._appended_only(self.last, self.last_lines, lines)
            kept = {segment.uri for segment in playlist.segments}
            removed = [Removed(s.uri, s.duration + self.longest_listing[s.uri])
                       for s in self.last.segments if s.uri not in kept]
        found += self._numbering(playlist)
        for segment in playlist.segments:
            longest = self.longest_listing.get(segment.uri, Decimal(0))
            self.longest_listing[segment.uri] = max(longest, playlist.duration)
        self.problems += [f"version {self.versions}: {problem}" for problem in found]
        self.last, self.last_lines = playlist, lines
        return removed

    def _appended_only(self, old: MediaPlaylist, old_lines: list[str], new_lines: list[str]) -> list[str]:
        """6.2.1, line for line: after EXT-X-ENDLIST nothing changes; an EVENT playlist is only
        appended to (every version starts with the whole previous one, whose last line is not an
        ENDLIST, as it would have frozen it)."""
        if old.endlist:
            if new_lines != old_lines:
                return [f"the playlist changed after EXT-X-ENDLIST{_first_change(old_lines, new_lines)} (6.2.1)"]
            return []
        if self.playlist_type == "event" and new_lines[: len(old_lines)] != old_lines:
            return [f"an EVENT playlist changed other than by appending{_first_change(old_lines, new_lines)} (6.2.1)"]
        return []

    def _numbering(self, playlist: MediaPlaylist) -> list[str]:
        """A media sequence number names one URI and a URI one number, for ever (6.2.1, 6.2.2)."""
        problems = []
        for segment in playlist.segments:
            uri = self.uri_of.setdefault(segment.media_sequence, segment.uri)
            if uri != segment.uri:
                problems.append(f"media sequence number {segment.media_sequence} was {uri}, now {segment.uri} (6.2.2)")
            number = self.number_of.setdefault(segment.uri, segment.media_sequence)
            if number != segment.media_sequence:
                problems.append(f"{segment.uri} had media sequence number {number}, now {segment.media_sequence} (6.2.2)")
        return problems

    def _compare(self, old: MediaPlaylist, new: MediaPlaylist) -> list[str]:
        """6.2.1: the server may only append lines, remove segments from the front (with the tags
        applying only to them), increment EXT-X-MEDIA-SEQUENCE/DISCONTINUITY-SEQUENCE, add ENDLIST."""
        problems = []
        if new.target_duration != old.target_duration:
            problems.append(f"EXT-X-TARGETDURATION changed from {old.target_duration} to {new.target_duration} (6.2.1)")
        if new.playlist_type != old.playlist_type:
            problems.append(f"EXT-X-PLAYLIST-TYPE changed from {old.playlist_type} to {new.playlist_type} (6.2.1)")
        if new.version != old.version:
            problems.append(f"EXT-X-VERSION changed from {old.version} to {new.version} (6.2.1)")
        if old.endlist and not new.endlist:
            problems.append("EXT-X-ENDLIST was taken away (6.2.1)")
        if old.endlist and new.next_media_sequence > old.next_media_sequence:
            problems.append(f"segment {new.segments[-1].uri} added after EXT-X-ENDLIST (4.3.3.4)")
        if new.media_sequence < old.media_sequence:
            problems.append(f"EXT-X-MEDIA-SEQUENCE went back from {old.media_sequence} to {new.media_sequence} (6.2.2)")
            return problems
        if new.has_discontinuity_sequence != old.has_discontinuity_sequence and \
                new.discontinuity_sequence == old.discontinuity_sequence:
            problems.append(f"EXT-X-DISCONTINUITY-SEQUENCE:{new.discontinuity_sequence} was"
                            f" {'added' if new.has_discontinuity_sequence else 'taken away'}: a header line may"
                            " only change by incrementing it (6.2.1)")
        if new.discontinuity_sequence < old.discontinuity_sequence:
            problems.append(f"EXT-X-DISCONTINUITY-SEQUENCE went back from {old.discontinuity_sequence}"
                            f" to {new.discontinuity_sequence} (6.2.2)")
        removed = min(new.media_sequence, old.next_media_sequence) - old.media_sequence
        if new.next_media_sequence < old.next_media_sequence and new.media_sequence < old.next_media_sequence:
            problems.append(f"segments after {new.segments[-1].uri if new.segments else 'the start'} were removed"
                            " from the end, not the front (6.2.2)")
        before = {segment.media_sequence: segment for segment in old.segments}
        for segment in new.segments:
            was = before.get(segment.media_sequence)
            if was is None:
                continue
            if was.uri != segment.uri or was.tags != segment.tags:
                problems.append(f"segment {segment.media_sequence} changed from {was.uri} {list(was.tags)}"
                                f" to {segment.uri} {list(segment.tags)} (6.2.1)")
            elif was.discontinuity_sequence != segment.discontinuity_sequence:
                problems.append(f"{segment.uri}: Discontinuity Sequence Number changed from {was.discontinuity_sequence}"
                                f" to {segment.discontinuity_sequence}: EXT-X-DISCONTINUITY-SEQUENCE not incremented"
                                " for the tags that slid out (6.2.2)")
        if removed > 0:
            if self.playlist_type != "live":
                problems.append(f"{removed} segment(s) removed from an {self.playlist_type.upper()} playlist (6.2.1)")
            tagged = any(segment.discontinuity for segment in (*old.segments, *new.segments))
            if tagged and not new.has_discontinuity_sequence:
                problems.append("segments removed from a playlist with EXT-X-DISCONTINUITY but no"
                                " EXT-X-DISCONTINUITY-SEQUENCE (6.2.2)")
            if not new.endlist and new.target_duration is not None and new.duration < 3 * new.target_duration:
                problems.append(f"a segment was removed leaving {new.duration} s, under three target durations"
                                f" ({3 * new.target_duration} s) (6.2.2)")
        if self.playlist_type == "vod" and (new.segments != old.segments or new.endlist != old.endlist):
            problems.append("a VOD playlist changed (6.2.1)")
        return problems


def _first_change(old_lines: list[str], new_lines: list[str]) -> str:
    """Where ``new_lines`` first departs from ``old_lines``: ": line N was X, now Y"."""
    for number, (was, now) in enumerate(zip(old_lines, new_lines), start=1):
        if was != now:
            return f": line {number} was {was!r}, now {now!r}"
    number = min(len(old_lines), len(new_lines)) + 1
    if len(new_lines) < len(old_lines):
        return f": line {number} {old_lines[number - 1]!r} and after removed"
    return f": line {number} {new_lines[number - 1]!r} added"


def history_problems(texts: Iterable[str], playlist_type: str = "live") -> list[str]:
    """What the versions of one media playlist, in the order read, break; [] when conformant."""
    history = History(playlist_type)
    count = 0
    for text in texts:
        history.add(text)
        count += 1
    if not count:
        return ["no playlist version was ever read"]
    return history.problems


def rendition_problems(playlists: Mapping[str, str]) -> list[str]:
    """6.2.4 across the media playlists of one program (name -> one version of each, read at about
    the same time): one target duration, one playlist type, and a segment of the same media
    sequence number (the same content, as the renditions of one source are numbered alike) with
    the same Discontinuity Sequence Number in every rendition."""
    problems: list[str] = []
    read = {name: read_media_playlist(text, []) for name, text in playlists.items()}
    for attribute, rule in (("target_duration", "EXT-X-TARGETDURATION"), ("playlist_type", "EXT-X-PLAYLIST-TYPE")):
        seen = {name: getattr(playlist, attribute) for name, playlist in read.items()}
        if len(set(seen.values())) > 1:
            problems.append(f"renditions differ in {rule}: {seen} (6.2.4)")
    numbers: dict[int, dict[str, int]] = {}
    for name, playlist in read.items():
        for segment in playlist.segments:
            numbers.setdefault(segment.media_sequence, {})[name] = segment.discontinuity_sequence
    for number, by_name in sorted(numbers.items()):
        if len(set(by_name.values())) > 1:
            problems.append(f"segment {number} has Discontinuity Sequence Numbers {by_name} (6.2.4)")
    return problems


def attributes(value: str) -> dict[str, str] | None:
    """An attribute list (4.2) as a dict, quotes kept; None when it does not parse or repeats a name."""
    result: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _ATTRIBUTE.match(value, position)
        if match is None or match.group(1) in result:
            return None
        result[match.group(1)] = match.group(2)
        position = match.end()
    return result if not value.endswith(",") else None


def master_playlist_problems(text: str) -> list[str]:
    """What a master playlist breaks (4.1, 4.3.4): each EXT-X-STREAM-INF with a valid attribute
    list, a decimal-integer BANDWIDTH, the CODECS it SHOULD have, and a URI on the next line; each
    EXT-X-MEDIA with TYPE, GROUP-ID and NAME, and every AUDIO/VIDEO/SUBTITLES group a variant names
    defined by one; EXT-X-VERSION at most once; no media playlist tag."""
    problems: list[str] = []
    lines = _lines(text, problems)
    if not lines or lines[0] != "#EXTM3U":
        problems.append("the first line is not #EXTM3U (4.3.1.1)")
    expecting_uri = False
    variants: list[dict[str, str]] = []
    groups: set[tuple[str, str]] = set()  # (TYPE, GROUP-ID) of each EXT-X-MEDIA
    versions = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip() or (line.startswith("#") and not line.startswith("#EXT")):
            continue
        if not line.startswith("#"):
            if not expecting_uri:
                problems.append(f"line {number}: URI {line} follows no EXT-X-STREAM-INF (4.3.4.2)")
            if line != line.strip() or " " in line:
                problems.append(f"line {number}: URI {line!r} holds white space (4.1, RFC 3986)")
            expecting_uri = False
            continue
        if expecting_uri:
            problems.append(f"line {number}: EXT-X-STREAM-INF is not followed by its URI (4.3.4.2)")
            expecting_uri = False
        name, value = _tag(line)
        if name in _MEDIA_ONLY_TAGS:
            problems.append(f"line {number}: media playlist tag {name} in a master playlist (4.1)")
        elif name not in _KNOWN_TAGS:
            problems.append(f"line {number}: {name} is no RFC 8216 tag")
        elif name == "EXT-X-VERSION":
            versions += 1
            if versions == 2:
                problems.append("EXT-X-VERSION appears more than once (4.3.1.2)")
        elif name == "EXT-X-STREAM-INF":
            expecting_uri = True
            listed = attributes(value or "")
            variants.append(listed or {})
            problems += [f"line {number}: {problem}" for problem in _stream_inf_problems(value or "", listed)]
        elif name == "EXT-X-MEDIA":
            listed = attributes(value or "") or {}
            missing = [key for key in ("TYPE", "GROUP-ID", "NAME") if key not in listed]
            if missing:
                problems.append(f"line {number}: EXT-X-MEDIA without {', '.join(missing)} (4.3.4.1)")
            groups.add((listed.get("TYPE", ""), listed.get("GROUP-ID", "")))
    if expecting_uri:
        problems.append("the last EXT-X-STREAM-INF has no URI (4.3.4.2)")
    if not variants:
        problems.append("no EXT-X-STREAM-INF (4.3.4.2)")
    for listed in variants:
        for attribute in ("AUDIO", "VIDEO", "SUBTITLES"):
            if attribute in listed and (attribute, listed[attribute]) not in groups:
                problems.append(f"{attribute}={listed[attribute]} names no EXT-X-MEDIA group of that TYPE (4.3.4.2.1)")
    return problems


def _stream_inf_problems(value: str, listed: dict[str, str] | None) -> list[str]:
    if listed is None:
        return [f"EXT-X-STREAM-INF attribute list {value!r} does not parse (4.2)"]
    problems = []
    for name in ("BANDWIDTH", "AVERAGE-BANDWIDTH"):
        if name in listed and not _DECIMAL_INTEGER.fullmatch(listed[name]):
            problems.append(f"{name} {listed[name]!r} is not a decimal-integer (4.3.4.2)")
    if "BANDWIDTH" not in listed:
        problems.append("EXT-X-STREAM-INF without BANDWIDTH (4.3.4.2)")
    if "CODECS" not in listed:
        problems.append("EXT-X-STREAM-INF without CODECS, which every one SHOULD have (4.3.4.2)")
    elif not (listed["CODECS"].startswith('"') and listed["CODECS"].endswith('"')):
        problems.append("CODECS is not a quoted-string (4.3.4.2)")
    if "RESOLUTION" in listed and not re.fullmatch(r"[0-9]+x[0-9]+", listed["RESOLUTION"]):
        problems.append(f"RESOLUTION {listed['RESOLUTION']!r} is not a decimal-resolution (4.2)")
    if "FRAME-RATE" in listed and not _DECIMAL_FLOAT.fullmatch(listed["FRAME-RATE"]):
        problems.append(f"FRAME-RATE {listed['FRAME-RATE']!r} is not a decimal-floating-point (4.2)")
    return problems
