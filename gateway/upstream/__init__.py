"""The one outbound HTTP layer: LLM providers, agents, filters and webhooks all go through here."""

from gateway.upstream.client import Upstream, UpstreamError, timeout_policy
from gateway.upstream.headers import forward_headers, response_headers

__all__ = ["Upstream", "UpstreamError", "timeout_policy", "forward_headers", "response_headers"]
