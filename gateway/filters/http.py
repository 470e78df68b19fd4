"""The plain-HTTP filter protocol (``type: http``), as Plano defines it.

``POST {url}{api path}`` (``http://h/anonymize`` + ``/v1/chat/completions``) with the
payload as JSON; the path suffix tells the filter which API shape it is looking at.
2xx: the body replaces the payload. 4xx: the filter blocks, with its status and
message. Anything else — 5xx, redirects, no answer within ``timeout`` — is a failure
for the policy to handle.
"""

from __future__ import annotations

import orjson

from gateway.filters.outcome import FilterBlocked, FilterFailed
from gateway.filters.spec import FilterSpec
from gateway.upstream import SINGLE, CallPolicy, Pool, Upstream, UpstreamError, timeout_policy

MAX_MESSAGE = 500


class HttpFilter:
    __slots__ = ("base", "policy", "pool", "retry", "spec", "target", "upstream")

    def __init__(self, spec: FilterSpec, upstream: Upstream, pool: Pool | None = None,
                 retry: CallPolicy = SINGLE) -> None:
        self.spec = spec
        self.upstream = upstream
        self.base = spec.url.rstrip("/")
        self.policy = _policy(spec.timeout)
        self.target = f"filter '{spec.id}'"
        self.pool = pool or Pool(f"filter:{spec.id}", [self.base])
        self.retry = retry

    @property
    def endpoint(self) -> str:
        """The base its pool calls (the API path is appended per call)."""
        return self.base

    async def call(self, payload: dict, path: str, headers: dict[str, str],
                   limit: float | None = None) -> tuple[dict, int]:
        """The new payload and the filter's status; raises FilterBlocked / FilterFailed."""
        policy = self.policy if limit is None or limit >= self.spec.timeout else _policy(limit)
        try:
            async with self.upstream.call(self.pool, None, path=path, headers=headers, body=orjson.dumps(payload),
                                          timeout=policy, policy=self.retry, target=self.target) as resp:
                status = resp.status
                data = await resp.read()
        except UpstreamError as err:
            raise transport_failure(err, policy.total) from None
        if 200 <= status < 300:
            return json_payload(data, status), status
        if 400 <= status < 500:
            raise FilterBlocked(status, filter_message(data, status))
        raise FilterFailed("status", f"answered HTTP {status}: {filter_message(data, status)}", status)


def _policy(total: float):
    total = max(total, 0.001)
    return timeout_policy(total, min(5.0, total))


def transport_failure(err: UpstreamError, timeout: float | None) -> FilterFailed:
    """An outbound error in words a client may see (no addresses, no payloads)."""
    if err.kind == "timeout":
        return FilterFailed("timeout", f"did not answer within {timeout:g}s" if timeout else "timed out")
    if err.kind == "connect":
        return FilterFailed("connect", "could not be reached")
    if err.kind in ("open", "overloaded"):
        return FilterFailed("connect", "is unavailable (circuit breaker open)" if err.kind == "open"
                            else "is at its concurrency limit")
    return FilterFailed("broken", "broke the connection mid-answer")


def json_payload(data: bytes, status: int) -> dict:
    """A 2xx body that must be a JSON object to be usable."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise FilterFailed("invalid", "returned a body that is not JSON", status) from None
    if not isinstance(parsed, dict):
        raise FilterFailed("invalid", "returned JSON that is not an object", status)
    return parsed


def filter_message(data: bytes, status: int) -> str:
    """The human message in a filter's error body: ``error.message``, ``detail.message``,
    ``detail``, ``message``, ``error``, else the text itself."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error, detail = parsed.get("error"), parsed.get("detail")
        for candidate in (
            error.get("message") if isinstance(error, dict) else None,
            detail.get("message") if isinstance(detail, dict) else None,
            detail,
            parsed.get("message"),
            error,
        ):
            if isinstance(candidate, str) and candidate:
                return candidate[:MAX_MESSAGE]
        return orjson.dumps(parsed).decode()[:MAX_MESSAGE]
    if isinstance(parsed, str) and parsed:
        return parsed[:MAX_MESSAGE]
    text = data.decode("utf-8", "replace").strip()[:MAX_MESSAGE]
    return text or f"HTTP {status}"
