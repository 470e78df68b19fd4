"""Client keys: parsing, hashing, the per-key record and the key table a worker consults.

A key is never kept in memory or stored in plain text once loaded: every entry (a plain
key, ``$ENV`` already substituted by the config loader, or ``sha256:<hex>``) becomes the
32-byte SHA-256 digest of the key, and a presented credential is hashed the same way.

**Lookup and constant-time comparison.** The presented key's digest is looked up in a
dict (digest -> :class:`KeyRecord`) and the hit is confirmed with
:func:`hmac.compare_digest`. What the dict's timing could reveal is something about a
SHA-256 digest of the guess, never about a stored key: a timing attacker learns nothing
that brings them closer to a valid key. SHA-256 of a 40-byte key costs ~0.4 µs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timezone

#: Header plano reads its own key from first; lets a client keep its provider key in
#: ``Authorization`` for ``passthrough_auth`` providers.
PLANO_KEY_HEADER = b"x-plano-api-key"


def digest_of(entry: str) -> bytes:
    """The SHA-256 digest a config/file entry stands for (``sha256:<hex>`` or a plain key)."""
    entry = entry.strip()
    if entry[:7].lower() == "sha256:":
        return bytes.fromhex(entry[7:])
    return hashlib.sha256(entry.encode("utf-8")).digest()


def hash_key(key: str) -> str:
    """``sha256:<hex>`` for a plain key: the form to put in a config or keys file."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


_PERIODS = ("hour", "day", "month", "total")


class KeyRecord:
    """One accepted key: who it is and what it may do. Immutable once built; a change is a new record."""

    __slots__ = ("agents", "budget", "description", "digest", "expires_at", "id", "listeners", "models",
                 "rate_limits", "revoked", "source", "restricted", "created_at", "mcp_tools")

    def __init__(self, id: str, digest: bytes, *, description: str | None = None, models=None, agents=None,
                 listeners=None, rate_limits=(), budget=None, expires_at: float | None = None,
                 revoked: bool = False, source: str = "config", created_at: float | None = None,
                 mcp_tools=None) -> None:
        self.id = id
        self.digest = digest
        self.description = description
        self.models = tuple(models) if models is not None else None
        self.agents = frozenset(agents) if agents is not None else None
        self.listeners = frozenset(listeners) if listeners is not None else None
        #: fnmatch patterns of the MCP tools this key may list and call (None: all). Enforced by the MCP
        #: endpoint itself (it filters ``tools/list``), not by the edge, so it does not make a key "restricted".
        self.mcp_tools = tuple(mcp_tools) if mcp_tools is not None else None
        #: ((("requests"|"tokens", n), ("unit", u)), ...): hashable; dict(item) for a mapping
        self.rate_limits = tuple(tuple(sorted(dict(r).items())) for r in rate_limits or ())
        #: {"tokens": n|None, "cost_usd": x|None, "period": p} or None
        self.budget = budget
        self.expires_at = expires_at
        self.revoked = revoked
        self.source = source
        self.created_at = created_at
        #: True when the key carries anything beyond "may call this listener" (checked per request).
        self.restricted = bool(self.models is not None or self.agents is not None or self.rate_limits
                               or self.budget)

    # -- (de)serialisation: the store's JSON form (digest in hex, never the key) --------------

    def to_json(self) -> dict:
        out = {"id": self.id, "key": "sha256:" + self.digest.hex()}
        if self.description:
            out["description"] = self.description
        if self.models is not None:
            out["models"] = list(self.models)
        if self.agents is not None:
            out["agents"] = sorted(self.agents)
        if self.listeners is not None:
            out["listeners"] = sorted(self.listeners)
        if self.mcp_tools is not None:
            out["mcp_tools"] = list(self.mcp_tools)
        if self.rate_limits:
            out["rate_limits"] = [dict(r) for r in self.rate_limits]
        if self.budget:
            out["budget"] = dict(self.budget)
        if self.expires_at is not None:
            out["expires_at"] = datetime.fromtimestamp(self.expires_at, timezone.utc).isoformat()
        if self.revoked:
            out["revoked"] = True
        if self.created_at is not None:
            out["created_at"] = datetime.fromtimestamp(self.created_at, timezone.utc).isoformat()
        return out

    def describe(self) -> dict:
        """The public view (admin API): everything but the digest."""
        out = self.to_json()
        out.pop("key", None)
        out["source"] = self.source
        return out

    @classmethod
    def from_entry(cls, entry, source: str, default_listeners=None) -> "KeyRecord":
        """From a config / file / store entry: a key string, or a mapping in the ``VirtualKey`` shape."""
        from gateway.config.access import VirtualKey, check_key_text

        if isinstance(entry, str):
            text = check_key_text(entry)
            digest = digest_of(text)
            return cls("key-" + digest.hex()[:12], digest, listeners=default_listeners, source=source)
        if not isinstance(entry, dict):
            raise ValueError("a key entry is a string or a mapping")
        data = dict(entry)
        created = data.pop("created_at", None)
        vk = VirtualKey.model_validate(data)
        return cls.from_model(vk, source, default_listeners, created_at=_timestamp(created))

    @classmethod
    def from_model(cls, vk, source: str, default_listeners=None, created_at: float | None = None) -> "KeyRecord":
        limits = [{k: v for k, v in (("requests", r.requests), ("tokens", r.tokens), ("unit", r.unit))
                   if v is not None} for r in vk.rate_limits or ()]
        budget = None
        if vk.budget is not None:
            budget = {"tokens": vk.budget.tokens, "cost_usd": vk.budget.cost_usd, "period": vk.budget.period}
        listeners = vk.listeners if vk.listeners is not None else default_listeners
        return cls(vk.id, digest_of(vk.key), description=vk.description, models=vk.models, agents=vk.agents,
                   listeners=listeners, rate_limits=limits, budget=budget,
                   expires_at=_timestamp(vk.expires_at), revoked=vk.revoked, source=source, created_at=created_at,
                   mcp_tools=vk.mcp_tools)

    # -- checks -------------------------------------------------------------------------------

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now if now is not None else time.time()) >= self.expires_at

    def allows_listener(self, name: str) -> bool:
        return self.listeners is None or name in self.listeners

    def allows_tool(self, name: str) -> bool:
        """May this key list and call the MCP tool ``name`` (``mcp_tools`` patterns; absent: every tool)?"""
        if self.mcp_tools is None:
            return True
        import fnmatch

        return any(fnmatch.fnmatchcase(name, p) for p in self.mcp_tools)


def _timestamp(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    raise ValueError(f"not a time: {value!r}")


class KeyTable:
    """digest -> record, for one listener or for the shared virtual keys. Replaced whole, never edited."""

    __slots__ = ("by_digest", "by_id")

    def __init__(self, records=()) -> None:
        self.by_digest: dict[bytes, KeyRecord] = {}
        self.by_id: dict[str, KeyRecord] = {}
        for record in records:
            self.by_digest[record.digest] = record
            self.by_id[record.id] = record

    def find(self, digest: bytes) -> KeyRecord | None:
        record = self.by_digest.get(digest)
        if record is not None and hmac.compare_digest(record.digest, digest):
            return record
        return None

    def __len__(self) -> int:
        return len(self.by_digest)


def credential_candidates(headers) -> list[tuple[bytes, bytes]]:
    """``(header name, credential)`` pairs a client presented, in the order plano tries them:
    ``x-plano-api-key``, ``Authorization`` (``Bearer`` stripped), ``x-api-key``."""
    plano = bearer = xkey = None
    for name, value in headers:
        if name == b"authorization":
            if bearer is None:
                v = value.strip()
                if v[:7].lower() == b"bearer ":
                    v = v[7:].strip()
                bearer = v
        elif name == b"x-api-key":
            if xkey is None:
                xkey = value.strip()
        elif name == PLANO_KEY_HEADER:
            if plano is None:
                plano = value.strip()
    out = []
    if plano:
        out.append((PLANO_KEY_HEADER, plano))
    if bearer:
        out.append((b"authorization", bearer))
    if xkey:
        out.append((b"x-api-key", xkey))
    return out


def load_key_file(path: str, source: str, default_listeners=None) -> list[KeyRecord]:
    """Entries of a keys file: YAML or JSON, a list (or ``{keys: [...]}``) of key strings or virtual-key
    mappings. Raises ``ValueError`` naming the entry (never its key) when one is invalid."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh.read()) or []
    if isinstance(data, dict):
        data = data.get("keys") or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of keys")
    out = []
    for i, entry in enumerate(data):
        try:
            out.append(KeyRecord.from_entry(entry, source, default_listeners))
        except Exception as exc:  # pydantic errors may quote input: keep only the field names
            raise ValueError(f"{path}: entry {i} is not a valid key ({_safe_reason(exc)})") from None
    return out


def _safe_reason(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors())
        except Exception:
            pass
    return type(exc).__name__
