"""HTTPS on the bridge's own endpoint (`tls_cert_file`, `tls_key_file`, `tls_key_password`).

The certificate and key are loaded once, before the service starts anything, so a missing,
unreadable, malformed or mismatched file stops `jit-bridge run` with one line naming the file
and the setting, never a stack trace. TLS 1.2 is the oldest version offered.
"""

from __future__ import annotations

import ssl
from pathlib import Path

#: Sent with every answer over HTTPS: browsers then refuse plain HTTP to this host for a year.
HSTS_VALUE = "max-age=31536000"


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the file and the setting."""


def server_context(cert_file: Path, key_file: Path, password: str | None = None) -> ssl.SSLContext:
    """A server TLS context holding the certificate chain in `cert_file` (PEM, server
    certificate first) and its private key in `key_file` (PEM, encrypted if `password`)."""
    cert_text = _read(cert_file, "tls_cert_file")
    key_text = _read(key_file, "tls_key_file")
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise TlsError(
            f"tls_cert_file {cert_file}: no PEM certificate in it "
            "(expected a '-----BEGIN CERTIFICATE-----' block)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # A callable, never None: OpenSSL would otherwise ask for an encrypted key's
        # passphrase on the terminal and hang a service.
        context.load_cert_chain(
            cert_file, key_file, password=lambda: (password or "").encode("utf-8")
        )
    except ssl.SSLError as exc:
        raise TlsError(_describe(exc, cert_file, key_file, key_text, password)) from None
    except OSError as exc:
        raise TlsError(f"tls_cert_file {cert_file} / tls_key_file {key_file}: {exc}") from None
    return context


def _read(path: Path, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TlsError(f"{setting} {path}: cannot read it: {exc.strerror or exc}") from None


def _describe(
    exc: ssl.SSLError, cert_file: Path, key_file: Path, key_text: str, password: str | None
) -> str:
    if "KEY_VALUES_MISMATCH" in (exc.reason or "").upper():
        return (
            f"tls_key_file {key_file} is not the private key of the certificate in "
            f"tls_cert_file {cert_file}"
        )
    if "ENCRYPTED" in key_text:
        if password is None:
            return f"tls_key_file {key_file}: the key is encrypted; set tls_key_password"
        return f"tls_key_file {key_file}: tls_key_password does not decrypt the key"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except ssl.SSLError:
        return f"tls_cert_file {cert_file}: not a valid PEM certificate"
    return f"tls_key_file {key_file}: not a valid PEM private key"
