"""Signed webhooks from a durable outbox (at-least-once).

An event row is written in the same transaction as the task change it reports, so a crash can
never lose it. A delivery loop per worker claims due rows (with a lease, ``SKIP LOCKED`` on
PostgreSQL), POSTs the exact stored body through the upstream layer, and marks the row
delivered on a 2xx, else schedules the next attempt (``tasks.webhook.schedule``, default
1m, 5m, 30m, 2h: 5 attempts) or gives up. The row id is the stable ``X-Plano-Delivery-Id``
(the same on every attempt), so a receiver dedupes.

Headers: ``X-Plano-Signature`` and ``X-Ploton-Signature`` = lowercase hex HMAC-SHA256 of the
body bytes with ``tasks.webhook.secret``; ``X-Plano-Timestamp`` = unix seconds of this attempt;
``X-Plano-Signature-V1`` = ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` for
replay protection (reject a timestamp older than a few minutes).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import logging
import secrets
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import orjson

log = logging.getLogger("plano.tasks.webhooks")

DEFAULT_SCHEDULE = (60.0, 300.0, 1800.0, 7200.0)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    key = secret.encode()
    plain = hmac.new(key, body, hashlib.sha256).hexdigest()
    v1 = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-plano-signature": plain, "x-ploton-signature": plain, "x-plano-timestamp": str(timestamp),
            "x-plano-signature-v1": f"t={timestamp},v1={v1}"}


def allowed(url: str, patterns: list[str]) -> bool:
    if not patterns:
        return False
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return any(fnmatch.fnmatchcase(url, p) for p in patterns)


class Webhooks:
    """Builds outbox rows for task events and delivers them (one per worker)."""

    INFLIGHT = 128  # deliveries in flight per worker

    def __init__(self, cfg, store, upstream) -> None:
        self.cfg = cfg
        self.store = store
        self.upstream = upstream
        self.secret = cfg.secret or ""
        self.url = cfg.url
        self.schedule = tuple(cfg.schedule) if cfg.schedule else DEFAULT_SCHEDULE
        self.attempts = cfg.attempts or (len(self.schedule) + 1)
        self.progress = cfg.progress
        self.owner = f"wh_{secrets.token_hex(6)}"
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._pools: dict[str, object] = {}
        self.poll = 0.5
        # A claimed delivery is this worker's for one attempt's timeout plus a margin: a worker
        # killed mid-attempt leaves its claim behind, and the next worker retries the row once the
        # attempt could not possibly still be running (it was a fixed 120 s, which held a
        # delivery orphaned by kill -9 back for two minutes). A worker stalled past the margin may
        # see its row sent twice: at-least-once, same delivery id.
        self.lease = float(cfg.timeout) + 10.0

    def target(self, task: dict) -> str | None:
        return task.get("webhook_url") or self.url

    def event(self, task: dict, event: str, data) -> list[dict]:
        """The outbox row(s) for one event of ``task`` (none without a target)."""
        url = self.target(task)
        if not url or (event == "task.progress" and not self.progress):
            return []
        now = time.time()
        delivery = f"dlv_{secrets.token_urlsafe(12)}"
        body = orjson.dumps({"event": event, "task_id": task["id"], "timestamp": iso(now), "data": data,
                             "metadata": task.get("metadata") if isinstance(task.get("metadata"), dict)
                             else _json(task.get("metadata")), "delivery_id": delivery}).decode()
        return [{"id": delivery, "task_id": task["id"], "event": event, "url": url, "body": body, "attempts": 0,
                 "next_at": now, "status": "pending", "created_at": now}]

    # -- delivery loop -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="plano-task-webhooks")

    async def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        inflight: set[asyncio.Task] = set()

        def finished(t: asyncio.Task) -> None:
            # a slot is free: look for due rows now, not at the next poll (with every slot busy the
            # loop sleeps; waiting out the poll interval here capped delivery at INFLIGHT per poll)
            inflight.discard(t)
            self.wake.set()

        while not self._stopping:
            try:
                free = self.INFLIGHT - len(inflight)
                rows = await self.store.claim_deliveries(self.owner, self.lease, free) if free > 0 else []
                for row in rows:
                    t = asyncio.create_task(self._deliver(row))
                    inflight.add(t)
                    t.add_done_callback(finished)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the store is down: try again shortly
                log.exception("webhook outbox poll failed")
                rows = []
            if rows and len(rows) >= free:
                await asyncio.sleep(0)
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll)
            except TimeoutError:
                pass
        for t in list(inflight):
            t.cancel()

    async def _deliver(self, row: dict) -> None:
        body = row["body"].encode()
        attempt = row["attempts"] + 1
        headers = {"content-type": "application/json", "user-agent": "plano-webhooks",
                   "x-plano-delivery-id": row["id"], "x-plano-event": row["event"],
                   "x-plano-delivery-attempt": str(attempt)}
        if self.secret:
            headers.update(sign(self.secret, body, int(time.time())))
        error = None
        try:
            status = await self._post(row["url"], headers, body)
            if 200 <= status < 300:
                await self.store.delivery_done(row["id"], self.owner, attempt, "delivered", time.time(), None)
                return
            error = f"HTTP {status}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - connect error, timeout: retried
            error = str(exc)[:300] or type(exc).__name__
        if attempt >= self.attempts:
            log.warning("webhook %s for task %s given up after %d attempts: %s", row["id"], row["task_id"],
                        attempt, error)
            await self.store.delivery_done(row["id"], self.owner, attempt, "dead", time.time(), error)
            return
        delay = self.schedule[min(attempt - 1, len(self.schedule) - 1)]
        await self.store.delivery_done(row["id"], self.owner, attempt, "pending", time.time() + delay, error)

    async def _post(self, url: str, headers: dict, body: bytes) -> int:
        from gateway.upstream import Pool, timeout_policy

        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = Pool(f"webhook:{parts.netloc}", [origin])
        timeout = timeout_policy(self.cfg.timeout, min(5.0, self.cfg.timeout))
        async with self.upstream.call(pool, [url], headers=headers, body=body, timeout=timeout,
                                      target=f"webhook {parts.netloc}") as resp:
            await resp.read()
            return resp.status


def _json(text):
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
