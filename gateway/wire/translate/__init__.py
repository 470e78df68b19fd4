"""Translators between a client API and an upstream API.

A :class:`Translator` turns a client request into the upstream API's request, and the
upstream's answer — a JSON body or an SSE stream, event by event — back into the client
API's. When the client API and the upstream API match there is no translator at all:
bytes pass through untouched (the fast path).

Pairs (Plano §4.4's matrix, with Anthropic native for all three client APIs):

============================  ===========================================================
client → upstream             steps
============================  ===========================================================
chat → anthropic messages     :mod:`.chat_anthropic` (chat request → messages; answer back)
messages → chat               :mod:`.chat_anthropic` (messages request → chat; answer back)
responses → chat              :mod:`.responses_chat`
responses → messages          responses → chat → messages (the two composed)
chat → gemini                 :mod:`.gemini` (generateContent / streamGenerateContent SSE)
messages, responses → gemini  the chat bridge, then :mod:`.gemini`
chat → bedrock converse       :mod:`.bedrock` (Converse / ConverseStream, binary event stream)
messages, responses → bedrock the chat bridge, then :mod:`.bedrock`
============================  ===========================================================

The LLM call unit (:mod:`gateway.llm.call`) applies a target's translator: it
translates the request per attempt (each fallback model may speak another API) and
hands back a :class:`TranslatedResponse`, which the relays treat like any response.
Streams are never buffered: each upstream event is translated as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from gateway.config.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
)
from gateway.upstream import UpstreamError
from gateway.wire.sse import EventAligner, event_data, event_name, split_events
from gateway.wire.translate import chat_anthropic as ca
from gateway.wire.translate import responses_chat as rc

#: Client request headers that belong to one API family and mean nothing (or harm) to another.
_API_HEADER_PREFIX = {ANTHROPIC_MESSAGES: "anthropic-", OPENAI_CHAT: "openai-", OPENAI_RESPONSES: "openai-"}


class Step:
    """One translation between two adjacent APIs: request one way, answers the other."""

    __slots__ = ("request", "response", "stream")

    def __init__(self, request: Callable, response: Callable, stream: Callable) -> None:
        self.request = request  # (client request, target) -> upstream request
        self.response = response  # (upstream answer, client request) -> client answer
        self.stream = stream  # (client request) -> stream state with feed(event, data) / finish_stream()


def _max_tokens_field(target) -> str:
    return "max_completion_tokens" if target is not None and getattr(target, "provider", "") == "openai" \
        else "max_tokens"


CHAT_TO_MESSAGES = Step(lambda req, target: ca.chat_request_to_anthropic(req),
                        lambda answer, req: ca.anthropic_response_to_chat(answer),
                        lambda req: ca.AnthropicToChatStream(req))
MESSAGES_TO_CHAT = Step(lambda req, target: ca.anthropic_request_to_chat(req, max_tokens_field=_max_tokens_field(target)),
                        lambda answer, req: ca.chat_response_to_anthropic(answer),
                        lambda req: ca.ChatToAnthropicStream(req))
RESPONSES_TO_CHAT = Step(lambda req, target: rc.responses_request_to_chat(req, max_tokens_field=_max_tokens_field(target)),
                         lambda answer, req: rc.chat_response_to_responses(answer, req, req.get("_plano_response_id")),
                         lambda req: rc.ChatToResponsesStream(req, req.get("_plano_response_id")))


class Translator:
    """Client API → upstream API, as one or more :class:`Step` s (client side first).

    ``io``: what an upstream needs beyond JSON translation (native Gemini, Bedrock): its
    ``prepare(urls, headers, body, request, target) -> (urls, headers)`` picks the URL per
    stream mode and signs the final bytes; its ``wrap(resp, translator, request, api, target)``
    gives the :class:`TranslatedResponse` (binary streams, the upstream's error shape)."""

    __slots__ = ("client", "upstream", "steps", "drop_prefix", "io")

    def __init__(self, client: str, upstream: str, steps: tuple[Step, ...], io=None) -> None:
        self.client = client
        self.upstream = upstream
        self.steps = steps
        self.io = io
        prefix = _API_HEADER_PREFIX.get(client)
        self.drop_prefix = prefix if prefix and prefix != _API_HEADER_PREFIX.get(upstream) else None

    def request(self, request: dict, target=None) -> dict:
        for step in self.steps:
            request = step.request(request, target)
        return request

    def response(self, answer: dict, request: dict) -> dict:
        for step in reversed(self.steps):
            answer = step.response(answer, request)
        return answer

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The forwardable client headers without the client API family's own (``anthropic-beta`` to OpenAI)."""
        prefix = self.drop_prefix
        if prefix is None:
            return headers
        return {k: v for k, v in headers.items() if not k.lower().startswith(prefix)}

    def stream(self, request: dict) -> "StreamTranslation":
        return StreamTranslation([step.stream(request) for step in reversed(self.steps)])

    def prepare(self, urls, headers: dict[str, str], body: bytes, request: dict, target):
        """(urls, headers) to send ``body`` (the translated request) with; ``request``: the client's."""
        io = self.io
        return (urls, headers) if io is None else io.prepare(urls, headers, body, request, target)

    def wrap(self, resp, request: dict, api, target: str) -> "TranslatedResponse":
        """The upstream's response re-expressed in the client's API."""
        io = self.io
        if io is None:
            return TranslatedResponse(resp, self, request, api, target)
        return io.wrap(resp, self, request, api, target)


class StreamTranslation:
    """Upstream stream events through each step's state (upstream side first) to client events."""

    __slots__ = ("stages",)

    def __init__(self, stages: list) -> None:
        self.stages = stages

    def feed(self, event: str | None, data: dict) -> list:
        pending = [(event, data)]
        for stage in self.stages:
            out = []
            for name, payload in pending:
                if name == "error":
                    out.append((name, payload))
                else:
                    out.extend(stage.feed(name, payload))
            pending = out
            if not pending:
                return pending
        return pending

    def finish(self) -> list:
        out: list = []
        for i, stage in enumerate(self.stages):
            produced = stage.finish_stream()
            for later in self.stages[i + 1:]:
                nxt = []
                for name, payload in produced:
                    nxt.extend([(name, payload)] if name == "error" else later.feed(name, payload))
                produced = nxt
            out.extend(produced)
        return out


_PAIRS: dict[tuple[str, str], tuple[Step, ...]] = {
    (OPENAI_CHAT, ANTHROPIC_MESSAGES): (CHAT_TO_MESSAGES,),
    (ANTHROPIC_MESSAGES, OPENAI_CHAT): (MESSAGES_TO_CHAT,),
    (OPENAI_RESPONSES, OPENAI_CHAT): (RESPONSES_TO_CHAT,),
    (OPENAI_RESPONSES, ANTHROPIC_MESSAGES): (RESPONSES_TO_CHAT, CHAT_TO_MESSAGES),
}
_TRANSLATORS = {pair: Translator(pair[0], pair[1], steps) for pair, steps in _PAIRS.items()}


def translator(client: str, upstream: str) -> Translator | None:
    """The translator for a pair (None when they are the same API: passthrough)."""
    if client == upstream:
        return None
    found = _TRANSLATORS.get((client, upstream))
    if found is None:
        raise KeyError((client, upstream))
    return found


def can_translate(client: str, upstream: str) -> bool:
    return client == upstream or (client, upstream) in _TRANSLATORS


# ============================================================================ the translated response


class TranslatedResponse:
    """An upstream :class:`~gateway.upstream.Response` re-expressed in the client's API.

    ``read()`` translates a 2xx JSON object (anything else — an error status, a body that
    is not a JSON object — is returned as it came, for the relay to judge and wrap);
    ``chunks()`` translates an SSE stream event by event, framed for the client API.
    """

    __slots__ = ("_resp", "api", "headers", "origin", "request", "status", "target", "translator")

    def __init__(self, resp, translator: Translator, request: dict, api, target: str) -> None:
        self._resp = resp
        self.translator = translator
        self.request = request
        self.api = api  # the client's ClientAPI (framing, error events)
        self.status = resp.status
        self.headers = resp.headers
        self.origin = resp.origin
        self.target = target

    async def read(self) -> bytes:
        data = await self._resp.read()
        if self.status >= 400:
            return data
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        if type(parsed) is not dict:
            return data
        return orjson.dumps(self.translator.response(parsed, self.request))

    def with_header(self, name: str, value: str) -> None:
        self._resp.with_header(name, value)
        self.headers = self._resp.headers

    async def chunks(self):
        stream = ClientStream(self.translator, self.request, self.api, self.target)
        async for chunk in self._resp.chunks():
            out = stream.feed(chunk)
            if out:
                yield out
        tail = stream.end()
        if tail:
            yield tail


class ClientStream:
    """An upstream SSE stream re-expressed in the client's API, pushed piece by piece.

    ``feed`` takes upstream bytes in any chunking and returns the client API's framed events
    ready so far (``b""`` while an event is incomplete); ``end`` closes the stream (the
    translation's final events, the API's end marker). Used by :class:`TranslatedResponse`
    (pulling from an upstream) and by :class:`gateway.wire.relay.TranslatingSend` (an answer a
    listener builds itself), so the event loop below is written once.
    """

    __slots__ = ("aligner", "api", "ended", "state", "target")

    def __init__(self, translator: Translator, request: dict, api, target: str) -> None:
        self.api = api
        self.state = translator.stream(request)
        self.aligner = EventAligner()
        self.ended = False
        self.target = target

    def feed(self, chunk: bytes) -> bytes:
        ready = self.aligner.feed(chunk)
        if not ready or self.ended:
            return b""
        state = self.state
        out: list = []
        for block in split_events(ready):
            data = event_data(block)
            if data is None:
                continue
            if data == b"[DONE]":
                out.extend(state.finish())
                self.ended = True
                break
            if not data.strip():
                continue
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError("broken", self.target, "the upstream sent an event that is not JSON") from None
            if type(payload) is not dict:
                raise UpstreamError("broken", self.target, "the upstream sent an event that is not an object")
            name = event_name(block)
            out.extend(state.feed(name.decode("latin-1") if name else None, payload))
        return self.api.frame(out) if out else b""

    def end(self) -> bytes:
        """The stream's last bytes; UpstreamError when it stopped inside an event."""
        if self.ended:
            return self.api.stream_end()
        if self.aligner.pending.strip():
            raise UpstreamError("broken", self.target, "the upstream stream ended inside an event")
        self.ended = True
        out = self.state.finish()
        return (self.api.frame(out) if out else b"") + self.api.stream_end()


# ============================================================================ native upstreams
# Gemini and Bedrock are imported last: their responses extend TranslatedResponse.

from gateway.wire.translate import bedrock as _bedrock  # noqa: E402
from gateway.wire.translate import gemini as _gemini  # noqa: E402

CHAT_TO_GEMINI = Step(lambda req, target: _gemini.chat_request_to_gemini(req),
                      lambda answer, req: _gemini.gemini_response_to_chat(answer, req),
                      lambda req: _gemini.GeminiToChatStream(req))
CHAT_TO_BEDROCK = Step(lambda req, target: _bedrock.chat_request_to_bedrock(req),
                       lambda answer, req: _bedrock.bedrock_response_to_chat(answer, req),
                       lambda req: _bedrock.BedrockToChatStream(req))

for _upstream, _step, _io in ((GEMINI_GENERATE, CHAT_TO_GEMINI, _gemini.IO),
                              (BEDROCK_CONVERSE, CHAT_TO_BEDROCK, _bedrock.IO)):
    for _client, _bridge in ((OPENAI_CHAT, ()), (ANTHROPIC_MESSAGES, (MESSAGES_TO_CHAT,)),
                             (OPENAI_RESPONSES, (RESPONSES_TO_CHAT,))):
        _TRANSLATORS[(_client, _upstream)] = Translator(_client, _upstream, (*_bridge, _step), _io)
