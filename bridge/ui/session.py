"""Console sessions: a signed cookie after sign-in with the admin token, and CSRF tokens.

A session is a cookie holding a random id and its issue time, signed with a key derived
from the admin token: every `jit-bridge run` process sharing the token accepts it (behind a
load balancer too), and changing the token ends every session. A form carries a CSRF token
derived from the session id, so a page of another site can neither read nor forge it; the
cookie is also `SameSite=Strict`, so a browser does not send it with another site's request.
Signing out forgets the cookie in the browser and revokes the session in this process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SESSION_COOKIE = "jit_bridge_session"
LOGIN_COOKIE = "jit_bridge_login"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 8 * 3600
"""How long a sign-in lasts: a working day."""


@dataclass(frozen=True)
class Session:
    id: str
    issued_at: float


@dataclass
class SessionKeeper:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    admin_token: str
    clock: Callable[[], float] = time.time
    lifetime: float = SESSION_SECONDS
    _revoked: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def _key(self) -> bytes:
        return hmac.new(
            self.admin_token.encode(), b"jit-bridge console session v1", hashlib.sha256
        ).digest()

    def token_matches(self, given: str) -> bool:
        """The admin token, compared in constant time."""
        return hmac.compare_digest(given.encode(), self.admin_token.encode())

    def issue(self) -> str:
        """A new session's cookie value."""
        payload = json.dumps({"id": secrets.token_urlsafe(18), "at": int(self.clock())})
        body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie value stands for; None if absent, forged, expired or revoked."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(id=str(data["id"]), issued_at=float(data["at"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = self.clock()
        if not now - self.lifetime < session.issued_at <= now + 60:
            return None
        with self._lock:
            if session.id in self._revoked:
                return None
        return session

    def revoke(self, session: Session) -> None:
        now = self.clock()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[session.id] = session.issued_at + self.lifetime

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.id}")

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_token(session))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


def login_nonce() -> str:
    """The double-submit value guarding the sign-in form (there is no session yet)."""
    return secrets.token_urlsafe(18)
