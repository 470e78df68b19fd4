"""plano's built-in filter services.

Each module is a small service the gateway calls in a filter chain (see ``filters/README.md``):

- ``filters.pii`` — PII anonymise (requests) / de-anonymise (responses, streams included),
- ``filters.injection_guard`` — rule-based prompt-injection / jailbreak guard,
- ``filters.content_policy`` — keyword / regex content policy,
- ``filters.secret_redactor`` — API keys, tokens and private keys replaced by ``[REDACTED]``.

Every filter is a pure function ``(payload, path, headers) -> payload | Block``
plus the thin HTTP and MCP transports of ``filters.common``; run one with
``python -m filters.<name> --port N [--mcp]``.
"""
