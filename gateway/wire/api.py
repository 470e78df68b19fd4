"""What every client API module provides: :class:`ClientAPI`.

One instance per client API (``openai_chat.CHAT``, ``anthropic.MESSAGES``,
``responses.RESPONSES``); the model listener's request path is written once and
takes one of them. ``name`` is the API constant of :mod:`gateway.config.providers`
(the same names upstream APIs use), so "client API == upstream API" is a string
comparison and means passthrough.
"""

from __future__ import annotations

from gateway.wire.errors import GatewayError


class ClientAPI:
    #: API constant (``openai_chat`` | ``anthropic_messages`` | ``openai_responses``).
    name: str = ""
    #: The listener path the API is served on.
    path: str = ""
    #: Human name used in messages ("chat completions").
    label: str = ""

    def parse(self, body: bytes) -> dict:
        """Parse and check a request body at the edge (cheap structural checks only)."""
        raise NotImplementedError

    def error_body(self, err: GatewayError, rid: str | None = None) -> bytes:
        """``err`` in this API's error envelope."""
        return err.openai_body()

    def native_error(self, parsed: dict) -> bool:
        """Whether an upstream error body is already in this API's envelope (then it passes verbatim)."""
        return isinstance(parsed.get("error"), dict) and parsed.get("type") != "error"

    def error_event(self, message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
        """An in-stream error event the API's SDKs raise on."""
        raise NotImplementedError

    def as_sse(self, answer: dict) -> bytes:
        """A whole JSON answer re-expressed as this API's stream (an upstream that ignored ``stream``)."""
        raise NotImplementedError

    def frame(self, events: list) -> bytes:
        """Translated stream events ``[(event name or None, payload)]`` as this API's SSE bytes;
        an ``("error", {...})`` entry becomes this API's in-stream error event."""
        out = []
        for name, payload in events:
            if name == "error":
                out.append(self.error_event(str(payload.get("message") or "upstream stream error"),
                                            type=payload.get("type") or "upstream_error", code=payload.get("code")))
            else:
                out.append(self.event(name, payload))
        return b"".join(out)

    def event(self, name: str | None, payload: dict) -> bytes:
        """One stream event in this API's framing."""
        raise NotImplementedError

    def stream_end(self) -> bytes:
        """What ends a stream after its last event (``data: [DONE]`` for Chat Completions)."""
        return b""

    def messages(self, request: dict) -> list | None:
        """The request's conversation, for telemetry (content capture, signals)."""
        messages = request.get("messages")
        return messages if isinstance(messages, list) else None
