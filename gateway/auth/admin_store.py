"""Key management for the admin API (and tests): create, list, revoke, usage — blocking calls.

Writes go where the workers read (:mod:`gateway.auth.store`): the Redis hash
``<prefix>keys`` plus a version bump when ``state.redis_url`` is set, else the keys file,
rewritten atomically under an exclusive ``flock``. A created key is returned once, in
plain text, in the create answer; only its SHA-256 is stored.
"""

from __future__ import annotations

import json
import os
import secrets
import time

from gateway.auth.keys import KeyRecord, hash_key
from gateway.auth.store import keys_file_of, parse_records, read_store_file, redis_names


class KeyError_(Exception):
    """A request the key store refuses (400/404), with a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_key() -> str:
    return "sk-plano-" + secrets.token_urlsafe(32)


class AdminKeyStore:
    def __init__(self, config) -> None:
        self.config = config
        auth = getattr(config, "auth", None)
        self.config_records = {vk.id: KeyRecord.from_model(vk, "config") for vk in (auth.keys if auth else ())}
        state = getattr(config, "state", None)
        self.redis_url = getattr(state, "redis_url", None) if state is not None else None
        self.prefix = state.key_prefix if self.redis_url else "plano:"
        self.path = None if self.redis_url else keys_file_of(config)
        self._client = None

    @property
    def where(self) -> str:
        return "redis" if self.redis_url else f"file:{self.path}"

    # -- backends -------------------------------------------------------------------------------

    def _redis(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._client

    def _read(self) -> dict:
        if self.redis_url:
            raw = self._redis().hgetall(redis_names(self.prefix)[0])
            return {k.decode(): json.loads(v) for k, v in raw.items()}
        try:
            return {str(k): v for k, v in read_store_file(self.path).items()}
        except FileNotFoundError:
            return {}

    def _write(self, ident: str, entry: dict) -> None:
        if self.redis_url:
            hash_name, version = redis_names(self.prefix)
            pipe = self._redis().pipeline()
            pipe.hset(hash_name, ident, json.dumps(entry))
            pipe.incr(version)
            pipe.execute()
            return
        import fcntl

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = read_store_file(self.path)
            except FileNotFoundError:
                data = {}
            data[ident] = entry
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"keys": data}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    # -- operations -----------------------------------------------------------------------------

    def records(self) -> dict[str, KeyRecord]:
        """Every key: config keys, overridden / revoked by the store's entries."""
        out = dict(self.config_records)
        stored, tombstones = parse_records(self._read(), "admin")
        for ident in tombstones:
            if ident in out:
                out[ident] = _revoked(out[ident])
        for record in stored:
            out[record.id] = record
        return out

    def list(self) -> list[dict]:
        now = time.time()
        out = []
        for record in self.records().values():
            view = record.describe()
            view["status"] = "revoked" if record.revoked else "expired" if record.expired(now) else "active"
            out.append(view)
        return sorted(out, key=lambda v: v["id"])

    def create(self, spec: dict) -> dict:
        if not isinstance(spec, dict):
            raise KeyError_(400, "expected a JSON object describing the key")
        spec = dict(spec)
        ident = spec.get("id") or "key-" + secrets.token_hex(6)
        spec["id"] = ident
        if ident in self.records():
            raise KeyError_(409, f"a key with id '{ident}' exists already")
        plain = spec.pop("key", None) or new_key()
        if not isinstance(plain, str):
            raise KeyError_(400, "'key' must be a string")
        spec["key"] = plain
        try:
            record = KeyRecord.from_entry(spec, "admin")
        except Exception as exc:
            from gateway.auth.keys import _safe_reason

            raise KeyError_(400, f"invalid key: {_safe_reason(exc)}") from None
        entry = record.to_json()
        entry["created_at"] = time.time()
        self._write(ident, entry)
        view = KeyRecord.from_entry(entry, "admin").describe()
        view["key"] = plain  # shown once
        return view

    def revoke(self, ident: str) -> dict:
        records = self.records()
        record = records.get(ident)
        if record is None:
            raise KeyError_(404, f"no key with id '{ident}'")
        if record.source == "config" and ident not in self._read():
            self._write(ident, {"id": ident, "revoked": True})
        else:
            entry = record.to_json()
            entry["revoked"] = True
            self._write(ident, entry)
        view = _revoked(record).describe()
        view["status"] = "revoked"
        return view

    def usage(self, ident: str) -> dict:
        if ident not in self.records():
            raise KeyError_(404, f"no key with id '{ident}'")
        if self.redis_url:
            client = self._redis()
            prefix = f"{self.prefix}kb:{ident}:"
            out = {}
            for name in client.scan_iter(match=prefix + "*", count=200):
                t, c = client.hmget(name, "t", "c")
                out[name.decode()[len(prefix):]] = {"tokens": int(t or 0), "cost_usd": int(c or 0) / 1e6}
            return {"id": ident, "scope": "all replicas (redis)", "periods": out}
        from gateway.auth.budget import LEDGERS

        periods: dict = {}
        for ledger in LEDGERS:
            for period, used in ledger.usage(ident).items():
                mine = periods.setdefault(period, {"tokens": 0, "cost_usd": 0.0})
                mine["tokens"] += used["tokens"]
                mine["cost_usd"] += used["cost_usd"]
        return {"id": ident, "scope": "this process (no state.redis_url: with several workers each keeps its own)",
                "periods": periods}


def _revoked(record: KeyRecord) -> KeyRecord:
    return KeyRecord(record.id, record.digest, description=record.description, models=record.models,
                     agents=record.agents, listeners=record.listeners, rate_limits=record.rate_limits,
                     budget=record.budget, expires_at=record.expires_at, revoked=True, source=record.source,
                     created_at=record.created_at, mcp_tools=record.mcp_tools)


__all__ = ["AdminKeyStore", "KeyError_", "hash_key", "new_key"]
