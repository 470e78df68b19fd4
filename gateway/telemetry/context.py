"""The request a log record belongs to, without passing it through every call.

uvicorn runs each request in its own asyncio task, and a task copies the
context it was created in, so a :class:`contextvars.ContextVar` set at the start
of a request is seen by everything that request awaits — and by nothing else.
Log records pick ``request_id`` / ``trace_id`` up from here (see
:mod:`gateway.logs`).
"""

from __future__ import annotations

from contextvars import ContextVar

#: ``(request_id, trace_id)`` of the request being handled; trace id is "" when unknown.
current_request: ContextVar[tuple[str, str] | None] = ContextVar("plano_request", default=None)


def bind(request_id: str, trace_id: str = "") -> None:
    current_request.set((request_id, trace_id))


def ids() -> tuple[str, str]:
    value = current_request.get()
    return value if value is not None else ("", "")
