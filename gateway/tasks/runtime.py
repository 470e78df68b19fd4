"""The task runtime of one worker process: store, runs, leases, the webhook loop.

- A task created here starts at once on this worker (no poll delay): the POST inserts it held
  by this worker, and the run is scheduled after the 201 is sent.
- A heartbeat renews this worker's leases every ``lease / 3``; a run whose lease could not be
  renewed (the task was cancelled, or another replica took it over after a stall) is cancelled,
  so a step never runs on two workers at once.
- A poller claims runnable tasks nobody holds: orphaned by a dead worker or replica (lease
  expired), resumed after input, given back at shutdown; and waiting tasks past
  ``waiting_timeout`` (to fail them). At most ``max_running`` runs per worker.
- Shutdown cancels the runs and gives their tasks back, so another worker resumes them at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from gateway.tasks.store import open_store
from gateway.tasks.webhooks import Webhooks

log = logging.getLogger("plano.tasks")


class TaskRuntime:
    def __init__(self, cfg, upstream, telemetry=None) -> None:
        self.cfg = cfg
        self.upstream = upstream
        self.telemetry = telemetry
        self.store = open_store(cfg.store)
        self.webhooks = Webhooks(cfg.webhook, self.store, upstream)
        self.webhooks.poll = cfg.poll_interval
        self.owner = f"w_{secrets.token_hex(8)}"
        self.services: dict[str, object] = {}
        self.runs: dict[str, asyncio.Task] = {}
        self._bg: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None
        self._memory: dict[tuple, tuple[float, list[dict]]] = {}
        self.started = False
        self._stopping = False

    def service(self, name: str, service) -> None:
        self.services[name] = service

    async def start(self) -> None:
        await self.store.start()
        self._wake = asyncio.Event()
        self.webhooks.start()
        self._bg = [asyncio.create_task(self._heartbeat(), name="plano-task-leases"),
                    asyncio.create_task(self._poll(), name="plano-task-poller")]
        self.started = True
        log.info("tasks: store %s, owner %s", getattr(self.store, "path", None) or "postgresql", self.owner)

    async def stop(self) -> None:
        self._stopping = True
        for t in self._bg:
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        runs = list(self.runs.items())
        for _, t in runs:
            t.cancel()
        await asyncio.gather(*(t for _, t in runs), return_exceptions=True)
        try:
            await self.store.release(self.owner, [task_id for task_id, _ in runs])
        except Exception:  # noqa: BLE001 - the leases expire anyway
            log.exception("tasks: could not give tasks back at shutdown")
        await self.webhooks.stop()
        await self.store.close()

    # -- execution memory, read once a second at most ------------------------------------------

    MEMORY_TTL = 1.0

    async def memory(self, listener: str, agents: list[str]) -> list[dict]:
        """The listener's execution memory. Every plan consults it; reading it from the store
        for each task was one more query per task, so a worker keeps it for ``MEMORY_TTL``
        seconds (and drops it at once when one of its own runs records something); another
        worker's or replica's lesson reaches this one's plans within that second."""
        key = (listener, tuple(agents))
        hit = self._memory.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.MEMORY_TTL:
            return hit[1]
        entries = await self.store.memory(listener, agents)
        self._memory[key] = (now, entries)
        return entries

    def forget_memory(self, listener: str) -> None:
        for key in [k for k in self._memory if k[0] == listener]:
            del self._memory[key]

    def nudge_webhooks(self) -> None:
        self.webhooks.wake.set()

    # -- runs ---------------------------------------------------------------------------------

    def launch(self, task: dict) -> None:
        """Run a task this worker holds."""
        if task["id"] in self.runs or self._stopping:
            return
        service = self.services.get(task["listener"])
        if service is None:
            return
        from gateway.tasks.executor import Run

        t = asyncio.create_task(self._guard(Run(service, task, self.owner)), name=f"task {task['id']}")
        self.runs[task["id"]] = t
        t.add_done_callback(lambda _t, task_id=task["id"]: self._done(task_id, _t))

    def _done(self, task_id: str, t: asyncio.Task) -> None:
        if self.runs.get(task_id) is t:
            del self.runs[task_id]
        if not self._stopping and self._wake is not None:
            self._wake.set()  # a slot is free

    async def _guard(self, run) -> None:
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug: the lease expires and another worker retries
            log.exception("task %s: run failed", run.task["id"])

    def cancel_local(self, task_id: str) -> None:
        t = self.runs.get(task_id)
        if t is not None:
            t.cancel()

    @property
    def free(self) -> int:
        return self.cfg.max_running - len(self.runs)

    async def _heartbeat(self) -> None:
        every = max(0.05, self.cfg.lease / 3)
        while True:
            await asyncio.sleep(every)
            ids = list(self.runs)
            if not ids:
                continue
            try:
                held = await self.store.renew(self.owner, ids, self.cfg.lease)
            except Exception:  # noqa: BLE001 - store down: runs stop once their lease is surely gone
                log.exception("tasks: lease renewal failed")
                continue
            for task_id in ids:
                if task_id not in held:
                    log.info("task %s: no longer held by this worker (cancelled or taken over)", task_id)
                    self.cancel_local(task_id)

    async def _poll(self) -> None:
        while True:
            try:
                if self.free > 0 and self.services:
                    rows = await self.store.claim(self.owner, list(self.services), self.cfg.lease, self.free)
                    for row in rows:
                        self.launch(row)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("tasks: poll failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval)
            except TimeoutError:
                pass


def now() -> float:
    return time.time()
