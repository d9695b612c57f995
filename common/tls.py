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

# OpenSSL's verify codes (openssl/x509_vfy.h) of a certificate outside its dates
# (X509_V_ERR_CERT_NOT_YET_VALID, _HAS_EXPIRED) and of one naming another host or IP address
# (X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH).
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCHES = frozenset({62, 64})


class CertificateRefusal(enum.Enum):
    """Why this side refused a peer's TLS certificate; the value ends "the certificate of X ..."."""

    OTHER_NAME = "does not name it"
    EXPIRED = "has expired"
    NOT_YET_VALID = "is not valid yet"
    UNTRUSTED = "is signed by no CA trusted here"


def certificate_refusal(error: BaseException) -> CertificateRefusal | None:
    """What ``error`` (raised by ssl, or urllib3 2, during a handshake) says was wrong with the
    peer's certificate; None when it is no verification failure (a reset, a cut-off handshake,
    a plaintext peer). urllib3 2 matches host names itself and raises its own CertificateError;
    any other verification failure (CERTIFICATE_VERIFY_FAILED) is a chain no trusted CA signed."""
    code = error.verify_code if isinstance(error, ssl.SSLCertVerificationError) else None
    if type(error).__name__ == "CertificateError" or code in _NAME_MISMATCHES:
        return CertificateRefusal.OTHER_NAME
    if code == _EXPIRED:
        return CertificateRefusal.EXPIRED
    if code == _NOT_YET_VALID:
        return CertificateRefusal.NOT_YET_VALID
    if code is not None or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return CertificateRefusal.UNTRUSTED
    return None


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
    naming ``flag`` when the file cannot be used."""
    _load_cas(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), flag, path)


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
