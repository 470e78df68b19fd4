"""Durable task state: tasks (with their workflow state), the webhook outbox, execution memory.

One SQL schema, two backends:

- :class:`SQLiteStore` (default; ``$PLANO_HOME/tasks.db``): the stdlib driver on one writer
  thread per process with **group commit** — every operation queued while a transaction runs
  joins the next one (``BEGIN IMMEDIATE`` ... ``COMMIT``, a savepoint per operation), so a
  burst of creates and step updates costs one fsync, not one each. WAL mode and
  ``busy_timeout`` make it safe under several worker processes (SQLite serialises writers).
- :class:`PostgresStore` (``postgresql://…``; asyncpg): for several replicas. Claims use
  ``FOR UPDATE SKIP LOCKED`` so replicas never wait on each other's rows.

Ownership: a run holds a task by ``owner`` + ``lease_until``; every write of a running task is
fenced (``WHERE id = ? AND owner = ?``) and reports whether it still held the task, so a worker
that lost its lease (it stalled, another replica took over) stops instead of writing over the
new owner. Timestamps are epoch seconds (float); JSON is stored as text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("plano.tasks")

ACTIVE = ("pending", "running", "waiting")
TERMINAL = ("complete", "failed", "cancelled")

TASK_COLUMNS = ("id", "listener", "status", "prompt", "user_id", "metadata", "sub_agent", "mode", "webhook_url",
                "idem_key", "idem_hash", "created_at", "updated_at", "completed_at", "result", "error", "state",
                "trace_id", "traceparent", "owner", "lease_until", "deadline", "wait_until", "input")
OUTBOX_COLUMNS = ("id", "task_id", "event", "url", "body", "attempts", "next_at", "status", "owner",
                  "lease_until", "last_error", "created_at", "delivered_at")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS plano_tasks (
        id TEXT PRIMARY KEY, listener TEXT NOT NULL, status TEXT NOT NULL, prompt TEXT NOT NULL,
        user_id TEXT, metadata TEXT, sub_agent TEXT, mode TEXT NOT NULL, webhook_url TEXT,
        idem_key TEXT, idem_hash TEXT, created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, completed_at DOUBLE PRECISION, result TEXT, error TEXT,
        state TEXT, trace_id TEXT, traceparent TEXT, owner TEXT, lease_until DOUBLE PRECISION,
        deadline DOUBLE PRECISION, wait_until DOUBLE PRECISION, input TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS plano_tasks_idem ON plano_tasks (listener, idem_key) "
    "WHERE idem_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS plano_tasks_claim ON plano_tasks (status, lease_until)",
    "CREATE INDEX IF NOT EXISTS plano_tasks_list ON plano_tasks (listener, created_at)",
    """CREATE TABLE IF NOT EXISTS plano_task_outbox (
        id TEXT PRIMARY KEY, task_id TEXT NOT NULL, event TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,
        attempts INTEGER NOT NULL, next_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, owner TEXT,
        lease_until DOUBLE PRECISION, last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
        delivered_at DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS plano_task_outbox_due ON plano_task_outbox (status, next_at)",
    """CREATE TABLE IF NOT EXISTS plano_task_memory (
        listener TEXT NOT NULL, agent TEXT NOT NULL, failure TEXT NOT NULL, recovery TEXT NOT NULL,
        successes INTEGER NOT NULL, failures INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (listener, agent, failure, recovery))""",
]


def dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class Lost(Exception):
    """A fenced write found the task owned by someone else (lease lost)."""


class Store:
    """The operations the runtime needs; backends implement :meth:`_op` (one transaction)."""

    dialect = "sqlite"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def _op(self, steps: Callable, atomic: bool = True) -> Any:
        """Run ``steps(tx)`` in one transaction; ``tx.execute(sql, args) -> rows`` / ``tx.count``.

        ``atomic=False``: the steps make at most one write (or only read), so a backend may run
        them without an explicit transaction (PostgreSQL: one round trip instead of BEGIN, the
        statement and COMMIT — the statement is still atomic and durable on its own)."""
        raise NotImplementedError

    async def _one(self, steps: Callable) -> Any:
        return await self._op(steps, atomic=False)

    # -- tasks ---------------------------------------------------------------------------------

    async def create_task(self, row: dict, outbox: list[dict] = ()) -> tuple[dict, bool]:
        """Insert ``row``; with an idempotency key already used, return (the original, False)."""
        cols = list(row)
        sql = (f"INSERT INTO plano_tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               "ON CONFLICT DO NOTHING")

        def steps(tx):
            n = tx.count(sql, [row[c] for c in cols])
            if n == 0 and row.get("idem_key") is not None:
                found = tx.execute(f"SELECT {_T} FROM plano_tasks WHERE listener = ? AND idem_key = ?",
                                   [row["listener"], row["idem_key"]])
                if found:
                    return _task(found[0]), False
            for item in outbox:
                _insert_outbox(tx, item)
            return dict(row), True

        return await self._op(steps, atomic=bool(outbox))

    async def get_task(self, task_id: str, listener: str | None = None) -> dict | None:
        def steps(tx):
            if listener is None:
                rows = tx.execute(f"SELECT {_T} FROM plano_tasks WHERE id = ?", [task_id])
            else:
                rows = tx.execute(f"SELECT {_T} FROM plano_tasks WHERE id = ? AND listener = ?", [task_id, listener])
            return _task(rows[0]) if rows else None

        return await self._op(steps, atomic=False)

    async def list_tasks(self, listener: str, status: str | None, user_id: str | None, limit: int,
                         offset: int) -> tuple[list[dict], bool]:
        where, args = ["listener = ?"], [listener]
        if status:
            where.append("status = ?")
            args.append(status)
        if user_id:
            where.append("user_id = ?")
            args.append(user_id)
        sql = (f"SELECT {_T} FROM plano_tasks WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC "
               f"LIMIT {int(limit) + 1} OFFSET {int(offset)}")
        rows = await self._one(lambda tx: tx.execute(sql, args))
        return [_task(r) for r in rows[:limit]], len(rows) > limit

    async def update_task(self, task_id: str, owner: str, fields: dict, outbox: list[dict] = (),
                          release: bool = False) -> None:
        """A fenced write of a task this owner runs (raises :class:`Lost` when it is not its any more)."""
        fields = {**fields, "updated_at": time.time()}
        if release:
            fields["owner"] = None
            fields["lease_until"] = None
        cols = list(fields)
        sql = (f"UPDATE plano_tasks SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ? AND owner = ? "
               "AND status IN ('pending', 'running', 'waiting')")

        def steps(tx):
            if tx.count(sql, [*(fields[c] for c in cols), task_id, owner]) == 0:
                return False
            for item in outbox:
                _insert_outbox(tx, item)
            return True

        if not await self._op(steps, atomic=bool(outbox)):
            raise Lost(task_id)

    async def cancel_task(self, task_id: str, listener: str, outbox_for: Callable[[dict], list[dict]]
                          ) -> tuple[dict | None, bool]:
        """(task, cancelled now): None when unknown, False when it was already terminal."""
        now = time.time()

        def steps(tx):
            n = tx.count("UPDATE plano_tasks SET status = 'cancelled', updated_at = ?, completed_at = ?, "
                         "owner = NULL, lease_until = NULL WHERE id = ? AND listener = ? "
                         "AND status IN ('pending', 'running', 'waiting')", [now, now, task_id, listener])
            rows = tx.execute(f"SELECT {_T} FROM plano_tasks WHERE id = ? AND listener = ?", [task_id, listener])
            if not rows:
                return None, False
            task = _task(rows[0])
            if n:
                for item in outbox_for(task):
                    _insert_outbox(tx, item)
            return task, bool(n)

        return await self._op(steps)

    async def supply_input(self, task_id: str, listener: str, value: Any) -> tuple[dict | None, bool]:
        """Hand a waiting task its input; it is runnable again (any worker may claim it)."""
        now = time.time()

        def steps(tx):
            n = tx.count("UPDATE plano_tasks SET status = 'running', input = ?, updated_at = ?, owner = NULL, "
                         "lease_until = NULL, wait_until = NULL WHERE id = ? AND listener = ? AND status = 'waiting'",
                         [dumps(value), now, task_id, listener])
            rows = tx.execute(f"SELECT {_T} FROM plano_tasks WHERE id = ? AND listener = ?", [task_id, listener])
            return (_task(rows[0]) if rows else None), bool(n)

        return await self._op(steps, atomic=False)  # the read sees the committed write

    async def claim(self, owner: str, listeners: list[str], lease: float, limit: int) -> list[dict]:
        """Runnable tasks nobody holds (new, orphaned by a dead worker, resumed after input), and
        waiting tasks past their ``wait_until`` (to be failed); held by ``owner`` from now."""
        if limit <= 0 or not listeners:
            return []
        now = time.time()
        marks = ", ".join("?" * len(listeners))
        pick = (f"SELECT id FROM plano_tasks WHERE listener IN ({marks}) AND "
                "((status IN ('pending', 'running') AND (owner IS NULL OR lease_until < ?)) OR "
                "(status = 'waiting' AND wait_until < ? AND (owner IS NULL OR lease_until < ?))) "
                f"ORDER BY created_at LIMIT {int(limit)}")
        if self.dialect == "postgres":
            pick += " FOR UPDATE SKIP LOCKED"
        sql = (f"UPDATE plano_tasks SET owner = ?, lease_until = ? WHERE id IN ({pick}) RETURNING {_T}")
        rows = await self._one(lambda tx: tx.execute(sql, [owner, now + lease, *listeners, now, now, now]))
        return [_task(r) for r in rows]

    async def hold(self, task_id: str, owner: str, lease: float) -> bool:
        """Take a task for a run (the POST that created it, at once) if nobody holds it."""
        now = time.time()
        return bool(await self._one(lambda tx: tx.count(
            "UPDATE plano_tasks SET owner = ?, lease_until = ? WHERE id = ? AND status IN ('pending', 'running') "
            "AND (owner IS NULL OR owner = ? OR lease_until < ?)", [owner, now + lease, task_id, owner, now])))

    async def renew(self, owner: str, task_ids: list[str], lease: float) -> set[str]:
        """Extend this owner's leases; returns the ids it still holds."""
        if not task_ids:
            return set()
        until = time.time() + lease
        held: set[str] = set()

        def steps(tx):
            for start in range(0, len(task_ids), 500):
                chunk = task_ids[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = tx.execute(f"UPDATE plano_tasks SET lease_until = ? WHERE owner = ? AND id IN ({marks}) "
                                  "AND status IN ('pending', 'running', 'waiting') RETURNING id",
                                  [until, owner, *chunk])
                held.update(r[0] for r in rows)
            return held

        return await self._op(steps, atomic=False)  # each chunk stands on its own

    async def release(self, owner: str, task_ids: list[str]) -> None:
        """Give tasks back (graceful shutdown): another worker may take them at once."""
        if not task_ids:
            return
        marks = ", ".join("?" * len(task_ids))
        await self._one(lambda tx: tx.count(
            f"UPDATE plano_tasks SET owner = NULL, lease_until = NULL WHERE owner = ? AND id IN ({marks})",
            [owner, *task_ids]))

    # -- outbox --------------------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, lease: float, limit: int) -> list[dict]:
        now = time.time()
        pick = ("SELECT id FROM plano_task_outbox WHERE status = 'pending' AND next_at <= ? AND "
                f"(owner IS NULL OR lease_until < ?) ORDER BY next_at LIMIT {int(limit)}")
        if self.dialect == "postgres":
            pick += " FOR UPDATE SKIP LOCKED"
        sql = (f"UPDATE plano_task_outbox SET owner = ?, lease_until = ? WHERE id IN ({pick}) "
               f"RETURNING {', '.join(OUTBOX_COLUMNS)}")
        rows = await self._one(lambda tx: tx.execute(sql, [owner, now + lease, now, now]))
        return [dict(zip(OUTBOX_COLUMNS, r)) for r in rows]

    async def next_delivery_at(self) -> float | None:
        rows = await self._one(lambda tx: tx.execute(
            "SELECT MIN(next_at) FROM plano_task_outbox WHERE status = 'pending'", []))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def delivery_done(self, delivery_id: str, owner: str, attempts: int, status: str, next_at: float,
                            error: str | None) -> None:
        now = time.time()
        await self._one(lambda tx: tx.count(
            "UPDATE plano_task_outbox SET attempts = ?, status = ?, next_at = ?, last_error = ?, owner = NULL, "
            "lease_until = NULL, delivered_at = ? WHERE id = ? AND owner = ?",
            [attempts, status, next_at, error, now if status == "delivered" else None, delivery_id, owner]))

    async def deliveries(self, task_id: str) -> list[dict]:
        rows = await self._one(lambda tx: tx.execute(
            f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM plano_task_outbox WHERE task_id = ? ORDER BY created_at",
            [task_id]))
        return [dict(zip(OUTBOX_COLUMNS, r)) for r in rows]

    # -- execution memory ----------------------------------------------------------------------

    async def memory(self, listener: str, agents: list[str]) -> list[dict]:
        if not agents:
            return []
        marks = ", ".join("?" * len(agents))
        rows = await self._one(lambda tx: tx.execute(
            "SELECT agent, failure, recovery, successes, failures, updated_at FROM plano_task_memory "
            f"WHERE listener = ? AND agent IN ({marks}) ORDER BY successes DESC, updated_at DESC",
            [listener, *agents]))
        return [dict(zip(("agent", "failure", "recovery", "successes", "failures", "updated_at"), r)) for r in rows]

    async def remember(self, listener: str, agent: str, failure: str, recovery: str, worked: bool,
                       max_entries: int) -> None:
        now = time.time()
        ok, bad = (1, 0) if worked else (0, 1)

        def steps(tx):
            tx.count("INSERT INTO plano_task_memory (listener, agent, failure, recovery, successes, failures, "
                     "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (listener, agent, failure, recovery) "
                     "DO UPDATE SET successes = plano_task_memory.successes + ?, "
                     "failures = plano_task_memory.failures + ?, updated_at = ?",
                     [listener, agent, failure, recovery, ok, bad, now, ok, bad, now])
            count = tx.execute("SELECT COUNT(*) FROM plano_task_memory", [])[0][0]
            if count > max_entries:  # bounded: the least recently useful entries go
                tx.count("DELETE FROM plano_task_memory WHERE updated_at IN (SELECT updated_at FROM "
                         f"plano_task_memory ORDER BY updated_at LIMIT {int(count - max_entries)})", [])

        await self._op(steps)


_T = ", ".join(TASK_COLUMNS)


def _task(row) -> dict:
    return dict(zip(TASK_COLUMNS, row))


def _insert_outbox(tx, item: dict) -> None:
    cols = list(item)
    tx.count(f"INSERT INTO plano_task_outbox ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
             "ON CONFLICT DO NOTHING", [item[c] for c in cols])


# ------------------------------------------------------------------------------------ SQLite


class _SQLiteTx:
    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, args) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def count(self, sql: str, args) -> int:
        return self.conn.execute(sql, args).rowcount


class SQLiteStore(Store):
    """SQLite on one writer thread per process, with group commit."""

    dialect = "sqlite"
    BATCH = 256

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        if self._thread is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                conn = self._connect()
            except Exception as exc:  # noqa: BLE001
                loop.call_soon_threadsafe(_settle, ready, None, exc)
                return
            loop.call_soon_threadsafe(_settle, ready, None, None)
            self._serve(conn)

        self._thread = threading.Thread(target=run, name="plano-tasks-sqlite", daemon=True)
        self._thread.start()
        await ready

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        tx = _SQLiteTx(conn)
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = False
            while len(batch) < self.BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            results = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for steps, loop, fut in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = steps(tx)
                        conn.execute("RELEASE op")
                        results.append((loop, fut, value, None))
                    except Exception as exc:  # noqa: BLE001 - this operation only
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((loop, fut, None, exc))
                conn.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001 - the whole batch failed (disk, lock timeout)
                try:
                    conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001
                    pass
                results = [(loop, fut, None, exc) for _, loop, fut in batch]
            # one wake-up of each event loop per batch, not one per operation: every
            # call_soon_threadsafe writes to the loop's self-pipe and takes the GIL
            by_loop: dict = {}
            for loop, fut, value, exc in results:
                by_loop.setdefault(loop, []).append((fut, value, exc))
            for loop, items in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, items)
                except RuntimeError:  # loop closed
                    pass
            if stop:
                break
        conn.close()

    async def _op(self, steps: Callable, atomic: bool = True) -> Any:
        if self._thread is None:
            raise RuntimeError("task store not started")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((steps, loop, fut))
        return await fut

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        thread, self._thread = self._thread, None
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)


def _settle_all(items) -> None:
    for fut, value, exc in items:
        _settle(fut, value, exc)


def _settle(fut: asyncio.Future, value, exc) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


# ---------------------------------------------------------------------------------- Postgres

_MARK = re.compile(r"\?")


def _pg(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda m: f"${next(counter)}", sql)


class PostgresStore(Store):
    """PostgreSQL through asyncpg (``pip install asyncpg``), for several replicas."""

    dialect = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self.pool = None
        self.min_size, self.max_size = min_size, max_size

    async def start(self) -> None:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - reported at start-up
            raise RuntimeError("tasks.store is PostgreSQL but asyncpg is not installed "
                               "(pip install 'plano[postgres]')") from exc
        # reset=_keep: asyncpg's default reset sends "RESET ALL; UNLISTEN *; ..." on every release,
        # one more round trip per operation; this pool never sets session state, listens or holds
        # session locks (the schema lock is transaction-scoped), and asyncpg still ends any open
        # transaction itself before the custom reset
        self.pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size,
                                              reset=_keep)
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(740014)")  # replicas create the schema once
                for statement in SCHEMA:
                    await conn.execute(statement)

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    async def _op(self, steps: Callable, atomic: bool = True) -> Any:
        async with self.pool.acquire() as conn:
            if not atomic:
                return await _run_pg(steps, conn)
            async with conn.transaction():
                return await _run_pg(steps, conn)


async def _keep(conn) -> None:
    """The pool's reset: nothing to undo (see :meth:`PostgresStore.start`)."""


async def _run_pg(steps: Callable, conn) -> Any:
    """Drive a sync ``steps(tx)`` function against asyncpg: the function is re-entered as a
    generator of statements (see :class:`_PgReplay`)."""
    replay = _PgReplay(conn)
    while True:
        try:
            replay.reset()
            return steps(replay)
        except _NeedResult as need:
            replay.results.append(await need.run())


class _NeedResult(Exception):
    def __init__(self, run) -> None:
        self.run = run


class _PgReplay:
    """Runs a sync steps function over an async driver by replay: each statement the function asks
    for raises once, is executed by the async caller, and the function is run again from the top
    with the results so far (the steps are deterministic and have no side effects besides SQL)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.results: list = []
        self._pos = 0

    def reset(self) -> None:
        self._pos = 0

    def _next(self, make):
        if self._pos < len(self.results):
            value = self.results[self._pos]
            self._pos += 1
            return value
        raise _NeedResult(make)

    def execute(self, sql: str, args) -> list[tuple]:
        conn = self.conn

        async def run():
            rows = await conn.fetch(_pg(sql), *args)
            return [tuple(r.values()) for r in rows]

        return self._next(run)

    def count(self, sql: str, args) -> int:
        conn = self.conn

        async def run():
            status = await conn.execute(_pg(sql), *args)
            try:
                return int(status.rsplit(" ", 1)[-1])
            except ValueError:
                return 0

        return self._next(run)


def open_store(url: str | None, home: str | None = None) -> Store:
    """The store named by ``tasks.store`` (default: SQLite under ``$PLANO_HOME``)."""
    if url and url.startswith(("postgres://", "postgresql://")):
        return PostgresStore(url)
    if url and url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):  # sqlite:///var/lib/x.db (the contract's form) and sqlite:////abs
            path = "/" + path.lstrip("/")
        return SQLiteStore(path)
    if url:
        return SQLiteStore(url)  # a plain path
    base = home or os.environ.get("PLANO_HOME") or str(Path.home() / ".plano")
    return SQLiteStore(str(Path(base) / "tasks.db"))
