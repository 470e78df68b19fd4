"""The telemetry sidecar: one process per ``plano up`` that analyses, encodes and exports spans.

Workers ship ended spans here (:mod:`gateway.telemetry.shipping`); this process
attaches conversation signals to model-proxy spans, encodes every span to OTLP and
exports them in batches with the same exporter a worker would use in-process
(:mod:`gateway.telemetry.exporter`), then tells each worker which quality buckets
its spans fell in. A worker's event loop never encodes, exports or analyses.

:class:`Sidecar` is the runner's handle: it creates one channel per worker slot,
starts the process (``python -m gateway.telemetry.sidecar``) before the workers,
restarts it if it dies, and stops it after the workers have drained. The process
exits by itself when its parent is gone.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger("plano.tracing")

SETTINGS_ENV = "PLANO_SIDECAR_SETTINGS"
SECRETS = "secrets"  # control message from the runner: literal secrets to scrub
FDS_ENV = "PLANO_SIDECAR_FDS"
STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------- the runner's handle


class Sidecar:
    """Channels for ``workers`` slots and the process at their other ends."""

    def __init__(self, settings, workers: int, *, disable_signals: bool = False) -> None:
        from gateway.telemetry.shipping import channel_pair

        pairs = [channel_pair() for _ in range(max(1, workers))]
        self.worker_ends = [w for w, _ in pairs]
        self.sidecar_ends = [s for _, s in pairs]
        self._payload = json.dumps({
            "sampling_percent": settings.sampling_percent,
            "protocol": settings.protocol,
            "endpoint": settings.endpoint,
            "header_prefixes": [p.decode("latin-1") for p in settings.header_prefixes],
            "static": settings.static,
            "capture_content": settings.capture_content,
            "service_base": settings.service_base,
            "signals": not disable_signals,
        }, default=str)
        self.proc: subprocess.Popen | None = None
        self._stopping = False
        self._restarts: list[float] = []
        self._watch: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        fds = [s.fileno() for s in self.sidecar_ends]
        env = dict(os.environ, **{SETTINGS_ENV: self._payload, FDS_ENV: ",".join(map(str, fds))})
        # Its own session: a Ctrl-C on the terminal stops the workers, and the runner then stops this.
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.telemetry.sidecar"], pass_fds=fds, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._send_secrets()

    def _send_secrets(self) -> None:
        """The config's literal secrets, so the sidecar scrubs them too: over the private channel, never
        in the environment or the command line (those are visible to other tools)."""
        from gateway.telemetry.redact import registered_secrets

        secrets = list(registered_secrets())
        if secrets:
            try:
                self.worker_ends[0].send(marshal.dumps((SECRETS, secrets)))
            except OSError:  # pragma: no cover - a fresh socket has room; without it, patterns still apply
                log.warning("telemetry sidecar: could not pass the config's secrets; pattern scrubbing only")

    def worker_channel(self, slot: int) -> socket.socket:
        return self.worker_ends[slot % len(self.worker_ends)]

    def watch(self) -> None:
        """Restart the process if it dies (one worker: a thread waits on it; else the supervisor's wait does)."""
        self._watch = threading.Thread(target=self._watch_loop, name="plano-sidecar-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        while not self._stopping and self.proc is not None:
            code = self.proc.wait()
            if self._stopping:
                return
            if not self.died(code):
                return

    def died(self, code: int) -> bool:
        """The process exited (reaped by the caller or by :meth:`watch`): restart it unless it keeps dying."""
        if self._stopping:
            return False
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        if len(self._restarts) > 5:
            log.error("telemetry sidecar keeps exiting (last code %s); spans are dropped from now on", code)
            self.proc = None
            return False
        log.warning("telemetry sidecar exited with %s; restarting it", code)
        time.sleep(0.2)
        self.start()
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """After the workers exited: let the process export what it holds, then end it (bounded)."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(1.0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for sock in self.worker_ends + self.sidecar_ends:
            sock.close()


# --------------------------------------------------------------------------- the process


class ShippedSpan:
    """A span as a worker shipped it: what :func:`gateway.telemetry.otlp.span` encodes."""

    __slots__ = ("attrs", "blocks", "component", "end_ns", "events", "facts", "kind", "messages", "name",
                 "parent_id", "remote_parent", "span_id", "start_ns", "status_code", "status_message", "trace_id",
                 "trace_state")

    def __init__(self, fields: tuple) -> None:
        (self.trace_id, self.span_id, self.parent_id, self.trace_state, self.name, self.kind, self.component,
         self.start_ns, self.end_ns, self.status_code, self.status_message, self.remote_parent, self.attrs,
         self.blocks, self.events, self.messages, self.facts) = fields

    def update(self, attributes: dict) -> None:
        self.attrs.update(attributes)

    def event(self, name: str, attributes: dict | None = None, timestamp_ns: int | None = None) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, timestamp_ns or self.end_ns, attributes))

    def rename(self, name: str) -> None:
        self.name = name


class _Resources(dict):
    """Resource bytes per (worker pid, component), built on first use: ``process.pid`` names the worker."""

    def __init__(self, service_base: str, version: str, environ) -> None:
        super().__init__()
        self.service_base = service_base
        self.version = version
        self.environ = environ

    def __missing__(self, key):
        from gateway.telemetry import otlp
        from gateway.telemetry.tracing import resource_attributes

        pid, component = key
        attrs = resource_attributes(self.service_base, self.version, self.environ)
        attrs["process.pid"] = pid
        attrs["service.name"] = f"{self.service_base}({component})"
        value = self[key] = otlp.resource(attrs)
        return value


def _settings(payload: dict):
    from gateway.telemetry.tracing import TracingSettings

    return TracingSettings(
        enabled=True,
        sampling_percent=float(payload.get("sampling_percent", 100.0)),
        protocol=payload.get("protocol", "grpc"),
        endpoint=payload["endpoint"],
        header_prefixes=tuple(p.encode("latin-1") for p in payload.get("header_prefixes", ())),
        static=dict(payload.get("static") or {}),
        capture_content=bool(payload.get("capture_content")),
        service_base=payload.get("service_base", "plano"),
    )


class Processor:
    """Turns shipped frames into exported spans (signals first, where a span carries its conversation)."""

    def __init__(self, exporter, *, signals: bool, capture_content: bool) -> None:
        self.exporter = exporter
        self.signals = signals
        self.capture_content = capture_content

    def frame(self, data: bytes) -> dict | None:
        """Process one frame; returns the quality buckets counted for it (None for a control message)."""
        from gateway.telemetry.shipping import FORMAT
        from gateway.telemetry.signals import attach

        quality: dict = {}
        try:
            message = marshal.loads(data)
            if type(message) is tuple and len(message) == 2 and message[0] == SECRETS:
                self.secrets(message[1])
                return None
            version, pid, records = message
        except (ValueError, EOFError, TypeError):
            log.warning("telemetry sidecar: unreadable frame dropped")
            return quality
        if version != FORMAT:
            log.warning("telemetry sidecar: frame format %r not understood; dropped", version)
            return quality
        for record in records:
            try:
                span = ShippedSpan(record)
            except (TypeError, ValueError):
                continue
            span.component = (pid, span.component)
            if span.messages is not None and self.signals:
                try:
                    bucket = attach(span, span.messages, capture_content=self.capture_content)
                    quality[bucket] = quality.get(bucket, 0) + 1
                except Exception:
                    log.debug("signals failed", exc_info=True)
            span.messages = None
            self.exporter.add(span)
        return quality

    @staticmethod
    def secrets(values) -> None:
        """The config's literal secrets (from the runner): scrubbed from what this process writes."""
        from gateway.telemetry.redact import register_secret

        for value in values if isinstance(values, list) else ():
            register_secret(value)


NICE = 10  # background work: the workers, which answer requests, win any contest for a core


def main() -> int:
    from gateway.logs import setup_logging

    setup_logging()
    try:
        os.nice(NICE)
    except OSError:  # pragma: no cover - not permitted here: run at the normal priority
        pass
    payload = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    fds = [int(x) for x in (os.environ.get(FDS_ENV) or "").split(",") if x]
    if not fds or "endpoint" not in payload:
        print("plano telemetry sidecar: started without channels or settings", file=sys.stderr)
        return 2
    from gateway import __version__
    from gateway.telemetry.tracing import Tracing

    settings = _settings(payload)
    from gateway.server.runner import tune_gc

    tracing = Tracing(settings)
    exporter = tracing.exporter
    exporter.resources = _Resources(settings.service_base, __version__, os.environ)
    processor = Processor(exporter, signals=bool(payload.get("signals", True)),
                          capture_content=settings.capture_content)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the runner decides
    selector = selectors.DefaultSelector()
    socks = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    parent = os.getppid()
    tune_gc()  # every span is a burst of short-lived dicts and tuples, like a proxied request

    def drain(sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(1 << 21)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            counts = processor.frame(data)
            if counts is None:  # a control message: nothing to answer
                continue
            try:
                sock.send(marshal.dumps(("quality", counts)))
            except OSError:  # the worker is gone or not reading: its metrics miss these counts
                pass

    while not stop.is_set():
        for key, _ in selector.select(timeout=1.0):
            drain(key.fileobj)
        if os.getppid() != parent:  # the runner died without stopping us
            break
    for sock in socks:  # what the workers sent before they exited
        drain(sock)
    tracing.shutdown(3.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
