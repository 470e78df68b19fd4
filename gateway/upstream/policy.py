"""The call policy: how long a call may take, and what is retried, when, after how long.

Resolved once at start-up from the config, per call site: the upstream's own
``retry`` block, else its listener's, else ``overrides.retry``; without any, a
policy that retries only connect errors, and only when there is another endpoint
to try (so a one-URL upstream is called exactly once, as before).

Idempotency decides the default ``on`` set. Model and filter calls are free of
side effects: connect errors, resets, timeouts, 429, 502, 503 and 504 are retried.
Agent calls may book a flight: by default only errors that prove the agent never
got the request (connect errors) are retried — not a connection that dropped after
the request went out (``reset``), nor a timeout. An explicit ``on`` is honoured as
written — the operator said so.

Back-off is exponential with full jitter (``uniform(0, min(max_backoff,
backoff * 2**n))``), so synchronised clients spread out; ``Retry-After`` on a
429/503 replaces it when it fits within ``max_backoff`` and the caller's deadline,
and otherwise ends the retries (the client gets that answer rather than a retry
that ignores the server's request). No attempt starts after the deadline.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from gateway.config.reliability import DEFAULT_RETRY_ON

#: ``on`` used for non-idempotent calls when the config names none.
SAFE_RETRY_ON: tuple = ("connect_error",)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    attempts: int = 1
    backoff: float = 0.1
    max_backoff: float = 2.0
    statuses: frozenset[int] = frozenset()
    on_connect: bool = True
    on_timeout: bool = False
    on_reset: bool = False
    attempt_timeout: float | None = None
    #: True when the policy came from config (``retry:``); False for the built-in default.
    explicit: bool = False

    def retries_status(self, status: int) -> bool:
        return status in self.statuses

    def retries_error(self, kind: str) -> bool:
        if kind == "connect" or kind == "open" or kind == "overloaded":
            return self.on_connect
        if kind == "timeout":
            return self.on_timeout
        if kind == "reset":
            return self.on_reset
        return False  # broken: the upstream saw the request and started answering

    def delay(self, retry_number: int) -> float:
        """Back-off before retry number ``retry_number`` (1 = the first retry), with full jitter."""
        cap = min(self.max_backoff, self.backoff * (2 ** (retry_number - 1)))
        return random.uniform(0, cap) if cap > 0 else 0.0


#: One attempt, no retries: today's behaviour for single-endpoint upstreams.
SINGLE = CallPolicy()


def _statuses(on) -> tuple[frozenset[int], bool, bool, bool]:
    statuses: set[int] = set()
    connect = timeout = reset = False
    for item in on:
        if item == "connect_error":
            connect = True
        elif item == "timeout":
            timeout = True
        elif item == "reset":
            reset = True
        elif item == "5xx":
            statuses.update(range(500, 600))
        elif item == "4xx":
            statuses.update(range(400, 500))
        else:
            statuses.add(int(item))
    return frozenset(statuses), connect, timeout, reset


def resolve_policy(*configs, idempotent: bool, endpoints: int = 1) -> CallPolicy:
    """The policy from the first non-empty ``retry`` block of ``configs`` (own, listener, overrides).

    ``endpoints``: how many endpoints the upstream has; the default policy gives a
    connect error one more try on another endpoint when there is one.
    """
    cfg = next((c for c in configs if c is not None), None)
    if cfg is None:
        attempts = min(endpoints, 3)
        return CallPolicy(attempts=attempts, statuses=frozenset(), on_connect=True, on_timeout=False)
    safe = idempotent if cfg.idempotent is None else cfg.idempotent
    on = cfg.on if cfg.on is not None else (DEFAULT_RETRY_ON if safe else SAFE_RETRY_ON)
    statuses, connect, timeout, reset = _statuses(on)
    return CallPolicy(
        attempts=cfg.attempts,
        backoff=cfg.backoff,
        max_backoff=cfg.max_backoff,
        statuses=statuses,
        on_connect=connect,
        on_timeout=timeout,
        on_reset=reset,
        attempt_timeout=cfg.attempt_timeout,
        explicit=True,
    )


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return seconds
