"""The effective config with every secret masked (``GET /admin/config``).

A value is masked when its field name says it is a credential (``*key*``, ``*token*``,
``*secret*``, ``*password*``, ``authorization``, ``connection_string``, header maps, key
lists) — masked as ``"***"`` whatever it holds, hashed keys included — and any URL's
user-info password (``redis://:pw@host``) is replaced. Values registered as secrets at
start-up are also replaced wherever they occur in other strings.
"""

from __future__ import annotations

import re

MASK = "***"
_SECRET_PARTS = ("key", "token", "secret", "password", "authorization", "credential", "connection_string")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)


def _secret_field(name: str) -> bool:
    low = name.lower()
    return not low.endswith("_prefix") and any(part in low for part in _SECRET_PARTS)


def mask(value, field: str = ""):
    secret = bool(field) and _secret_field(field)
    if isinstance(value, str):
        if secret:
            return MASK
        value = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
        from gateway.telemetry.redact import redact_secrets

        return redact_secrets(value)
    if isinstance(value, dict):
        if field == "headers":
            return {k: MASK for k in value}
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, field if secret else "") for v in value]
    return value  # numbers, booleans, null


def masked_config(config) -> dict:
    if config is None:
        return {}
    data = config.model_dump(mode="json", exclude_none=True)
    return mask(data)
