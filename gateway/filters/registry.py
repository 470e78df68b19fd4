"""Building filter chains from the config, once per worker.

One client per filter id, shared by every chain and listener that names it, so an
MCP filter keeps one session per worker however many places use it.
"""

from __future__ import annotations

from gateway.filters.chain import ChainEntry, FilterChain
from gateway.filters.http import HttpFilter
from gateway.filters.mcp import McpFilter
from gateway.filters.spec import FilterSpec, filter_spec
from gateway.upstream import Upstream


class FilterRegistry:
    def __init__(self, config, upstream: Upstream) -> None:
        self.upstream = upstream
        self.specs: dict[str, FilterSpec] = {a.id: filter_spec(a) for a in getattr(config, "agents", None) or []}
        self.specs.update({f.id: filter_spec(f) for f in getattr(config, "filters", None) or []})
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
            client = HttpFilter(spec, self.upstream) if spec.kind == "http" else McpFilter(spec, self.upstream)
            self.clients[filter_id] = client
        return client
