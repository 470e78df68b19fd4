"""Running a filter chain: list order, each filter seeing the previous one's output.

Each step is one call with its policy applied (:meth:`ChainEntry.apply`): the new
payload on success, the old one when a failing filter fails open, a
:class:`~gateway.listeners.errors.GatewayError` for the client otherwise — and one
:class:`~gateway.filters.outcome.FilterOutcome` on the request either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.filters import policy
from gateway.filters.context import FilterRun
from gateway.filters.outcome import (
    BLOCKED,
    FAIL_CLOSED,
    FAIL_OPEN,
    MODIFIED,
    PASSED,
    FilterBlocked,
    FilterFailed,
)
from gateway.filters.spec import FilterSpec
from gateway.filters.stream import StreamFilter

log = logging.getLogger("plano.filters")

CHAT_PATH = "/v1/chat/completions"

#: A shape check: a problem description, or None when the filter's answer is usable.
Check = Callable[[dict], "str | None"]


class ChainEntry:
    """One filter at one position (input or output), which fixes its default policy."""

    __slots__ = ("client", "fail_open", "spec", "stage")

    def __init__(self, spec: FilterSpec, client, stage: str) -> None:
        self.spec = spec
        self.client = client
        self.stage = stage
        self.fail_open = spec.fails_open(stage)

    async def apply(self, payload: dict, path: str, run: FilterRun, check: Check | None = None,
                    limit: float | None = None) -> dict:
        """The payload after this filter (or unchanged when it failed open); GatewayError otherwise."""
        return (await self.attempt(payload, path, run, check, limit))[0]

    async def attempt(self, payload: dict, path: str, run: FilterRun, check: Check | None = None,
                      limit: float | None = None) -> tuple[dict, bool]:
        """:meth:`apply`, also saying whether the filter failed open (streams then stop calling it)."""
        started = time.perf_counter()
        filter_id = self.spec.id
        span = run.telemetry.filter_call(filter_id, filter_type=self.spec.kind) if run.telemetry is not None else None
        headers = span.inject(dict(run.headers)) if span is not None and span.span.recording else run.headers
        try:
            try:
                out, status = await self.client.call(payload, path, headers, limit)
            except (FilterBlocked, FilterFailed):
                raise
            except Exception as exc:  # a bug must not take the request down unannounced: it is a failure
                log.warning("request_id=%s filter=%s unexpected %s", run.rid, filter_id, type(exc).__name__,
                            exc_info=True)
                raise FilterFailed("error", "failed unexpectedly") from None
            problem = check(out) if check is not None else None
            if problem:
                raise FilterFailed("invalid", f"returned an invalid payload: {problem}", status)
        except FilterBlocked as blocked:
            run.record(filter_id, self.stage, BLOCKED, started, blocked.status)
            if span is not None:
                span.finish("rejected", status=blocked.status)
            policy.log_block(run.rid, filter_id, self.stage, blocked.status)
            raise policy.blocked_error(filter_id, self.stage, blocked.status, blocked.message) from None
        except FilterFailed as failure:
            policy.log_failure(run.rid, filter_id, self.stage, failure, self.fail_open)
            if span is not None:  # the policy that triggered is on the span: fail_open / fail_closed
                span.finish("fail_open" if self.fail_open else "fail_closed", status=failure.status,
                            error=f"{failure.kind}: {failure}")
            if self.fail_open:
                run.record(filter_id, self.stage, FAIL_OPEN, started, failure.status, failure.kind)
                return payload, True
            run.record(filter_id, self.stage, FAIL_CLOSED, started, failure.status, failure.kind)
            raise policy.failed_error(filter_id, failure) from None
        modified = out != payload
        run.record(filter_id, self.stage, MODIFIED if modified else PASSED, started, status)
        if span is not None:
            span.finish("modified" if modified else "pass", status=status)
        return out, False


class FilterChain:
    """The filters of one attachment point (a listener's or an agent's input or output)."""

    __slots__ = ("entries", "stage")

    def __init__(self, entries: list[ChainEntry], stage: str) -> None:
        self.entries = entries
        self.stage = stage

    @property
    def ids(self) -> list[str]:
        return [e.spec.id for e in self.entries]

    async def run(self, payload: dict, path: str, run: FilterRun, check: Check | None = None,
                  limit: float | None = None) -> dict:
        for entry in self.entries:
            payload = await entry.apply(payload, path, run, check, limit)
        return payload

    def stream(self, run: FilterRun, path: str = CHAT_PATH) -> StreamFilter:
        """A filter for one SSE response (see :mod:`gateway.filters.stream`)."""
        return StreamFilter(self.entries, run, path)
