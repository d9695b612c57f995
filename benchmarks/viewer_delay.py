"""Viewer delay of the player page, glass to glass: a frame's capture -> that frame on screen.

The demo's pipeline (ffmpeg -re testsrc2 + sine, x264 zerolatency, hls-segment, hls-uploadd with
--player-page, the embedded S3), with each frame's number painted into its top rows as 20
black/white blocks. Once the live playlist is full (a viewer joining a running stream), the page
plays in headless Chromium with native HLS (``?native``) and with hls.js (``?hls.js``) in turn,
several joins each (where in a target duration a viewer joins moves the delay by up to one);
in each, four times a second the frame on screen is drawn to a canvas and its number read:

    delay = now - (t0 + frame number / 25)

where t0 is the moment ffmpeg was started, so the figure includes ffmpeg's start-up (~0.1 s) and
overstates by that much. Beside it, the live edge: how long after a segment's last frame was
captured the playlist first listed it (the segment's own duration, the next keyframe, the upload).

    python benchmarks/viewer_delay.py [--segment-seconds 2 6] [--seconds 20] [--joins 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import http_get  # noqa: E402

from examples.demo import live_pipeline, source_command, wait_for_http  # noqa: E402
from tests.support.browser import browser  # noqa: E402

KEY_PREFIX = "delay"
FPS = 25  # the demo source's frame rate
BITS = 20  # frame numbers up to 2**20 (11 h at 25 fps)
BLOCK = 32  # pixels per bit, 20 * 32 = 640
WINDOW = 5  # hls-uploadd's default --window: the page is opened once the playlist is full
# Black where bit k of the frame number n is clear, white where it is set: block k from the left,
# the top 40 rows. The rest of the picture is testsrc2's.
PAINT = ",".join([f"drawbox=x=0:y=0:w={BITS * BLOCK}:h=40:color=black:t=fill"] + [
    f"drawbox=x={BLOCK * k}:y=0:w={BLOCK}:h=40:color=white:t=fill:enable='mod(floor(n/{2 ** k}),2)'"
    for k in range(BITS)])

# The frame on screen: [epoch ms, frame number, currentTime], or null before it plays.
SAMPLE = f"""(() => {{
  const v = document.getElementById('video');
  if (!v || v.readyState < 2 || v.paused || !v.videoWidth) return null;
  const c = window.__delayCanvas || (window.__delayCanvas = document.createElement('canvas'));
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {{willReadFrequently: true}});
  g.drawImage(v, 0, 0);
  const row = g.getImageData(0, Math.floor(20 * c.height / 360), c.width, 1).data;
  let n = 0;
  for (let k = 0; k < {BITS}; k++) {{
    const x = Math.floor(({BLOCK} * k + {BLOCK // 2}) * c.width / 640);
    if (row[4 * x] > 128) n += 2 ** k;
  }}
  return [Date.now(), n, v.currentTime];
}})()"""

_EXTINF = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)|#EXTINF:([\d.]+)")


class EdgeWatch(threading.Thread):
    """Polls the playlist every 0.1 s; ``lags`` holds, per segment, the seconds from its last
    frame's capture (t0 + the EXTINF sum up to its end) to the poll that first listed it."""

    def __init__(self, url: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.t0 = url, t0
        self.lags: dict[int, float] = {}
        self.ends: dict[int, float] = {}  # media sequence number -> end, seconds of media
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                reply = http_get(self.url)
            except OSError:
                continue
            now = time.time()
            text = reply.text if reply.status == 200 else ""
            number = None
            for sequence, duration in _EXTINF.findall(text):
                if sequence:
                    number = int(sequence)
                    continue
                assert number is not None, "EXTINF before EXT-X-MEDIA-SEQUENCE"
                if number not in self.ends:
                    self.ends[number] = self.ends.get(number - 1, 0.0) + float(duration)
                    self.lags[number] = now - (self.t0 + self.ends[number])
                number += 1


def watch(page_url: str, t0: float, seconds: float) -> tuple[str, list[float]]:
    """(the engine the page says it plays with, each sampled delay in seconds) over ``seconds``
    of playback, the first second of it left out."""
    delays: list[float] = []
    status = ""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url=page_url)["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + 60
        playing_since = None
        while time.monotonic() < deadline:
            status = devtools.call("Runtime.evaluate", session, returnByValue=True,
                                   expression="document.getElementById('status')?.textContent ?? ''")["result"]["value"]
            sample = devtools.call("Runtime.evaluate", session, expression=SAMPLE,
                                   returnByValue=True)["result"].get("value")
            if sample is not None:
                if playing_since is None:
                    playing_since = time.monotonic()
                    deadline = playing_since + 1 + seconds
                elif time.monotonic() > playing_since + 1:
                    now_ms, number, _ = sample
                    delays.append(now_ms / 1000 - (t0 + number / FPS))
            time.sleep(0.25)
    engine = m.group(1) if (m := re.search(r"\((native HLS|hls\.js)", status)) else f"? ({status})"
    return engine, delays


def run(segment_seconds: float, seconds: float, joins: int, work: Path) -> tuple[dict[str, list[list[float]]], list[float]]:
    """({engine: the delays sampled in each join}, the live edge lag of each segment listed)."""
    command, _ = source_command(segment_seconds, "ffmpeg", PAINT)
    with live_pipeline(work, segment_seconds, command, key_prefix=KEY_PREFIX,
                       daemon_options=("--log-level", "WARNING"), segmenter_options=("--quiet",)) as live:
        edge = EdgeWatch(live.playlist_url, live.source_started)
        edge.start()
        if not wait_for_http(edge.url, 60):
            raise SystemExit("no playlist after 60 s")
        while len(edge.lags) < WINDOW:  # a viewer who joins a running stream
            time.sleep(0.1)
        delays: dict[str, list[list[float]]] = {}
        # The moment of a join decides where in a target duration the player starts: several
        # joins per engine, the engines taking turns.
        for _ in range(joins):
            for query in ("?native", "?hls.js"):
                engine, sampled = watch(live.page_url + query, live.source_started, seconds)
                delays.setdefault(engine, []).append(sampled)
        edge.done.set()
        return delays, list(edge.lags.values())


def figures(values: list[float]) -> str:
    if not values:
        return "no samples"
    return f"{statistics.median(values):5.1f} s (min {min(values):5.1f}, max {max(values):5.1f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment-seconds", type=float, nargs="+", default=[2.0, 6.0])
    parser.add_argument("--seconds", type=float, default=20.0, help="playback sampled per join")
    parser.add_argument("--joins", type=int, default=3, help="joins per engine")
    args = parser.parse_args()
    rows = []
    for segment_seconds in args.segment_seconds:
        with tempfile.TemporaryDirectory(prefix="viewer-delay-") as work:
            print(f"{segment_seconds:g}-s segments: {args.joins} joins per engine, {args.seconds:g} s each ...",
                  flush=True)
            rows.append((segment_seconds, *run(segment_seconds, args.seconds, args.joins, Path(work))))
    print("\nglass-to-glass delay of the player page (frame captured -> frame on screen), per join:"
          " the median of its samples (their spread)")
    for segment_seconds, delays, lags in rows:
        for engine, joins in delays.items():
            medians = [statistics.median(join) for join in joins if join]
            spread = max((max(join) - min(join) for join in joins if join), default=float("nan"))
            if not medians:
                print(f"  {segment_seconds:g}-s segments, {engine:10}: no samples")
                continue
            print(f"  {segment_seconds:g}-s segments, {engine:10}: {min(medians):5.1f} to {max(medians):5.1f} s"
                  f" = {min(medians) / segment_seconds:.1f} to {max(medians) / segment_seconds:.1f} segments"
                  f"  (joins: {', '.join(f'{m:.1f}' for m in medians)}; within a join at most {spread:.2f} s)")
        print(f"  {segment_seconds:g}-s segments, live edge lag: {figures(lags)}")


if __name__ == "__main__":
    main()
