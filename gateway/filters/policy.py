"""Turning a block or a failure into what the client sees.

A block keeps the filter's 4xx status and message, in the client's API error shape
(OpenAI envelope, ``code: filter_blocked``), naming the filter. A failure under
``fail_closed`` becomes a 502 (504 for a timeout) naming the filter; under
``fail_open`` the payload goes on unchanged. Every decision is logged at INFO with
the request id — never with payload text.
"""

from __future__ import annotations

import logging

from gateway.filters.outcome import FilterFailed
from gateway.listeners.errors import GatewayError

log = logging.getLogger("plano.filters")


def blocked_error(filter_id: str, stage: str, status: int, message: str) -> GatewayError:
    what = "Request" if stage == "input" else "Response"
    return GatewayError(status, f"{what} blocked by filter '{filter_id}': {message}", code="filter_blocked")


def failed_error(filter_id: str, failure: FilterFailed) -> GatewayError:
    if failure.kind == "timeout":
        return GatewayError(504, f"Filter '{filter_id}' {failure.detail}", code="filter_timeout")
    code = "filter_invalid_response" if failure.kind == "invalid" else "filter_error"
    return GatewayError(502, f"Filter '{filter_id}' {failure.detail}", code=code)


def log_block(rid: str, filter_id: str, stage: str, status: int) -> None:
    log.info("request_id=%s filter=%s stage=%s blocked status=%s", rid, filter_id, stage, status)


def log_failure(rid: str, filter_id: str, stage: str, failure: FilterFailed, fail_open: bool) -> None:
    log.info("request_id=%s filter=%s stage=%s error=%s status=%s policy=%s", rid, filter_id, stage, failure.kind,
             failure.status, "fail_open" if fail_open else "fail_closed")
