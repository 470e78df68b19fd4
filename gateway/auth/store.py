"""Where virtual keys live while plano runs, and how every worker and replica learns of changes.

* **Config keys** (``auth.keys``, listener ``api_keys``) are fixed for the life of the process.
* **Dynamic keys** (created, changed or revoked through the admin API) live in Redis when
  ``state.redis_url`` is set — hash ``<prefix>keys`` (id -> JSON record holding the key's
  SHA-256, never the key) plus a version counter ``<prefix>keys:v`` bumped on each change —
  else in a keys file (``auth.keys_file``, default ``$PLANO_HOME/keys.json``), replaced
  atomically on each change. A revocation is a record with ``revoked: true`` (for a config
  key: a tombstone ``{id, revoked: true}``).
* **Sync, off the request path**: each worker polls every ``auth.sync_interval`` (default
  250 ms, at most 1 s) — one ``GET`` of the version (and ``HGETALL`` only when it moved), or
  one ``stat`` of the file — and swaps in a new :class:`~gateway.auth.keys.KeyTable`. A
  request only does a dict lookup. So a revocation reaches every worker of every replica
  within one interval; the request path never waits on Redis. Redis down: the last table
  keeps serving (a warning), so nothing revoked comes back and nothing new is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from gateway.auth.keys import KeyRecord, KeyTable, load_key_file

log = logging.getLogger("plano.auth")


def default_keys_file() -> str:
    home = os.environ.get("PLANO_HOME") or os.path.join(os.path.expanduser("~"), ".plano")
    return os.path.join(home, "keys.json")


def keys_file_of(config) -> str:
    auth = getattr(config, "auth", None)
    path = getattr(auth, "keys_file", None) if auth is not None else None
    if path and not os.path.isabs(path) and getattr(config, "base_dir", None) is not None:
        path = os.path.join(str(config.base_dir), path)
    return path or default_keys_file()


def redis_names(prefix: str) -> tuple[str, str]:
    return prefix + "keys", prefix + "keys:v"


def parse_records(raw: dict, source: str) -> tuple[list[KeyRecord], set[str]]:
    """Store entries (id -> JSON text or dict) -> (records, ids of tombstones). Bad entries are skipped."""
    records, tombstones = [], set()
    for ident, value in raw.items():
        try:
            entry = json.loads(value) if isinstance(value, (bytes, str)) else value
            if isinstance(entry, dict) and entry.get("revoked") and "key" not in entry:
                tombstones.add(str(entry.get("id") or ident))
                continue
            records.append(KeyRecord.from_entry(entry, source))
        except Exception as exc:
            log.warning("key store entry %r is invalid and ignored (%s)", _safe_id(ident), type(exc).__name__)
    return records, tombstones


def _safe_id(ident) -> str:
    text = ident.decode("utf-8", "replace") if isinstance(ident, bytes) else str(ident)
    return text[:64]


class FileSource:
    """A keys file polled by ``stat``: :meth:`poll` returns new entries when it changed, else None."""

    def __init__(self, path: str, source: str, default_listeners=None, *, store_format: bool = False) -> None:
        self.path = path
        self.source = source
        self.default_listeners = default_listeners
        self.store_format = store_format  # the admin-written {"keys": {id: record}} form
        self._sig = None

    def poll(self) -> tuple[list[KeyRecord], set[str]] | None:
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            sig = None
        except OSError as exc:
            log.warning("keys file %s cannot be read (%s); keeping the keys loaded before", self.path, exc.strerror)
            return None
        if sig == self._sig:
            return None
        self._sig = sig
        if sig is None:
            return [], set()
        try:
            if self.store_format:
                return parse_records(read_store_file(self.path), self.source)
            return load_key_file(self.path, self.source, self.default_listeners), set()
        except Exception as exc:
            self._sig = None  # try again next time
            log.warning("keys file %s is invalid (%s); keeping the keys loaded before", self.path, exc)
            return None


def read_store_file(path: str) -> dict:
    """The admin store file: ``{"keys": {id: record}}`` (a plain list of entries is accepted too)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        return {}
    import yaml

    data = yaml.safe_load(text)
    if isinstance(data, dict):
        data = data.get("keys", {})
    if isinstance(data, list):
        return {str(e.get("id", i)) if isinstance(e, dict) else f"entry{i}": e for i, e in enumerate(data)}
    if isinstance(data, dict):
        return data
    raise ValueError("expected {keys: {...}}")


class KeyStore:
    """One worker's view of the shared virtual keys: :attr:`table` is replaced whole on every change."""

    def __init__(self, config_records: list[KeyRecord], *, redis=None, keys_file: str | None = None,
                 interval: float = 0.25) -> None:
        self._config = config_records
        self.redis = redis
        self.interval = interval
        self.file = FileSource(keys_file, "admin", store_format=True) if keys_file and redis is None else None
        self.table = KeyTable(config_records)
        self._version = None
        self.synced = 0  # successful syncs (tests, admin status)

    def _apply(self, records: list[KeyRecord], tombstones: set[str]) -> None:
        merged: dict[str, KeyRecord] = {r.id: r for r in self._config}
        for ident in tombstones:
            old = merged.get(ident)
            if old is not None:
                merged[ident] = KeyRecord(old.id, old.digest, description=old.description, models=old.models,
                                          agents=old.agents, listeners=old.listeners, rate_limits=old.rate_limits,
                                          budget=old.budget, expires_at=old.expires_at, revoked=True,
                                          source=old.source, created_at=old.created_at, mcp_tools=old.mcp_tools)
        for record in records:
            merged[record.id] = record
        self.table = KeyTable(merged.values())

    async def sync(self) -> None:
        if self.redis is not None:
            await self._sync_redis()
        elif self.file is not None:
            found = self.file.poll()
            if found is not None:
                self._apply(*found)
        self.synced += 1

    async def _sync_redis(self) -> None:
        redis = self.redis
        hash_name, version_name = redis_names(redis.key_prefix)
        try:
            client = redis.client()
            version = await client.get(version_name)
            if version == self._version and self._version is not None:
                return
            raw = await client.hgetall(hash_name)
        except Exception as exc:
            redis.failed("key sync", exc)
            return
        redis.succeeded()
        self._version = version if version is not None else b"0"
        self._apply(*parse_records(raw, "admin"))


class Syncer:
    """The one background task per worker that keeps key tables and budgets in step."""

    def __init__(self, interval: float, parts) -> None:
        self.interval = interval
        self.parts = [p for p in parts if p is not None]
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if not self.parts:
            return
        await self.tick()  # the first table before the first request
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def tick(self) -> None:
        for part in self.parts:
            try:
                await part.sync()
            except Exception:  # never let the sync loop die
                log.exception("auth sync failed")

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await self.tick()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for part in self.parts:
            flush = getattr(part, "flush", None)
            if flush is not None:
                try:
                    await flush()
                except Exception:
                    pass
