"""The URIs viewers fetch objects by, as playlists list them (``--url-mode``).

public: a segment as its name relative to the playlist (with the segmenter's HTTP_PREFIX), a
media playlist as its name relative to the master. The objects must be readable by anyone who
has the playlist (a public bucket, a CDN in front of a private one).

presigned: each URI is a SigV4 presigned GET URL of the object in its bucket, valid for the
TTL from the moment it was signed; the store's own credentials sign it, and the store must be
S3. cloudfront-signed: each URI is ``https://DOMAIN/KEY`` signed for a CloudFront key pair with
a canned policy (an expiry only). In both, a URL is reused by the playlists uploaded until it is
a quarter of its TTL old (``SignedUrls``), then signed again; an idle stream's playlist is
uploaded again a quarter of the TTL after its last upload (housekeeping looks every eighth), so a
URL any playlist version lists has at least ``LEFT_FRACTION`` of its TTL ahead of it.

Nothing here does I/O: signing is computation on the clock and the keys.
"""

from __future__ import annotations

import datetime
import enum
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from botocore.signers import CloudFrontSigner

from common.settings import ConfigError

# SigV4 presigned URLs live at most 7 days (AWS S3 API reference, "Authenticating Requests:
# Using Query Parameters", X-Amz-Expires).
SIGV4_MAX_TTL_S = 7 * 86400


# A signed URL is reused until this fraction of its TTL has passed, and an idle playlist is
# uploaded again (signed afresh) this long after its last upload.
REUSE_FRACTION = 0.25
# How often housekeeping looks for idle playlists due, as a fraction of the TTL.
CHECK_FRACTION = 0.125
# The least fraction of its TTL a URL listed by any playlist version has left: reused for up to
# REUSE_FRACTION, in a playlist replaced after at most REUSE_FRACTION + CHECK_FRACTION more.
LEFT_FRACTION = 1 - 2 * REUSE_FRACTION - CHECK_FRACTION


class UrlMode(enum.StrEnum):
    PUBLIC = "public"
    PRESIGNED = "presigned"
    CLOUDFRONT_SIGNED = "cloudfront-signed"


class UrlSigner(Protocol):
    """Signs the URL of an object for viewers."""

    def __call__(self, bucket: str, key: str, ttl_s: float) -> str:
        """A GET URL of ``key`` in ``bucket`` that expires ``ttl_s`` seconds from now."""
        ...


def presigned_signer(client: Any) -> UrlSigner:
    """Signs with a boto3 S3 ``client``'s credentials, endpoint and addressing style (SigV4
    query parameters: X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
    X-Amz-SignedHeaders, X-Amz-Signature)."""

    def sign(bucket: str, key: str, ttl_s: float) -> str:
        return str(client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                 ExpiresIn=max(1, round(ttl_s))))
    return sign


def cloudfront_signer(domain: str, key_pair_id: str, private_key_pem: bytes,
                      clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
                      ) -> UrlSigner:
    """Signs ``https://domain/KEY`` (the bucket is the distribution's origin, so it is not in the
    path) with a CloudFront canned policy: RSA-SHA1 over the policy with the key pair's private
    key (PEM, PKCS#1 or PKCS#8), as CloudFront's developer guide ("Create a signed URL using a
    canned policy") and botocore's CloudFrontSigner do. Raises ConfigError for a key that is not an
    RSA private key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"the CloudFront private key is not a PEM private key without a passphrase: {error}") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigError("the CloudFront private key must be an RSA key (CloudFront signs with RSA-SHA1)")
    signer = CloudFrontSigner(key_pair_id, lambda message: private_key.sign(message, padding.PKCS1v15(), hashes.SHA1()))

    def sign(bucket: str, key: str, ttl_s: float) -> str:
        expires = clock() + datetime.timedelta(seconds=ttl_s)
        return str(signer.generate_presigned_url(f"https://{domain}/{quote(key, safe='/')}", date_less_than=expires))
    return sign


def read_private_key(path: Path) -> bytes:
    """The bytes of a private key file; ConfigError naming it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the CloudFront private key {path}: {error.strerror or error}") from None


class SignedUrls:
    """The signed URLs of one stream's objects (or one program's playlists), each signed for
    ``ttl_s`` and reused until ``REUSE_FRACTION`` of it has passed (``clock``: seconds, the wall
    clock URLs expire by; one that went back signs afresh): a playlist of N segments costs N
    signatures once per quarter TTL, not at every upload (each is about half a millisecond for
    SigV4 and one for RSA: benchmarks/url_signing.py)."""

    def __init__(self, signer: UrlSigner, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._signer, self._ttl_s, self._clock = signer, ttl_s, clock
        self._urls: dict[tuple[str, str], tuple[str, float]] = {}  # (bucket, key) -> (URL, signed at)
        self._swept_at = clock()

    def __call__(self, bucket: str, key: str) -> str:
        """A URL of ``key`` in ``bucket`` with at least (1 - REUSE_FRACTION) of the TTL ahead."""
        now = self._clock()
        reuse_s = self._ttl_s * REUSE_FRACTION
        if not 0 <= now - self._swept_at < reuse_s:  # URLs of objects no longer listed go
            self._urls = {k: v for k, v in self._urls.items() if 0 <= now - v[1] < reuse_s}
            self._swept_at = now
        found = self._urls.get((bucket, key))
        if found is None or not 0 <= now - found[1] < reuse_s:
            found = self._urls[(bucket, key)] = (self._signer(bucket, key, self._ttl_s), now)
        return found[0]


def shortest_ttl_s(required_s: float) -> float:
    """The least TTL, whole seconds, that leaves ``required_s`` on every URL listed."""
    return math.ceil(required_s / LEFT_FRACTION)


def required_ttl_s(target_duration_s: float, playlist_duration_s: float) -> float:
    """How long, in seconds, a URL a live playlist lists must stay valid: a viewer may load a
    playlist up to one target duration old (it is replaced once per segment) and start at its first
    segment, one playlist duration before the live edge; and a segment removed from the playlist
    stays available for its duration plus the playlist's after the removal (RFC 8216 6.2.2), to a
    viewer who still holds the older playlist. So 2 x the playlist's duration + 2 x the target."""
    return 2 * playlist_duration_s + 2 * target_duration_s
