"""The one outbound layer: agents, filters, model providers and webhooks are all called here.

- :mod:`~gateway.upstream.transport`: plano's request/response types (aiohttp and in-memory transports);
- :mod:`~gateway.upstream.h1`: plano's own HTTP/1.1 client, the default transport;
- :mod:`~gateway.upstream.pool`: named pools of endpoints, load balancing, concurrency limits;
- :mod:`~gateway.upstream.breaker`: per-endpoint circuit breakers (pybreaker), shared via Redis;
- :mod:`~gateway.upstream.policy`: the call policy (attempts, back-off, what is retried);
- :mod:`~gateway.upstream.client`: :meth:`Upstream.call`, every attempt before the first byte;
- :mod:`~gateway.upstream.registry`: every pool of a config, built once per worker.
"""

from gateway.upstream.client import Upstream
from gateway.upstream.headers import forward_headers, response_headers
from gateway.upstream.policy import SINGLE, CallPolicy, resolve_policy
from gateway.upstream.pool import Pool
from gateway.upstream.registry import PoolRegistry
from gateway.upstream.transport import (
    MemoryTransport,
    Response,
    TimeoutPolicy,
    UpstreamError,
    timeout_policy,
)

__all__ = [
    "SINGLE",
    "CallPolicy",
    "MemoryTransport",
    "Pool",
    "PoolRegistry",
    "Response",
    "TimeoutPolicy",
    "Upstream",
    "UpstreamError",
    "forward_headers",
    "resolve_policy",
    "response_headers",
    "timeout_policy",
]
