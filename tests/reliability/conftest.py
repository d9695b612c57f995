"""Fixtures of the reliability suite: a live pipeline (feeder -> hls-segment -> hls-uploadd ->
SeaweedFS -> poller) whose parts a test can kill, stop, slow down and start again."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from tests.support.daemon import UploaderDaemon
from tests.support.media import MediaCache
from tests.support.net import free_port
from tests.support.pipeline import (
    Audit,
    Feeder,
    PlaylistPoller,
    Segmenter,
    TcpSource,
    audit,
    process_figures,
    record,
    segmenter_command,
)
from tests.support.proxy import DelayProxy
from tests.support.seaweed import SeaweedServer, bucket_name

# Clips fed in real time: 1-s GOPs cut into 1-s segments, so a 20-s stream has 20 segments.
SEGMENT_SECONDS = "1"
GOP_SECONDS = 1.0
WINDOW = 5


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test's own, free to be stopped and started (same ports and data)."""
    with SeaweedServer(tmp_path / "weed") as server:
        yield server


def live_clip(media: MediaCache, seconds: float, **params: object) -> Path:
    return media.ts(seconds=seconds, gop_seconds=GOP_SECONDS, fps=25, video_bitrate=200_000, **params)


class Live:
    """One test's pipeline. Every part it starts is killed at teardown."""

    def __init__(self, tmp_path: Path, server: SeaweedServer, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.case = request.node.name
        self.s3: BaseClient = server.client()
        self.bucket = server.create_bucket(bucket_name(self.case))
        self.key_prefix = "live-" + uuid.uuid4().hex[:8]
        self.segments_root = tmp_path / "segments"
        self.segments_root.mkdir()
        self.daemon_port = free_port()
        self.daemons: list[UploaderDaemon] = []
        self.segmenters: list[Segmenter] = []
        self._logs = itertools.count()  # log file numbers: never reused, even for a segmenter removed
        self.feeders: list[Feeder] = []
        self.pollers: list[PlaylistPoller] = []
        self.proxies: list[DelayProxy] = []
        self.peak_rss_kb = 0  # highest VmHWM seen of any daemon of this pipeline

    def sample(self) -> None:
        """Note the peak RSS of every running daemon (call before killing one)."""
        for daemon in self.daemons:
            if daemon.running and daemon.proc is not None:
                try:
                    self.peak_rss_kb = max(self.peak_rss_kb, process_figures(daemon.proc.pid)["VmHWM"])
                except (OSError, KeyError):
                    pass

    # Parts.

    def daemon(self, *extra: str, endpoint_url: str | None = None, name: str = "uploadd",
               env: dict[str, str] | None = None, retention: bool = False, port: int | None = None) -> UploaderDaemon:
        """hls-uploadd on this pipeline's fixed port, or ``port`` (segmenters find it again after a
        restart). Without ``retention`` it keeps segment files and objects, which ``check`` audits."""
        args = [
            "--listen", f"127.0.0.1:{port or self.daemon_port}",
            "--allow-dir", str(self.segments_root),
            "--bucket", self.bucket,
            "--window", str(WINDOW),
            "--endpoint-url", endpoint_url or self.server.endpoint_url,
            *(() if retention else ("--keep-segment-files", "--keep-segment-objects")),
            *extra,
        ]
        daemon = UploaderDaemon(self.tmp_path / name, args, env=env)
        self.daemons.append(daemon)
        return daemon.start()

    def segmenter(self, clip: Path, seconds: float, *options: str, prefix: str = "live",
                  index: str = "live.m3u8", port: int | None = None, start: bool = True,
                  out_dir: Path | None = None, env: dict[str, str] | None = None,
                  tcp: bool = False, keep_segments: bool = True,
                  seconds_per_segment: str = SEGMENT_SECONDS) -> tuple[Segmenter, Feeder]:
        """hls-segment reading ``clip`` at real-time pace from a pipe, or from a tcp:// URL;
        ``keep_segments`` keeps the files it sent inline (``check`` audits them)."""
        out_dir = out_dir or self.segments_root / prefix
        source = TcpSource() if tcp else None
        if keep_segments:
            options = (*options, "--keep-segments")
        command = segmenter_command(seconds_per_segment, out_dir, port or self.daemon_port, self.bucket,
                                    self.key_prefix, *options, prefix=prefix, index=index,
                                    input=source.url if source else "-")
        segmenter = Segmenter(command, self.tmp_path / f"segment-{prefix}-{next(self._logs)}.log", env)
        feeder = Feeder(clip, source or segmenter.proc, seconds)  # type: ignore[arg-type]
        self.segmenters.append(segmenter)
        self.feeders.append(feeder)
        if start:
            feeder.start()
        return segmenter, feeder

    def poller(self, index: str = "live.m3u8", **options: object) -> PlaylistPoller:
        poller = PlaylistPoller(self.server.object_url(self.bucket, f"{self.key_prefix}/{index}"),
                                self.server.object_url(self.bucket, f"{self.key_prefix}/"), **options)  # type: ignore[arg-type]
        self.pollers.append(poller)
        poller.start()
        return poller

    def proxy(self, target: tuple[str, int], **options: float) -> DelayProxy:
        proxy = DelayProxy(target, **options)
        self.proxies.append(proxy)
        proxy.start()
        return proxy

    # Verdicts.

    def playlist_text(self, index: str = "live.m3u8") -> str:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.key_prefix}/{index}")["Body"].read()
        return body.decode()

    def check(self, poller: PlaylistPoller, *, index: str = "live.m3u8", prefixes: tuple[str, ...] = ("live",),
              **figures: object) -> Audit:
        """The verdict of issue 7 for one stream: everything produced is in S3 exactly once, the
        final playlist conforms and ends, and the poller never saw a missing segment."""
        poller.stop()
        final = self.playlist_text(index)
        result = audit(self.s3, self.bucket, self.key_prefix, [self.segments_root / p for p in prefixes],
                       prefix=prefixes[0])
        poller.add_version(final)
        self.sample()
        peak = self.peak_rss_kb or None
        record(self.case, **result.figures(), playlist_versions=len(poller.texts),
               playlist_reads_failed=poller.unreachable, daemon_peak_rss_kb=peak, **figures)
        assert result.produced, "the segmenter produced no segment"
        assert not result.lost, f"segments lost: {result.lost}"
        assert not result.mismatched, f"segments whose bytes differ from the file: {result.mismatched}"
        assert not result.stray, f"objects nobody produced: {result.stray}"
        assert not poller.problems, poller.problems
        assert not poller.conformance, poller.conformance
        assert final.rstrip().endswith("#EXT-X-ENDLIST"), final
        return result

    def close(self) -> None:
        for feeder in self.feeders:
            feeder.stop()
        for segmenter in self.segmenters:
            segmenter.kill()
        for feeder in self.feeders:
            feeder.join(10)
            if isinstance(feeder.sink, TcpSource):
                feeder.sink.close()
        for poller in self.pollers:
            poller.stop()
        for daemon in self.daemons:
            daemon.kill()
        for proxy in self.proxies:
            proxy.stop()
        self.s3.close()


@pytest.fixture
def live(tmp_path: Path, seaweed: SeaweedServer, own_seaweed: SeaweedServer,
         request: pytest.FixtureRequest) -> Iterator[Live]:
    # `seaweed` puts credentials and path-style addressing in the environment daemons inherit.
    pipeline = Live(tmp_path, own_seaweed, request)
    try:
        yield pipeline
    finally:
        pipeline.close()
    for daemon in pipeline.daemons:
        log = daemon.log(all_runs=True)
        if "Traceback" in log:
            pytest.fail(f"traceback in the log of hls-uploadd:\n{log[-5000:]}")
    for segmenter in pipeline.segmenters:
        if "Traceback" in segmenter.log():
            pytest.fail(f"traceback in the log of hls-segment:\n{segmenter.log()[-5000:]}")


@pytest.fixture(scope="session")
def segment_source(media: MediaCache) -> Path:
    """A small real H.264+AAC TS file (1 s), copied under each segment's name."""
    return media.ts(seconds=1.0)
