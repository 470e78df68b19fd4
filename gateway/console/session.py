"""Who may see the console: the admin key, presented as a header or through a login cookie.

The console shows prompts, traces and key usage, so it sits behind the same admin key as
``/admin/*`` (``PLANO_ADMIN_KEY``, else ``auth.admin_key``). API clients send the key itself
(``Authorization: Bearer`` / ``x-api-key``); a browser logs in once with a form and gets an
``HttpOnly``, ``SameSite=Strict`` cookie. The cookie never carries the admin key: it is a
signed, expiring token (``v1.<expiry>.<nonce>.<HMAC>``) whose MAC key is derived from the admin
key, so no session table has to be kept, rotating the admin key logs every browser out, and a
stolen cookie is useless after :data:`SESSION_SECONDS`. Logging out adds the token's nonce to a
small in-memory deny list (the console runs in one process: the admin server's).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

COOKIE = "plano_console"
SESSION_SECONDS = 12 * 3600
_DENIED: dict[str, float] = {}  # nonce -> expiry, for logged-out tokens
_LOCK = threading.Lock()


def _mac_key(admin_key: str) -> bytes:
    """A key for the cookie MAC only: the admin key itself is never used to sign anything a browser holds."""
    return hashlib.sha256(b"plano-console-session\0" + admin_key.encode("utf-8")).digest()


def issue(admin_key: str, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    nonce = secrets.token_urlsafe(16)
    payload = f"{expires}.{nonce}"
    mac = hmac.new(_mac_key(admin_key), payload.encode(), hashlib.sha256).hexdigest()
    return f"v1.{payload}.{mac}"


def valid(token: str | None, admin_key: str, now: float | None = None) -> bool:
    """A well-formed, unexpired, correctly signed token that was not logged out."""
    if not token or len(token) > 200:
        return False
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
        return False
    payload = f"{parts[1]}.{parts[2]}"
    expected = hmac.new(_mac_key(admin_key), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), parts[3].encode("ascii", "replace")):
        return False
    now = time.time() if now is None else now
    if int(parts[1]) < now:
        return False
    with _LOCK:
        return parts[2] not in _DENIED


def revoke(token: str | None) -> None:
    """Log a token out (until it would have expired anyway)."""
    if not token:
        return
    parts = token.split(".")
    if len(parts) != 4 or not parts[1].isdigit():
        return
    now = time.time()
    with _LOCK:
        for nonce, until in list(_DENIED.items()):  # bounded by the tokens issued in SESSION_SECONDS
            if until < now:
                del _DENIED[nonce]
        _DENIED[parts[2]] = float(parts[1])


def key_matches(presented: str | None, admin_key: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                         admin_key.encode("utf-8"))


def cookie_value(cookie_header: str | None) -> str | None:
    """The console cookie from a ``Cookie`` header (no other cookie is looked at)."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip().strip('"') or None
    return None


def set_cookie(token: str) -> str:
    return f"{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
