"""Retention's error paths: a store that refuses deletions, a segment file that cannot be
removed, the file store's delete, and the segmenter's numbering once its files are gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from botocore.client import BaseClient

from segmenter.config import SegmenterConfig
from segmenter.outbox import Outbox
from segmenter.segmenter import first_number
from tests.support.daemon import place_segment
from tests.support.s3_errors import Answer, S3ErrorProxy
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.files import AllowedDirs, DirectoryRefused, SegmentFileError
from uploader.housekeeping import deletion_fix
from uploader.stores import (
    CorrectableStoreError,
    FileStore,
    PermanentStoreError,
    TlsRefusedError,
    TransientStoreError,
)

from .conftest import StartUploader
from .test_daemon import fetch_playlist_or_none
from .test_faults import send_all

ACCESS_DENIED = Answer(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                       "application/xml")


def segment_keys(s3: BaseClient, bucket: str) -> set[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="live/one/").get("Contents", [])
    return {item["Key"].rsplit("/", 1)[1] for item in listing if item["Key"].endswith(".ts")}


def test_a_refused_deletion_is_logged_with_its_fix_and_retried_until_it_succeeds(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    with S3ErrorProxy(("127.0.0.1", seaweed.s3_port)) as proxy:
        proxy.fail_next(2, ACCESS_DENIED, methods=("DELETE",))
        daemon = start_uploader("--allow-dir", str(segments_dir), "--endpoint-url", proxy.url, "--window", "3",
                                "--cdn-allowance", "0")
        for number in range(1, 9):
            place_segment(segment_source, segments_dir, "seg", number)
        send_all(daemon, segments_dir, bucket, range(1, 9), end_at=8)
        url = seaweed.object_url(bucket, "live/one/index.m3u8")
        final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p,
                         timeout=30, message="the ended playlist")
        window = {segment.uri for segment in final.segments}
        wait_for(lambda: segment_keys(s3, bucket) == window, timeout=60,
                 message="the removed segments deleted despite the refusals")
        assert proxy.statuses("DELETE")[:2] == [403, 403]
    log = daemon.log()
    assert "AccessDenied" in log and "needs s3:DeleteObject on the bucket" in log, log
    assert "failed permanently" not in log


def test_a_segment_file_is_removed_through_the_allowed_root_only(tmp_path: Path, segment_source: Path) -> None:
    root = tmp_path / "allowed"
    outside = tmp_path / "outside"
    place_segment(segment_source, outside, "seg", 1)
    root.mkdir()
    os.symlink(outside, root / "link")
    allowed = AllowedDirs((root,))
    with pytest.raises(DirectoryRefused, match="is not allowed"):
        allowed.remove_segment(f"{root}/link", "seg-00001.ts")
    with pytest.raises(SegmentFileError, match="not a segment file name"):
        allowed.remove_segment(str(root), "../outside/seg-00001.ts")
    assert (outside / "seg-00001.ts").exists()
    place_segment(segment_source, root / "real", "seg", 1)
    allowed.remove_segment(f"{root}/real", "seg-00001.ts")
    allowed.remove_segment(f"{root}/real", "seg-00001.ts")  # already gone: nothing to do
    assert not (root / "real" / "seg-00001.ts").exists()


def test_the_file_store_deletes_within_its_root_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.put("bucket", "live/seg-00001.ts", b"x", content_type="video/MP2T", cache_control="")
    store.delete("bucket", "live/seg-00001.ts")
    store.delete("bucket", "live/seg-00001.ts")  # a missing object is not an error
    assert not (tmp_path / "store" / "bucket" / "live" / "seg-00001.ts").exists()
    with pytest.raises(PermanentStoreError, match="not a plain relative path"):
        store.delete("bucket", "../outside")


def test_a_new_run_numbers_after_what_its_outbox_delivered_though_the_files_are_gone(tmp_path: Path) -> None:
    config = SegmenterConfig.from_settings(
        input="-", segment_duration="2", output_dir=str(tmp_path), output_prefix="cam", index_name="cam.m3u8",
        http_prefix="", bucket="bucket", key_prefix="live", settings={},
    )
    outbox = Outbox.open(tmp_path / ".cam.outbox")
    ids = [outbox.add(config.message(first_segment=1, last_segment=n, end=False)) for n in (1, 2, 3)]
    assert outbox.highest_number() == 3  # owed
    for owed_id in ids[:2]:
        outbox.remove(owed_id, durable=True)
    assert outbox.highest_number() == 3
    outbox.remove(ids[2])
    assert outbox.highest_number() == 3  # delivered: settled
    unfinished = outbox.add(config.message(first_segment=1, last_segment=4, end=False))
    outbox.remove(unfinished, settle=False)  # never named: its number is free again
    assert outbox.highest_number() == 3
    outbox.close()
    assert first_number(config, 3) == (4, True)
    assert first_number(config, 0) == (1, False)


def test_a_segment_file_that_cannot_be_removed_is_published_and_stays_with_one_warning(
    start_uploader: StartUploader, seaweed: SeaweedServer, s3: BaseClient, bucket: str, segments_dir: Path,
    segment_source: Path,
) -> None:
    for number in range(1, 4):
        place_segment(segment_source, segments_dir, "seg", number)
    # A read-only bind mount of the directory: the daemon reads the files, unlinking them fails.
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(segments_dir), str(segments_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip()}); needs root")
    try:
        daemon = start_uploader("--allow-dir", str(segments_dir))
        send_all(daemon, segments_dir, bucket, range(1, 4), end_at=3)
        url = seaweed.object_url(bucket, "live/one/index.m3u8")
        wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist, timeout=30,
                 message="the ended playlist")
        assert segment_keys(s3, bucket) == {f"seg-{n:05d}.ts" for n in range(1, 4)}
        assert sorted(path.name for path in segments_dir.iterdir()) == [f"seg-{n:05d}.ts" for n in range(1, 4)]
        log = daemon.log()
        assert log.count("stored, but its file stays") == 3 and "Read-only file system" in log, log
        assert "failed permanently" not in log
    finally:
        subprocess.run(["umount", "-l", str(segments_dir)], check=False)


def test_a_failed_deletion_s_line_gives_the_fix_its_kind_of_failure_has() -> None:
    """A refusal asks for s3:DeleteObject; a TLS refusal gives its own fix (not a permission); a
    store that is down or slow, nothing."""
    assert "needs s3:DeleteObject" in deletion_fix(CorrectableStoreError("AccessDenied", fix="grant s3:PutObject"))
    assert "needs s3:DeleteObject" in deletion_fix(PermanentStoreError("InvalidArgument"))
    tls = deletion_fix(TlsRefusedError("CERTIFICATE_VERIFY_FAILED", fix="name a PEM file in AWS_CA_BUNDLE"))
    assert tls == "; fix: name a PEM file in AWS_CA_BUNDLE"
    assert deletion_fix(TransientStoreError("read timeout")) == ""
