"""Worker side of the telemetry sidecar: ship ended spans to it, take back what it learned.

Why a second process: with tracing at 100% a model-proxy request spent about a third of
its CPU on telemetry, and a worker's event loop is the gateway's bottleneck. Encoding
spans to OTLP, exporting them over gRPC/HTTP and analysing conversation signals need
nothing from the request once it is answered, so they run in one sidecar process per
``plano up`` (:mod:`gateway.telemetry.sidecar`), on another core, for all workers.

What stays here: the spans themselves (ids, parent/child, attributes set while the
request runs). An ended span becomes a plain tuple (:data:`FIELDS`), spans are
collected per event-loop batch and sent as one ``marshal`` frame over a
``SOCK_SEQPACKET`` Unix socket: a few microseconds per span, one non-blocking
syscall per batch. Model-proxy spans carry the request's messages; the sidecar
analyses them, attaches the signals and sends back the quality buckets it counted,
which this worker adds to ``plano_signals_quality_total``.

The socket never blocks a request: a frame the socket cannot take (sidecar gone or
far behind) is dropped and counted, with one warning a minute, like a full export queue.
"""

from __future__ import annotations

import logging
import marshal
import operator
import os
import socket
import threading
import time

from gateway.telemetry.genai import expand_facts

log = logging.getLogger("plano.tracing")

#: Order of a shipped span's fields (the sidecar rebuilds spans from them).
FIELDS = ("trace_id", "span_id", "parent_id", "trace_state", "name", "kind", "component", "start_ns", "end_ns",
          "status_code", "status_message", "remote_parent", "attrs", "blocks", "events", "messages", "facts")
FORMAT = 2  # frame format version: (FORMAT, worker pid, [span tuples])
MAX_FRAME = 1 << 20
WARN_EVERY = 60.0

#: The worker's end of its sidecar channel; set by the runner in each worker before the app is built.
_channel: socket.socket | None = None


def set_channel(sock: socket.socket | None) -> None:
    global _channel
    _channel = sock


def channel() -> socket.socket | None:
    return _channel


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(worker end, sidecar end): non-blocking on the worker's side, inheritable on the sidecar's."""
    worker, sidecar = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (worker, sidecar):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_FRAME)
        except OSError:  # pragma: no cover - capped by the kernel for unprivileged users; still works
            pass
    worker.setblocking(False)
    sidecar.set_inheritable(True)
    return worker, sidecar


#: An ended span as the tuple of its :data:`FIELDS` (one C call).
_record = operator.attrgetter(*FIELDS)


def _settle(fields: list) -> None:
    """Turn a record's LLM facts into attributes here (rare paths: odd values, a span too large to ship)."""
    if fields[16] is not None:
        attrs = dict(fields[12] or {})
        try:
            expand_facts(fields[16], attrs)
        except Exception:  # noqa: BLE001 - facts we cannot read are left out, the span still ships
            log.debug("tracing: unreadable LLM facts dropped", exc_info=True)
        fields[12] = attrs
        fields[16] = None


def _plain(record: tuple) -> tuple:
    """The record with values marshal cannot write turned into strings (attributes from odd config values)."""
    fields = list(record)
    _settle(fields)
    attrs = fields[12]
    fields[12] = {str(k): v if isinstance(v, (str, int, float, bool, tuple, list, type(None))) else str(v)
                  for k, v in (attrs or {}).items()}
    if fields[14]:
        fields[14] = [(n, t, {str(k): v if isinstance(v, (str, int, float, bool)) else str(v)
                              for k, v in (a or {}).items()}) for n, t, a in fields[14]]
    fields[15] = None
    try:
        marshal.dumps(fields)
    except ValueError:
        fields[12] = {k: str(v) for k, v in fields[12].items()}
    return tuple(fields)


class SpanShipper:
    """Stands in for the in-process exporter: same ``ended`` / ``force_flush`` / ``shutdown`` surface."""

    def __init__(self, sock: socket.socket, on_quality=None) -> None:
        self.sock = sock
        self.on_quality = on_quality  # called with {bucket: count} from the sidecar
        self.deferred = None  # a batching.Deferred once the worker's event loop runs
        self.pid = os.getpid()
        self.exported = 0  # spans handed to the sidecar
        self.dropped = 0
        self._batch: list = []
        self.scheduled = None  # the loop batch this shipper's flush is queued in
        self._lock = threading.Lock()
        self._reader_loop = None
        self._last_warning = 0.0
        self._frames = 0  # frames sent; the sidecar answers each one
        self._answers = 0
        try:
            self.max_frame = max(16384, min(MAX_FRAME, sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2))
        except OSError:  # pragma: no cover
            self.max_frame = 65536

    # -- request path -------------------------------------------------------------------

    def ended(self, span) -> None:
        """A span ended: ship it with the loop's next batch (on the loop thread), else now."""
        self._batch.append(_record(span))
        d = self.deferred
        if d is not None and threading.get_ident() == d.thread_id:
            d.schedule(self)
            if self._reader_loop is None:
                self._watch_feedback(d.loop)
        else:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
        if batch:
            self._send(batch)

    def _send(self, batch: list) -> None:
        try:
            frame = marshal.dumps((FORMAT, self.pid, batch))
        except ValueError:  # a value marshal cannot write: clean the records (rare; config-supplied attributes)
            batch = [_plain(r) for r in batch]
            frame = marshal.dumps((FORMAT, self.pid, batch))
        if len(frame) > self.max_frame:
            if len(batch) > 1:
                half = len(batch) // 2
                self._send(batch[:half])
                self._send(batch[half:])
                return
            record = list(batch[0])  # one span too large to ship whole: its conversation stays behind
            if record[15] is None and record[16] is None:
                self._drop(1, "span larger than a frame")
                return
            record[15] = None
            _settle(record)
            self._send([tuple(record)])
            return
        try:
            self.sock.send(frame)
        except BlockingIOError:
            self._drop(len(batch), "the telemetry sidecar is not keeping up")
            return
        except OSError as exc:
            self._drop(len(batch), f"telemetry sidecar unreachable ({exc.strerror or exc})")
            return
        self._frames += 1
        self.exported += len(batch)

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            log.warning("tracing: dropped %d spans so far: %s. Requests are not affected.", self.dropped, why)

    # -- feedback -----------------------------------------------------------------------

    def _watch_feedback(self, loop) -> None:
        self._reader_loop = loop
        try:
            loop.add_reader(self.sock.fileno(), self.read_feedback)
        except (RuntimeError, NotImplementedError, ValueError, OSError):  # closed loop or fd
            pass

    def read_feedback(self) -> None:
        """Quality buckets the sidecar counted for this worker's spans (one answer per frame)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._stop_watching()
                return
            if not data:
                self._stop_watching()
                return
            self._answer(data)

    def _answer(self, data: bytes) -> None:
        try:
            kind, payload = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return
        if kind == "quality":
            self._answers += 1
            if payload and self.on_quality is not None and isinstance(payload, dict):
                self.on_quality(payload)

    def _stop_watching(self) -> None:
        loop, self._reader_loop = self._reader_loop, False
        if loop:
            try:
                loop.remove_reader(self.sock.fileno())
            except (RuntimeError, ValueError, OSError):
                pass

    # -- lifecycle ----------------------------------------------------------------------

    def force_flush(self, timeout: float = 5.0) -> bool:
        self.flush()
        return True

    def shutdown(self, timeout: float = 3.0) -> None:
        """Send what is batched, then collect the answers still due (briefly; the sidecar may be gone)."""
        self.flush()
        self._stop_watching()
        deadline = time.monotonic() + min(timeout, 1.0)
        try:
            self.sock.settimeout(0.05)
            while self._answers < self._frames and time.monotonic() < deadline:
                try:
                    data = self.sock.recv(65536)
                except (TimeoutError, BlockingIOError, InterruptedError):
                    continue
                if not data:
                    break
                self._answer(data)
        except OSError:
            pass
