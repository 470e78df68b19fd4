"""The wire layer: one module per client API, below the listeners.

- :mod:`.api`          the :class:`~gateway.wire.api.ClientAPI` every client API module provides
- :mod:`.openai_chat`  OpenAI Chat Completions (``CHAT``)
- :mod:`.anthropic`    Anthropic Messages (``MESSAGES``), count_tokens estimate
- :mod:`.responses`    OpenAI Responses (``RESPONSES``)
- :mod:`.errors`       :class:`GatewayError` and the error envelopes
- :mod:`.sse`          SSE framing: event alignment, parsing, building events
- :mod:`.relay`        relaying an upstream answer to the client (JSON, SSE, errors), with observers
- :mod:`.translate`    translators between a client API and an upstream API

Each module parses and validates its API's requests, builds its error envelope, frames
its stream and assembles its response; listeners, filters, orchestration and the LLM
call unit share them. Nothing here imports a listener's app.
"""
