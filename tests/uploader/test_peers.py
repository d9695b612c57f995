"""Peers and scopes (issue 15 point 1): each peer of --peers-file writes only its buckets and key
prefixes, signed over the connection's challenge with its own secret; the configuration errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.settings import ConfigError
from protocol import Ack, Reject, sign
from tests.support.daemon import place_segment
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer
from tests.support.viewer import wait_for
from uploader.config import UploaderConfig
from uploader.peers import prefix_allows, read_peers_file

from .conftest import StartUploader
from .test_daemon import ext_message, fetch_playlist_or_none

EAST = b"east-secret-0123456789abcdef"
WEST = b"west-secret-0123456789abcdef"


def write_secret(path: Path, secret: bytes) -> Path:
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def peers_file(tmp_path: Path, bucket: str) -> Path:
    """Two cameras in one bucket, each under its own prefix; the west one sends paths only."""
    directory = tmp_path / "peers"
    directory.mkdir()
    write_secret(directory / "east.secret", EAST)
    write_secret(directory / "west.secret", WEST)
    path = directory / "peers.toml"
    path.write_text(
        f'[peers.cam-east]\nsecret-file = "east.secret"\nbuckets = ["{bucket}"]\nkey-prefixes = ["cams/east"]\n\n'
        f'[peers.cam-west]\nsecret-file = "{directory}/west.secret"\nbuckets = ["{bucket}"]\n'
        'key-prefixes = ["cams/west"]\ninline-payloads = false\n'
    )
    return path


def test_prefixes_match_whole_path_segments() -> None:
    assert prefix_allows("cams", "cams") and prefix_allows("cams", "cams/east") and prefix_allows("", "x/y")
    assert not prefix_allows("cams", "camsx") and not prefix_allows("cams/east", "cams")


def test_each_peer_writes_inside_its_scope_only(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    peers_file: Path,
) -> None:
    # One segment file published under three prefixes: kept after each upload.
    daemon = start_uploader("--allow-dir", str(segments_dir), "--peers-file", str(peers_file), "--keep-segment-files")
    assert "peer authentication: HMAC peers file (2 peers)" in daemon.startup_line
    place_segment(segment_source, segments_dir, "seg", 1)
    data = segment_source.read_bytes()
    where = f"of [peers.cam-east] in {peers_file}"
    with daemon.connect() as east, daemon.connect() as west:
        east.hello()
        west.hello()
        for prefix in ("cams/east", "cams/east/hd"):
            message = ext_message(segments_dir, bucket, 1, key_prefix=prefix, end=True)
            assert east.send(east.signed(message, EAST, "cam-east")) == Ack(1)
        outside = [
            (ext_message(segments_dir, bucket, 1, key_prefix="cams/eastx"),
             f"key prefix 'cams/eastx' is not allowed for peer 'cam-east' (add 'cams/eastx' to key-prefixes {where})"),
            (ext_message(segments_dir, bucket, 1, key_prefix="cams/west"),
             f"key prefix 'cams/west' is not allowed for peer 'cam-east' (add 'cams/west' to key-prefixes {where})"),
            (ext_message(segments_dir, "another-bucket", 1, key_prefix="cams/east"),
             f"bucket another-bucket is not allowed for peer 'cam-east' (add 'another-bucket' to buckets {where})"),
        ]
        for message, reason in outside:
            assert east.send(east.signed(message, EAST, "cam-east")) == Reject.because(reason)

        inline = ext_message(segments_dir, bucket, 2, key_prefix="cams/west", size=len(data))
        west.send_only(west.signed(inline, WEST, "cam-west"))
        west.send_only(data)  # read and dropped: the connection goes on
        assert west.reply() == Reject.because(
            f"inline payloads are not allowed for peer 'cam-west' (set inline-payloads = true in [peers.cam-west]"
            f" of {peers_file})")
        by_path = ext_message(segments_dir, bucket, 1, key_prefix="cams/west", end=True)
        assert west.send(west.signed(by_path, WEST, "cam-west")) == Ack(1)

        # Impersonation, and the exchange's own rules, with a peer's real secret.
        stolen_name = ext_message(segments_dir, bucket, 1, key_prefix="cams/west")
        reply = east.send(east.signed(stolen_name, EAST, "cam-west"))
        assert reply == Reject("wrong authentication tag (check the secret of key_id 'cam-west')")
        reply = east.send(east.signed(stolen_name, EAST, "cam-north"))
        assert isinstance(reply, Reject) and reply.reason.startswith("unknown key_id 'cam-north'")
        east.counter -= 3  # a number already used on this connection
        reply = east.send(east.signed(ext_message(segments_dir, bucket, 1, key_prefix="cams/east"), EAST, "cam-east"))
        assert isinstance(reply, Reject) and "is not above" in reply.reason
        assert east.send(ext_message(segments_dir, bucket, 1, key_prefix="cams/east")).reason.startswith(
            "message is not signed")
    with daemon.connect() as no_hello:
        signed = sign(ext_message(segments_dir, bucket, 1, key_prefix="cams/east"), EAST, "0" * 32, 1, "cam-east")
        reply = no_hello.send(signed)
        assert isinstance(reply, Reject) and "without HELLO" in reply.reason
    for prefix in ("cams/east", "cams/east/hd", "cams/west"):
        url = seaweed.object_url(bucket, f"{prefix}/index.m3u8")
        final = wait_for(lambda u=url: (p := fetch_playlist_or_none(u)) is not None and p.is_endlist and p, timeout=30)
        assert [s.uri for s in final.segments] == ["seg-00001.ts"]
    assert fetch_playlist_or_none(seaweed.object_url(bucket, "cams/eastx/index.m3u8")) is None


def test_hls_segment_signs_as_its_key_id_and_is_told_what_its_scope_does_not_allow(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, media: MediaCache, tmp_path: Path,
    peers_file: Path,
) -> None:
    daemon = start_uploader("--peers-file", str(peers_file))  # no --allow-dir: inline payloads only
    source = media.ts(seconds=4.0, gop_seconds=1.0)
    east_secret = peers_file.parent / "east.secret"

    def segment(key_prefix: str, name: str) -> subprocess.CompletedProcess[str]:
        with open(source, "rb") as stdin:
            return subprocess.run(
                [sys.executable, "-m", "segmenter", "-", "2", str(tmp_path / name), "cam", "index.m3u8", "", bucket,
                 key_prefix, "--uploader", f"127.0.0.1:{daemon.port}", "--send-segments", "--keep-segments",
                 "--secret-file", str(east_secret), "--key-id", "cam-east"],
                stdin=stdin, capture_output=True, text=True, timeout=120,
            )

    inside = segment("cams/east/main", "inside")
    assert inside.returncode == 0, inside.stderr
    url = seaweed.object_url(bucket, "cams/east/main/index.m3u8")
    final = wait_for(lambda: (p := fetch_playlist_or_none(url)) is not None and p.is_endlist and p, timeout=30)
    assert len(final.segments) == 2

    outside = segment("cams/west", "outside")
    assert outside.returncode != 0
    refusals = [line for line in outside.stderr.splitlines() if "refused segment" in line]
    assert refusals and all(
        "key prefix 'cams/west' is not allowed for peer 'cam-east' (add 'cams/west' to key-prefixes" in line
        for line in refusals), outside.stderr
    assert fetch_playlist_or_none(seaweed.object_url(bucket, "cams/west/index.m3u8")) is None


def test_the_peers_file_of_the_deployment_guide_is_read_as_it_says(tmp_path: Path) -> None:
    guide = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    example = guide.split("### Peers", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "peers.toml").write_text(example)
    for peer, secret in (("cam-east", EAST), ("cam-west", WEST), ("ops", b"ops-secret-0123456789abcdef")):
        write_secret(tmp_path / f"{peer}.secret", secret)
    peers = read_peers_file(tmp_path / "peers.toml")
    assert peers["cam-east"].key_prefixes == ("cams/east",) and peers["cam-east"].inline
    assert peers["cam-west"].buckets == frozenset({"live", "archive"}) and not peers["cam-west"].inline
    assert peers["ops"].takeover and not peers["cam-east"].takeover and not peers["cam-west"].takeover


def config(tmp_path: Path, **settings: Any) -> UploaderConfig:
    return UploaderConfig.from_settings({"spool_dir": str(tmp_path / "spool"), **settings})


def test_a_peers_file_is_read_with_its_defaults(tmp_path: Path, peers_file: Path, bucket: str) -> None:
    loaded = config(tmp_path, peers_file=str(peers_file))
    scopes = loaded.scopes
    assert sorted(scopes.signed) == ["cam-east", "cam-west"] and scopes.require_signature
    assert scopes.signed["cam-east"].inline and not scopes.signed["cam-west"].inline
    assert scopes.secrets == {"cam-east": EAST, "cam-west": WEST}
    assert scopes.unsigned.buckets == frozenset() and not scopes.unsigned.inline  # nothing without a signature
    assert EAST.decode() not in repr(loaded)
    defaults = config(tmp_path, bucket=["live"], key_prefix=["cams/lobby"]).scopes
    assert not defaults.require_signature and defaults.unsigned.key_prefixes == ("cams/lobby",)


PEER = '[peers.cam]\nsecret-file = "s.secret"\nbuckets = ["live"]\n'


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[peers.cam\n", "is not valid TOML"),
        ("", "names no peer: add a [peers.ID] table per peer"),
        ("[cam]\n", "unknown table or key 'cam'"),
        (PEER + "colour = 1\n", "peer 'cam': unknown key 'colour'"),
        (PEER.replace("[peers.cam]", "[peers.-cam]"), "peer '-cam': an id is 1-64 of"),
        (PEER.replace('secret-file = "s.secret"\n', ""), "peer 'cam': secret-file (a path) is missing"),
        (PEER.replace("s.secret", "missing.secret"), "peer 'cam': cannot read --secret-file"),
        (PEER.replace('["live"]', "[]"), "buckets must be a non-empty list"),
        (PEER.replace('["live"]', '["Live_Bucket"]'), "'Live_Bucket' is not a valid S3 bucket name"),
        (PEER + 'key-prefixes = ["/abs"]\n', "key-prefixes must be a list of key prefixes"),
        (PEER + 'inline-payloads = "yes"\n', "inline-payloads must be true or false"),
        (PEER + 'takeover = 1\n', "takeover must be true or false"),
        (PEER + 'key-prefixes = []\n', "key-prefixes must name at least one non-empty prefix (leave key-prefixes out"),
        (PEER + 'key-prefixes = ["cams", ""]\n', "key-prefixes must name at least one non-empty prefix"),
        (PEER + PEER.replace("[peers.cam]", "[peers.cam2]"),
         "peers 'cam' and 'cam2' have the same secret, so either could sign as the other"),
    ],
)
def test_a_bad_peers_file_is_one_line_naming_the_peer_and_the_fault(tmp_path: Path, text: str, reason: str) -> None:
    write_secret(tmp_path / "s.secret", EAST)
    path = tmp_path / "peers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        config(tmp_path, peers_file=str(path))
    assert f"--peers-file {path}" in str(raised.value) and reason in str(raised.value)
    assert "\n" not in str(raised.value)


def test_scope_options_that_contradict_or_allow_nothing_refuse_to_start(tmp_path: Path, peers_file: Path) -> None:
    secret = write_secret(tmp_path / "default.secret", EAST)
    default_twice = peers_file.parent / "with-default.toml"
    default_twice.write_text(peers_file.read_text().replace("[peers.cam-west]", "[peers.default]"))
    cases = [
        ({}, "no bucket is allowed: give --bucket NAME (repeatable) for the buckets messages may write, or"
             " --any-bucket for every bucket the store's credentials reach"),
        ({"bucket": ["live"], "any_bucket": True}, "--any-bucket and --bucket contradict each other"),
        ({"bucket": ["live"], "key_prefix": ["a//b"]}, "--key-prefix 'a//b' is not a key prefix"),
        ({"secret_file": str(secret), "peers_file": str(default_twice)},
         "--secret-file is the peer 'default', which --peers-file names too"),
    ]
    for settings, reason in cases:
        with pytest.raises(ConfigError) as raised:
            config(tmp_path, **settings)
        assert reason in str(raised.value)
    result = subprocess.run([sys.executable, "-m", "uploader", "--spool-dir", str(tmp_path / "spool")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"hls-uploadd: configuration error: {cases[0][1]}"


def test_a_peer_in_scope_cannot_pass_for_another_peers_writer_nor_take_its_live_stream(
    start_uploader: StartUploader, seaweed: SeaweedServer, bucket: str, segments_dir: Path, segment_source: Path,
    tmp_path: Path,
) -> None:
    # cam-east writes cams/east; lobby may write all of cams, but not take a live stream of
    # another peer; ops may (takeover = true).
    directory = tmp_path / "three"
    directory.mkdir()
    secrets = {"cam-east": EAST, "lobby": WEST, "ops": b"ops-secret-0123456789abcdef"}
    for name, secret in secrets.items():
        write_secret(directory / f"{name}.secret", secret)
    path = directory / "peers.toml"
    path.write_text(
        f'[peers.cam-east]\nsecret-file = "cam-east.secret"\nbuckets = ["{bucket}"]\nkey-prefixes = ["cams/east"]\n'
        f'[peers.lobby]\nsecret-file = "lobby.secret"\nbuckets = ["{bucket}"]\nkey-prefixes = ["cams"]\n'
        f'[peers.ops]\nsecret-file = "ops.secret"\nbuckets = ["{bucket}"]\ntakeover = true\n')
    daemon = start_uploader("--allow-dir", str(segments_dir), "--peers-file", str(path), "--keep-segment-files")
    for number in (1, 2):
        place_segment(segment_source, segments_dir, "seg", number)
    owner = "e" * 32
    stream = dict(key_prefix="cams/east", writer=owner)
    with daemon.connect() as east, daemon.connect() as lobby, daemon.connect() as ops:
        for connection in (east, lobby, ops):
            connection.hello()
        assert east.send(east.signed(ext_message(segments_dir, bucket, 1, **stream), EAST, "cam-east")) == Ack(1)
        # The owner's writer id, sent by another peer in scope: another writer, not the owner; an
        # end for a segment already queued does not end the stream.
        for attack in (ext_message(segments_dir, bucket, 2, **stream),
                       ext_message(segments_dir, bucket, 1, end=True, **stream)):
            reply = lobby.send(lobby.signed(attack, WEST, "lobby"))
            assert isinstance(reply, Reject) and reply.is_not_writer and "refused as a second writer" in reply.reason
            assert owner not in reply.reason and "of peer cam-east" in reply.reason
        takeover = ext_message(segments_dir, bucket, 0, key_prefix="cams/east", writer="f" * 32, takeover=True)
        reply = lobby.send(lobby.signed(takeover, WEST, "lobby"))
        assert isinstance(reply, Reject) and reply.reason.startswith(
            "not the writer: peer lobby may not take over a live stream of another peer (takeover = true in"
            " [peers.lobby])")
        assert east.send(east.signed(ext_message(segments_dir, bucket, 2, **stream), EAST, "cam-east")) == Ack(2)
        # A peer allowed to take over does, at once; the former owner is then told so.
        ops_takeover = ext_message(segments_dir, bucket, 0, key_prefix="cams/east", writer="0" * 32, takeover=True)
        assert ops.send(ops.signed(ops_takeover, secrets["ops"], "ops")) == Ack(0, 2)
        reply = east.send(east.signed(ext_message(segments_dir, bucket, 3, **stream), EAST, "cam-east"))
        assert isinstance(reply, Reject) and "was taken over by writer #" in reply.reason

