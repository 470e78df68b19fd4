"""Deferring telemetry work to one batch per event-loop tick interval.

Why: the same Python code costs several times more when it runs once per request,
interleaved with uvicorn, httptools and aiohttp (cold CPU caches), than when it
runs a hundred times in a row. Measured under wrk, per-request metric updates,
access-log formatting and span encoding cost ~4x their micro-benchmark figures.
So a request only records *what* happened (a tuple appended to a list); every
``INTERVAL`` seconds one loop callback replays the batch — on the event-loop
thread, so there is no second Python thread fighting it for the GIL.

Outside an event loop (tests, scripts) work runs immediately.
"""

from __future__ import annotations

import threading

INTERVAL = 0.02  # seconds between batches; the loop pauses ~1 ms per batch at thousands of requests/s


class Deferred:
    """Calls queued on the loop thread, replayed together by a timer on the same loop."""

    __slots__ = ("_handle", "_lock", "loop", "pending", "thread_id")

    def __init__(self, loop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.pending: list = []
        self._handle = None
        self._lock = threading.Lock()

    def submit(self, fn, *args) -> None:
        """Queue ``fn(*args)`` (call from the loop thread)."""
        self.pending.append((fn, args))
        if self._handle is None:
            try:
                self._handle = self.loop.call_later(INTERVAL, self.flush)
            except RuntimeError:  # the loop is closed (process shutting down, or a test's loop ended)
                self.flush()

    def schedule(self, owner) -> None:
        """Queue ``owner.flush()`` at most once per batch, however often it is asked for.

        ``owner.scheduled`` remembers the batch (the ``pending`` list) it is queued in.
        """
        pending = self.pending
        if owner.scheduled is not pending:
            owner.scheduled = pending
            self.submit(owner.flush)

    def flush(self) -> None:
        """Run everything queued (from the timer, or from shutdown on any thread)."""
        self._handle = None
        with self._lock:
            items, self.pending = self.pending, []
        for fn, args in items:
            try:
                fn(*args)
            except Exception:
                import logging

                logging.getLogger("plano.telemetry").debug("deferred telemetry call failed", exc_info=True)

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread_id
