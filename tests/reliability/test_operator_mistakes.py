"""Mistakes an operator makes and corrects, during a live stream through the real pipeline
(issue 14 A): the daemon started without credentials, the bucket deleted and created again.
Nothing the daemon acknowledged and had not yet stored is lost, the segmenter's summary stays
true, and no playlist version names an object that is not in the store."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.support.media import MediaCache
from tests.support.pipeline import PlaylistPoller, audit, record
from tests.support.viewer import http_get, wait_for

from .conftest import Live, live_clip
from .test_faults_live import finish, published, wait_ended


def held_reports(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line and " held: " in line]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_started_without_credentials_then_restarted_with_them(live: Live, media: MediaCache) -> None:
    clip = live_clip(media, 8)
    # The service's environment lacks the keys (no credentials file, no instance metadata either).
    without = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    daemon = live.daemon(env=without)
    wait_for(lambda: f"bucket {live.bucket} cannot be written" in daemon.log(), timeout=30,
             message="the start check's ERROR")
    poller = live.poller()
    segmenter, _ = live.segmenter(clip, 8)
    finish(live)
    # The segmenter's summary is true: the daemon holds every message in its spool.
    assert "every message acknowledged" in segmenter.log()
    produced = audit(live.s3, live.bucket, live.key_prefix, [live.segments_root / "live"]).produced
    reports = held_reports(daemon.log())
    assert reports and "fix: give the daemon valid credentials" in reports[0], daemon.log()[-3000:]
    assert len(reports) < len(produced)  # not one per segment, let alone per retry
    live.sample()
    assert daemon.stop() == 0
    assert f"{len(produced)} message(s) left queued" in daemon.log()
    assert "failed permanently" not in daemon.log()

    daemon.env = None  # the operator fixes the service's credentials and restarts it
    daemon.start()
    wait_ended(live)
    live.check(poller, segments_held_at_restart=len(produced))
    assert "failed permanently" not in daemon.log(all_runs=True)


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", ["files", "inline"])
def test_bucket_deleted_and_created_again_mid_stream(live: Live, media: MediaCache, mode: str) -> None:
    """The bucket goes, with every object in it, and comes back empty while the stream runs.
    Files: the daemon uploads the window again from the segment files. Inline payloads: nothing
    is left to upload from, so the lost segments leave the playlist from its front and the
    playlist comes back once its new window lasts three target durations, after a discontinuity.
    Either way every version the poller reads names only objects it can GET (each one fetched
    again in every version), and every segment not yet stored when the bucket went is published."""
    clip = live_clip(media, 24)
    daemon = live.daemon(*(["--allow-unsigned-inline"] if mode == "inline" else []))
    before = live.poller(every_version=True)
    live.segmenter(clip, 24, *(["--send-segments"] if mode == "inline" else []))
    wait_for(lambda: published(live, "live-00006.ts"), timeout=30, message="segment 6 published")
    # A player that read a version just before the deletion and GETs its segments just after
    # would miss them through no fault of the daemon: the poller of the versions before the
    # deletion stops first, and the one of the versions after it starts once the playlist is gone,
    # carrying on the same RFC 8216 history.
    before.stop()
    assert not before.problems and not before.conformance, before.problems + before.conformance
    listed_before = [int(n) for n in re.findall(r"live-(\d+)\.ts", before.texts[-1])]
    live.sample()
    live.s3.delete_bucket(Bucket=live.bucket)  # SeaweedFS deletes its objects with it
    gone_at = time.monotonic()
    url = live.server.object_url(live.bucket, f"{live.key_prefix}/live.m3u8")
    wait_for(lambda: http_get(url).status == 404, timeout=30, message="the playlist gone")
    poller = PlaylistPoller(url, live.server.object_url(live.bucket, f"{live.key_prefix}/"), every_version=True)
    poller.add_version(before.texts[-1])
    live.pollers.append(poller)
    poller.start()
    # SeaweedFS answers a PUT into a missing bucket with AccessDenied (AWS: NoSuchBucket).
    wait_for(lambda: "AccessDenied" in daemon.log(), timeout=30, message="a PUT refused")
    time.sleep(max(0.0, 4 - (time.monotonic() - gone_at)))  # the fault: the bucket is away for 4 s
    live.s3.create_bucket(Bucket=live.bucket)
    away_s = time.monotonic() - gone_at
    finish(live)
    wait_ended(live, timeout_s=90)

    poller.stop()
    final = live.playlist_text()
    poller.add_version(final)
    result = audit(live.s3, live.bucket, live.key_prefix, [live.segments_root / "live"])
    # The deletion itself takes the objects that were stored; a re-check of one that slid out
    # before it may find it gone. What a player must never meet is a listed object that is missing.
    named_missing = [problem for problem in poller.problems if " listed" in problem]
    assert not named_missing, named_missing
    assert not poller.conformance, poller.conformance
    assert final.rstrip().endswith("#EXT-X-ENDLIST"), final
    not_yet_stored = [name for name in result.produced if int(name[5:10]) > max(listed_before) + 1]
    assert not_yet_stored and not set(not_yet_stored) - set(result.published), \
        sorted(set(not_yet_stored) - set(result.published))
    assert not result.mismatched and not result.stray
    log = daemon.log()
    assert "failed permanently" not in log and held_reports(log)
    if mode == "files":
        assert "uploaded again" in log
    else:
        assert "dropped from the front of the playlist" in log
        assert "#EXT-X-DISCONTINUITY" in final or "#EXT-X-DISCONTINUITY-SEQUENCE:1" in final
    live.sample()
    record(live.case, **result.figures(), playlist_versions=len(poller.texts),
           playlist_reads_failed=poller.unreachable, daemon_peak_rss_kb=live.peak_rss_kb or None,
           bucket_away_s=round(away_s, 1), segments_not_yet_stored=len(not_yet_stored))
