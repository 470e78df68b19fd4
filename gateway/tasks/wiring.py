"""Mounts ``/v1/tasks`` on agent listeners: one :class:`~gateway.tasks.runtime.TaskRuntime` per worker process.

The runtime is process-wide (like the outbound client): every agent listener built in the
process — including the new ones a config reload builds — registers its task service on it,
replacing the previous generation's by listener name. It starts in the worker's event loop:
:func:`start` / :func:`stop` from the server's lifespan when wired there, and in any case on
the first request any agent listener receives (``plano up`` and health probes poll
``/healthz`` at start-up, so a restarted gateway resumes its tasks right away).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.orchestration.invoke import AgentInvoker
from gateway.tasks.api import TaskService
from gateway.tasks.config import TasksConfig
from gateway.tasks.planner import Planner
from gateway.tasks.runtime import TaskRuntime

log = logging.getLogger("plano.tasks")

_runtime: TaskRuntime | None = None
_starting: asyncio.Future | None = None


def mount(listener_app, config, upstream, telemetry) -> TaskService | None:
    """The task service of one agent listener (None when ``tasks.enabled`` is false)."""
    global _runtime
    cfg = getattr(config, "tasks", None) or TasksConfig()
    if not cfg.enabled:
        return None
    if _runtime is None:
        _runtime = TaskRuntime(cfg, upstream, telemetry)
    elif _runtime.cfg != cfg:
        log.warning("tasks: the 'tasks' section changed; it applies after a restart")
    rt = _runtime
    planner = Planner(listener_app.selector, mode=rt.cfg.planner)
    invoker = AgentInvoker(listener_app.name, upstream, listener_app.endpoints)
    service = TaskService(rt, listener_app, planner, invoker, telemetry)
    rt.service(listener_app.name, service)
    return service


async def start() -> None:
    """Start the process's task runtime (idempotent; concurrent callers wait for the one start)."""
    global _starting
    rt = _runtime
    if rt is None or rt.started:
        return
    if _starting is None:
        _starting = asyncio.ensure_future(rt.start())
    try:
        await asyncio.shield(_starting)
    except Exception:
        _starting = None
        raise


async def stop() -> None:
    global _runtime, _starting
    rt, _runtime, _starting = _runtime, None, None
    if rt is not None and rt.started:
        await rt.stop()


def runtime() -> TaskRuntime | None:
    return _runtime
