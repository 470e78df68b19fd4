"""The machine's shared-state services for tests: Redis (``PLANO_TEST_REDIS_URL``)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def redis_url() -> str:
    """The test Redis URL, or skip the test with the reason (unset, or nothing listening)."""
    url = os.environ.get("PLANO_TEST_REDIS_URL")
    if not url:
        pytest.skip("PLANO_TEST_REDIS_URL is not set")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1).close()
    except OSError as exc:
        pytest.skip(f"Redis at {url} is unreachable: {exc}")
    return url


def clear_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key a test wrote under ``prefix`` (tests share the machine's Redis)."""
    import asyncio

    async def clear() -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(clear())
