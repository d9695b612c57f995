"""Authenticated peers: --secret-file on the daemon, refusals with a reason, the listen rule."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.client import BaseClient

from protocol import Ack, Challenge, Reject, sign
from tests.support.daemon import place_segment
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none

SECRET = b"correct horse battery staple 42"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")  # a trailing newline, as editors write it, is not part of it
    path.chmod(0o600)
    return path


def test_unsigned_forged_and_replayed_messages_are_refused_while_a_signed_stream_goes_on(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path,
    segment_source: Path, secret_file: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--secret-file", str(secret_file))
    assert "peer authentication: HMAC secret" in daemon.startup_line
    for number in (1, 2, 3):
        place_segment(segment_source, segments_dir, "seg", number)
    url = seaweed.object_url(bucket, "live/one/index.m3u8")
    with daemon.connect() as legit, daemon.connect() as attacker:
        challenge = legit.hello()
        assert isinstance(challenge, Challenge) and abs(challenge.time_ms - now_ms()) < 3_600_000
        first = legit.signed(ext_message(segments_dir, bucket, 1), SECRET)
        assert legit.send(first) == Ack(1)

        untagged = ext_message(segments_dir, bucket, 2)
        assert attacker.send(untagged) == Reject(
            "message is not signed: this daemon requires HELLO, then key_id=, n= and tag=")
        no_hello = sign(ext_message(segments_dir, bucket, 2), SECRET, challenge.nonce, 2)
        reply = attacker.send(no_hello)
        assert isinstance(reply, Reject) and "without HELLO on this connection" in reply.reason
        older_sender = dataclasses.replace(ext_message(segments_dir, bucket, 2), sent_at_ms=now_ms(), tag="0" * 64)
        reply = attacker.send(older_sender)
        assert isinstance(reply, Reject) and "upgrade hls-segment" in reply.reason
        other = attacker.hello()
        assert isinstance(other, Challenge) and other.nonce != challenge.nonce
        assert attacker.send(first) == Reject("wrong authentication tag (check the secret of key_id 'default')")
        wrong = attacker.signed(ext_message(segments_dir, bucket, 2), b"not the secret at all, guessed")
        assert attacker.send(wrong) == Reject("wrong authentication tag (check the secret of key_id 'default')")
        unknown = attacker.signed(ext_message(segments_dir, bucket, 2), SECRET, "cam-east")
        reply = attacker.send(unknown)
        assert isinstance(reply, Reject) and reply.reason.startswith("unknown key_id 'cam-east'")
        tampered = dataclasses.replace(first, last_segment=2)  # the tag of segment 1 on segment 2
        reply = legit.send(tampered)
        assert isinstance(reply, Reject) and reply.reason.startswith("wrong authentication tag")
        reply = legit.send(first)  # replayed on its own connection
        assert isinstance(reply, Reject) and reply.reason.startswith("n=1 is not above n=1")
        reply = attacker.send(b"HELLO\n")
        assert isinstance(reply, Reject) and "HELLO was already answered" in reply.reason

        # The legitimate peer is unaffected, before and after the attacker gives up.
        assert legit.send(legit.signed(ext_message(segments_dir, bucket, 2), SECRET)) == Ack(2)
    with daemon.connect() as legit:
        legit.hello()
        assert legit.send(legit.signed(ext_message(segments_dir, bucket, 3, end=True), SECRET)) == Ack(3)
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert [s.uri for s in final.segments] == ["seg-00001.ts", "seg-00002.ts", "seg-00003.ts"]
    log = daemon.log()
    peer_lines = [line for line in log.splitlines() if "not authenticated" in line]
    assert len(peer_lines) == 8
    assert all("peer 127.0.0.1:" in line and "stream " in line for line in peer_lines)
    assert "refused HELLO" in log
    assert SECRET.decode() not in log


def test_a_re_signed_resend_is_a_duplicate_not_a_replay(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, segment_source: Path, secret_file: Path,
) -> None:
    """A segmenter that lost a reply sends the message again, signed anew: acknowledged again."""
    daemon = start_uploader("--allow-dir", str(segments_dir), "--secret-file", str(secret_file))
    place_segment(segment_source, segments_dir, "seg", 1)
    with daemon.connect() as client:
        client.hello()
        assert client.send(client.signed(ext_message(segments_dir, bucket, 1), SECRET)) == Ack(1)
    with daemon.connect() as client:  # a new connection, a new challenge: n starts again at 1
        client.hello()
        assert client.send(client.signed(ext_message(segments_dir, bucket, 1), SECRET)) == Ack(1)
    assert "already queued (re-sent)" in daemon.log()


def run_uploadd(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploader", "--spool-dir", str(tmp_path / "spool"), *args],
        capture_output=True, text=True, timeout=60,
    )


def test_a_non_loopback_listener_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    result = run_uploadd("--listen", "0.0.0.0:0", tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hls-uploadd: configuration error: --listen 0.0.0.0 is not a loopback address")
    assert "--secret-file" in lines[0] and "--insecure-no-auth" in lines[0]
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize(("content", "message"), [(b"short\n", "at least 16 are needed"), (None, "cannot read")])
def test_a_bad_secret_file_refuses_to_start(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)  # a readable one is also warned about: one line here
    result = run_uploadd("--secret-file", str(path), tmp_path=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_insecure_no_auth_warns_at_start_and_on_every_connection(
    start_uploader: StartUploader, bucket: str, segments_dir: Path, segment_source: Path,
) -> None:
    daemon = start_uploader("--allow-dir", str(segments_dir), "--listen", "0.0.0.0:0", "--insecure-no-auth")
    assert "peer authentication: none" in daemon.startup_line
    place_segment(segment_source, segments_dir, "seg", 1)
    for _ in range(2):
        with daemon.connect() as client:
            assert client.send(ext_message(segments_dir, bucket, 1)) == Ack(1)
    log = daemon.log()
    assert "WITHOUT peer authentication (--insecure-no-auth)" in log
    assert log.count("connected to an unauthenticated non-loopback listener") == 2


def test_a_secret_on_a_non_loopback_listener_starts(
    start_uploader: StartUploader, secret_file: Path, s3: BaseClient
) -> None:
    daemon = start_uploader("--listen", "0.0.0.0:0", "--secret-file", str(secret_file))
    assert "peer authentication: HMAC secret" in daemon.startup_line
    assert "WITHOUT peer authentication" not in daemon.log()


def test_options_from_env_and_toml_and_the_secret_never_printed(
    tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.options import settings_from_file
    from uploader.config import OPTIONS, SECTION, UploaderConfig

    config_file = tmp_path / "uploadd.toml"
    config_file.write_text('[uploadd]\nlisten = "0.0.0.0:10234"\ninsecure-no-auth = true\nmax-payload-size = 1000\nbucket = ["live"]\n')
    given = settings_from_file(OPTIONS, config_file, section=SECTION) | {"spool_dir": str(tmp_path / "spool")}
    config = UploaderConfig.from_settings(given)
    assert config.insecure_no_auth and config.max_payload_bytes == 1000 and config.secret is None
    given["secret_file"] = str(secret_file)
    config = UploaderConfig.from_settings(given)
    assert config.secret == SECRET and SECRET.decode() not in repr(config)
    result = subprocess.run(
        [sys.executable, "-m", "uploader", "--spool-dir", str(tmp_path / "spool"), "--listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HLS_UPLOADD_SECRET_FILE": str(tmp_path / "missing")},
    )
    assert result.returncode == 2 and "cannot read --secret-file" in result.stderr
