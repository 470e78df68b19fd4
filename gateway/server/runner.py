"""Run the gateway: bind every listener's socket, start worker processes, drain on exit.

Sockets are bound once in the parent, so a port conflict fails fast with a clear
message, and then inherited by ``workers`` forked processes that each run a
uvicorn server (uvloop + httptools) over all of them; the kernel spreads
connections across the workers. Per-process state (outbound pools, caches) lives
in each worker; state that must be shared across workers goes to the backends
(Redis/PostgreSQL) of later features, never to process memory.

The supervising process also serves ``/metrics`` on the admin port (one thread,
:mod:`gateway.telemetry.admin`); with several workers their metrics meet in a
prometheus multiprocess directory created fresh for the run and removed at exit.

SIGINT/SIGTERM: each worker stops accepting, lets in-flight requests finish for
at most ``drain_timeout`` seconds, then exits; the parent exits 0 once all did.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

log = logging.getLogger("plano.server")


class BindError(Exception):
    pass


def bind_listener(name: str, address: str, port: int, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"listener '{name}' cannot bind {address}:{port}: {exc.strerror or exc}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def served_listeners(config) -> list:
    return [listener for listener in config.listeners if listener.type in ("model", "agent")]


def serve(config, *, workers: int = 1, drain_timeout: float = 30.0) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    listeners = served_listeners(config)
    if not listeners:
        log.error("the config declares no model or agent listener to serve")
        return 1
    try:
        sockets = [bind_listener(l.name, l.address or "0.0.0.0", l.port) for l in listeners]
    except BindError as exc:
        print(f"plano: {exc}", file=sys.stderr)
        return 1
    for listener in listeners:
        log.info("listener '%s' (%s) on %s:%s", listener.name, listener.type, listener.address or "0.0.0.0", listener.port)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload asked for during start-up is not a hangup
    from gateway.telemetry.redact import register_config_secrets

    register_config_secrets(config)  # log lines scrub the config's keys from here on
    metrics_dir = _metrics_setup(workers)
    admin = _start_admin(config)
    sidecar = _start_sidecar(config, workers)
    try:
        if workers <= 1:
            if sidecar is not None:
                from gateway.telemetry import shipping

                shipping.set_channel(sidecar.worker_channel(0))
                sidecar.watch()
            return _run_worker(config, sockets, drain_timeout, report_reloads=True)
        return _supervise(config, sockets, workers, drain_timeout, admin, sidecar)
    finally:
        if sidecar is not None:
            sidecar.stop()  # after the workers: it exports what they shipped last
        if admin is not None:
            admin.stop()
        if metrics_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_setup(workers: int) -> str | None:
    """Several workers: a fresh prometheus multiprocess directory for this run, set BEFORE forking.

    One worker keeps the in-memory registry. The metrics are created here, in the
    supervising process, so the build info exists before any worker starts.
    """
    directory = None
    if workers > 1:
        import tempfile

        directory = tempfile.mkdtemp(prefix="plano-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from gateway.telemetry.metrics import get_metrics

    get_metrics()
    return directory


def _start_sidecar(config, workers: int):
    """With tracing on, the telemetry sidecar process that encodes, exports and analyses spans
    (:mod:`gateway.telemetry.sidecar`); started before any worker so no span waits for it."""
    from gateway.telemetry.tracing import TracingSettings

    settings = TracingSettings.from_config(config)
    if not settings.enabled or os.environ.get("PLANO_TELEMETRY_SIDECAR", "").lower() in ("0", "off", "false", "no"):
        return None
    from gateway.telemetry.sidecar import Sidecar

    overrides = getattr(config, "overrides", None)
    sidecar = Sidecar(settings, workers, disable_signals=bool(getattr(overrides, "disable_signals", False)))
    try:
        sidecar.start()
    except OSError as exc:
        log.warning("telemetry sidecar could not start (%s); workers export spans themselves", exc)
        sidecar.stop()
        return None
    return sidecar


def _start_admin(config):
    """``/metrics`` and ``/healthz`` on the admin address (default 127.0.0.1:9092), served by this process."""
    from gateway.telemetry.admin import AdminServer, admin_endpoint

    address, port = admin_endpoint(config)
    if port == 0:
        return None
    server = AdminServer(address, port)
    if not server.start():
        return None
    from gateway.server.reload import request_and_wait
    from gateway.telemetry.admin import set_reload_hook

    set_reload_hook(request_and_wait)  # POST /admin/reload answers with the reload's outcome
    return server


# Young-generation size for the cyclic GC (CPython's default is 700 allocations).
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running proxy worker (and the telemetry sidecar).

    A proxied request allocates a few hundred short-lived containers (ASGI messages,
    header lists, aiohttp request objects), so with CPython's default threshold the
    young generation is collected every couple of requests, each time walking the
    requests still in flight; in a wrk run at c=32 that cost ~12% of the worker's CPU.
    Everything built at start-up (config, routing tables, clients) is moved out of
    the collector's sight with :func:`gc.freeze`, and collections run ~14x less
    often. Reference counting still frees almost everything at once; only cyclic
    garbage waits a little longer.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run_worker(config, sockets, drain_timeout: float, *, report_reloads: bool = False, on_ready=None) -> int:
    import uvicorn

    from gateway.server.app import GatewayApp
    from gateway.server.protocol import protocol_for

    listeners = served_listeners(config)
    # httptools plus per-listener read timeout (408), keep-alive idle limit and connection cap;
    # raises here, at start-up, if this uvicorn lacks a hook it relies on.
    http_protocol = protocol_for(listeners)
    app = GatewayApp(config, drain_timeout=drain_timeout, report_reloads=report_reloads, on_ready=on_ready)
    tune_gc()
    # TLS listeners: their sockets are served with their own SSLContext (uvicorn has one per server).
    tls = [(sock, l.tls.server_context(), l.read_timeout) for l, sock in zip(listeners, sockets)
           if getattr(l, "tls", None) is not None]
    plain = [sock for l, sock in zip(listeners, sockets) if getattr(l, "tls", None) is None]
    server = (_tls_server_class() if tls else uvicorn.Server)(
        uvicorn.Config(
            app,
            loop="uvloop" if _has_uvloop() else "asyncio",
            http=http_protocol,
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_keep_alive=min(l.keepalive_timeout for l in listeners),  # each connection uses its listener's
            timeout_graceful_shutdown=drain_timeout,
            backlog=2048,
            server_header=False,
            proxy_headers=False,  # plano is the edge; no per-request X-Forwarded-* rewriting
            date_header=True,
        )
    )
    # uvicorn re-raises the signal it caught once it has drained; a no-op handler
    # turns that into a clean exit 0 instead of death by signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    if tls:
        server.tls_sockets = tls
        server.run(sockets=plain)
    else:
        server.run(sockets=sockets)
    return 0 if server.started else 1


def _tls_server_class():
    import asyncio

    import uvicorn

    class TLSServer(uvicorn.Server):
        """uvicorn's server plus listeners served over TLS, each socket with its listener's context.

        uvicorn applies one ``ssl`` to every socket it serves; plano's listeners choose TLS one by one,
        so the plain sockets go through uvicorn's own start-up and the TLS ones are added here, with the
        same protocol (limits, drain) and a handshake bounded by the listener's ``read_timeout``."""

        tls_sockets: list = []

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit:
                return
            config = self.config
            loop = asyncio.get_running_loop()

            def create_protocol(_loop=None):
                return config.http_protocol_class(config=config, server_state=self.server_state,
                                                  app_state=self.lifespan.state, _loop=_loop)

            for sock, context, handshake_timeout in self.tls_sockets:
                # A closing connection waits at most 2 s for the client's close_notify (asyncio's default
                # is 30 s: a pooled client that never answers would stall every drain by that much).
                server = await loop.create_server(create_protocol, sock=sock, ssl=context, backlog=config.backlog,
                                                  ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=2.0)
                self.servers.append(server)

    return TLSServer


def _supervise(config, sockets, workers: int, drain_timeout: float, admin=None, sidecar=None) -> int:
    """Fork ``workers`` children, restart any that dies, forward shutdown signals; SIGHUP reloads
    (:mod:`gateway.server.reload`): the same sockets → every worker swaps its runtime; other
    sockets → a new generation of workers takes over and the old one drains."""
    from gateway.telemetry.metrics import mark_process_dead

    children: dict[int, int] = {}
    retiring: set[int] = set()
    stopping = False
    current = {"config": config, "sockets": sockets, "generation": 0}
    bound = {(l.address or "0.0.0.0", l.port): sock for l, sock in zip(served_listeners(config), sockets)}

    def spawn(slot: int, ready_fd: int | None = None) -> int:
        cfg, socks = current["config"], current["sockets"]
        pid = os.fork()
        if pid == 0:  # child
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop takes it (app lifespan)
            if admin is not None:
                admin.close_in_child()
            if sidecar is not None:
                from gateway.telemetry import shipping

                shipping.set_channel(sidecar.worker_channel(slot))
            on_ready = None
            if ready_fd is not None:
                def on_ready() -> None:
                    try:
                        os.write(ready_fd, b"1")
                        os.close(ready_fd)
                    except OSError:
                        pass
            code = 1
            try:
                code = _run_worker(cfg, socks, drain_timeout, on_ready=on_ready)
            finally:
                os._exit(code)
        children[pid] = slot
        return pid

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload(signum, _frame) -> None:
        if not stopping:
            _supervisor_reload(current, bound, children, retiring, spawn, workers)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    for slot in range(workers):
        spawn(slot)
    restarts: list[float] = []
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is None:
            if sidecar is not None and pid == sidecar.pid:
                sidecar.died(os.waitstatus_to_exitcode(status))
            continue
        mark_process_dead(pid)  # its in-flight gauge no longer counts; its counters do
        code = os.waitstatus_to_exitcode(status)
        if pid in retiring:  # an old generation's worker, done draining
            retiring.discard(pid)
            continue
        if stopping:
            if code != 0:
                exit_code = 1
            continue
        log.error("worker %s (pid %s) exited with %s; restarting", slot, pid, code)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 5 * workers:
            log.error("workers keep dying; giving up")
            stop(signal.SIGTERM, None)
            exit_code = 1
            continue
        spawn(slot)
    return exit_code


def _supervisor_reload(current: dict, bound: dict, children: dict, retiring: set, spawn, workers: int) -> None:
    """SIGHUP in the supervisor: validate, then swap runtimes in place or roll a new generation."""
    from gateway.config import ConfigError, load_config
    from gateway.server.reload import write_status
    from gateway.server.runtime import listener_sockets

    old = current["config"]
    path = getattr(old, "_source", None)
    try:
        new = load_config(path)
    except ConfigError as err:
        log.error("reload of %s failed; still serving the previous config:\n%s", path, err)
        write_status(False, f"reload failed; still serving the previous config:\n{err}", current["generation"])
        return
    except OSError as exc:
        log.error("reload: cannot read %s (%s); still serving the previous config", path, exc)
        write_status(False, f"reload failed: cannot read {path}: {exc}", current["generation"])
        return
    generation = current["generation"] + 1
    if listener_sockets(new) == listener_sockets(old):
        current["config"], current["generation"] = new, generation  # workers restarted later read it too
        for pid in list(children):
            if pid not in retiring:
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
        write_status(True, f"reloaded {path}: config generation {generation} sent to {workers} worker(s)", generation)
        log.info("reload: config generation %d sent to the workers", generation)
        return
    # New listener sockets: bind what is new, start a new generation, then retire the old one.
    listeners = served_listeners(new)
    try:
        socks = [bound.get((l.address or "0.0.0.0", l.port)) or bind_listener(l.name, l.address or "0.0.0.0", l.port)
                 for l in listeners]
    except BindError as exc:
        log.error("reload failed (%s); still serving the previous config", exc)
        write_status(False, f"reload failed: {exc}; still serving the previous config", current["generation"])
        return
    old_pids = [pid for pid in children if pid not in retiring]
    current["config"], current["sockets"], current["generation"] = new, socks, generation
    pipes = []
    for slot in range(workers):
        read_fd, write_fd = os.pipe()
        spawn(slot, write_fd)
        os.close(write_fd)
        pipes.append(read_fd)
    ready = _wait_ready(pipes, timeout=60.0)
    retiring.update(old_pids)
    for pid in old_pids:
        try:
            os.kill(pid, signal.SIGTERM)  # drains like a shutdown
        except ProcessLookupError:
            pass
    keep = {(l.address or "0.0.0.0", l.port) for l in listeners}
    for key, sock in list(bound.items()):
        if key not in keep:
            sock.close()  # the old generation holds its own copy while it drains
            del bound[key]
    for listener, sock in zip(listeners, socks):
        bound[(listener.address or "0.0.0.0", listener.port)] = sock
    note = "" if ready == workers else f" ({workers - ready} worker(s) not ready in time)"
    write_status(True, f"reloaded {path}: listener sockets changed; worker generation {generation} serving{note}",
                 generation)
    log.info("reload: worker generation %d serving; the previous one drains%s", generation, note)


def _wait_ready(fds: list[int], timeout: float) -> int:
    """How many of the new workers said they serve (one byte each) within ``timeout``."""
    import select

    ready, pending = 0, list(fds)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            readable, _, _ = select.select(pending, [], [], left)
        except InterruptedError:
            continue
        for fd in readable:
            if os.read(fd, 1):
                ready += 1
            pending.remove(fd)
            os.close(fd)
    for fd in pending:
        os.close(fd)
    return ready


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
