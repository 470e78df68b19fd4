"""Config shapes for access control (plano extensions): listener keys, virtual keys, the admin key, limits.

* ``listeners[].auth: {api_keys, keys_file, virtual_keys}`` turns client authentication on for
  one listener. ``api_keys`` entries are a plain key, ``$ENV`` (substituted by the loader; an
  unset variable is an error: a listener must never end up open by accident) or
  ``sha256:<64 hex>`` (the key's SHA-256, so the config holds no secret).
* top-level ``auth:`` holds what is shared by every listener: ``keys`` (virtual keys with
  their permissions, limits, budgets and expiry), ``keys_file`` (more of them, re-read while
  running; the admin API writes here when there is no Redis), ``admin_key``, ``prices``
  (USD per million tokens, for cost budgets) and ``sync_interval``.
* ``hardening`` limits on listeners: ``max_header_bytes``, ``max_json_depth``; TLS: ``tls``.

Shapes only; the runtime lives in :mod:`gateway.auth`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.scalars import Duration

_HASHED = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=False)


def check_key_text(value: str) -> str:
    """A key entry: ``sha256:<64 hex>`` or a plain key of at least 8 printable ASCII characters."""
    if not isinstance(value, str):
        raise ValueError("a key must be a string")
    value = value.strip()
    if value.lower().startswith("sha256:"):
        if not _HASHED.match(value):
            raise ValueError("a hashed key is 'sha256:' followed by 64 hex digits")
        return value
    if len(value) < 8:
        raise ValueError("a plain key must be at least 8 characters long")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("a plain key must be printable ASCII without spaces")
    return value


class KeyRateLimit(_Model):
    """A per-key limit: ``requests`` or ``tokens`` per ``unit`` (shared across replicas with Redis)."""

    requests: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1, description="prompt + completion tokens per window")
    unit: Literal["second", "minute", "hour", "day"] = "minute"

    @model_validator(mode="after")
    def _one(self) -> "KeyRateLimit":
        if (self.requests is None) == (self.tokens is None):
            raise ValueError("a key rate limit needs 'requests' or 'tokens' (one of them)")
        return self


class KeyBudget(_Model):
    """A spend budget: ``tokens`` and/or ``cost_usd`` per ``period`` (calendar-aligned, UTC)."""

    tokens: int | None = Field(None, ge=0)
    cost_usd: float | None = Field(None, ge=0)
    period: Literal["hour", "day", "month", "total"] = "month"

    @model_validator(mode="after")
    def _some(self) -> "KeyBudget":
        if self.tokens is None and self.cost_usd is None:
            raise ValueError("a budget needs 'tokens' or 'cost_usd'")
        return self


class VirtualKey(_Model):
    """A client key with its own permissions, limits, budget and expiry."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    key: str = Field(description="plain, $ENV, or sha256:<hex>")
    description: str | None = None
    models: list[str] | None = Field(None, description="models this key may use (names, aliases, provider/*, *); "
                                     "absent: all")
    agents: list[str] | None = Field(None, description="agents this key may reach; absent: all")
    listeners: list[str] | None = Field(None, description="listeners this key is accepted on; absent: every "
                                        "listener with auth")
    mcp_tools: list[str] | None = Field(None, description="MCP tools this key may list and call on agent "
                                        "listeners' /mcp (fnmatch patterns over the names plano shows: agent "
                                        "ids, 'ask', '<server>__<tool>'); absent: all")
    rate_limits: list[KeyRateLimit] | None = None
    budget: KeyBudget | None = None
    expires_at: datetime | None = Field(None, description="ISO 8601; naive times are UTC")
    revoked: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_key_text(value)

    @field_validator("mcp_tools")
    @classmethod
    def _tools(cls, values: list[str] | None) -> list[str] | None:
        """Tool patterns are names or fnmatch globs: printable, no spaces, at most 200 characters."""
        for value in values or ():
            if not value or len(value) > 200 or not value.isprintable() or any(c.isspace() for c in value):
                raise ValueError(f"mcp_tools entry {value[:40]!r} is not a tool name or pattern")
        return values


class ListenerAuth(_Model):
    """``listeners[].auth``: client authentication on this listener."""

    api_keys: list[str] = Field(default_factory=list, description="keys with full access to this listener: "
                                "plain, $ENV or sha256:<hex>")
    keys_file: str | None = Field(None, description="more keys (a YAML/JSON list of keys or virtual-key "
                                  "mappings), re-read when it changes")
    virtual_keys: bool = Field(True, description="also accept the virtual keys of the top-level auth section")

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, values: list[str]) -> list[str]:
        return [check_key_text(v) for v in values]


class Price(_Model):
    input: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per million completion tokens")


class Auth(_Model):
    """Top-level ``auth``: virtual keys and the admin key, shared by every listener with auth."""

    keys: list[VirtualKey] = Field(default_factory=list)
    keys_file: str | None = Field(None, description="virtual keys file (YAML/JSON), re-read while running; "
                                  "the admin API stores keys here when state.redis_url is not set "
                                  "(default $PLANO_HOME/keys.json)")
    admin_key: str | None = Field(None, description="protects the admin API ($PLANO_ADMIN_KEY wins)")
    prices: dict[str, Price] = Field(default_factory=dict, description="USD per million tokens by model "
                                     "(name, provider/model, provider/* or bare id), for cost budgets")
    sync_interval: Duration = Field(0.25, gt=0, le=1.0, description="how often keys, revocations and budgets "
                                    "are synced from Redis / the keys file (at most 1s)")

    @field_validator("admin_key")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        return None if value is None else check_key_text(value)


class ListenerTLS(_Model):
    """``listeners[].tls``: serve HTTPS with this certificate and key (PEM files)."""

    cert_file: str
    key_file: str
    ca_file: str | None = Field(None, description="require client certificates signed by this CA (mTLS)")


    def resolve(self, base_dir) -> None:
        """Make relative file paths relative to the config file's folder (done once, at validation)."""
        from pathlib import Path

        if base_dir is None:
            return
        for name in ("cert_file", "key_file", "ca_file"):
            value = getattr(self, name)
            if value and not Path(value).is_absolute():
                object.__setattr__(self, name, str(Path(base_dir) / value))

    def server_context(self):
        """The server-side :class:`ssl.SSLContext` (TLS 1.2+, HTTP/1.1 by ALPN); raises on a bad file."""
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file:
            ctx.load_verify_locations(self.ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx