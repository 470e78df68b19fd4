"""Pooled outbound HTTP client with per-call timeouts and error classification.

Built on aiohttp rather than httpx: under concurrency on loopback httpx's pool
collapsed on this hardware while aiohttp held the minimal-proxy floor (see
bench/README.md). One session per worker process, created at start-up and kept
for the process's life, so no request ever pays for a client or a TLS handshake
it could have reused.

Later work hangs off this module: retries, circuit breakers and load balancing
wrap :meth:`Upstream.open` per upstream (``policy`` argument), not the callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp


class UpstreamError(Exception):
    """An outbound call failed before or while its response arrived.

    ``kind`` is ``connect`` (refused, DNS, reset before a response), ``timeout``,
    or ``broken`` (the connection died mid-body). ``status`` is what the gateway
    answers the client with: 502 for connect/broken, 504 for timeout.
    """

    def __init__(self, kind: str, target: str, detail: str = "") -> None:
        self.kind = kind
        self.target = target
        self.status = 504 if kind == "timeout" else 502
        text = {
            "connect": f"could not connect to upstream {target}",
            "timeout": f"upstream {target} did not answer in time",
            "broken": f"connection to upstream {target} broke mid-response",
        }[kind]
        super().__init__(f"{text}{': ' + detail if detail else ''}")


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """Timeouts for one kind of call; built once at config load, reused per request."""

    total: float | None
    connect: float
    aiohttp: aiohttp.ClientTimeout


def timeout_policy(total: float | None, connect: float = 5.0) -> TimeoutPolicy:
    return TimeoutPolicy(total, connect, aiohttp.ClientTimeout(total=total, sock_connect=connect))


_CONNECT_ERRORS = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    ConnectionError,
)


class Upstream:
    """The process-wide outbound client (one per worker, owned by the server lifespan)."""

    def __init__(self, *, max_connections: int = 1000, keepalive: float = 30.0, ca_path: str | None = None) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._ca_path = ca_path
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        ssl_ctx: ssl.SSLContext | bool = True
        if self._ca_path:
            ssl_ctx = ssl.create_default_context(cafile=self._ca_path)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive,
            ttl_dns_cache=300,
            ssl=ssl_ctx,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
            read_bufsize=2**16,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream used before start()")
        return self._session

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        timeout: TimeoutPolicy,
        target: str,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield the response with its body unread (stream it or read it).

        Errors raised while the caller reads the body inside the ``async with`` block
        are classified too, so callers only ever see :class:`UpstreamError`.
        """
        responded = False
        try:
            async with self.session.request(
                method, url, data=body, headers=headers, timeout=timeout.aiohttp, allow_redirects=False
            ) as resp:
                responded = True
                yield resp
        except UpstreamError:
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError("timeout", target) from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError("broken", target, _short(exc)) from exc
        except _CONNECT_ERRORS as exc:
            raise UpstreamError("broken" if responded else "connect", target, _short(exc)) from exc
        except aiohttp.ClientResponseError as exc:
            raise UpstreamError("broken", target, _short(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("connect", target, _short(exc)) from exc


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
