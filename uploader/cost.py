"""The cost sheet of ``hls-uploadd cost``: what the store and the CDN charge for streams, from the
counts the spool keeps (``Usage``, ``StreamUsage``), a price table and assumptions about viewers,
after the original posts' S3 + CloudFront arithmetic. Pure: the command reads the spool and the
price file and prints what ``cost_sheet`` returns.

The model, per stream (a rendition):

- the daemon's own requests and bytes, counted as they happened: PUTs (every attempt, segments,
  playlists, the master and player page), DELETEs, bytes in (the bodies stored), storage
  (segment bytes times the time they were stored, in GB-months of 30 days);
- its viewers, assumed: ``viewers`` times its share watch the whole stream; each fetches every
  segment from the CDN (bytes out, requests) and its playlist once per segment, from the CDN or
  (as the posts assumed) from the store;
- the CDN fetches each segment ``origin_fetches`` times from the store (the posts assumed 3).

Playlist bytes are left out (a few hundred bytes per fetch, against megabytes of segments); their
requests are counted.

GB is 10^9 bytes, as the posts and the price pages write it.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from common.settings import ConfigError

from .stream import StreamKey, stream_label

GB = 1e9
MONTH_S = 30 * 86400  # a GB-month of storage is a GB kept for 30 days


@dataclass(frozen=True, slots=True)
class Usage:
    """What a stream cost the store since it was last counted: added to the spool's totals."""

    puts: int = 0  # PUT requests sent, failed ones too
    deletes: int = 0  # DELETE requests sent
    bytes_in: int = 0  # bytes of the bodies stored
    stored_bytes: int = 0  # segment bytes now kept in the store that were not (negative: deleted)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.puts + other.puts, self.deletes + other.deletes, self.bytes_in + other.bytes_in,
                     self.stored_bytes + other.stored_bytes)


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """One stream's counts, as the spool has them."""

    key: StreamKey
    segments: int  # published (listed) segments
    media_seconds: float  # their durations, summed
    segment_bytes: int  # their bytes, summed
    puts: int
    deletes: int
    bytes_in: int
    storage_byte_seconds: float  # segment bytes x seconds kept, up to now


@dataclass(frozen=True, slots=True)
class Prices:
    """A price table in US dollars (a TOML file: ``[store]`` and ``[cdn]`` tables of these
    names without their prefix). Requests are priced per 1,000, bytes per GB (10^9 bytes)."""

    store_put_per_1000: float
    store_get_per_1000: float
    store_delete_per_1000: float
    store_transfer_in_per_gb: float
    store_storage_per_gb_month: float
    store_origin_transfer_out_per_gb: float  # to the CDN fetching segments
    cdn_transfer_out_per_gb: float
    cdn_requests_per_1000: float

    @classmethod
    def from_toml(cls, text: str, source: str) -> Prices:
        """Parse a price file. Raises ConfigError naming the file and the key for a syntax
        error, an unknown, missing or negative price."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{source}: {error}") from None
        values: dict[str, float] = {}
        for table, entries in document.items():
            if table not in ("store", "cdn") or not isinstance(entries, dict):
                raise ConfigError(f"{source}: [{table}] is not a price table (store, cdn)")
            for name, value in entries.items():
                field = f"{table}_{name}"
                if field not in PRICE_FIELDS:
                    raise ConfigError(f"{source}: [{table}] {name} is not a price this sheet uses")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                    raise ConfigError(f"{source}: [{table}] {name} = {value!r} is not a price (a number >= 0)")
                values[field] = float(value)
        missing = [name.replace("_", " ", 1) for name in PRICE_FIELDS if name not in values]
        if missing:
            raise ConfigError(f"{source}: missing price(s): " + ", ".join(missing))
        return cls(**values)


PRICE_FIELDS = tuple(field.name for field in fields(Prices))


@dataclass(frozen=True, slots=True)
class Audience:
    """Assumptions about viewers. ``shares``: index name -> fraction of the viewers watching
    that rendition; a stream not named shares equally what the named ones leave."""

    viewers: int
    shares: Mapping[str, float]
    origin_fetches: float = 3.0  # times the CDN fetches each segment from the store
    playlists_from_store: bool = False  # viewers fetch playlists from the store, not the CDN


@dataclass(frozen=True, slots=True)
class CostLine:
    item: str  # what is charged, e.g. "store PUT requests"
    quantity: float
    unit: str  # e.g. "requests", "GB", "GB-months"
    price: float  # dollars per unit
    cost: float  # dollars


@dataclass(frozen=True, slots=True)
class StreamCost:
    usage: StreamUsage
    viewers: float
    lines: tuple[CostLine, ...]

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)


@dataclass(frozen=True, slots=True)
class CostSheet:
    streams: tuple[StreamCost, ...]

    @property
    def total(self) -> float:
        return sum(stream.total for stream in self.streams)

    def by_item(self) -> dict[str, float]:
        """Each item's cost over every stream, in the lines' order."""
        totals: dict[str, float] = {}
        for stream in self.streams:
            for line in stream.lines:
                totals[line.item] = totals.get(line.item, 0.0) + line.cost
        return totals


def viewer_counts(indexes: Sequence[str], audience: Audience) -> list[float]:
    """How many viewers watch each stream (by its index name, in order). Raises ConfigError for a
    share of a stream not in the sheet, or shares over 1."""
    unknown = set(audience.shares) - set(indexes)
    if unknown:
        raise ConfigError(f"--share for {', '.join(sorted(unknown))}: no such stream in the sheet")
    named = sum(audience.shares.values())
    if named > 1 + 1e-9:
        raise ConfigError(f"the --share fractions add up to {named:g}, more than 1")
    others = [index for index in indexes if index not in audience.shares]
    rest = (1 - named) / len(others) if others else 0.0
    return [audience.viewers * audience.shares.get(index, rest) for index in indexes]


def cost_sheet(usages: Sequence[StreamUsage], prices: Prices, audience: Audience) -> CostSheet:
    """The cost of each stream and in total. Raises ConfigError as ``viewer_counts`` does."""
    counts = viewer_counts([usage.key[2] for usage in usages], audience)
    return CostSheet(tuple(_stream_cost(usage, viewers, prices, audience) for usage, viewers in zip(usages, counts)))


def _stream_cost(usage: StreamUsage, viewers: float, prices: Prices, audience: Audience) -> StreamCost:
    def line(item: str, quantity: float, unit: str, price: float) -> CostLine:
        return CostLine(item, quantity, unit, price, quantity * price)

    per_request = 1 / 1000
    segment_gb = usage.segment_bytes / GB
    playlist_gets = viewers * usage.segments  # each viewer reads the playlist once per segment
    origin_gets = audience.origin_fetches * usage.segments
    store_gets = origin_gets + (playlist_gets if audience.playlists_from_store else 0)
    cdn_requests = viewers * usage.segments + (0 if audience.playlists_from_store else playlist_gets)
    lines = (
        line("store PUT requests", usage.puts, "requests", prices.store_put_per_1000 * per_request),
        line("store DELETE requests", usage.deletes, "requests", prices.store_delete_per_1000 * per_request),
        line("store transfer in", usage.bytes_in / GB, "GB", prices.store_transfer_in_per_gb),
        line("store storage", usage.storage_byte_seconds / MONTH_S / GB, "GB-months",
             prices.store_storage_per_gb_month),
        line("store transfer to the CDN", audience.origin_fetches * segment_gb, "GB",
             prices.store_origin_transfer_out_per_gb),
        line("store GET requests", store_gets, "requests", prices.store_get_per_1000 * per_request),
        line("CDN transfer out", viewers * segment_gb, "GB", prices.cdn_transfer_out_per_gb),
        line("CDN requests", cdn_requests, "requests", prices.cdn_requests_per_1000 * per_request),
    )
    return StreamCost(usage, viewers, lines)


def render(sheet: CostSheet, audience: Audience) -> str:
    """The sheet as text: per stream its counts and lines, then each item's total and the total."""
    out = [f"Assumed: {audience.viewers} viewer(s) who each watch a whole stream; the CDN fetches each segment"
           f" {audience.origin_fetches:g} time(s) from the store; playlists from the "
           f"{'store' if audience.playlists_from_store else 'CDN'}, once per segment per viewer."]
    for stream in sheet.streams:
        usage = stream.usage
        out.append("")
        out.append(f"{stream_label(usage.key)}: {usage.segments} segment(s), {usage.media_seconds:.1f} s,"
                   f" {usage.segment_bytes / 1e6:.2f} MB; {stream.viewers:g} viewer(s)")
        for entry in stream.lines:
            price = (f"${entry.price * 1000:.6g}/1000" if entry.unit == "requests"
                     else f"${entry.price:.6g}/{entry.unit.removesuffix('s')}")
            out.append(f"  {entry.item:26} {entry.quantity:14.6g} {entry.unit:9} x {price:16} = ${entry.cost:.7f}")
        out.append(f"  {'stream total':26} {'':47} ${stream.total:.7f}")
    out.append("")
    for item, cost in sheet.by_item().items():
        out.append(f"{item:28} ${cost:.7f}")
    out.append(f"{'total':28} ${sheet.total:.7f}")
    return "\n".join(out)


def sheet_json(sheet: CostSheet, audience: Audience) -> str:
    """The sheet as one JSON object: the assumptions, each stream's counts and lines, the totals."""
    return json.dumps({
        "assumptions": {"viewers": audience.viewers, "shares": dict(audience.shares),
                        "origin_fetches": audience.origin_fetches,
                        "playlists_from": "store" if audience.playlists_from_store else "cdn"},
        "streams": [{
            "stream": stream_label(stream.usage.key), "viewers": stream.viewers,
            "segments": stream.usage.segments, "media_seconds": stream.usage.media_seconds,
            "segment_bytes": stream.usage.segment_bytes, "puts": stream.usage.puts, "deletes": stream.usage.deletes,
            "bytes_in": stream.usage.bytes_in, "storage_byte_seconds": stream.usage.storage_byte_seconds,
            "lines": [{"item": line.item, "quantity": line.quantity, "unit": line.unit, "price": line.price,
                       "cost": line.cost} for line in stream.lines],
            "total": stream.total,
        } for stream in sheet.streams],
        "by_item": sheet.by_item(),
        "total": sheet.total,
    }, indent=1)
