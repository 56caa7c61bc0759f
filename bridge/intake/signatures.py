"""Webhook signatures: who may ask the bridge to look at a user again.

Two formats share one secret (`webhook_secret`), and while it is rotated, the one it replaces
(`webhook_secret_previous`): a request signed with either is accepted, so the sender can switch
secrets after the bridge without a delivery being refused in between.

- the project's listener (docs/design.md, Listener):
  `X-JIT-Bridge-Signature: t=<unix s>,v1=<hex>` where the MAC is
  HMAC-SHA256(secret, "<t>.<raw body>"). The timestamp is signed so a captured request
  cannot be replayed after the tolerance; several `v1=` values let a sender sign with an old
  and a new secret while the secret is rotated.
- Phase Two keycloak-events: `X-Keycloak-Signature: <hex>`, HMAC-SHA256 of the raw body. It
  has no timestamp, so replay protection rests on event-id de-duplication in the queue.

Every refusal raises `SignatureError` whose message is safe to send back: it never contains
the secret, the expected MAC or the body.
"""

from __future__ import annotations

import hashlib
import hmac

DEFAULT_TOLERANCE_S = 300
_MAX_HEADER_LENGTH = 2048
_HEX_DIGITS = frozenset("0123456789abcdef")
_MAC_LENGTH = 64  # hex characters of a SHA-256 MAC


class SignatureError(Exception):
    """The signature is missing, malformed or wrong. `reason` can be returned to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_jit_bridge(body: bytes, secret: str, t: int) -> str:
    """The `X-JIT-Bridge-Signature` value for `body` signed at unix time `t`."""
    return f"t={t},v1={_mac(secret, str(t).encode() + b'.' + body)}"


def verify_jit_bridge_signature(
    header: str | None,
    body: bytes,
    secret: str,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_S,
    *,
    previous: str | None = None,
) -> bool:
    """Accept the request or raise SignatureError. `now` is the bridge's unix time.

    Returns True when only `previous` (the secret being rotated out) signed it: a `v1=`
    made with `secret` counts as the new secret even beside one made with `previous`."""
    _require_secret(secret)
    timestamp, candidates = _parse_jit_bridge_header(header)
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(
            f"signature timestamp is more than {tolerance} s away from the bridge's clock "
            "(replayed request, or a clock to fix)"
        )
    return _signed_by_previous(candidates, timestamp.encode() + b"." + body, secret, previous)


def verify_phasetwo_signature(
    header: str | None, body: bytes, secret: str, *, previous: str | None = None
) -> bool:
    """Accept a Phase Two webhook or raise SignatureError. Returns True when only
    `previous` signed it."""
    _require_secret(secret)
    if not header:
        raise SignatureError("missing X-Keycloak-Signature header")
    candidate = header.strip().lower()
    if not _is_mac(candidate):
        raise SignatureError("X-Keycloak-Signature must be 64 hex digits (HMAC-SHA256)")
    return _signed_by_previous([candidate], body, secret, previous)


def _signed_by_previous(
    candidates: list[str], message: bytes, secret: str, previous: str | None
) -> bool:
    """Whether `previous` alone made one of `candidates`; SignatureError if neither secret did.

    Every candidate is compared with the MAC of every secret, each in constant time and
    none skipped, so the time taken does not tell which secret (or which candidate) matched.
    """
    expected = [_mac(key, message) for key in (secret, previous) if key]
    matched = [False] * len(expected)
    for candidate in candidates:
        for index, mac in enumerate(expected):
            matched[index] |= hmac.compare_digest(candidate, mac)
    if not any(matched):
        raise SignatureError("signature does not match the body (wrong secret or altered body)")
    return not matched[0]


def _parse_jit_bridge_header(header: str | None) -> tuple[str, list[str]]:
    if not header:
        raise SignatureError("missing X-JIT-Bridge-Signature header")
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureError("X-JIT-Bridge-Signature header is too long")
    timestamps: list[str] = []
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("X-JIT-Bridge-Signature must be 't=<unix seconds>,v1=<hex>'")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            candidates.append(value.lower())
        # Other schemes (v0, v2…) are skipped so a sender can add one before the bridge knows it.
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("X-JIT-Bridge-Signature needs exactly one t=<unix seconds>")
    if not candidates:
        raise SignatureError("X-JIT-Bridge-Signature has no v1=<hex> signature")
    if not all(_is_mac(candidate) for candidate in candidates):
        raise SignatureError("each v1= value must be 64 hex digits (HMAC-SHA256)")
    return timestamps[0], candidates


def _require_secret(secret: str) -> None:
    if not secret:
        raise SignatureError(
            "the bridge has no webhook secret configured; refusing every signature"
        )


def _is_mac(value: str) -> bool:
    return len(value) == _MAC_LENGTH and set(value) <= _HEX_DIGITS


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
