"""TLS for the control channel (stdlib ``ssl``): the daemon's server context and the segmenter's
client context, each built once from PEM files at start-up.

Both speak TLS 1.2 or later. The client verifies the daemon's certificate (chain and name) as
``ssl.create_default_context`` does, against the system's CAs or the one file given. The server
asks for a client certificate only when given the CAs that sign them (mutual TLS), and then
trusts those CAs alone, never the system's.
"""

from __future__ import annotations

import enum
import ssl
from pathlib import Path

from .settings import ConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

# OpenSSL's verify codes (openssl/x509_vfy.h): a certificate out of its dates
# (X509_V_ERR_CERT_NOT_YET_VALID, _HAS_EXPIRED, for any certificate of the chain, CAs too), one
# naming another host or IP address (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH), one not for this
# use (_INVALID_PURPOSE: its extendedKeyUsage), and a chain that ends at no trusted CA
# (_UNABLE_TO_GET_ISSUER_CERT, _DEPTH_ZERO_SELF_SIGNED_CERT, _SELF_SIGNED_CERT_IN_CHAIN,
# _UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_VERIFY_LEAF_SIGNATURE, _CERT_UNTRUSTED).
_OUT_OF_DATES = frozenset({9, 10})
_NAME_MISMATCHES = frozenset({62, 64})
_INVALID_PURPOSE = 26
_NO_TRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21, 27})
# What OpenSSL's reason holds for an alert the peer sent (RFC 8446 6.2; "SSLV3_ALERT_BAD_CERTIFICATE",
# "TLSV1_ALERT_UNKNOWN_CA", "TLSV13_ALERT_CERTIFICATE_REQUIRED"), and its own reasons for a peer
# that speaks an old TLS or none (OpenSSL 3.2 and later say RECORD_LAYER_FAILURE for the latter).
_OURS_REFUSED = ("ALERT_BAD_CERTIFICATE", "ALERT_UNKNOWN_CA", "ALERT_CERTIFICATE_EXPIRED",
                 "ALERT_UNSUPPORTED_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN", "ALERT_CERTIFICATE_REVOKED")
_PROTOCOL_VERSION = ("ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG")


class TlsFailure(enum.Enum):
    """What a failed TLS handshake says went wrong, as far as it says: this side's refusal of the
    peer's certificate (OpenSSL's verify codes), the alert the peer sent (RFC 8446 6.2), or bytes
    that are no TLS."""

    OTHER_NAME = enum.auto()  # the peer's certificate names another host or IP address
    OUT_OF_DATES = enum.auto()  # it, or a CA certificate of its chain, has expired or is not valid yet
    WRONG_PURPOSE = enum.auto()  # its extendedKeyUsage does not allow this use (serverAuth, clientAuth)
    UNTRUSTED = enum.auto()  # its chain ends at no trusted CA (or the peer does not send its intermediate)
    REFUSED = enum.auto()  # another verification failure: the error's verify_message says which
    OURS_REFUSED = enum.auto()  # the peer refused this side's certificate
    CERTIFICATE_REQUIRED = enum.auto()  # the peer wants a client certificate this side did not give
    PROTOCOL_VERSION = enum.auto()  # no TLS version both speak (this side: 1.2 or later)
    NOT_TLS = enum.auto()  # the peer does not speak TLS


def tls_failure(error: BaseException) -> TlsFailure | None:
    """What ``error`` (raised by ssl, or urllib3 2, in a handshake) says went wrong; None when it
    says nothing of either side's settings (a reset, a handshake cut off or timed out), which
    may pass. urllib3 2 matches host names itself and raises its own CertificateError."""
    if type(error).__name__ == "CertificateError":
        return TlsFailure.OTHER_NAME
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code in _NAME_MISMATCHES:
            return TlsFailure.OTHER_NAME
        if code in _OUT_OF_DATES:
            return TlsFailure.OUT_OF_DATES
        if code == _INVALID_PURPOSE:
            return TlsFailure.WRONG_PURPOSE
        return TlsFailure.UNTRUSTED if code in _NO_TRUSTED_ISSUER else TlsFailure.REFUSED
    reason = str(getattr(error, "reason", None) or error)
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return TlsFailure.REFUSED
    for ends, failure in ((_OURS_REFUSED, TlsFailure.OURS_REFUSED), (("ALERT_CERTIFICATE_REQUIRED",),
                          TlsFailure.CERTIFICATE_REQUIRED), (_PROTOCOL_VERSION, TlsFailure.PROTOCOL_VERSION),
                          (_NOT_TLS, TlsFailure.NOT_TLS)):
        if any(end in reason for end in ends):
            return failure
    return None


def detail(error: BaseException) -> str:
    """The most precise words ``error`` has for itself: OpenSSL's verify message, its reason, or
    its text."""
    return getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)


def server_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The daemon's context: its certificate chain ``cert`` and private ``key`` (PEM); with
    ``client_ca``, every peer must present a certificate signed by one of its CAs. Raises
    ConfigError naming the option whose file cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, cert, key)
    if client_ca is not None:
        _load_cas(context, "--tls-client-ca", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: Path | None = None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """The segmenter's context: the daemon's certificate must be signed by a CA of ``ca`` (PEM;
    None: the system's) and name the host asked for. ``cert`` and ``key``: a client certificate
    for a daemon that asks for one. Raises ConfigError naming the option whose file cannot be used."""
    try:
        # Chain and name checked; with a file, its CAs alone are trusted, else the system's.
        context = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"--tls-ca {ca} cannot be used: {_reason(error)}") from None
    context.minimum_version = MINIMUM_VERSION
    if cert is not None and key is not None:
        _load_chain(context, cert, key)
    return context


def check_cas(flag: str, path: Path) -> None:
    """Load the CA certificate(s) of ``path`` (PEM) as a verifying client would; ConfigError
    naming ``flag`` when the file cannot be used, or holds no ``BEGIN CERTIFICATE`` block (an
    OpenSSL ``TRUSTED CERTIFICATE`` or a CRL alone, which FFmpeg's GnuTLS reads no CA from)."""
    _load_cas(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), flag, path)
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        raise ConfigError(f"{flag} {path} cannot be used: no -----BEGIN CERTIFICATE----- block in it (an OpenSSL"
                          " TRUSTED CERTIFICATE or a CRL alone is not read as a CA)")


def check_pair(cert: Path | None, key: Path | None) -> None:
    """--tls-cert and --tls-key go together: ConfigError when only one is given."""
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise ConfigError(f"{given} needs {missing}: a certificate and its private key go together")


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(
            f"--tls-cert {cert} with --tls-key {key} cannot be used: {_reason(error)}"
            " (both PEM, the key the certificate's?)"
        ) from None


def _load_cas(context: ssl.SSLContext, flag: str, path: Path) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"{flag} {path} cannot be used: {_reason(error)}") from None


def _reason(error: ssl.SSLError | OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error)
    return error.strerror or str(error)
