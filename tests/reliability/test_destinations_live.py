"""A live stream published to two destinations at once, one of them down for 15 s (issue 17).

The real pipeline (tests/reliability/conftest.py): a clip piped at real-time pace into
hls-segment, feeding hls-uploadd with ``--store s3 --store ftp://...``: SeaweedFS and a pyftpdlib
server whose directory a web server serves, as an FTP upload to a site's document root is. A
player-like poller reads each destination's playlist. The FTP server stops for 15 s mid-stream:
S3's playlist goes on as before, the FTP destination catches up, and every playlist version at
each is conformant and names only segments there.
"""

from __future__ import annotations

import functools
import http.server
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.file_servers import FtpServer
from tests.support.media import MediaCache
from tests.support.pipeline import PLAYLIST_CONTENT_TYPE, SEGMENT_CONTENT_TYPE, PlaylistPoller
from tests.support.viewer import wait_for

from .conftest import Live, live_clip
from .test_faults_live import finish, published, wait_ended

OUTAGE_S = 15.0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".ts": SEGMENT_CONTENT_TYPE, ".m3u8": PLAYLIST_CONTENT_TYPE, "": "application/octet-stream"}

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory and the loopback web server that serves it: (root, base URL)."""
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def produced_at(segments: Path) -> dict[str, float]:
    """When the segmenter finished each segment file: its modification time (wall clock)."""
    return {path.name: path.stat().st_mtime for path in segments.glob("*.ts")}


def delays(poller: PlaylistPoller, made: dict[str, float], names: list[str]) -> list[float]:
    """Seconds from each segment's file to the first playlist version naming it."""
    return [poller.first_seen[name] - made[name] for name in names if name in poller.first_seen and name in made]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_destination_down_15_s_delays_no_other_and_catches_up(
    live: Live, media: MediaCache, site: tuple[Path, str]
) -> None:
    root, base = site
    clip = live_clip(media, 40)
    with FtpServer(root) as ftp:
        daemon = live.daemon("--store", "s3", "--store", ftp.url)
        s3_poller = live.poller()
        prefix = f"{live.bucket}/{live.key_prefix}/"
        ftp_poller = PlaylistPoller(f"{base}{prefix}live.m3u8", f"{base}{prefix}")
        live.pollers.append(ftp_poller)
        ftp_poller.start()
        live.segmenter(clip, 40)
        wait_for(lambda: published(live, "live-00006.ts") and "live-00006.ts" in ftp_poller.first_seen, timeout=30,
                 message="segment 6 at both")
        ftp.stop()
        stopped_at = time.time()
        wait_for(lambda: "failed (attempt 1), retrying" in daemon.log(), timeout=20, message="a failed upload")
        time.sleep(max(0.0, OUTAGE_S - (time.time() - stopped_at)))
        newest_at_restart = max(s3_poller.first_seen, key=s3_poller.first_seen.__getitem__)
        ftp.restart()
        restarted_at = time.time()
        wait_for(lambda: newest_at_restart in ftp_poller.first_seen, timeout=60, message="the FTP side caught up")
        catch_up_s = ftp_poller.first_seen[newest_at_restart] - restarted_at
        finish(live)
        wait_ended(live)
        wait_for(lambda: ftp_poller.history.last is not None and ftp_poller.history.last.endlist, timeout=60,
                 message="ENDLIST at the FTP destination")
        made = produced_at(live.segments_root / "live")
        during = sorted(name for name, at in made.items() if stopped_at <= at <= restarted_at)
        s3_delays = delays(s3_poller, made, during)
        ftp_delays = delays(ftp_poller, made, during)
        result = live.check(s3_poller, outage_s=round(restarted_at - stopped_at, 1), catch_up_s=round(catch_up_s, 2),
                            segments_behind_at_restart=len(during), s3_delay_during_outage_max_s=round(max(s3_delays), 2))
        ftp_poller.stop()
    assert len(during) >= 10 and len(s3_delays) == len(during), (during, s3_delays)
    # The destination that stayed up is not held back by the other: each segment made during
    # the outage is listed there about as fast as before it (a coupled queue would wait 15 s).
    assert max(s3_delays) < OUTAGE_S / 2, s3_delays
    assert statistics.median(ftp_delays) > statistics.median(s3_delays)
    assert not ftp_poller.problems, ftp_poller.problems
    assert not ftp_poller.conformance, ftp_poller.conformance
    at_ftp = sorted(path.name for path in (root / prefix).glob("live-*.ts"))
    assert at_ftp == result.produced
    for name in result.produced:
        assert (root / prefix / name).read_bytes() == (live.segments_root / "live" / name).read_bytes()
    print(f"catch-up after a {restarted_at - stopped_at:.1f}-s outage: {catch_up_s:.2f} s for {len(during)}"
          f" segments; S3 delay during it: median {statistics.median(s3_delays):.2f} s, max {max(s3_delays):.2f} s")
