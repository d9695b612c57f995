"""Private streams (--url-mode presigned): a SeaweedFS with an identity refuses anonymous GETs,
and viewers get in only through the presigned URLs the daemon writes into its playlists and
``hls-uploadd sign`` prints for a master or a playlist."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from examples.embedded_s3 import EmbeddedS3
from tests.support.browser import browser
from uploader.player import render_player_page
from tests.support.daemon import UploaderDaemon, place_segment
from tests.support.media import probe
from tests.support.pipeline import PlaylistPoller
from tests.support.rfc8216 import History, is_signed, master_playlist_problems, resource
from tests.support.seaweed import bucket_name
from tests.support.viewer import http_get, wait_for

from .conftest import stop_all
from .test_daemon import ext_message
from .test_urls import cloudfront_verify, pem

IDENTITY = ("AKIDPRIVATESTREAMS", "private-streams-secret-0123456789")
KEY_PREFIX = "show"


@pytest.fixture(scope="module")
def private_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A SeaweedFS that knows one identity: an anonymous GET gets 403."""
    with EmbeddedS3(tmp_path_factory.mktemp("private-s3"), identity=IDENTITY) as server:
        yield server


def environment(s3: EmbeddedS3) -> dict[str, str]:
    return {**os.environ, **s3.client_environment(), "PYTHONUNBUFFERED": "1"}


StartPrivate = Callable[..., UploaderDaemon]


@pytest.fixture
def private_daemon(private_s3: EmbeddedS3, tmp_path: Path) -> Iterator[StartPrivate]:
    """private_daemon(bucket, *options) -> hls-uploadd --url-mode presigned on ``private_s3``,
    reading segments from tmp_path/segments; stopped at the end."""
    daemons: list[UploaderDaemon] = []

    def start(bucket: str, *options: str) -> UploaderDaemon:
        segments = tmp_path / "segments"
        segments.mkdir(exist_ok=True)
        daemon = UploaderDaemon(tmp_path / "uploadd", ["--allow-dir", str(segments), "--bucket", bucket,
                                                        "--url-mode", "presigned", *options],
                                env=environment(private_s3))
        daemons.append(daemon)
        return daemon.start()

    yield start
    stop_all(daemons)


def sign(s3: EmbeddedS3, target: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uploader", "sign", target, *options], env=environment(s3),
                          capture_output=True, text=True, timeout=60)


def signed_url(s3: EmbeddedS3, bucket: str, key: str, ttl: str = "5m") -> str:
    done = sign(s3, f"s3://{bucket}/{key}", "--ttl", ttl)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.strip()


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def expires_s(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_a_private_program_is_read_only_through_presigned_urls_and_ffmpeg_plays_it(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path, segment_source: Path,
) -> None:
    bucket = private_s3.create_bucket(bucket_name("private"))
    segments = tmp_path / "segments"
    daemon = private_daemon(bucket, "--url-ttl", "120",
                            "--playlist-url-ttl", "900", "--window", "3")
    renditions = ("low", "high")
    with daemon.connect() as client:
        for name in renditions:
            for number in range(1, 5):
                place_segment(segment_source, segments, name, number)
                client.send(ext_message(segments, bucket, number, index=f"{name}.m3u8", output_prefix=name,
                                        key_prefix=KEY_PREFIX, segment_duration=1, duration=1.0, end=number == 4,
                                        codecs="avc1.64000d,mp4a.40.2", resolution="320x240"))
    master_url = signed_url(private_s3, bucket, f"{KEY_PREFIX}/master.m3u8")
    master = wait_for(lambda: (r := http_get(master_url)).status == 200 and len(uris(r.text)) == 2 and r.text,
                      timeout=30, message="the master with both renditions")
    assert master_playlist_problems(master) == []
    for playlist_url in uris(master):
        assert is_signed(playlist_url) and expires_s(playlist_url) == 900, playlist_url
        text = wait_for(lambda u=playlist_url: (r := http_get(u)).status == 200 and "#EXT-X-ENDLIST" in r.text
                        and r.text, timeout=30, message="an ended rendition")
        history = History("live", signed=True)
        history.add(text)
        assert history.problems == []
        for segment_url in uris(text):
            assert segment_url.startswith(private_s3.endpoint_url) and expires_s(segment_url) == 120, segment_url
            got = http_get(segment_url)
            assert (got.status, got.headers.get("Content-Type")) == (200, "video/MP2T")
            assert http_get(resource(segment_url)).status == 403  # the same object, unsigned
        assert http_get(resource(playlist_url)).status == 403
    assert http_get(resource(master_url)).status == 403
    # A real HLS client: ffmpeg reads the master, a rendition and its segments through the URLs.
    played = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", master_url, "-map", "0", "-c", "copy",
                             "-f", "mpegts", "-y", str(tmp_path / "played.ts")], capture_output=True, text=True,
                            timeout=120)
    assert played.returncode == 0, played.stderr
    video = probe(tmp_path / "played.ts").video
    assert video is not None and video.duration_s >= 2.5
    assert "raise --url-ttl" not in daemon.log()  # 120 s is enough for a 3 x 1 s window: no warning


def test_sign_prints_a_url_that_expires_and_refuses_what_it_cannot_sign_in_one_line(
    private_s3: EmbeddedS3, tmp_path: Path,
) -> None:
    bucket = private_s3.create_bucket(bucket_name("sign"))
    client = private_s3.client()
    try:
        client.put_object(Bucket=bucket, Key="a b/index.m3u8", Body=b"#EXTM3U\n")
    finally:
        client.close()
    url = signed_url(private_s3, bucket, "a b/index.m3u8", ttl="3s")  # the key as it is
    assert expires_s(url) == 3 and http_get(url).status == 200
    time.sleep(4.5)
    assert http_get(url).status == 403  # expired
    for arguments, message in [
        (["s3://only-a-bucket"], "'s3://only-a-bucket' is not s3://BUCKET/KEY"),
        ([f"s3://{bucket}/show/"], "is not s3://BUCKET/KEY (an object's key, not a prefix)"),
        ([f"s3://{bucket}/k", "--s3-addressing-style", "bogus"], "--s3-addressing-style 'bogus' is not one of"),
        ([f"s3://{bucket}/k", "--url-mode", "cloudfront-signed", "--cloudfront-domain", "https://d1.example/",
          "--cloudfront-key-pair-id", "K", "--cloudfront-private-key", "/k.pem"], "is not a host name"),
        (["https://host/key"], "'https://host/key' is not s3://BUCKET/KEY"),
        ([f"s3://{bucket}/k", "--ttl", "8d"], "--ttl '8d' is not a duration from 1 s to 7 days"),
        ([f"s3://{bucket}/k", "--ttl", "soon"], "--ttl 'soon' is not a duration"),
        ([f"s3://{bucket}/k", "--url-mode", "public"], "sign makes presigned or cloudfront-signed URLs"),
        ([f"s3://{bucket}/k", "--url-mode", "cloudfront-signed"], "needs --cloudfront-domain"),
    ]:
        done = sign(private_s3, *arguments)
        assert done.returncode == 2 and done.stdout == "", (arguments, done)
        assert done.stderr.startswith("hls-uploadd: ") and message in done.stderr, (arguments, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr


def test_sign_takes_the_daemon_s_config_file_and_names_missing_credentials_in_one_line(
    private_s3: EmbeddedS3, tmp_path: Path,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "cloudfront.pem").write_bytes(pem(key))
    config = tmp_path / "uploadd.toml"
    # The daemon's file, read where an application signs: its other settings (a directory that
    # is not there) play no part.
    config.write_text(f'''[uploadd]
bucket = ["live"]
allow_dir = ["{tmp_path / 'not-here'}"]
url_mode = "cloudfront-signed"
cloudfront_domain = "d111111abcdef8.cloudfront.net"
cloudfront_key_pair_id = "K2JCJMDEHXQW5F"
cloudfront_private_key = "{tmp_path / 'cloudfront.pem'}"
''')
    done = sign(private_s3, "s3://live/show/master.m3u8", "--config", str(config), "--ttl", "10m")
    assert done.returncode == 0, done.stderr
    cloudfront_verify(done.stdout.strip(), key.public_key(), "K2JCJMDEHXQW5F", datetime.datetime.now(datetime.UTC))
    assert done.stdout.startswith("https://d111111abcdef8.cloudfront.net/show/master.m3u8?")
    without = {name: value for name, value in environment(private_s3).items() if not name.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "uploader", "sign", "s3://live/show/master.m3u8"],
                          env={**without, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                               "AWS_EC2_METADATA_DISABLED": "true"}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "hls-uploadd: cannot sign s3://live/show/master.m3u8: Unable to locate credentials\n"


def publish_seconds(s3: EmbeddedS3, daemon: UploaderDaemon, segments: Path, bucket: str, source: Path,
                    count: int) -> str:
    """Send segments 1..``count`` (1 s each) of stream KEY_PREFIX/index.m3u8; its playlist once it
    lists the last, read through a signed URL."""
    with daemon.connect() as client:
        for number in range(1, count + 1):
            place_segment(source, segments, "seg", number)
            client.send(ext_message(segments, bucket, number, key_prefix=KEY_PREFIX, segment_duration=1,
                                    duration=1.0))
    url = signed_url(s3, bucket, f"{KEY_PREFIX}/index.m3u8")
    return wait_for(lambda: (r := http_get(url)).status == 200 and f"seg-{count:05d}.ts" in r.text and r.text,
                    timeout=30, message=f"segment {count} listed")


def test_urls_shorter_lived_than_the_window_needs_are_warned_once_and_an_idle_stream_is_signed_again(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path, segment_source: Path,
) -> None:
    bucket = private_s3.create_bucket(bucket_name("resign"))
    segments = tmp_path / "segments"
    # 3 x 1 s listed: URLs must stay valid 2 x 3 + 2 x 1 = 8 s, and one listed may have only 3/8 of
    # --url-ttl left: 6 is short of it (22 is not), and housekeeping uploads an idle stream's
    # playlist again, its URLs signed afresh, a quarter of the TTL (1.5 s) after its last upload.
    daemon = private_daemon(bucket, "--url-ttl", "6", "--window", "3")
    first = publish_seconds(private_s3, daemon, segments, bucket, segment_source, 4)
    playlist_url = signed_url(private_s3, bucket, f"{KEY_PREFIX}/index.m3u8")
    again = wait_for(lambda: (text := http_get(playlist_url).text) != first and text, timeout=30,
                     message="the idle stream's playlist signed again")
    wait_for(lambda: "signed afresh" in daemon.log(), message="its log line")
    history = History("live", signed=True)
    history.add(first)
    history.add(again)
    assert history.problems == []
    assert uris(first) != uris(again) and [resource(u) for u in uris(first)] == [resource(u) for u in uris(again)]
    assert all(http_get(url).status == 200 for url in uris(again))
    wait_for(lambda: http_get(uris(first)[-1]).status == 403, timeout=15, message="the first URLs expired")
    warnings = [line for line in daemon.log().splitlines() if "raise --url-ttl" in line]
    assert len(warnings) == 1, warnings
    assert "must stay valid 8 s" in warnings[0] and "raise --url-ttl to 22 s or more" in warnings[0]


def live_rendition(name: str, video_bitrate: str, segments: Path, bucket: str, port: int,
                   env: dict[str, str]) -> tuple[subprocess.Popen[bytes], subprocess.Popen[str]]:
    """ffmpeg encoding 55 s of a test source in real time, piped into hls-segment (1-s segments)
    publishing rendition ``name`` under KEY_PREFIX."""
    encoder = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "55", "-c:v", "libx264",
         "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-b:v", video_bitrate, "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-"], stdout=subprocess.PIPE)
    segmenter = subprocess.Popen(
        [sys.executable, "-m", "segmenter", "-", "1", str(segments / name), name, f"{name}.m3u8", "", bucket,
         KEY_PREFIX, "--uploader", f"127.0.0.1:{port}"], stdin=encoder.stdout, env=env, stderr=subprocess.PIPE,
        text=True)
    assert encoder.stdout is not None
    encoder.stdout.close()
    return encoder, segmenter


def watch_page(url: str, seconds: float) -> tuple[str, float]:
    """Open the player page at ``url`` in headless Chromium and watch it until its video has
    played ``seconds`` (or 30 s more than that have passed): (its status line, seconds played)."""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url=url)["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + seconds + 30
        status, played = "", 0.0
        while time.monotonic() < deadline and played < seconds:
            status, played = devtools.call("Runtime.evaluate", session, returnByValue=True, expression=(
                "[document.getElementById('status')?.textContent ?? '',"
                " document.getElementById('video')?.played.length ? (p => p.end(p.length - 1) - p.start(0))"
                "(document.getElementById('video').played) : 0]"))["result"]["value"]
            time.sleep(0.5)
        return status, played


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_live_private_program_plays_in_ffmpeg_and_chromium_for_longer_than_one_url_ttl(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path,
) -> None:
    # 1-s segments, a 3-segment window: URLs must stay valid 8 s, and 3/8 of a 24-s TTL is 9 s; a
    # viewer who loaded the master once plays 30 s, on URLs signed again as they age: ffmpeg,
    # and hls.js in Chromium on the private player page, at the same time.
    bucket = private_s3.create_bucket(bucket_name("live-private"))
    daemon = private_daemon(bucket, "--url-ttl", "24", "--playlist-url-ttl", "600", "--window", "3",
                            "--player-page")
    env = environment(private_s3)
    processes: list[subprocess.Popen[Any]] = [process for name, bitrate in (("low", "200k"), ("high", "400k"))
                 for process in live_rendition(name, bitrate, tmp_path / "segments", bucket, daemon.port, env)]
    poller = None
    try:
        master_url = signed_url(private_s3, bucket, f"{KEY_PREFIX}/master.m3u8")
        playlist_url = signed_url(private_s3, bucket, f"{KEY_PREFIX}/low.m3u8")
        wait_for(lambda: len(uris(http_get(playlist_url).text)) >= 3, timeout=60, message="a full window")
        wait_for(lambda: http_get(master_url).status == 200, timeout=30, message="the master")
        poller = PlaylistPoller(playlist_url, "", interval_s=0.2, signed=True)
        poller.start()
        viewer = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-v", "error", "-i", master_url, "-map", "0:v:0", "-c", "copy", "-t", "30",
             "-f", "mpegts", "-y", str(tmp_path / "watched.ts")], stderr=subprocess.PIPE, text=True)
        processes.append(viewer)
        page = sign(private_s3, f"s3://{bucket}/{KEY_PREFIX}/master.m3u8", "--ttl", "5m", "--player")
        assert page.returncode == 0, page.stderr
        assert http_get(resource(page.stdout)).status == 403  # the page is private too
        status, played = watch_page(page.stdout.strip() + "&hls.js", 30)
        assert re.fullmatch(r"Playing \(hls\.js, 320x240\)", status) and played >= 30, (status, played)
        _, viewer_errors = viewer.communicate(timeout=60)
        assert viewer.returncode == 0 and "403" not in viewer_errors, viewer_errors
        watched = probe(tmp_path / "watched.ts").video
        assert watched is not None and watched.duration_s >= 29, watched
        for process in processes[1::2]:
            _, segmenter_log = process.communicate(timeout=60)
            assert process.returncode == 0, segmenter_log
        wait_for(lambda: "#EXT-X-ENDLIST" in http_get(playlist_url).text, timeout=30, message="the end published")
    finally:
        for process in processes:
            process.kill()
            process.wait()
        if poller is not None:
            poller.stop()
    poller.add_version(http_get(playlist_url).text)
    assert poller.conformance == [] and poller.problems == [], (poller.conformance, poller.problems)
    assert len(poller.first_seen) >= 40  # every segment listed since the poller began, each fetched signed
    assert "raise --url-ttl" not in daemon.log()


def test_a_cloudfront_signed_stream_lists_urls_that_verify_against_the_public_key(
    tmp_path: Path, segment_source: Path,
) -> None:
    # The file store stands in for the bucket behind the distribution: what is checked is what
    # the playlists list, offline, as CloudFront would check it.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "cloudfront.pem"
    key_file.write_bytes(pem(key))
    root, segments = tmp_path / "store", tmp_path / "segments"
    (root / "live").mkdir(parents=True)
    segments.mkdir()
    daemon = UploaderDaemon(tmp_path / "uploadd", [
        "--allow-dir", str(segments), "--bucket", "live", "--store", f"file://{root}", "--url-mode",
        "cloudfront-signed", "--cloudfront-domain", "d111111abcdef8.cloudfront.net", "--cloudfront-key-pair-id",
        "K2JCJMDEHXQW5F", "--cloudfront-private-key", str(key_file), "--url-ttl", "60", "--window", "3"]).start()
    try:
        with daemon.connect() as client:
            for number in range(1, 4):
                place_segment(segment_source, segments, "seg", number)
                client.send(ext_message(segments, "live", number, key_prefix=KEY_PREFIX, segment_duration=1,
                                        duration=1.0, end=number == 3))
        playlist = root / "live" / KEY_PREFIX / "index.m3u8"
        text = wait_for(lambda: playlist.exists() and "#EXT-X-ENDLIST" in (t := playlist.read_text()) and t,
                        timeout=30, message="the ended playlist")
    finally:
        daemon.kill()
    history = History("live", signed=True)
    history.add(text)
    assert history.problems == []
    listed = uris(text)
    assert [resource(url) for url in listed] == [
        f"https://d111111abcdef8.cloudfront.net/{KEY_PREFIX}/seg-{n:05d}.ts" for n in range(1, 4)]
    now = datetime.datetime.now(datetime.UTC)
    for url in listed:
        cloudfront_verify(url, key.public_key(), "K2JCJMDEHXQW5F", now)
        with pytest.raises(AssertionError, match="expired"):
            cloudfront_verify(url, key.public_key(), "K2JCJMDEHXQW5F", now + datetime.timedelta(seconds=61))


def page_link(url: str) -> tuple[str, str]:
    """(the href of the stream link, the status line) of the player page at ``url``, once loaded."""
    with browser() as devtools:
        target = devtools.call("Target.createTarget", url=url)["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        return wait_for(lambda: (value := devtools.call("Runtime.evaluate", session, returnByValue=True, expression=(
            "(s => s && s.textContent !== 'Loading...' && [document.getElementById('stream').getAttribute('href'),"
            " s.textContent])(document.getElementById('status'))"))["result"].get("value")) and tuple(value),
            timeout=20, message="the page's script ran")


def test_a_player_page_takes_no_playlist_but_an_http_one_from_a_private_page_s_fragment(tmp_path: Path) -> None:
    (tmp_path / "public.html").write_text(render_player_page("master.m3u8", title="show"))
    (tmp_path / "private.html").write_text(render_player_page("master.m3u8", title="show", private=True))
    public, private = (tmp_path / "public.html").as_uri(), (tmp_path / "private.html").as_uri()
    # A script URL would run in the bucket's origin when the link is clicked; a public page plays
    # its own playlist whatever its URL says.
    assert page_link(private + "#src=javascript:document.title='PWNED'") == (
        "", "No stream: open this page by the URL `hls-uploadd sign --player` prints.")
    assert page_link(public + "?src=https://elsewhere.example/x.m3u8")[0] == "master.m3u8"
    assert page_link(public + "#src=https://elsewhere.example/x.m3u8")[0] == "master.m3u8"
    assert page_link(private + "#src=https%3A%2F%2Fs3.example%2Fb%2Fmaster.m3u8%3FX-Amz-Signature%3D1")[0] == \
        "https://s3.example/b/master.m3u8?X-Amz-Signature=1"


def test_a_master_is_signed_again_on_its_own_ttl_and_drops_a_forgotten_rendition(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path, segment_source: Path,
) -> None:
    # --playlist-url-ttl 8 s, far under --url-ttl: the master goes out again every 2 s or so,
    # not when a rendition's playlist does. "high" ends and is forgotten after 2 s: the master
    # then lists "low" alone, and goes on being signed again.
    bucket = private_s3.create_bucket(bucket_name("master-ttl"))
    segments = tmp_path / "segments"
    daemon = private_daemon(bucket, "--url-ttl", "300", "--playlist-url-ttl", "8", "--window", "3",
                            "--forget-ended-after", "2")
    with daemon.connect() as client:
        for name in ("low", "high"):
            for number in range(1, 4):
                place_segment(segment_source, segments, name, number)
                client.send(ext_message(segments, bucket, number, index=f"{name}.m3u8", output_prefix=name,
                                        key_prefix=KEY_PREFIX, segment_duration=1, duration=1.0,
                                        end=name == "high" and number == 3, codecs="avc1.64000d,mp4a.40.2"))
    master_url = signed_url(private_s3, bucket, f"{KEY_PREFIX}/master.m3u8")
    seen: list[str] = []

    def versions(count: int) -> bool:
        got = http_get(master_url)
        if got.status == 200 and (not seen or got.text != seen[-1]):
            assert master_playlist_problems(got.text) == []
            for url in uris(got.text):  # each version's URLs are good when it is read
                assert expires_s(url) == 8 and http_get(url).status == 200, url
            seen.append(got.text)
        return len(seen) >= count

    wait_for(lambda: versions(1), timeout=30, message="the master")
    wait_for(lambda: versions(0) and "high.m3u8" not in seen[-1], timeout=30, interval=0.3,
             message="the master without the forgotten rendition")
    alone = len(seen)
    wait_for(lambda: versions(alone + 2), timeout=20, interval=0.3, message="the master signed again twice")
    assert all([resource(u).rsplit("/", 1)[1] for u in uris(text)] == ["low.m3u8"] for text in seen[alone - 1:])


def test_an_event_playlist_is_judged_by_its_window_not_by_its_growing_length(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path, segment_source: Path,
) -> None:
    # Players reload an EVENT playlist while it is live, so its URLs need what a 5 x 1 s window
    # needs (12 s, which 3/8 of 40 s covers), however long the event grows.
    bucket = private_s3.create_bucket(bucket_name("event"))
    segments = tmp_path / "segments"
    daemon = private_daemon(bucket, "--url-ttl", "40", "--playlist-type", "event")
    text = publish_seconds(private_s3, daemon, segments, bucket, segment_source, 20)
    history = History("event", signed=True)
    history.add(text)
    assert history.problems == [] and len(uris(text)) == 20
    assert "raise --url-ttl" not in daemon.log()


def test_a_stream_signed_again_while_idle_goes_on_after_it_and_after_a_restart(
    private_s3: EmbeddedS3, private_daemon: StartPrivate, tmp_path: Path, segment_source: Path,
) -> None:
    # Signing again writes a new version of the playlist (stores.put_version): the next segment's
    # playlist, this run or the next, replaces that version, never taken for another writer's.
    bucket = private_s3.create_bucket(bucket_name("resign-versions"))
    segments = tmp_path / "segments"
    daemon = private_daemon(bucket, "--url-ttl", "8", "--window", "3")
    publish_seconds(private_s3, daemon, segments, bucket, segment_source, 4)
    wait_for(lambda: daemon.log().count("signed afresh") >= 1, timeout=30, message="signed again while idle")
    publish_seconds(private_s3, daemon, segments, bucket, segment_source, 5)
    wait_for(lambda: daemon.log().count("signed afresh") >= 2, timeout=30, message="signed again once more")
    assert daemon.stop() == 0
    daemon.start()
    publish_seconds(private_s3, daemon, segments, bucket, segment_source, 6)
    log = daemon.log(all_runs=True)
    assert "another writer" not in log and " held" not in log, log
