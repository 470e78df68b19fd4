"""What the console shows, read from the sources plano already has — no second telemetry pipeline.

- **Traffic**: the admin process's own Prometheus exposition (summed over every worker, as
  ``/metrics`` is) parsed by :mod:`gateway.ops.obs`, and the recent requests and errors from the
  access log (``PLANO_ACCESS_LOG``), read as ``plano obs`` and ``plano logs`` read them.
- **Traces and router decisions**: the built-in trace receiver (``plano trace listen`` /
  ``plano up --with-tracing``) at the gateway's gRPC tracing endpoint, asked through its query
  method as ``plano trace`` asks it — but from a short-lived child process
  (:mod:`gateway.console.tracequery`). Why: gRPC starts threads that do not survive ``fork``, and
  the supervising process this runs in forks workers whenever one dies or a reload starts a new
  generation; keeping gRPC out of it keeps those forks safe. A page load pays ~0.3 s for it;
  the answer is cached for :data:`TRACE_CACHE_SECONDS`.
- **Tasks**: the tasks store's tables, read directly (SQLite read-only, WAL readers never
  block the workers' writer; PostgreSQL with one short connection).
- **Virtual keys**: the admin API's key store (:class:`gateway.auth.admin_store.AdminKeyStore`).

Every reader returns plain data plus a sentence saying why something is missing; nothing here
raises to the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

TRACE_CACHE_SECONDS = 2.0
TRACE_LIMIT = 50
RECENT = 50
_MAX_LOG_BYTES = 1024 * 1024

_lock = threading.Lock()
_prev_snapshot = None  # the traffic snapshot of the previous page load (rates between loads)
_trace_cache: dict = {}
_pricing = None


# --------------------------------------------------------------------------- traffic


def access_log() -> tuple[Path | None, str]:
    """The access-log file of this gateway, or None and why there is none to read."""
    from gateway.telemetry.access_log import destination

    target = destination()
    if target is None:
        return None, "the access log is off (PLANO_ACCESS_LOG=off)"
    if target in ("-", "stderr"):
        return None, "the access log goes to stderr; set PLANO_ACCESS_LOG=<file> (plano up in the background does)"
    return Path(target), ""


def _pricing_table(config):
    global _pricing
    if _pricing is None:
        from gateway.telemetry.pricing import load_pricing

        try:
            _pricing = load_pricing(None, config)
        except Exception:  # an unreachable price source leaves costs blank, not the page
            _pricing = False
    return _pricing or None


def traffic(config) -> dict:
    """Listener and model figures since the gateway started, rates since the previous load,
    the recent requests and the recent failed ones."""
    global _prev_snapshot
    from gateway.ops.obs import Snapshot, parse_metrics, recent_calls
    from gateway.telemetry.metrics import exposition

    error = None
    try:
        body, _ = exposition()
        snap = parse_metrics(body.decode("utf-8", "replace"))
    except Exception as exc:  # a broken registry must not break the page
        error = f"metrics unavailable ({type(exc).__name__})"
        snap = Snapshot(time.monotonic())
    with _lock:
        prev, _prev_snapshot = _prev_snapshot, snap
    if prev is not None and not (0 < snap.taken - prev.taken < 300):
        prev = None
    path, why = access_log()
    records: list[dict] = []
    if path is not None:
        records, _ = recent_calls(path, 10**9, max_bytes=_MAX_LOG_BYTES)
        if not records and not path.exists():
            why = f"no access log at {path} yet"
    failed = [r for r in records if (r.get("status") or 0) >= 400 or r.get("error")]
    pricing = _pricing_table(config)
    costs = {}
    for key, m in snap.models.items():
        price = pricing.lookup(m.provider, m.model) if pricing is not None else None
        costs[key] = price.cost(m.prompt, m.completion, m.cached) if price is not None else None
    return {"snapshot": snap, "previous": prev, "recent": records[-RECENT:][::-1], "errors": failed[-20:][::-1],
            "access_log": str(path) if path else None, "access_log_note": why, "costs": costs,
            "pricing": pricing.source if pricing is not None else None, "error": error}


# --------------------------------------------------------------------------- traces


def trace_endpoint(config) -> tuple[tuple[str, int] | None, str]:
    """(host, port) of the trace receiver this gateway exports to, or None and why."""
    from gateway.telemetry.tracing import TracingSettings

    settings = TracingSettings.from_config(config)
    if not settings.enabled:
        return None, ("tracing is off: start plano with 'plano up --with-tracing', or set tracing: "
                      "{opentracing_grpc_endpoint: http://127.0.0.1:4317} and run 'plano trace listen'")
    if settings.protocol != "grpc":
        return None, (f"traces go to {settings.endpoint} over OTLP/HTTP; the console reads plano's own "
                      "receiver (gRPC, 'plano trace listen') — look at your collector's UI instead")
    parsed = urlparse(settings.endpoint if "//" in settings.endpoint else f"//{settings.endpoint}")
    if not parsed.hostname or not parsed.port:
        return None, f"cannot tell the trace receiver's address from {settings.endpoint!r}"
    host = parsed.hostname
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return (host, parsed.port), ""


def traces(config, trace_id: str | None = None, limit: int = TRACE_LIMIT) -> tuple[list[dict], str]:
    """Recent traces, newest first (or the one whose id starts with ``trace_id``), and a note."""
    where, why = trace_endpoint(config)
    if where is None:
        return [], why
    key = (where, trace_id, limit)
    now = time.monotonic()
    with _lock:
        hit = _trace_cache.get(key)
        if hit is not None and now - hit[0] < TRACE_CACHE_SECONDS:
            return hit[1], hit[2]
    found, note = _query(where, trace_id, limit)
    with _lock:
        if len(_trace_cache) > 64:
            _trace_cache.clear()
        _trace_cache[key] = (time.monotonic(), found, note)
    return found, note


def _query(where: tuple[str, int], trace_id: str | None, limit: int) -> tuple[list[dict], str]:
    host, port = where
    cmd = [sys.executable, "-m", "gateway.console.tracequery", host, str(port), str(limit), trace_id or ""]
    try:
        # The supervisor may reap this child before we do (it waits for any child): the answer is
        # judged by what it printed, never by its exit status.
        out = subprocess.run(cmd, capture_output=True, timeout=15, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"could not ask the trace receiver at {host}:{port} ({type(exc).__name__})"
    try:
        answer = json.loads(out.stdout or b"{}")
    except ValueError:
        answer = {}
    if not isinstance(answer, dict) or "traces" not in answer:
        reason = answer.get("error") if isinstance(answer, dict) and answer.get("error") else \
            (out.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or ["no answer"]
        if isinstance(reason, list):
            reason = reason[0]
        return [], (f"no plano trace receiver answered at {host}:{port} ({str(reason)[:300]}); "
                    "'plano trace listen' runs one")
    return [t for t in answer["traces"] if isinstance(t, dict) and t.get("spans")], ""


def routing_spans(traces_: list[dict]) -> list[tuple[dict, dict]]:
    """(trace, span) of every routing decision in the traces, newest first: agent selection
    (``selection.*``, ``routing.confidence``…) and model routing (``route.selected_model``)."""
    out = []
    for trace in traces_:
        for span in trace["spans"]:
            attrs = span.get("attributes") or {}
            if "routing.strategy" in attrs or "selection.agents" in attrs or "route.selected_model" in attrs:
                out.append((trace, span))
    out.sort(key=lambda ts: ts[1].get("start_ns") or 0, reverse=True)
    return out


# --------------------------------------------------------------------------- tasks


def _tasks_cfg(config):
    from gateway.tasks.config import TasksConfig

    return getattr(config, "tasks", None) or TasksConfig()


def task_listeners(config) -> list[str]:
    return [l.name for l in getattr(config, "listeners", None) or () if l.type == "agent"]


def _store_location(config) -> tuple[str, str]:
    """("sqlite", path) or ("postgres", dsn) as :func:`gateway.tasks.store.open_store` reads ``tasks.store``."""
    url = _tasks_cfg(config).store
    if url and url.startswith(("postgres://", "postgresql://")):
        return "postgres", url
    from gateway.tasks.store import open_store

    return "sqlite", open_store(url).path


def _select(config, sql: str, args: list) -> tuple[list[tuple], str]:
    kind, where = _store_location(config)
    if kind == "postgres":
        return _select_pg(where, sql, args)
    if not os.path.exists(where):
        return [], f"no task store at {where} yet (no task was created)"
    import sqlite3

    try:
        try:
            conn = sqlite3.connect(Path(where).resolve().as_uri() + "?mode=ro", uri=True, timeout=2.0)
        except sqlite3.OperationalError:  # read-only needs the WAL index; the gateway may not be up
            conn = sqlite3.connect(where, timeout=2.0)
        try:
            conn.execute("PRAGMA busy_timeout = 2000")
            return conn.execute(sql, args).fetchall(), ""
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return [], "the task store has no tasks yet"
        return [], f"could not read the task store {where} ({type(exc).__name__}: {str(exc)[:200]})"


def _select_pg(dsn: str, sql: str, args: list) -> tuple[list[tuple], str]:
    import asyncio

    from gateway.tasks.store import _pg

    async def run():
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return [tuple(r.values()) for r in await conn.fetch(_pg(sql), *args, timeout=10)]
        finally:
            await conn.close()

    try:
        return asyncio.run(run()), ""
    except Exception as exc:  # the database is down, the table is missing: say so on the page
        return [], f"could not read the PostgreSQL task store ({type(exc).__name__})"


def tasks(config, limit: int = 100) -> tuple[list[dict], str]:
    """The newest tasks of every listener, each with its step counts."""
    from gateway.tasks.store import TASK_COLUMNS, loads

    if not task_listeners(config):
        return [], "this config has no agent listener, so no tasks"
    rows, note = _select(config, f"SELECT {', '.join(TASK_COLUMNS)} FROM plano_tasks "
                                 f"ORDER BY created_at DESC, id DESC LIMIT {int(limit)}", [])
    out = []
    for row in rows:
        task = dict(zip(TASK_COLUMNS, row))
        try:
            steps = (loads(task.get("state")) or {}).get("steps") or []
        except ValueError:
            steps = []
        task["steps_total"] = len(steps)
        task["steps_done"] = sum(1 for s in steps if s.get("status") == "complete")
        out.append(task)
    return out, note


def task(config, task_id: str) -> tuple[dict | None, str]:
    """One task with its steps (as ``GET /v1/tasks/{id}/trace`` shows them) and webhook deliveries."""
    from gateway.tasks.executor import trace_step
    from gateway.tasks.store import TASK_COLUMNS, loads

    rows, note = _select(config, f"SELECT {', '.join(TASK_COLUMNS)} FROM plano_tasks WHERE id = ?", [task_id])
    if not rows:
        return None, note or f"no task {task_id}"
    found = dict(zip(TASK_COLUMNS, rows[0]))
    try:
        state = loads(found.get("state")) or {}
    except ValueError:
        state = {}
    steps = []
    for s in state.get("steps") or ():
        try:
            steps.append(trace_step(s))
        except (KeyError, TypeError):  # a step written by another version: show what is there
            steps.append({k: s.get(k) for k in ("index", "tool", "action", "status")})
    found["steps"] = steps
    found["planner"] = state.get("planner")
    for name in ("result", "error", "metadata"):
        try:
            found[name] = loads(found.get(name))
        except ValueError:
            pass
    deliveries, _ = _select(config, "SELECT event, status, attempts, last_error, created_at, delivered_at "
                                    "FROM plano_task_outbox WHERE task_id = ? ORDER BY created_at", [task_id])
    found["deliveries"] = [dict(zip(("event", "status", "attempts", "last_error", "created_at", "delivered_at"), d))
                           for d in deliveries]
    return found, ""


# --------------------------------------------------------------------------- virtual keys


def keys(store) -> tuple[list[dict], str]:
    """Every key (config and admin-created) with its usage; never a secret (only a SHA-256 prefix)."""
    try:
        records = store.records()
    except Exception as exc:  # Redis down, a broken keys file
        return [], f"the key store ({store.where}) could not be read ({type(exc).__name__})"
    now = time.time()
    out = []
    for record in sorted(records.values(), key=lambda r: r.id):
        view = record.describe()
        view.pop("key", None)
        view["fingerprint"] = "sha256:" + bytes(record.digest).hex()[:8] + "…" if record.digest else None
        view["status"] = "revoked" if record.revoked else "expired" if record.expired(now) else "active"
        try:
            view["usage"] = store.usage(record.id)
        except Exception:  # usage is a bonus; the key list stands without it
            view["usage"] = None
        out.append(view)
    return out, ""
