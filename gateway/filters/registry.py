"""Building filter chains from the config, once per worker.

One client per filter id, shared by every chain and listener that names it, so an
MCP filter keeps one session per worker however many places use it.
"""

from __future__ import annotations

from gateway.filters.chain import ChainEntry, FilterChain
from gateway.filters.http import HttpFilter
from gateway.filters.mcp import McpFilter
from gateway.filters.spec import FilterSpec, filter_spec
from gateway.config.schema import Filter
from gateway.upstream import PoolRegistry, Upstream, resolve_policy


class FilterRegistry:
    def __init__(self, config, upstream: Upstream, pools: PoolRegistry | None = None) -> None:
        self.upstream = upstream
        self.pools = pools if pools is not None else PoolRegistry(config)
        self.entries = {a.id: a for a in getattr(config, "agents", None) or []}
        self.entries.update({f.id: f for f in getattr(config, "filters", None) or []})
        self.specs: dict[str, FilterSpec] = {i: filter_spec(e) for i, e in self.entries.items()}
        self._global_retry = getattr(getattr(config, "overrides", None), "retry", None)
        self.clients: dict[str, HttpFilter | McpFilter] = {}

    def chain(self, ids: list[str] | None, stage: str) -> FilterChain | None:
        """The chain for ``ids`` at ``stage`` (``input`` | ``output``); None when there is nothing to run."""
        if not ids:
            return None
        return FilterChain([ChainEntry(self.specs[i], self.client(i), stage) for i in ids], stage)

    def client(self, filter_id: str) -> HttpFilter | McpFilter:
        client = self.clients.get(filter_id)
        if client is None:
            spec = self.specs.get(filter_id)
            if spec is None:
                raise ValueError(f"filter '{filter_id}' is not defined in filters or agents")
            entry = self.entries[filter_id]
            cls = HttpFilter if spec.kind == "http" else McpFilter
            client = cls(spec, self.upstream)
            # Filters transform payloads without side effects: idempotent by default.
            client.pool = self.pools.filter(entry, client.endpoint)
            # An agent named as a filter keeps its ``retry`` for agent calls (non-idempotent); as a
            # filter it gets the global default.
            own = entry.retry if isinstance(entry, Filter) else None
            client.retry = resolve_policy(own, self._global_retry, idempotent=True)
            self.clients[filter_id] = client
        return client
