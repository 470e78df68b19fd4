"""Conversation state for the OpenAI Responses API (``previous_response_id``), Plano §4.13.

Used when a Responses client reaches an upstream without its own Responses API (the
request is translated): plano stores each turn — the input items it saw, the previous
turns' included, plus its output as input items — and the next turn's
``previous_response_id`` prepends them. Native Responses upstreams keep their own state.

Stores (``state_storage.type``):

- ``memory``: per worker, bounded (``max_entries``, default 10,000, least recently used
  evicted first) with a TTL (``ttl``, default 24 h) — Plano's is unbounded;
- ``sqlite`` (the default when ``state_storage`` is omitted): one file,
  ``$PLANO_HOME/state/responses.sqlite3`` unless ``path`` says otherwise, in WAL mode so
  every worker shares it; calls run in a thread, off the event loop; survives restarts;
- ``postgres``: an asyncpg pool (``pool_size``, default 10), the table
  ``conversation_states`` created (or given the ``response`` column) on first use.

A turn is stored after its answer went out; a read of an id whose write is still in
flight in this worker waits for it (a client's next turn may arrive first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.wire.responses import output_as_input
from gateway.wire.sse import event_data, split_events

log = logging.getLogger("plano.state")

DEFAULT_TTL = 24 * 3600.0
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(slots=True)
class StoredResponse:
    id: str
    items: list  # input items for the next turn: this turn's input (history included) + its output
    response: dict  # the response object, for GET /v1/responses/{id}
    model: str
    provider: str
    created_at: float


#: A store several processes share (SQLite file, Postgres): how long a read of an id not found yet
#: keeps looking. Turns are written just after their answer went out, so a client that sends the
#: next turn at once to ANOTHER worker or replica can arrive a few milliseconds before the write.
SHARED_READ_WAIT = 0.5


class ResponseStore:
    """The store interface; ``get`` returns None for unknown or expired ids."""

    #: Other processes write to it too (see :data:`SHARED_READ_WAIT`).
    shared = False

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Task] = {}

    async def get(self, response_id: str) -> StoredResponse | None:
        pending = self._pending.get(response_id)
        if pending is not None:
            try:
                await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 - a failed write reads as missing
                pass
        found = await self._get(response_id)
        if found is not None or not self.shared or pending is not None:
            return found
        # Written by another process maybe a moment ago: look again briefly before saying unknown.
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + SHARED_READ_WAIT, 0.01
        while found is None and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            found = await self._get(response_id)
        return found

    def put_later(self, stored: StoredResponse) -> None:
        """Store in the background (after the answer went out); reads of the id wait for it."""
        task = asyncio.get_running_loop().create_task(self._put_logged(stored))
        self._pending[stored.id] = task
        task.add_done_callback(lambda _t, i=stored.id: self._pending.pop(i, None))

    async def _put_logged(self, stored: StoredResponse) -> None:
        try:
            await self.put(stored)
        except Exception as exc:  # noqa: BLE001 - storage trouble must not break the request path
            log.warning("could not store response %s: %s", stored.id, exc)

    async def put(self, stored: StoredResponse) -> None:
        raise NotImplementedError

    async def delete(self, response_id: str) -> bool:
        raise NotImplementedError

    async def _get(self, response_id: str) -> StoredResponse | None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class MemoryStore(ResponseStore):
    def __init__(self, *, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        super().__init__()
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, StoredResponse] = OrderedDict()

    async def put(self, stored: StoredResponse) -> None:
        self._data[stored.id] = stored
        self._data.move_to_end(stored.id)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def put_later(self, stored: StoredResponse) -> None:  # nothing to wait for
        self._data[stored.id] = stored
        self._data.move_to_end(stored.id)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def _get(self, response_id: str) -> StoredResponse | None:
        stored = self._data.get(response_id)
        if stored is None:
            return None
        if self.ttl and time.time() - stored.created_at > self.ttl:
            del self._data[response_id]
            return None
        self._data.move_to_end(response_id)
        return stored

    async def delete(self, response_id: str) -> bool:
        return self._data.pop(response_id, None) is not None


_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS conversation_states (
    response_id TEXT PRIMARY KEY, input_items TEXT NOT NULL, response TEXT NOT NULL,
    created_at REAL NOT NULL, model TEXT, provider TEXT)"""


class SQLiteStore(ResponseStore):
    shared = True  # every worker of the gateway opens the same file

    def __init__(self, path: str, *, ttl: float = DEFAULT_TTL) -> None:
        super().__init__()
        self.path = path
        self.ttl = ttl
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._writes = 0

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SQLITE_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn, *args):
        async with self._lock:  # one statement at a time on the shared connection
            return await asyncio.to_thread(fn, *args)

    def _put_sync(self, stored: StoredResponse) -> None:
        conn = self._connect()
        conn.execute("INSERT OR REPLACE INTO conversation_states VALUES (?, ?, ?, ?, ?, ?)",
                     (stored.id, orjson.dumps(stored.items).decode(), orjson.dumps(stored.response).decode(),
                      stored.created_at, stored.model, stored.provider))
        self._writes += 1
        if self.ttl and self._writes % 500 == 1:
            conn.execute("DELETE FROM conversation_states WHERE created_at < ?", (time.time() - self.ttl,))

    def _get_sync(self, response_id: str):
        return self._connect().execute(
            "SELECT response_id, input_items, response, model, provider, created_at FROM conversation_states "
            "WHERE response_id = ?", (response_id,)).fetchone()

    def _delete_sync(self, response_id: str) -> bool:
        return self._connect().execute("DELETE FROM conversation_states WHERE response_id = ?",
                                       (response_id,)).rowcount > 0

    async def put(self, stored: StoredResponse) -> None:
        await self._run(self._put_sync, stored)

    async def _get(self, response_id: str) -> StoredResponse | None:
        row = await self._run(self._get_sync, response_id)
        return _row(row, self.ttl)

    async def delete(self, response_id: str) -> bool:
        return await self._run(self._delete_sync, response_id)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _row(row, ttl: float) -> StoredResponse | None:
    if row is None:
        return None
    rid, items, response, model, provider, created = row
    if ttl and time.time() - float(created) > ttl:
        return None
    return StoredResponse(rid, orjson.loads(items), orjson.loads(response), model or "", provider or "",
                          float(created))


_PG_SCHEMA = """CREATE TABLE IF NOT EXISTS conversation_states (
    response_id TEXT PRIMARY KEY, input_items JSONB NOT NULL, created_at BIGINT NOT NULL,
    model TEXT, provider TEXT, updated_at TIMESTAMPTZ DEFAULT now(), response JSONB);
ALTER TABLE conversation_states ADD COLUMN IF NOT EXISTS response JSONB"""


class PostgresStore(ResponseStore):
    """Plano's table (``conversation_states``), plus a ``response`` column for GET /v1/responses/{id}."""

    shared = True  # every replica reads and writes the same table

    def __init__(self, dsn: str, *, ttl: float = DEFAULT_TTL, pool_size: int = 10) -> None:
        super().__init__()
        self.dsn = dsn
        self.ttl = ttl
        self.pool_size = pool_size
        self._pool = None
        self._opening = asyncio.Lock()

    async def _acquire_pool(self):
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    try:
                        import asyncpg
                    except ImportError as exc:  # pragma: no cover - asyncpg is a dependency
                        raise RuntimeError("state_storage type postgres needs the asyncpg package") from exc
                    pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
                    async with pool.acquire() as conn:
                        await conn.execute("SELECT pg_advisory_lock(727130)")  # one worker creates the table
                        try:
                            await conn.execute(_PG_SCHEMA)
                        finally:
                            await conn.execute("SELECT pg_advisory_unlock(727130)")
                    self._pool = pool
        return self._pool

    async def put(self, stored: StoredResponse) -> None:
        pool = await self._acquire_pool()
        await pool.execute(
            "INSERT INTO conversation_states (response_id, input_items, created_at, model, provider, response, "
            "updated_at) VALUES ($1, $2::jsonb, $3, $4, $5, $6::jsonb, now()) ON CONFLICT (response_id) DO UPDATE "
            "SET input_items = EXCLUDED.input_items, response = EXCLUDED.response, model = EXCLUDED.model, "
            "provider = EXCLUDED.provider, updated_at = now()",
            stored.id, orjson.dumps(stored.items).decode(), int(stored.created_at), stored.model, stored.provider,
            orjson.dumps(stored.response).decode())

    async def _get(self, response_id: str) -> StoredResponse | None:
        pool = await self._acquire_pool()
        row = await pool.fetchrow(
            "SELECT response_id, input_items::text, coalesce(response, '{}'::jsonb)::text, model, provider, "
            "created_at FROM conversation_states WHERE response_id = $1", response_id)
        return _row(tuple(row) if row is not None else None, self.ttl)

    async def delete(self, response_id: str) -> bool:
        pool = await self._acquire_pool()
        result = await pool.execute("DELETE FROM conversation_states WHERE response_id = $1", response_id)
        return result.endswith(" 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def default_sqlite_path() -> str:
    home = Path(os.environ.get("PLANO_HOME") or Path.home() / ".plano")
    return str(home / "state" / "responses.sqlite3")


async def open_store(config) -> ResponseStore:
    """The store a ``state_storage`` section (None: SQLite under ``$PLANO_HOME``) describes."""
    kind = getattr(config, "type", None) or "sqlite"
    ttl = getattr(config, "ttl", None)
    ttl = DEFAULT_TTL if ttl is None else float(ttl)
    if kind == "memory":
        return MemoryStore(ttl=ttl, max_entries=getattr(config, "max_entries", None) or DEFAULT_MAX_ENTRIES)
    if kind == "postgres":
        return PostgresStore(config.connection_string, ttl=ttl, pool_size=getattr(config, "pool_size", None) or 10)
    return SQLiteStore(getattr(config, "path", None) or default_sqlite_path(), ttl=ttl)


class ResponseRecorder:
    """A relay observer that stores the turn once the answer is complete.

    Reads the final response from a JSON answer (``finish(completion=...)``) or from the
    stream's ``response.completed`` event; only chunks naming that event are parsed.
    """

    __slots__ = ("items", "provider", "response", "store")

    def __init__(self, store: ResponseStore, items: list, provider: str) -> None:
        self.store = store
        self.items = items
        self.provider = provider
        self.response: dict | None = None

    def chunk(self, data: bytes) -> None:
        if b"response.completed" not in data and b"response.incomplete" not in data:
            return
        for block in split_events(data):
            payload = event_data(block)
            if not payload or b'"response.' not in payload:
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("type") in ("response.completed", "response.incomplete"):
                if isinstance(event.get("response"), dict):
                    self.response = event["response"]

    def finish(self, status, **kwargs) -> None:
        completion = kwargs.get("completion")
        if isinstance(completion, dict) and completion.get("object") == "response":
            self.response = completion
        response = self.response
        if status is None or status >= 400 or response is None or not isinstance(response.get("id"), str):
            return
        items = [*self.items, *output_as_input(response.get("output"))]
        self.store.put_later(StoredResponse(response["id"], items, response, response.get("model") or "",
                                            self.provider, time.time()))
