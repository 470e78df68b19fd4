"""The long tail of providers through litellm's transformations (the ``plano[litellm]`` extra).

A ``model_providers`` entry ``litellm/<litellm provider>/<model>`` (``litellm/cohere/command-r-plus``)
is reached through litellm's provider config classes — ``validate_environment`` (auth and
headers), ``get_complete_url``, ``transform_request``, ``transform_response`` and the
provider's stream chunk parser — while the bytes travel through plano's own upstream layer
(pools, retries, breakers, failover, telemetry). litellm's HTTP handlers, its router and its
proxy server are never called: litellm is used as a library of pure functions.

Why not make it a dependency: litellm's PyPI releases were compromised in 2026 (1.82.7 and
1.82.8 stole credentials at install or import), it is large (its import alone takes seconds and
loads thousands of modules) and it pins ``openai<3``. So it is an optional extra, pinned to one
audited version with hashes (``constraints-litellm.txt``), imported only when a config names a
``litellm/`` model — a gateway without one never loads it.

Only what is verified against a provider's documented wire format is enabled for streaming
(:data:`SSE_STREAMS`): litellm's stream parsers were written for its own HTTP client, and a
provider whose stream is not SSE, or whose parser is untested here, answers ``stream: true``
with a clear 400 rather than a silently wrong stream. Non-streaming calls work for any provider
whose litellm config implements the chat transformation and does not sign request bodies.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import time
import uuid

import orjson

from gateway.config.providers import ANTHROPIC_MESSAGES, LITELLM, OPENAI_CHAT, OPENAI_RESPONSES
from gateway.wire.errors import GatewayError
from gateway.wire.translate import (
    MESSAGES_TO_CHAT,
    RESPONSES_TO_CHAT,
    StreamTranslation,
    TranslatedResponse,
    Translator,
)

#: Where litellm keeps a provider's default endpoint in its own HTTP path (``litellm.main``) rather
#: than in the provider config plano calls; an entry's ``base_url`` overrides it.
DEFAULT_BASES = {"cohere_chat": "https://api.cohere.com/v2/chat"}

#: litellm providers whose stream is SSE that plano feeds, event by event, to litellm's chunk
#: parser — checked against the provider's documented events (tests/test_litellm_extra.py).
SSE_STREAMS = frozenset({"cohere_chat"})

#: Per-request state from ``request()`` to ``prepare()`` and ``wrap()``, keyed by the client
#: request's identity; bounded, since an attempt that fails over never reaches ``wrap()``.
_PENDING_MAX = 4096

#: Request fields litellm lists as "supported" that are its own call options, not the provider's:
#: a client must not set upstream headers or bodies through them.
_NOT_PARAMS = frozenset({"extra_headers", "extra_body", "extra_query"})


def available() -> bool:
    """Whether the extra is installed (without importing it: that alone costs seconds)."""
    return importlib.util.find_spec("litellm") is not None


def _litellm():
    """Import litellm without its side effects at import: by default it downloads its model cost map
    from GitHub on import (a network call at start-up, and code-adjacent data from outside the
    audited wheel); the wheel's bundled copy is used instead."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List: …" banners printed on plano's stdout
    return litellm


class LitellmError(ValueError):
    """A ``litellm/`` entry litellm cannot serve (unknown provider, no chat transformation, ...)."""


class _Logging:
    """The logging object litellm's transformations expect: plano does its own telemetry, so every
    hook is a no-op (litellm's real one would also start its callbacks and cost tracking)."""

    model_call_details: dict = {}

    def __getattr__(self, name):
        return _noop


def _noop(*args, **kwargs):
    return None


_LOGGING = _Logging()


class LitellmAdapter:
    """One ``litellm/<provider>/<model>`` entry: its litellm provider config, endpoint and model."""

    __slots__ = ("name", "model", "provider", "config", "api_base", "url", "supported", "streams",
                 "_model_response", "_httpx", "_finish")

    def __init__(self, model_id: str, base_url: str | None) -> None:
        litellm = _litellm()
        import httpx  # a litellm dependency: its transform_response reads an httpx.Response
        from litellm.litellm_core_utils.core_helpers import map_finish_reason
        from litellm.llms.base_llm.chat.transformation import BaseConfig
        from litellm.utils import ProviderConfigManager

        self.name = model_id
        try:
            model, provider, _key, api_base = litellm.get_llm_provider(model_id)
        except Exception as exc:  # litellm raises BadRequestError for an unknown provider
            raise LitellmError(f"litellm does not know the provider of '{model_id}' "
                               f"(expected litellm/<litellm provider>/<model>): {_first_line(exc)}") from None
        config = ProviderConfigManager.get_provider_chat_config(model=model, provider=litellm.LlmProviders(provider))
        if config is None:
            raise LitellmError(f"litellm has no chat transformation for provider '{provider}' ('{model_id}')")
        if type(config).sign_request is not BaseConfig.sign_request:
            # AWS-style providers sign the final body inside litellm; plano would send other bytes.
            raise LitellmError(f"litellm provider '{provider}' signs its requests itself; plano cannot send "
                               "them through its upstream layer (Amazon Bedrock has a native translator)")
        self.model = model
        self.provider = provider
        self.config = config
        self.api_base = base_url or api_base or DEFAULT_BASES.get(provider)
        try:
            self.url = config.get_complete_url(api_base=self.api_base, api_key=None, model=model, optional_params={},
                                               litellm_params={}, stream=False)
        except Exception as exc:
            raise LitellmError(f"litellm provider '{provider}' needs base_url ({_first_line(exc)})") from None
        self.supported = frozenset(config.get_supported_openai_params(model))
        self.streams = provider in SSE_STREAMS
        self._model_response = litellm.ModelResponse
        self._httpx = httpx
        self._finish = map_finish_reason

    # ------------------------------------------------------------------ request

    def transform(self, chat: dict) -> "_Call":
        """An OpenAI Chat request → the provider's body, through litellm's param mapping and transform."""
        stream = chat.get("stream") is True
        if stream and not self.streams:
            raise GatewayError(400, f"Streaming is not available for '{self.name}': litellm's stream parser for "
                               f"provider '{self.provider}' is not verified with plano. Send stream: false.",
                               code="litellm_stream_not_supported", param="stream")
        # A copy: litellm's transformations may edit messages in place, and the caller's request is
        # sent again as it is to a fallback model.
        messages = orjson.loads(orjson.dumps(chat.get("messages") or []))
        params = {k: v for k, v in chat.items() if v is not None and k in self.supported and k not in _NOT_PARAMS}
        try:
            optional = self.config.map_openai_params(params, {}, self.model, drop_params=True)
            json_mode = bool(optional.pop("json_mode", False))
            body = self.config.transform_request(model=self.model, messages=messages, optional_params=optional,
                                                 litellm_params={}, headers={})
        except GatewayError:
            raise
        except Exception as exc:  # litellm's refusal of the request's content (not a plano fault)
            raise GatewayError(400, f"litellm could not translate the request for '{self.name}': "
                               f"{_first_line(exc)}", code="litellm_translation_failed") from None
        if stream:
            if self.config.supports_stream_param_in_request_body:
                body["stream"] = True
        else:
            body.pop("stream", None)
        return _Call(messages, optional, json_mode, body, stream)

    def headers(self, headers: dict[str, str], call: "_Call") -> tuple[str, dict[str, str]]:
        """(URL, headers): plano's headers with the credential re-expressed by litellm for the provider.

        The key arrives as plano's ``Authorization: Bearer`` (the entry's ``access_key``, or the
        client's own with ``passthrough_auth``); litellm's ``validate_environment`` decides how the
        provider wants it. Header names are merged case-insensitively (litellm says ``Content-Type``)."""
        api_key = None
        plano: dict[str, str] = {}
        for name, value in headers.items():
            if name.lower() == "authorization":
                api_key = value[7:].strip() if value[:7].lower() == "bearer " else value
            else:
                plano[name] = value
        try:
            ours = self.config.validate_environment(headers={}, model=self.model, messages=call.messages,
                                                    optional_params=call.optional, litellm_params={},
                                                    api_key=api_key, api_base=self.api_base)
            url = self.config.get_complete_url(api_base=self.api_base, api_key=api_key, model=self.model,
                                               optional_params=call.optional, litellm_params={}, stream=call.stream)
        except Exception as exc:  # never echo the exception: it may carry the key
            raise GatewayError(401 if api_key is None else 400,
                               f"litellm refused the credentials or endpoint for '{self.name}' "
                               f"({type(exc).__name__})", code="litellm_environment") from None
        lowered = {k.lower() for k in ours}
        out = {k: v for k, v in plano.items() if k.lower() not in lowered}
        out.update(ours)
        return url, out

    # ------------------------------------------------------------------ response

    def response(self, data: bytes, status: int, headers, call: "_Call", target: str) -> dict:
        """The provider's 2xx JSON answer → an OpenAI ``chat.completion`` dict (litellm's transform_response)."""
        httpx = self._httpx
        raw = httpx.Response(status, content=data, headers={"content-type": "application/json"},
                             request=httpx.Request("POST", self.url))
        try:
            answer = self.config.transform_response(
                model=self.model, raw_response=raw, model_response=self._model_response(), logging_obj=_LOGGING,
                request_data=call.body, messages=call.messages, optional_params=call.optional, litellm_params={},
                encoding=None, api_key=None, json_mode=call.json_mode)
        except Exception as exc:
            raise GatewayError(502, f"The model provider '{target}' answered in a shape litellm could not read "
                               f"({type(exc).__name__}).", code="upstream_invalid_response") from None
        out = answer.model_dump(exclude_none=True)
        out["model"] = self.model
        return out


class _Call:
    """One request's litellm state, from its translation to its answer."""

    __slots__ = ("messages", "optional", "json_mode", "body", "stream")

    def __init__(self, messages, optional, json_mode, body, stream) -> None:
        self.messages = messages
        self.optional = optional
        self.json_mode = json_mode
        self.body = body
        self.stream = stream


class LitellmTranslator(Translator):
    """Client API → OpenAI Chat (plano's bridges, when the client speaks another API) → litellm.

    One per provider entry and client API (it carries the entry's :class:`LitellmAdapter`)."""

    __slots__ = ("adapter", "_pending")

    def __init__(self, client: str, bridges: tuple, adapter: LitellmAdapter) -> None:
        super().__init__(client, LITELLM, bridges)
        self.adapter = adapter
        self._pending: collections.OrderedDict[int, _Call] = collections.OrderedDict()

    def request(self, request: dict, target=None) -> dict:
        chat = request
        for step in self.steps:
            chat = step.request(chat, target)
        call = self.adapter.transform(chat)
        pending = self._pending
        pending[id(request)] = call
        if len(pending) > _PENDING_MAX:
            pending.popitem(last=False)
        return call.body

    def prepare(self, urls, headers: dict[str, str], body: bytes, request: dict, target):
        call = self._pending.get(id(request))
        if call is None:  # prepare without request(): translate now (never reached by plano's caller)
            self.request(request, target)
            call = self._pending[id(request)]
        url, headers = self.adapter.headers(headers, call)
        headers = {k: v for k, v in headers.items() if k.lower() != "accept"}
        headers["accept"] = "text/event-stream" if call.stream else "application/json"
        return (url,), headers

    def wrap(self, resp, request: dict, api, target: str) -> "LitellmResponse":
        call = self._pending.pop(id(request), None)
        return LitellmResponse(resp, self, request, api, target, call)

    def response(self, answer: dict, request: dict) -> dict:
        """A chat answer → the client's API (the bridges' half; litellm's half is in :class:`LitellmResponse`)."""
        for step in reversed(self.steps):
            answer = step.response(answer, request)
        return answer

    def stream(self, request: dict) -> StreamTranslation:
        return StreamTranslation([LitellmChatStream(self.adapter, request),
                                  *(step.stream(request) for step in reversed(self.steps))])


class LitellmResponse(TranslatedResponse):
    """The provider's answer through litellm back to the client: JSON via ``transform_response``,
    errors in OpenAI's envelope (the relay then re-wraps them for the client's API)."""

    __slots__ = ("call",)

    def __init__(self, resp, translator: LitellmTranslator, request: dict, api, target: str, call) -> None:
        super().__init__(resp, translator, request, api, target)
        self.call = call

    async def read(self) -> bytes:
        data = await self._resp.read()
        if self.status >= 400:
            return error_to_openai(data, self.status)
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data  # not JSON: the relay answers 502
        if type(parsed) is not dict or self.call is None:
            return data
        chat = self.translator.adapter.response(data, self.status, self.headers, self.call, self.target)
        return orjson.dumps(self.translator.response(chat, self.request))


def error_to_openai(data: bytes, status: int) -> bytes:
    """A provider's error body → OpenAI's ``{"error": {message, type, code}}``.

    Providers put the text in ``message`` (Cohere), ``error.message``, ``error`` or ``detail``;
    a body in none of these shapes comes back as it was (the relay wraps its text)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(parsed, dict):
        return data
    err = parsed.get("error")
    message = None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        message = err["message"]
    elif isinstance(err, str):
        message = err
    elif isinstance(parsed.get("message"), str):
        message = parsed["message"]
    elif isinstance(parsed.get("detail"), str):
        message = parsed["detail"]
    if message is None:
        return data
    kind = "server_error" if status >= 500 else ("authentication_error" if status in (401, 403)
                                                  else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "code": str(status), "param": None}})


class LitellmChatStream:
    """The provider's SSE events → ``chat.completion.chunk`` payloads, through litellm's chunk parser.

    litellm's parsers take one JSON event at a time (``chunk_parser``); some read the SSE event
    name from the payload (Cohere's ``message-end``), so a named event is handed over with its
    name as ``event`` and its payload as ``data`` as well. The parser answers either litellm's
    generic chunk (text, tool call, finish, usage) or an OpenAI-shaped chunk object.
    """

    __slots__ = ("adapter", "parser", "base", "started", "finish", "usage", "ended")

    def __init__(self, adapter: LitellmAdapter, request: dict | None = None) -> None:
        self.adapter = adapter
        self.parser = adapter.config.get_model_response_iterator(streaming_response=iter(()), sync_stream=True,
                                                                 json_mode=False)
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": adapter.model}
        self.started = False
        self.finish = None
        self.usage = None
        self.ended = False

    def _chunk(self, delta: dict, finish=None, index: int = 0) -> tuple[None, dict]:
        return None, {**self.base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: str | None, data: dict) -> list:
        if self.ended:
            return []
        chunk = data
        if event and "event" not in data and "data" not in data:
            chunk = {**data, "event": event, "data": data}
        try:
            parsed = self.parser.chunk_parser(chunk)
        except Exception as exc:
            return [("error", {"message": f"litellm could not read a stream event ({type(exc).__name__})",
                               "type": "upstream_error", "code": "upstream_invalid_event"})]
        out: list = []
        if not self.started:
            self.started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(parsed, dict):  # litellm's GenericStreamingChunk
            if parsed.get("text"):
                out.append(self._chunk({"content": parsed["text"]}))
            tool = parsed.get("tool_use")
            if tool:
                out.append(self._chunk({"tool_calls": [{"index": tool.get("index") or 0, **tool}]}))
            if parsed.get("usage"):
                self.usage = dict(parsed["usage"])
            if parsed.get("is_finished"):
                self.finish = self.adapter._finish(parsed.get("finish_reason") or "stop")
                out.append(self._chunk({}, self.finish))
        elif parsed is not None:  # an OpenAI-shaped ModelResponseStream
            payload = parsed.model_dump(exclude_none=True)
            for choice in payload.get("choices") or ():
                out.append(self._chunk(choice.get("delta") or {}, choice.get("finish_reason"),
                                       choice.get("index", 0)))
                if choice.get("finish_reason"):
                    self.finish = choice["finish_reason"]
            if payload.get("usage"):
                self.usage = payload["usage"]
        return out

    def finish_stream(self) -> list:
        if self.ended:
            return []
        self.ended = True
        if self.finish is None:
            return [("error", {"message": f"The {self.adapter.provider} stream ended before its last event.",
                               "type": "upstream_error", "code": "upstream_incomplete_stream"})]
        if self.usage is not None:
            return [(None, {**self.base, "choices": [], "usage": self.usage})]
        return []


def translators(adapter: LitellmAdapter) -> dict[str, LitellmTranslator]:
    """A litellm entry's translator per client API: Chat directly, Messages and Responses through
    plano's own bridges to Chat first."""
    return {OPENAI_CHAT: LitellmTranslator(OPENAI_CHAT, (), adapter),
            ANTHROPIC_MESSAGES: LitellmTranslator(ANTHROPIC_MESSAGES, (MESSAGES_TO_CHAT,), adapter),
            OPENAI_RESPONSES: LitellmTranslator(OPENAI_RESPONSES, (RESPONSES_TO_CHAT,), adapter)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
