"""Config shapes for outbound reliability (plano extensions): retries, breakers, pools, limits.

They hang off agents, filters, model providers, listeners (as defaults for what the
listener calls) and ``overrides`` (global defaults). The resolution order is the
upstream's own block, then its listener's, then ``overrides``; see
:mod:`gateway.upstream.policy`. Shapes only: the runtime objects are built once at
start-up from these.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config.scalars import Duration

#: Retry triggers that are not HTTP statuses.
RETRY_CONDITIONS = ("connect_error", "reset", "timeout", "5xx", "4xx")

#: Default ``retry.on`` for idempotent upstreams (model providers, filters).
DEFAULT_RETRY_ON: tuple[Union[int, str], ...] = ("connect_error", "reset", "timeout", 429, 502, 503, 504)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=False)


RetryOn = Annotated[Union[int, Literal["connect_error", "reset", "timeout", "5xx", "4xx"]], Field()]


class RetryConfig(_Model):
    """``retry: {attempts, backoff, max_backoff, on, idempotent, attempt_timeout}``."""

    attempts: int = Field(3, ge=1, le=20, description="Attempts in all, the first included (1: no retry).")
    backoff: Duration = Field(0.1, description="First back-off; doubles per attempt, with full jitter.")
    max_backoff: Duration = Field(2.0, description="Upper bound of one back-off (and of a honoured Retry-After).")
    on: list[RetryOn] | None = Field(
        None,
        description="What is retried: HTTP statuses, '5xx', '4xx', 'connect_error' (no connection), 'reset' "
        "(the connection dropped before any answer), 'timeout'. Default: connect_error, reset, timeout, 429, "
        "502, 503, 504 for idempotent upstreams (model providers, filters); "
        "connect_error only for agents (their calls may have side effects) unless 'idempotent: true'.",
    )
    idempotent: bool | None = Field(
        None, description="Whether a call may be repeated after the upstream saw it (default: models and "
        "filters yes, agents no). Only the default 'on' depends on it: an explicit 'on' is honoured as written."
    )
    attempt_timeout: Duration | None = Field(
        None, description="Time limit of one attempt (the whole call is bounded by 'timeout')."
    )

    @field_validator("on")
    @classmethod
    def _statuses(cls, value):
        for item in value or ():
            if isinstance(item, int) and not 100 <= item <= 599:
                raise ValueError(f"retry.on status {item} is not an HTTP status (100-599)")
        return value


class CircuitBreakerConfig(_Model):
    """``circuit_breaker: {failure_threshold, reset_timeout, success_threshold, enabled}``: per endpoint."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, description="Consecutive failures that open the breaker.")
    reset_timeout: Duration = Field(30.0, description="How long an open breaker fails fast before a probe.")
    success_threshold: int = Field(1, ge=1, description="Successful probes that close a half-open breaker.")


class HealthCheckConfig(_Model):
    """Active health checks: ``GET {endpoint}{path}`` every ``interval``; a failure opens the breaker."""

    path: str = "/healthz"
    interval: Duration = Field(10.0, gt=0)
    timeout: Duration = Field(2.0, gt=0)


LoadBalancing = Literal["round_robin", "least_in_flight"]


class UpstreamPolicyFields(_Model):
    """Fields shared by agents, filters and model providers."""

    retry: RetryConfig | None = Field(None, description="plano extension: retries (see the README).")
    circuit_breaker: CircuitBreakerConfig | None = Field(None, description="plano extension: per-endpoint breaker.")
    max_concurrency: int | None = Field(None, ge=1, description="plano extension: in-flight calls; beyond it 503.")
    load_balancing: LoadBalancing | None = Field(None, description="plano extension: across the urls.")
    health_check: HealthCheckConfig | None = Field(None, description="plano extension: active health checks.")


class ListenerRateLimit(_Model):
    """A requests-per-window limit on a listener: for the whole listener, per API key, or per header value."""

    requests: int = Field(ge=1)
    unit: Literal["second", "minute", "hour", "day"] = "minute"
    per: str = Field("listener", description="'listener', 'api_key' or 'header:<name>'.")

    @field_validator("per")
    @classmethod
    def _per(cls, value: str) -> str:
        if value in ("listener", "api_key") or (value.startswith("header:") and len(value) > 7):
            return value
        raise ValueError("per must be 'listener', 'api_key' or 'header:<header-name>'")


class SharedState(_Model):
    """``state: {redis_url}``: where breakers and rate limits are shared across workers and replicas."""

    redis_url: str | None = Field(None, description="redis://[:password@]host:port/db; memory when absent.")
    key_prefix: str = Field("plano:", description="Prefix of every Redis key and channel plano uses.")


class RetryPolicyProposal(_Model):
    """The ``retry_policy`` shape proposed upstream in Plano, accepted on model providers."""

    fallback_models: list[str] | None = None
    on_status_codes: list[int] | None = None
    num_retries: int | None = Field(None, ge=0, le=19)
    backoff: Duration | None = None
    max_backoff: Duration | None = None
    strategy: Literal["same_model", "same_provider", "different_provider"] | None = None
