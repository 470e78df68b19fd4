"""plano as an MCP gateway: each agent listener serves an MCP endpoint at ``/mcp``.

- :mod:`~gateway.mcp_gateway.server`: the official ``mcp`` SDK's streamable-HTTP server
  (stateful sessions for clients that initialize one, and the sessionless per-request era) with
  the listener's agents as tools, an ``ask`` tool that lets plano's router choose, and the tools
  of the upstream MCP servers in ``mcp_servers:``, prefixed ``<server>__``, filtered by their
  ``allow`` / ``deny`` lists;
- :mod:`~gateway.mcp_gateway.upstream`: plano's MCP client for those servers, over
  :class:`gateway.upstream.Upstream` (one session per server per worker).

Imported on the first request to ``/mcp`` only.
"""
