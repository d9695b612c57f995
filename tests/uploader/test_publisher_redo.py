"""A message published again after the spool failed to record it (a redo) is counted once; a
defect in the start-up write check is said, and the other buckets are still checked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.daemon import legit_message, place_segment
from tests.support.publisher import LocalPublisher
from uploader.spool import Spool, SpoolError
from uploader.stores import WRITE_CHECK_KEY, FileStore


def test_a_segment_published_again_after_the_spool_failed_to_record_it_is_counted_once(
    tmp_path: Path, segment_source: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No real spool can be made to fail exactly between a message's playlist PUT and its
    # Spool.complete, so the first complete fails here: the publisher reloads and redoes it
    # (the PUTs are idempotent). Its segment is listed once, so it is counted once.
    complete = Spool.complete
    failures: list[int] = []

    def complete_failing_once(spool: Spool, *args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(1)
            raise SpoolError("spool write failed: disk I/O error")
        return complete(spool, *args, **kwargs)

    monkeypatch.setattr(Spool, "complete", complete_failing_once)
    with LocalPublisher(tmp_path, retry_max_delay_s=0.2) as local:
        message = legit_message(local.segments, "live", 1, end=True)
        place_segment(segment_source, local.segments, "legit", 1)

        async def publish() -> None:
            await local.queue(message)
            await local.settle()

        asyncio.run(publish())
    root, metrics = local.root, local.metrics
    assert failures, "Spool.complete never failed: the redo was not exercised"
    playlist = (root / "live" / "legit" / "legit.m3u8").read_bytes()
    labels = {"destination": "files", **dict(zip(("bucket", "key_prefix", "index"), message.stream_id))}
    value = metrics.registry.get_sample_value
    assert playlist.endswith(b"#EXT-X-ENDLIST\n") and playlist.count(b"#EXTINF") == 1
    assert value("hls_uploadd_segments_published_total", labels) == 1
    assert value("hls_uploadd_publish_latency_seconds_count", labels) == 1
    # Bytes count each PUT that went out: the segment and the playlist, once each. The redo reads
    # the playlist back from the store (the spool's state is one PUT behind it), finds the
    # segment listed, and PUTs nothing again.
    assert value("hls_uploadd_uploaded_bytes_total", labels) == segment_source.stat().st_size + len(playlist)


class DefectiveStore(FileStore):
    """A file:// store whose write check of bucket ``live`` raises what no StoreError is."""

    def put(self, bucket: str, key: str, body, **options):  # type: ignore[no-untyped-def]
        if bucket == "live" and key == WRITE_CHECK_KEY:
            raise RuntimeError("a defect")
        return super().put(bucket, key, body, **options)


def test_a_defect_in_one_bucket_s_write_check_is_said_and_the_others_are_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # Before, the check's task ended on it without a word, and no later bucket was checked.
    with LocalPublisher(tmp_path, DefectiveStore) as local:
        (local.root / "other").mkdir()
        reports: list[tuple[str, str | None]] = []
        asyncio.run(local.publisher.check_buckets(frozenset({"live", "other"}),
                                                  lambda bucket, refusal: reports.append((bucket, refusal))))
    assert reports == [("other", None)]
    assert any(record.levelname == "ERROR" and "bucket live could not be checked: internal error" in record.message
               and record.exc_info is not None for record in caplog.records)
