"""``hls-uploadd cost`` (issue 16): the original posts' S3 + CloudFront arithmetic, reproduced from
its own example, and the counts of a real run (a daemon publishing to SeaweedFS through a proxy
that counts every request and byte the store took)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.settings import ConfigError
from tests.support.daemon import place_segment
from tests.support.s3_errors import S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.cost import (
    MONTH_S,
    Audience,
    CostSheet,
    Prices,
    StreamUsage,
    Usage,
    cost_sheet,
    render,
    sheet_json,
    viewer_counts,
)

from .conftest import StartUploader
from .test_correctable import listed
from .test_faults import send_all

PRICES = Path(__file__).resolve().parents[2] / "uploader" / "prices"


def post_stream(index: str, kbit_s: int) -> StreamUsage:
    """One rendition of the post's example: 5 minutes in 30 10-s segments, a segment and a
    playlist PUT per segment, its bytes stored for a month (the post charges a month)."""
    size = kbit_s * 1000 * 300 // 8  # 128 kbit/s x 5 minutes = 4.8 MB
    return StreamUsage(("bucket", "show", index), segments=30, media_seconds=300.0, segment_bytes=size, puts=60,
                       deletes=0, bytes_in=size, storage_byte_seconds=size * MONTH_S)


def test_the_original_posts_example_comes_to_about_19_cents() -> None:
    """Three renditions at 128/256/364 kbit/s, 5 minutes, 10-s segments, 100 viewers split
    25/50/25, its 2009 prices; the index files fetched from S3, each segment fetched 3 times by
    CloudFront."""
    usages = [post_stream("128k.m3u8", 128), post_stream("256k.m3u8", 256), post_stream("364k.m3u8", 364)]
    prices = Prices.from_toml((PRICES / "aws-2009.toml").read_text(), "aws-2009")
    audience = Audience(100, {"364k.m3u8": 0.25, "256k.m3u8": 0.5, "128k.m3u8": 0.25}, origin_fetches=3,
                        playlists_from_store=True)
    sheet = cost_sheet(usages, prices, audience)
    items = sheet.by_item()
    # The post's lines: "$0.01 * (180/1000) = $0.0018 + $0.10 * (4.8+9.6+13.65)/1000 = $0.002805"
    assert items["store PUT requests"] == pytest.approx(0.0018)
    assert items["store transfer in"] == pytest.approx(0.002805)
    assert items["store storage"] == pytest.approx(0.0042075)  # "$0.15 * (4.8+9.6+13.65)/1000"
    assert items["store transfer to the CDN"] == pytest.approx(0.0143055)  # "$0.17 * (3 * (4.8+9.6+13.65)) / 1000"
    assert items["CDN requests"] == pytest.approx(0.003)  # "$0.01 * (30 * 100) / 10000"
    # "$0.17 * (341.25 + 480 + 128) / 1000 = $0.1613708": 25 viewers of the 128 kbit/s stream get
    # 25 x 4.8 = 120 MB, not 128 (the post's own line above: "25 * 4.8MB = 128MB").
    assert items["CDN transfer out"] == pytest.approx(0.17 * (341.25 + 480 + 120) / 1000)
    # "$0.01 * (100 * 30) + (30 * 3) / 10000 = $0.00309": 3,000 playlist reads and 90 segment
    # reads, where its own assumption (3 fetches of each of 90 segments) makes the latter 270.
    assert items["store GET requests"] == pytest.approx((3000 + 270) * 0.01 / 10000)
    assert items["store DELETE requests"] == 0
    # "Rough total cost: $0.1933833": its lines add up to $0.1905788 (the total counts the
    # transfer in twice); with the two corrections above, $0.1894005.
    assert sheet.total == pytest.approx(0.1894005)
    assert round(sheet.total, 2) == 0.19
    assert [stream.viewers for stream in sheet.streams] == [25, 50, 25]


def test_viewers_not_given_a_share_split_what_is_left_equally() -> None:
    assert viewer_counts(["a", "b", "c"], Audience(90, {})) == [30, 30, 30]
    assert viewer_counts(["a", "b", "c"], Audience(100, {"a": 0.5})) == [50, 25, 25]
    with pytest.raises(ConfigError, match="add up to 1.2, more than 1"):
        viewer_counts(["a", "b"], Audience(10, {"a": 0.7, "b": 0.5}))
    with pytest.raises(ConfigError, match="--share for z: no such stream"):
        viewer_counts(["a"], Audience(10, {"z": 0.5}))
    with pytest.raises(ConfigError, match="--share for x, z: no such stream"):
        viewer_counts(["a"], Audience(10, {"z": 0.1, "x": 0.1, "a": 0.1}))


@pytest.mark.parametrize(("text", "message"), [
    ("[store]\nput_per_1000 = ", "price file: "),
    ("[stor]\nput_per_1000 = 1", r"\[stor\] is not a price table"),
    ("[store]\nput_per_thousand = 1", r"\[store\] put_per_thousand is not a price this sheet uses"),
    ("[store]\nput_per_1000 = -1", r"\[store\] put_per_1000 = -1 is not a price"),
    ("[store]\nput_per_1000 = 'cheap'", r"\[store\] put_per_1000 = 'cheap' is not a price"),
    ("[store]\nput_per_1000 = 1", r"missing price\(s\): store get_per_1000, "),
])
def test_a_price_file_that_is_wrong_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Prices.from_toml(text, "price file")


def test_the_shipped_price_tables_are_complete() -> None:
    for table in PRICES.glob("*.toml"):
        Prices.from_toml(table.read_text(), table.name)


def cost(spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uploader", "cost", "--spool-dir", str(spool), *args],
                          capture_output=True, text=True, timeout=60)


def test_a_real_runs_counts_are_what_the_store_was_asked_for(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    """Eight segments through a daemon with a window of 3 and no CDN allowance, so that segments
    that left the window are deleted during the run; the proxy counts what the store took."""
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        began = time.time()
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url, "--bucket", bucket,
                                "--window", "3", "--cdn-allowance", "0", "--master-name", "")
        for number in range(1, 9):
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 9), end_at=8)
        wait_for(lambda: "seg-00008.ts" in listed(seaweed, bucket), message="segment 8 listed")
        wait_for(lambda: " deleted " in daemon.log(), timeout=60, message="a segment that left the window deleted")
        assert daemon.stop() == 0
        took = time.time() - began
        puts = [(path, size) for path, size in proxy.stored if not path.endswith("/.hls-uploadd-write-check")]
        deleted = [path for method, path, status in proxy.answered if method == "DELETE"]
    sheet = json.loads(cost(daemon.spool_dir, "--json", "--viewers", "10").stdout)
    (stream,) = sheet["streams"]
    segment = segment_source.stat().st_size
    assert stream["stream"] == f"{bucket}/live/one/index.m3u8"
    assert (stream["segments"], stream["segment_bytes"]) == (8, 8 * segment)
    # Each segment once; a playlist per message unless the next was already queued (catch-up).
    assert stream["puts"] == len(puts) and sum(path.endswith(".ts") for path, _ in puts) == 8 < len(puts) <= 16
    assert stream["bytes_in"] == sum(size for _, size in puts)
    assert stream["deletes"] == len(deleted) >= 1
    # Storage: each segment from its PUT to its deletion or now, never more than all for the whole run.
    assert 0 < stream["storage_byte_seconds"] < 8 * segment * took
    assert stream["viewers"] == 10
    lines = {line["item"]: line for line in stream["lines"]}
    assert lines["store PUT requests"]["quantity"] == len(puts)
    assert lines["store PUT requests"]["cost"] == pytest.approx(len(puts) * 0.005 / 1000)
    assert lines["CDN transfer out"]["quantity"] == pytest.approx(10 * 8 * segment / 1e9)
    assert sheet["total"] == pytest.approx(sum(line["cost"] for line in stream["lines"]))
    text = cost(daemon.spool_dir, "--viewers", "10").stdout
    assert f"{bucket}/live/one/index.m3u8: 8 segment(s)" in text and text.splitlines()[-1].startswith("total ")


@pytest.mark.parametrize(("args", "message"), [
    (("--share", "index.m3u8=150%"), "--share 'index.m3u8=150%' is not INDEX=PERCENT% or INDEX=FRACTION (0..1)"),
    (("--share", "other.m3u8=0.5"), "--share for other.m3u8: no such stream in the sheet"),
    (("--playlists-from", "edge"), "--playlists-from 'edge' is not cdn or store"),
    (("--prices", "/nonexistent.toml"), "--prices /nonexistent.toml: not aws-us-east-1 or aws-2009, and No such file"),
    (("elsewhere",), "no stream under elsewhere in "),
])
def test_a_cost_request_that_cannot_be_answered_is_one_line_and_exit_2(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, segment_source: Path,
    args: tuple[str, ...], message: str,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--bucket", bucket)
    place_segment(segment_source, segments_dir, "seg", 1)
    send_all(daemon, segments_dir, bucket, range(1, 2))
    wait_for(lambda: cost(daemon.spool_dir).returncode == 0, message="a stream to cost")
    done = cost(daemon.spool_dir, *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hls-uploadd: ") and message in lines[0], lines


# Every price differs from every other, so that a line priced at another's price, or counting
# another's quantity, shows.
DISTINCT_PRICES = Prices(store_put_per_1000=1.0, store_get_per_1000=2.0, store_delete_per_1000=3.0,
                         store_transfer_in_per_gb=4.0, store_storage_per_gb_month=5.0,
                         store_origin_transfer_out_per_gb=6.0, cdn_transfer_out_per_gb=7.0, cdn_requests_per_1000=8.0)


def usage(index: str = "i.m3u8", segments: int = 10, segment_gb: float = 3.0) -> StreamUsage:
    return StreamUsage(("b", "p", index), segments=segments, media_seconds=20.0, segment_bytes=int(segment_gb * 1e9),
                       puts=40, deletes=5, bytes_in=4 * 10**9, storage_byte_seconds=2e9 * MONTH_S)


def test_usage_counts_add_field_by_field() -> None:
    assert Usage(puts=1) + Usage(bytes_in=5) + Usage(deletes=2, stored_bytes=-3) == Usage(1, 2, 5, -3)
    assert Usage(1, 2, 3, 4) + Usage(10, 20, 30, 40) == Usage(11, 22, 33, 44)
    assert Usage() == Usage(0, 0, 0, 0)


@pytest.mark.parametrize("playlists_from_store", [False, True])
def test_each_line_charges_its_own_quantity_at_its_own_price(playlists_from_store: bool) -> None:
    """7 viewers of 10 segments of 3 GB in all, each fetched twice by the CDN: 70 segment and 70
    playlist reads, the latter from the CDN or from the store."""
    audience = Audience(7, {}, origin_fetches=2, playlists_from_store=playlists_from_store)
    sheet = cost_sheet([usage()], DISTINCT_PRICES, audience)
    (stream,) = sheet.streams
    playlists_at_store, playlists_at_cdn = (70, 0) if playlists_from_store else (0, 70)
    expected = [
        ("store PUT requests", 40, "requests", 1.0 / 1000),
        ("store DELETE requests", 5, "requests", 3.0 / 1000),
        ("store transfer in", 4.0, "GB", 4.0),
        ("store storage", 2.0, "GB-months", 5.0),
        ("store transfer to the CDN", 2 * 3.0, "GB", 6.0),
        ("store GET requests", 2 * 10 + playlists_at_store, "requests", 2.0 / 1000),
        ("CDN transfer out", 7 * 3.0, "GB", 7.0),
        ("CDN requests", 70 + playlists_at_cdn, "requests", 8.0 / 1000),
    ]
    assert [(line.item, line.unit) for line in stream.lines] == [(item, unit) for item, _, unit, _ in expected]
    for line, (_, quantity, _, price) in zip(stream.lines, expected, strict=True):
        assert (line.quantity, line.price, line.cost) == pytest.approx((quantity, price, quantity * price)), line
    assert stream.viewers == 7
    assert stream.total == pytest.approx(sum(quantity * price for _, quantity, _, price in expected))
    assert sheet.total == stream.total


def test_shares_that_add_up_to_one_leave_nothing_to_the_others() -> None:
    assert viewer_counts(["a", "b", "c"], Audience(10, {"a": 0.6, "b": 0.4})) == [6, 4, 0]
    # 0.7 + 0.2 + 0.1 is a little over 1 in floating point: still all the viewers.
    assert viewer_counts(["a", "b", "c"], Audience(100, {"a": 0.7, "b": 0.2, "c": 0.1})) == pytest.approx([70, 20, 10])
    with pytest.raises(ConfigError, match="add up to 1.001, more than 1"):
        viewer_counts(["a", "b"], Audience(10, {"a": 0.5, "b": 0.501}))
    assert viewer_counts([], Audience(10, {})) == []


def two_stream_sheet() -> tuple[CostSheet, Audience]:
    audience = Audience(100, {"low.m3u8": 0.25}, origin_fetches=3, playlists_from_store=True)
    usages = [usage("low.m3u8", 30, 0.0048), dataclasses.replace(usage("high.m3u8", 30, 0.0096), deletes=0)]
    return cost_sheet(usages, DISTINCT_PRICES, audience), audience


def test_the_sheet_as_text_gives_each_streams_counts_and_lines_then_each_items_total() -> None:
    sheet, audience = two_stream_sheet()
    assert render(sheet, audience) == RENDERED
    from_cdn = render(sheet, dataclasses.replace(audience, playlists_from_store=False))
    assert from_cdn.splitlines()[0].endswith("; playlists from the CDN, once per segment per viewer.")
    # MB as 10^6 bytes, rounded to 10 kB: 4,805,001 bytes are 4.81 MB.
    alone = dataclasses.replace(audience, shares={})
    one = cost_sheet([usage(segment_gb=0.004805001)], DISTINCT_PRICES, alone)
    assert "b/p/i.m3u8: 10 segment(s), 20.0 s, 4.81 MB; 100 viewer(s)" in render(one, alone)


def test_the_sheet_as_json_gives_the_assumptions_each_streams_counts_and_lines_and_the_totals() -> None:
    sheet, audience = two_stream_sheet()
    document = json.loads(sheet_json(sheet, audience))
    assert document["assumptions"] == {"viewers": 100, "shares": {"low.m3u8": 0.25}, "origin_fetches": 3,
                                       "playlists_from": "store"}
    assert [stream["stream"] for stream in document["streams"]] == ["b/p/low.m3u8", "b/p/high.m3u8"]
    for entry, stream in zip(document["streams"], sheet.streams, strict=True):
        counts = stream.usage
        assert entry == {
            "stream": entry["stream"], "viewers": stream.viewers, "segments": counts.segments,
            "media_seconds": counts.media_seconds, "segment_bytes": counts.segment_bytes, "puts": counts.puts,
            "deletes": counts.deletes, "bytes_in": counts.bytes_in,
            "storage_byte_seconds": counts.storage_byte_seconds,
            "lines": [{"item": line.item, "quantity": line.quantity, "unit": line.unit, "price": line.price,
                       "cost": line.cost} for line in stream.lines],
            "total": stream.total,
        }
    assert [entry["viewers"] for entry in document["streams"]] == [25, 75]
    assert document["by_item"] == sheet.by_item()
    assert document["by_item"]["store DELETE requests"] == pytest.approx(5 * 3.0 / 1000)  # the first stream's only
    assert document["by_item"]["CDN transfer out"] == pytest.approx((25 * 0.0048 + 75 * 0.0096) * 7.0)
    assert list(document["by_item"]) == [line.item for line in sheet.streams[0].lines]
    assert document["total"] == pytest.approx(sum(document["by_item"].values()))
    assert document["total"] == sheet.total
    cdn = json.loads(sheet_json(sheet, dataclasses.replace(audience, playlists_from_store=False)))
    assert cdn["assumptions"]["playlists_from"] == "cdn"


# Prices as their own tables write them; quantities to 6 significant digits; costs to 1/10,000 cent.
RENDERED = "\n".join([
    'Assumed: 100 viewer(s) who each watch a whole stream; the CDN fetches each segment 3 time(s) from the store;'
    ' playlists from the store, once per segment per viewer.',
    '',
    'b/p/low.m3u8: 30 segment(s), 20.0 s, 4.80 MB; 25 viewer(s)',
    '  store PUT requests                     40 requests  x $1/1000          = $0.0400000',
    '  store DELETE requests                   5 requests  x $3/1000          = $0.0150000',
    '  store transfer in                       4 GB        x $4/GB            = $16.0000000',
    '  store storage                           2 GB-months x $5/GB-month      = $10.0000000',
    '  store transfer to the CDN          0.0144 GB        x $6/GB            = $0.0864000',
    '  store GET requests                    840 requests  x $2/1000          = $1.6800000',
    '  CDN transfer out                     0.12 GB        x $7/GB            = $0.8400000',
    '  CDN requests                          750 requests  x $8/1000          = $6.0000000',
    '  stream total                                                               $34.6614000',
    '',
    'b/p/high.m3u8: 30 segment(s), 20.0 s, 9.60 MB; 75 viewer(s)',
    '  store PUT requests                     40 requests  x $1/1000          = $0.0400000',
    '  store DELETE requests                   0 requests  x $3/1000          = $0.0000000',
    '  store transfer in                       4 GB        x $4/GB            = $16.0000000',
    '  store storage                           2 GB-months x $5/GB-month      = $10.0000000',
    '  store transfer to the CDN          0.0288 GB        x $6/GB            = $0.1728000',
    '  store GET requests                   2340 requests  x $2/1000          = $4.6800000',
    '  CDN transfer out                     0.72 GB        x $7/GB            = $5.0400000',
    '  CDN requests                         2250 requests  x $8/1000          = $18.0000000',
    '  stream total                                                               $53.9328000',
    '',
    'store PUT requests           $0.0800000',
    'store DELETE requests        $0.0150000',
    'store transfer in            $32.0000000',
    'store storage                $20.0000000',
    'store transfer to the CDN    $0.2592000',
    'store GET requests           $6.3600000',
    'CDN transfer out             $5.8800000',
    'CDN requests                 $24.0000000',
    'total                        $88.5942000',
])
