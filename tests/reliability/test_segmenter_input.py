"""hls-segment fed bad input, end to end into S3 (issue 7): garbage between good TS, a truncated TS,
a video codec that changes mid-way. The segmenter never crashes; what it produced is published
exactly once, the playlist conforms and ends with ENDLIST.

(tests/segmenter/ covers the same inputs against a stand-in daemon, and pure garbage or an empty
stdin, which end with exit code 2 before any segment.)
"""

from __future__ import annotations

import random

import pytest

from tests.support.media import MediaCache, probe

from .conftest import Live, live_clip
from .test_faults_live import finish, wait_ended

FAST = 4.0  # these inputs are fed at 4x real time: the point is the bytes, not the pace


def feed(live: Live, data: bytes, seconds: float, name: str, env: dict[str, str] | None = None) -> None:
    source = live.tmp_path / name
    source.write_bytes(data)
    segmenter, feeder = live.segmenter(source, seconds, start=False, env=env)
    feeder.bytes_per_s *= FAST
    feeder.start()


@pytest.mark.timeout(120)
def test_garbage_between_good_ts(live: Live, media: MediaCache) -> None:
    first = live_clip(media, 6).read_bytes()
    second = live_clip(media, 6, pts_offset_seconds=6.0, seed=1).read_bytes()
    rng = random.Random(7)
    garbage = rng.randbytes(100_000) + b"\x47" + rng.randbytes(5000)  # with a fake sync byte
    live.daemon()
    poller = live.poller()
    feed(live, first + garbage + second, 12, "garbage.ts")
    finish(live)
    wait_ended(live)
    result = live.check(poller, garbage_bytes=len(garbage))
    assert len(result.produced) >= 10
    assert "skipped" in live.segmenters[0].log() or "corrupt" in live.segmenters[0].log() or "dropp" in live.segmenters[0].log()


@pytest.mark.timeout(120)
def test_truncated_ts(live: Live, media: MediaCache) -> None:
    data = live_clip(media, 10).read_bytes()
    cut = data[: int(len(data) * 0.6) + 101]  # mid-packet, mid-GOP
    live.daemon()
    poller = live.poller()
    feed(live, cut, 6, "truncated.ts")
    finish(live)
    wait_ended(live)
    result = live.check(poller)
    assert 4 <= len(result.produced) <= 7


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fast_path", ["1", "0"], ids=["fast-path", "pyav-path"])
def test_codec_changes_mid_stream(live: Live, media: MediaCache, fast_path: str) -> None:
    h264 = live_clip(media, 6).read_bytes()
    mpeg2 = media.mpeg2_ts(seconds=6, pts_offset_seconds=6.0).read_bytes()  # timestamps continue
    live.daemon()
    poller = live.poller()
    feed(live, h264 + mpeg2, 12, "codec-change.ts", env={"HLS_SEGMENT_FAST_PATH": fast_path})
    for feeder in live.feeders:
        assert feeder.finished.wait(60)
    segmenter = live.segmenters[0]
    assert segmenter.wait(60) == 0, segmenter.log()[-3000:]
    log = segmenter.log()
    assert "Traceback" not in log
    wait_ended(live)
    result = live.check(poller)
    assert len(result.produced) >= 5
    # The segmenter saw the new PMT, probed the new program and announces its codecs.
    assert "the PMT now lists PID 0x100 MPEG-2 video" in log, log[-3000:]
    assert "codecs avc1.64000d,mp4a.40.2," in log and "codecs mp4v.61,mp4a.6b," in log, log[-3000:]
    # Each segment holds one program: H.264 up to the change, MPEG-2 from it on.
    out_dir = live.segments_root / "live"
    codecs = [probe(out_dir / name).codecs for name in result.produced]
    changed_at = next(i for i, found in enumerate(codecs) if "mpeg2video" in found)
    assert all("h264" in found for found in codecs[:changed_at]), codecs
    assert all("mpeg2video" in found and "h264" not in found for found in codecs[changed_at:]), codecs
    # The first segment in the new codec starts a new timeline for players: RFC 8216 4.3.2.3 wants
    # EXT-X-DISCONTINUITY before a change of format or encoding parameters.
    changed = result.produced[changed_at]
    versions = [text for text in [*poller.texts, live.playlist_text()] if changed in text]
    assert versions
    for text in versions:
        before = text.split(changed)[0].rstrip("\n").splitlines()
        assert before[-2] == "#EXT-X-DISCONTINUITY", f"no discontinuity before {changed}:\n{text}"
