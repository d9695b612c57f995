"""The player page uploaded beside a playlist: native HLS in Safari, hls.js everywhere else.

hls.js (Apache-2.0, ``static/hls.js.LICENSE``) is uploaded next to the page, so viewers need no
third-party CDN and the page, script and playlist share one origin (no CORS setup).

A private stream's page (--url-mode presigned or cloudfront-signed) is one object, hls.js inside
it, reached by a signed URL; it plays the signed playlist URL its fragment names
(``index.html?X-Amz-...#src=URL``: a fragment, since a query parameter added to a signed URL
would break its signature), as ``hls-uploadd sign --player`` prints it.
"""

from __future__ import annotations

import html
from importlib import resources

PAGE_NAME = "index.html"
SCRIPT_NAME = "hls.light.min.js"
PAGE_CONTENT_TYPE = "text/html; charset=utf-8"
SCRIPT_CONTENT_TYPE = "text/javascript"
# The script's name does not change with its version, so it is cached for a day, not for ever.
SCRIPT_CACHE_CONTROL = "max-age=86400"
# hls.js starts this many target durations back from the live playlist's end, as RFC 8216 6.3.3
# asks of clients (and native players do): most of the viewer delay README gives (measured by
# benchmarks/viewer_delay.py).
LIVE_SYNC_SEGMENTS = 3

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ margin: 0; background: #111; color: #eee; font-family: system-ui, sans-serif; }}
  main {{ max-width: 960px; margin: auto; padding: 1rem; }}
  video {{ width: 100%; background: #000; aspect-ratio: 16 / 9; }}
  code {{ word-break: break-all; }}
  a {{ color: #8cf; }}
</style>
</head>
<body>
<main>
  <h1>{title}</h1>
  <video id="video" controls autoplay muted playsinline></video>
  <p>Stream: <a id="stream" href="{playlist}"><code>{playlist}</code></a></p>
  <p id="status">Loading...</p>
</main>
{script}
<script>
  const video = document.getElementById("video");
  const link = document.getElementById("stream");
  const status = document.getElementById("status");
  // Options in the query or, for a page reached by a signed URL, in the fragment: hls.js tries
  // hls.js where HLS is native; native tries native HLS alone. A private stream's page plays the
  // http(s) URL its fragment's src= gives (a signed playlist URL); a public page only its own.
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const option = (name) => query.has(name) || fragment.has(name);
  const given = {private} ? fragment.get("src") : null;
  if (given && /^https?:[/][/]/i.test(given)) link.setAttribute("href", given);
  const source = new URL(link.getAttribute("href"), location.href).href;
  link.querySelector("code").textContent = source;
  const forceHlsJs = option("hls.js"), nativeOnly = option("native");
  let engine = "native HLS";
  video.addEventListener("playing", () => {{
    status.textContent = `Playing (${{engine}}, ${{video.videoWidth}}x${{video.videoHeight}})`;
  }});
  video.addEventListener("ended", () => {{
    status.textContent = `Ended (${{engine}}) at ${{video.currentTime.toFixed(1)}} s`;
  }});
  video.addEventListener("error", () => {{
    status.textContent = `Error (${{engine}}): ${{video.error.message || video.error.code}}`;
  }});
  function playWithHlsJs() {{
    engine = "hls.js";
    // window.hls: the player, for a look from the browser's console (levels, currentLevel).
    const hls = window.hls = new Hls({{ liveSyncDurationCount: {live_sync_segments} }});
    hls.on(Hls.Events.ERROR, (event, data) => {{
      if (data.fatal) status.textContent = "Error: " + data.details;
    }});
    hls.loadSource(source);
    hls.attachMedia(video);
  }}
  const hlsJs = !nativeOnly && window.Hls && Hls.isSupported();
  if (!link.getAttribute("href")) {{
    status.textContent = "No stream: open this page by the URL `hls-uploadd sign --player` prints.";
  }} else if (!forceHlsJs && video.canPlayType("application/vnd.apple.mpegurl")) {{
    video.src = source;  // Safari, iOS and some Chromium builds play HLS natively
    if (hlsJs) {{
      // Chromium's native HLS fails on a live playlist shorter than three target durations (a
      // stream's first segments): hls.js takes over where it can.
      video.addEventListener("error", function fallBack() {{
        video.removeEventListener("error", fallBack);
        status.textContent = `native HLS failed (${{video.error.message || video.error.code}}); trying hls.js`;
        video.removeAttribute("src");
        video.load();
        playWithHlsJs();
      }});
    }}
  }} else if (hlsJs) {{
    playWithHlsJs();
  }} else if (nativeOnly) {{
    status.textContent = "This browser has no native HLS player: open the page without ?native.";
  }} else if (video.canPlayType("application/vnd.apple.mpegurl")) {{
    status.textContent = "hls.js cannot run here (no Media Source Extensions): open the page without ?hls.js.";
  }} else {{
    status.textContent = "This browser cannot play HLS.";
  }}
</script>
</body>
</html>
"""


def render_player_page(playlist_name: str, *, title: str, private: bool = False) -> str:
    """The page, pointing at ``playlist_name`` relative to itself, hls.js beside it. ``private``:
    the page of a private stream, hls.js inside it and no playlist of its own (its URL's fragment
    gives one, ``src=URL``)."""
    if private:
        code = player_script().decode("utf-8")
        # Inside <script>, only these end or escape the element early (HTML, "script data").
        if any(marker in code.lower() for marker in ("</script", "<!--", "<script")):
            raise ValueError("hls.js cannot be inlined as it is: it holds </script, <!-- or <script")
        script = "<script>" + code + "</script>"
    else:
        script = f'<script src="{SCRIPT_NAME}"></script>'
    return _PAGE.format(
        title=html.escape(title),
        playlist="" if private else html.escape(playlist_name, quote=True),
        script=script,
        private="true" if private else "false",
        live_sync_segments=LIVE_SYNC_SEGMENTS,
    )


def player_script() -> bytes:
    """hls.js, as shipped inside this package."""
    return resources.files("uploader").joinpath("static", SCRIPT_NAME).read_bytes()
