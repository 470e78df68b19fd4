"""Per-request filter state: the headers filters get, and the outcome list.

Created only when a request meets a filter chain, and stored in the ASGI scope
under :data:`SCOPE_KEY` so that whatever wraps the listener (telemetry) can read
``scope[SCOPE_KEY].outcomes`` after the response — the policy decisions that
triggered, per filter, for the trace.

Filters get the client's headers minus hop-by-hop ones and minus credentials
(``Authorization``, ``x-api-key``, ``api-key``: on the model listener the client's
key may be a provider key in passthrough mode, and a filter is a third party),
plus ``x-request-id`` (correlates input and output filters, e.g. reversible PII
masking) and the client's ``traceparent``.
"""

from __future__ import annotations

import time

from gateway.filters.outcome import FilterOutcome
from gateway.upstream import forward_headers
from gateway.upstream.headers import CREDENTIALS

SCOPE_KEY = "plano.filters"


class FilterRun:
    __slots__ = ("headers", "outcomes", "rid", "telemetry")

    def __init__(self, rid: str, headers: dict[str, str]) -> None:
        self.rid = rid
        self.headers = headers
        self.outcomes: list[FilterOutcome] = []
        self.telemetry = None  # the request's telemetry context: each filter call becomes a span

    def record(self, filter_id: str, stage: str, outcome: str, started: float, status: int | None,
               kind: str | None = None) -> None:
        ms = (time.perf_counter() - started) * 1000.0
        self.outcomes.append(FilterOutcome(filter_id, stage, outcome, round(ms, 3), status, kind))


def filter_run(scope, rid: str, extra: dict[str, str] | None = None) -> FilterRun:
    """The request's :class:`FilterRun`, created on first use."""
    run = scope.get(SCOPE_KEY)
    if run is None:
        headers = forward_headers(scope["headers"], CREDENTIALS)
        headers["x-request-id"] = rid
        headers["accept"] = "application/json"
        headers["content-type"] = "application/json"
        if extra:
            headers.update(extra)
        run = scope[SCOPE_KEY] = FilterRun(rid, headers)
    return run
