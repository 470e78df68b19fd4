"""The ASGI application of one worker process.

One app serves every listener: uvicorn hands us the socket a connection arrived
on (``scope["server"]``), and we dispatch to that listener's app by port. Shared
per-process resources (the outbound client) are created in the lifespan startup,
after the worker has its event loop, and closed on shutdown. What is built from
the config lives in a :class:`~gateway.server.runtime.Runtime`, replaced whole by
:meth:`GatewayApp.reload` (SIGHUP) while requests in flight finish on their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

from gateway.listeners.errors import GatewayError
from gateway.listeners.http import send_error
from gateway.server.runtime import Runtime, listener_sockets
from gateway.state.redis import SharedRedis
from gateway.telemetry import Telemetry
from gateway.upstream import Upstream

log = logging.getLogger("plano.server")


class GatewayApp:
    """One worker's ASGI app: process-wide resources plus the current :class:`Runtime`."""

    def __init__(self, config, *, drain_timeout: float = 30.0, report_reloads: bool = False,
                 on_ready=None) -> None:
        self.config = config
        self.drain_timeout = drain_timeout
        #: Write each reload's outcome for ``plano reload`` (the single in-process worker; under a
        #: supervisor, the supervisor reports).
        self.report_reloads = report_reloads
        #: Called once the lifespan startup is done (a new worker generation tells its supervisor).
        self.on_ready = on_ready
        overrides = getattr(config, "overrides", None)
        ca_path = getattr(overrides, "upstream_tls_ca_path", None) if overrides else None
        # Process-wide, kept across reloads: telemetry, the outbound connection pool, Redis.
        self.telemetry = Telemetry(config)  # per worker: built after the fork
        self.upstream = Upstream(ca_path=_existing(ca_path), metrics=self.telemetry.metrics)
        self.redis = SharedRedis.from_config(config)  # None: limits live in this process
        self.runtime = Runtime(config, upstream=self.upstream, telemetry=self.telemetry, redis=self.redis)
        self._reloading: asyncio.Lock | None = None
        self._retiring: set[asyncio.Task] = set()

    # The current runtime's parts, for callers that predate reload (tests, benches).
    @property
    def pools(self):
        return self.runtime.pools

    @property
    def limits(self):
        return self.runtime.limits

    @property
    def filters(self):
        return self.runtime.filters

    @property
    def caller(self):
        return self.runtime.caller

    @property
    def by_port(self) -> dict:
        return self.runtime.by_port

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            rt = self.runtime  # this request's snapshot, kept to its end even if a reload swaps it
            app = rt.single
            if app is None:
                port = scope["server"][1]
                app = rt.by_port.get(port)
                if app is None:
                    await send_error(send, GatewayError(404, "No listener on this port", code="not_found"))
                    return
                if port in rt.gates and scope["path"] != "/healthz":
                    rt.active += 1
                    try:
                        await _gated(rt, port, app, scope, receive, send)
                    finally:
                        rt.active -= 1
                        if rt.retired:
                            rt.leave()
                    return
            rt.active += 1
            try:
                await _serve(app, scope, receive, send)
            finally:
                rt.active -= 1
                if rt.retired:
                    rt.leave()
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def reload(self, config) -> int:
        """Serve ``config`` from now on: build and start a new runtime, swap it in, retire the old one
        once its requests are done. Returns the new generation; raises (leaving the old runtime
        serving) if the new one cannot be built. Listener sockets are not rebound here: a config
        whose listener addresses or ports differ is the supervisor's (a new worker generation)."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            old = self.runtime
            if listener_sockets(config) != listener_sockets(old.config):
                raise ReloadError("listener names, addresses or ports changed: this worker cannot rebind its "
                                  "sockets; the supervisor starts a new worker generation for that "
                                  "(plano up --workers 2 or more), or restart plano")
            new = Runtime(config, upstream=self.upstream, telemetry=self.telemetry, redis=self.redis,
                          generation=old.generation + 1)
            try:
                await new.start(self.upstream.transport)
            except BaseException:
                await new.aclose()
                raise
            self.runtime = new
            self.config = config
            task = asyncio.get_running_loop().create_task(old.retire(self.drain_timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info("reloaded %s: config generation %d serving", getattr(config, "_source", "the config"),
                     new.generation)
            return new.generation

    async def reload_from(self, path: str) -> int:
        """Read, validate and apply ``path`` (the worker's SIGHUP); errors leave the old config serving."""
        from gateway.config import load_config

        config = await asyncio.to_thread(load_config, path)
        return await self.reload(config)

    def _on_sighup(self) -> None:
        path = getattr(self.config, "_source", None)
        if not path or not os.path.exists(path):
            log.error("reload: the config file %r is not readable; still serving the old config", path)
            return

        async def run() -> None:
            from gateway.server.reload import write_status

            try:
                generation = await self.reload_from(path)
            except Exception as exc:  # ConfigError's text lists every problem with its line
                log.error("reload of %s failed; still serving config generation %d:\n%s", path,
                          self.runtime.generation, exc)
                if self.report_reloads:
                    write_status(False, f"reload failed; still serving the previous config:\n{exc}",
                                 self.runtime.generation)
                return
            if self.report_reloads:
                write_status(True, f"reloaded {path}: config generation {generation} serving", generation)

        task = asyncio.get_running_loop().create_task(run())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.upstream.start()
                    await self.runtime.start(self.upstream.transport)
                except Exception as exc:  # pragma: no cover - reported to uvicorn
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await _tasks("start")  # a restarted worker resumes its tasks before the first request
                _watch_sighup(self._on_sighup)
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                for task in list(self._retiring):
                    task.cancel()
                await _tasks("stop")  # hands running tasks back (leases released) for another worker
                await self.runtime.aclose()
                if self.redis is not None:
                    await self.redis.aclose()
                await self.upstream.close()
                await self.telemetry.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _tasks(action: str) -> None:
    """Start or stop the worker's async-task runtime, when an agent listener mounted one."""
    import sys

    wiring = sys.modules.get("gateway.tasks.wiring")
    if wiring is None or wiring.runtime() is None:
        return
    try:
        await getattr(wiring, action)()
    except Exception:  # the task store is unreachable: /v1/tasks answers 503, the rest keeps working
        log.exception("the task runtime could not %s", action)


class ReloadError(Exception):
    """A reload this worker cannot apply (the old config keeps serving)."""


def _watch_sighup(handler) -> None:
    """SIGHUP re-reads the config (main thread only: under tests the app may run elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - non-Unix loops
        pass


async def _gated(rt, port: int, app, scope, receive, send) -> None:
    """A listener with ``max_concurrency``: one request more than the limit is answered 503 at
    once (with ``Retry-After``) instead of queueing behind the slow ones."""
    limit = rt.gates[port]
    if rt.in_flight[port] >= limit:
        await send_error(send, GatewayError(
            503, f"The listener is at its limit of {limit} requests in flight; retry shortly.",
            code="listener_overloaded", headers=((b"retry-after", b"1"),)))
        return
    rt.in_flight[port] += 1
    try:
        await _serve(app, scope, receive, send)
    finally:
        rt.in_flight[port] -= 1


async def _serve(app, scope, receive, send) -> None:
    try:
        await app(scope, receive, send)
    except Exception:  # a bug: log it, and answer in the client's shape if nothing was sent yet
        log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
        try:
            await send_error(send, GatewayError(500, "Internal gateway error; see the gateway log.",
                                                code="internal_error"))
        except Exception:
            pass


def _existing(path: str | None) -> str | None:
    import os

    return path if path and os.path.exists(path) else None
