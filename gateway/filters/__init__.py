"""Filter chains: guardrails, rewriting and redaction done once, in the gateway.

A chain is a list of filter services called in list order, each seeing the previous
one's output: input filters on a request before it reaches an agent or a model,
output filters on the answer before it reaches the client. One module per concept:

- :mod:`.spec`      one configured filter, resolved once at start-up
- :mod:`.outcome`   what a call did (records for traces) and the two ways it can end badly
- :mod:`.policy`    turning a block or a failure into the client's error, or letting it pass
- :mod:`.shapes`    what a filter's answer must look like to replace the payload
- :mod:`.http`      the plain-HTTP filter protocol (``type: http``)
- :mod:`.mcp`       the MCP streamable-HTTP protocol (``type: mcp``) with session reuse
- :mod:`.context`   the per-request state: forwarded headers and the outcome list
- :mod:`.chain`     running a chain; :mod:`.registry` builds chains from the config
- :mod:`.stream`    output filters over SSE: per event, or a sliding text window
- :mod:`.output`    relaying a filtered response (JSON or SSE) to the client
"""

from gateway.filters.chain import CHAT_PATH, FilterChain
from gateway.filters.context import SCOPE_KEY, FilterRun, filter_run
from gateway.filters.outcome import FilterOutcome
from gateway.filters.registry import FilterRegistry

__all__ = ["CHAT_PATH", "SCOPE_KEY", "FilterChain", "FilterOutcome", "FilterRegistry", "FilterRun", "filter_run"]
