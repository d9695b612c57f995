"""Private streams' URLs (uploader/urls.py): CloudFront signatures checked offline against the
public key, the TTL a playlist's URLs need, the options that turn them on, and playlists that
list them."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from common.settings import ConfigError
from uploader.config import UploaderConfig
from uploader.player import SCRIPT_NAME, player_script, render_player_page
from uploader.urls import LEFT_FRACTION, SignedUrls, UrlMode, cloudfront_signer, required_ttl_s, shortest_ttl_s

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cloudfront_verify(url: str, public_key: rsa.RSAPublicKey, key_pair_id: str, now: datetime.datetime) -> None:
    """What CloudFront checks of a canned-policy signed URL (its developer guide, "Create a signed
    URL using a canned policy"): the Key-Pair-Id, the RSA-SHA1 signature of the policy rebuilt from
    the URL and Expires, in CloudFront's URL-safe base64 (+ -> -, = -> _, / -> ~), and the expiry.
    Raises InvalidSignature or AssertionError."""
    base, _, query = url.partition("?")
    fields = {name: values[0] for name, values in parse_qs(query).items()}
    assert set(fields) == {"Expires", "Signature", "Key-Pair-Id"}, fields
    assert fields["Key-Pair-Id"] == key_pair_id
    expires = int(fields["Expires"])
    policy = json.dumps({"Statement": [{"Resource": base, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
                        separators=(",", ":"))
    signature = base64.b64decode(fields["Signature"].replace("-", "+").replace("_", "=").replace("~", "/"))
    public_key.verify(signature, policy.encode(), padding.PKCS1v15(), hashes.SHA1())
    assert now.timestamp() < expires, "expired"


def test_a_cloudfront_signed_url_verifies_against_the_public_key_and_expires_after_the_ttl(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    sign = cloudfront_signer("d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", pem(rsa_key), clock=lambda: NOW)
    url = sign("ionlivestream", "stream0001/live 1-00001.ts", 30)
    assert url.startswith("https://d111111abcdef8.cloudfront.net/stream0001/live%201-00001.ts?")
    assert parse_qs(urlsplit(url).query)["Expires"] == [str(int(NOW.timestamp()) + 30)]
    cloudfront_verify(url, rsa_key.public_key(), "K2JCJMDEHXQW5F", NOW + datetime.timedelta(seconds=29))
    with pytest.raises(AssertionError, match="expired"):
        cloudfront_verify(url, rsa_key.public_key(), "K2JCJMDEHXQW5F", NOW + datetime.timedelta(seconds=30))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidSignature):
        cloudfront_verify(url, other.public_key(), "K2JCJMDEHXQW5F", NOW)
    with pytest.raises(InvalidSignature):  # the signature names one object only
        cloudfront_verify(url.replace("00001.ts", "00002.ts"), rsa_key.public_key(), "K2JCJMDEHXQW5F", NOW)


def test_a_cloudfront_key_that_is_not_an_rsa_private_key_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="must be an RSA key"):
        cloudfront_signer("d1.cloudfront.net", "K1", pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ConfigError, match="not a PEM private key"):
        cloudfront_signer("d1.cloudfront.net", "K1", b"-----BEGIN PUBLIC KEY-----\nnot a key\n")


def test_a_live_playlist_s_urls_must_outlive_two_playlists_and_two_target_durations() -> None:
    # A 5 x 2 s window: a viewer may hold a playlist 2 s old and start 10 s behind its end; a
    # segment removed stays available 2 + 10 s more (RFC 8216 6.2.2).
    assert required_ttl_s(2, 10) == 24
    assert required_ttl_s(6, 30) == 72


def config(tmp_path: Path, **values: object) -> UploaderConfig:
    return UploaderConfig.from_settings({"spool_dir": str(tmp_path), "bucket": ["live"], **values})


@pytest.mark.parametrize(("values", "message"), [
    ({"url_mode": "signed"}, "--url-mode 'signed' is not one of public, presigned, cloudfront-signed"),
    ({"url_mode": "cloudfront-signed", "cloudfront_domain": "d1.cloudfront.net"},
     "--url-mode cloudfront-signed needs --cloudfront-domain, --cloudfront-key-pair-id and --cloudfront-private-key"),
    ({"cloudfront_domain": "d1.cloudfront.net"}, "--cloudfront-\\* options are for --url-mode cloudfront-signed"),
    ({"url_mode": "cloudfront-signed", "cloudfront_domain": "https://d1.cloudfront.net/", "cloudfront_key_pair_id": "K",
      "cloudfront_private_key": "/k.pem"}, "is not a host name"),
    ({"url_mode": "presigned", "store": "file:///srv/hls"}, "--url-mode presigned signs S3 GET URLs"),
    ({"url_mode": "presigned", "acl": "public-read"}, "--acl public-read lets others than the bucket owner read"),
    ({"url_mode": "cloudfront-signed", "acl": "authenticated-read", "cloudfront_domain": "d1.cloudfront.net",
      "cloudfront_key_pair_id": "K", "cloudfront_private_key": "/k.pem"}, "--acl authenticated-read lets others"),
    ({"url_mode": "presigned", "acl": "aws-exec-read"}, "--acl aws-exec-read lets others"),
    ({"url_mode": "presigned", "url_ttl": 8 * 86400}, "--url-ttl"),
    ({"url_mode": "presigned", "playlist_url_ttl": 0}, "--playlist-url-ttl"),
])
def test_private_url_options_that_contradict_each_other_are_one_line_errors(
    tmp_path: Path, values: dict[str, object], message: str,
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        config(tmp_path, **values)
    assert "\n" not in str(error.value)


def test_private_url_options_taken() -> None:
    built = UploaderConfig.from_settings({"spool_dir": "/tmp/spool", "bucket": ["live"], "url_mode": "Presigned",
                                          "url_ttl": 120, "playlist_url_ttl": 3600, "acl": "private"})
    assert (built.url_mode, built.url_ttl_s, built.playlist_url_ttl_s) == (UrlMode.PRESIGNED, 120, 3600)


def test_a_private_stream_s_player_page_is_one_object_with_hls_js_inside_and_no_playlist_of_its_own() -> None:
    public = render_player_page("master.m3u8", title="show")
    private = render_player_page("master.m3u8", title="show", private=True)
    assert f'<script src="{SCRIPT_NAME}"></script>' in public and 'href="master.m3u8"' in public
    assert f'src="{SCRIPT_NAME}"' not in private and 'href=""' in private
    assert player_script().decode() in private  # a signed URL reaches one object: hls.js comes with it
    assert 'fragment.get("src")' in private  # the signed playlist URL, from the page URL's fragment


def test_a_signed_url_is_reused_for_a_quarter_of_its_ttl_then_signed_again() -> None:
    now = [0.0]
    signed: list[tuple[str, float]] = []

    def signer(bucket: str, key: str, ttl_s: float) -> str:
        signed.append((key, now[0]))
        return f"https://{bucket}/{key}?signed-at={now[0]}&ttl={ttl_s}"

    urls = SignedUrls(signer, 100, clock=lambda: now[0])
    first = urls("b", "seg-1.ts")
    now[0] = 24.9
    assert urls("b", "seg-1.ts") == first and urls("b", "seg-2.ts").endswith("signed-at=24.9&ttl=100")
    now[0] = 25.0
    assert urls("b", "seg-1.ts") == "https://b/seg-1.ts?signed-at=25.0&ttl=100"
    assert signed == [("seg-1.ts", 0.0), ("seg-2.ts", 24.9), ("seg-1.ts", 25.0)]
    # Listed in a playlist replaced at most 3/8 of the TTL later, a URL has 3/8 of it left.
    assert LEFT_FRACTION == 0.375 and shortest_ttl_s(8) == 22
