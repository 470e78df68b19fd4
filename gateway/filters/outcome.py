"""What a filter call did, and the two ways it can end badly.

A filter *blocks* when it decides the payload must not go on (HTTP 4xx, MCP
``isError``): that is the filter working, and the client hears about it. A filter
*fails* when it cannot give an answer we may use (timeout, connection error, 5xx,
an answer that is not a payload of the right shape): then its ``on_error`` policy
decides. Each call leaves a :class:`FilterOutcome` on the request for tracing.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``outcome`` values of :class:`FilterOutcome`.
PASSED, MODIFIED, BLOCKED, FAIL_OPEN, FAIL_CLOSED = "passed", "modified", "blocked", "error_fail_open", "error_fail_closed"


class FilterBlocked(Exception):
    """The filter refused the payload; ``status`` (4xx) and ``message`` go to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FilterFailed(Exception):
    """No usable answer. ``kind``: timeout | connect | broken | status | invalid | protocol | error.

    ``detail`` is shown to clients, so it never carries payload text or secrets.
    """

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """One filter call, for traces: who, where, what happened, how long, the filter's HTTP status."""

    filter_id: str
    stage: str  # "input" | "output"
    outcome: str  # passed | modified | blocked | error_fail_open | error_fail_closed
    duration_ms: float
    status: int | None
    kind: str | None = None  # failure kind, when the outcome is an error
