"""OpenAI Chat Completions ⇄ Amazon Bedrock Converse: requests, JSON answers, binary streams, errors, usage.

Plano's own translator (no boto3): Chat requests become ``POST {base}/model/{modelId}/converse``
(``/converse-stream`` when streaming), signed with SigV4 (:mod:`gateway.llm.auth.sigv4`, the
target's ``signer``) or carrying a Bedrock API key (``Authorization: Bearer``). Anthropic
Messages and Responses clients reach Bedrock through the Chat bridge. ConverseStream
answers in the binary AWS event stream (:mod:`.eventstream`), decoded incrementally and
translated message by message — nothing is buffered beyond one incomplete frame.

Mapping decisions:

- system/developer messages → ``system: [{text}]``; consecutive turns of one role are merged
  (Converse wants strictly alternating user/assistant turns; all tool results of a turn in
  one user message).
- content: text → ``{text}`` (blank text is left out: Converse refuses it); ``image_url`` with
  a ``data:`` URL → ``{image: {format, source: {bytes}}}`` (Converse takes no image URLs: an
  http(s) image is a 400 in the client's envelope); ``file`` with data → ``{document: {format,
  name, source: {bytes}}}``.
- tools: ``toolConfig.tools[].toolSpec {name, description, inputSchema: {json}}``; assistant
  ``tool_calls`` → ``toolUse {toolUseId, name, input}``; ``role: tool`` → ``toolResult
  {toolUseId, content: [{json}] or [{text}]}``; tool_choice ``auto``/``required``/named →
  ``{auto}``/``{any}``/``{tool: {name}}``; ``none`` has no Converse equivalent: the tools are
  left out (kept, without a choice, when the history holds tool blocks — Converse then
  requires ``toolConfig``).
- thinking: assistant ``thinking_blocks`` ⇄ ``reasoningContent {reasoningText: {text,
  signature}}`` (``redacted_thinking`` ⇄ ``redactedContent``), answers' reasoning →
  ``reasoning_content`` + ``thinking_blocks``, as the Anthropic translator does; a chat
  ``thinking`` field → ``additionalModelRequestFields.thinking`` (Claude on Bedrock).
- ``max_completion_tokens``/``max_tokens``/``temperature``/``top_p``/``stop`` →
  ``inferenceConfig {maxTokens, temperature, topP, stopSequences}``.
- stop reasons: ``end_turn``/``stop_sequence`` → ``stop``, ``tool_use`` → ``tool_calls``,
  ``max_tokens``/``model_context_window_exceeded`` → ``length``, ``guardrail_intervened``/
  ``content_filtered`` → ``content_filter``.
- usage: Converse's ``inputTokens`` excludes cache reads and writes (as Anthropic's does):
  ``prompt_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens``,
  ``cached_tokens = cacheReadInputTokens``.
- errors: ``{"message": ...}`` with ``x-amzn-ErrorType: ValidationException:…`` → OpenAI's
  envelope (``code`` = the exception name); in-stream exception frames (``:message-type:
  exception``) → the client API's in-stream error event, and the stream ends there.
"""

from __future__ import annotations

import re
import time
import uuid

import orjson
from multidict import CIMultiDict
from yarl import URL

# This module is imported at the end of gateway.wire.translate, once TranslatedResponse exists.
from gateway.upstream import UpstreamError
from gateway.wire.errors import GatewayError
from gateway.wire.translate import TranslatedResponse
from gateway.wire.translate.eventstream import EventStreamDecoder, EventStreamError

EVENTSTREAM = "application/vnd.amazon.eventstream"

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_DOC_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                "application/vnd.ms-excel": "xls",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
                "text/html": "html", "text/plain": "txt", "text/markdown": "md"}
_DOC_NAME = re.compile(r"[^A-Za-z0-9\s\-\(\)\[\]]")


def stop_to_chat(reason):
    return _STOP.get(reason, "stop") if reason is not None else None


# ============================================================================ usage


def usage_to_chat(usage) -> dict | None:
    if not isinstance(usage, dict):
        return None
    read = usage.get("cacheReadInputTokens") or 0
    write = usage.get("cacheWriteInputTokens") or 0
    prompt = (usage.get("inputTokens") or 0) + read + write
    completion = usage.get("outputTokens") or 0
    out = {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": usage.get("totalTokens") or prompt + completion}
    if read or write:
        out["prompt_tokens_details"] = {"cached_tokens": read}
    return out


# ============================================================================ requests: chat → converse


def _data_url(url: str) -> tuple[str, str] | None:
    if url.startswith("data:") and ";base64," in url:
        mime, data = url[5:].split(";base64,", 1)
        return (mime or "application/octet-stream").lower(), data
    return None


def _block(part, docs: list) -> dict | None:
    if isinstance(part, str):
        return {"text": part} if part.strip() else None
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "text":
        text = part.get("text") or ""
        return {"text": text} if text.strip() else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        inline = _data_url(url) if isinstance(url, str) else None
        if inline is None:
            raise GatewayError(400, "Amazon Bedrock takes images as data: URLs (base64) only, not links.",
                               code="unsupported_image_url", param="messages")
        fmt = _IMAGE_FORMATS.get(inline[0])
        if fmt is None:
            raise GatewayError(400, f"Amazon Bedrock does not take images of type '{inline[0]}'.",
                               code="unsupported_image_type", param="messages")
        return {"image": {"format": fmt, "source": {"bytes": inline[1]}}}
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        data = file.get("file_data")
        inline = _data_url(data) if isinstance(data, str) else None
        if inline is None:
            return None
        docs.append(None)
        name = _DOC_NAME.sub(" ", (file.get("filename") or "").rsplit(".", 1)[0]).strip() or f"document {len(docs)}"
        return {"document": {"format": _DOC_FORMATS.get(inline[0], "pdf"), "name": name[:200],
                             "source": {"bytes": inline[1]}}}
    return None


def _blocks(content, docs: list) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if isinstance(content, list):
        return [b for b in (_block(p, docs) for p in content) if b is not None]
    return []


def _input(arguments) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def _tool_result(message: dict) -> dict:
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    else:
        text = content if isinstance(content, str) else ""
    result: list[dict]
    value = None
    if text.strip().startswith(("{", "[")):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
    if isinstance(value, dict):
        result = [{"json": value}]
    else:
        result = [{"text": text if text.strip() else "(empty)"}]
    return {"toolResult": {"toolUseId": message.get("tool_call_id") or "", "content": result}}


def chat_request_to_bedrock(req: dict) -> dict:
    system: list[dict] = []
    messages: list[dict] = []
    docs: list = []
    has_tool_blocks = False

    def add(role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in req.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(b for b in _blocks(content, docs) if "text" in b)
        elif role == "user":
            add("user", _blocks(content, docs))
        elif role == "assistant":
            blocks: list[dict] = []
            for tb in message.get("thinking_blocks") or ():
                if not isinstance(tb, dict):
                    continue
                if tb.get("type") == "thinking" and tb.get("thinking"):
                    text = {"text": tb["thinking"]}
                    if tb.get("signature"):
                        text["signature"] = tb["signature"]
                    blocks.append({"reasoningContent": {"reasoningText": text}})
                elif tb.get("type") == "redacted_thinking" and tb.get("data"):
                    blocks.append({"reasoningContent": {"redactedContent": tb["data"]}})
            blocks.extend(_blocks(content, docs))
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                has_tool_blocks = True
                blocks.append({"toolUse": {"toolUseId": call.get("id") or f"tooluse_{uuid.uuid4().hex[:16]}",
                                           "name": fn.get("name") or "", "input": _input(fn.get("arguments"))}})
            add("assistant", blocks)
        elif role in ("tool", "function"):
            has_tool_blocks = True
            add("user", [_tool_result(message)])
    out: dict = {"messages": messages}
    if system:
        out["system"] = system
    config: dict = {}
    max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        config["maxTokens"] = max_tokens
    if req.get("temperature") is not None:
        config["temperature"] = req["temperature"]
    if req.get("top_p") is not None:
        config["topP"] = req["top_p"]
    stop = req.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str)]
    if config:
        out["inferenceConfig"] = config
    if isinstance(req.get("thinking"), dict):
        out["additionalModelRequestFields"] = {"thinking": req["thinking"]}
    specs = []
    for tool in req.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if not fn.get("name"):
            continue
        spec = {"name": fn["name"],
                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    choice = req.get("tool_choice")
    if specs and (choice != "none" or has_tool_blocks):
        tool_config: dict = {"tools": specs}
        if choice == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
            if fn.get("name"):
                tool_config["toolChoice"] = {"tool": {"name": fn["name"]}}
        out["toolConfig"] = tool_config
    return out


# ============================================================================ JSON answers: converse → chat


def bedrock_response_to_chat(answer: dict, request: dict | None = None) -> dict:
    output = answer.get("output") if isinstance(answer.get("output"), dict) else {}
    message = output.get("message") if isinstance(output.get("message"), dict) else {}
    texts: list[str] = []
    calls: list[dict] = []
    thinking: list[dict] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId") or "", "type": "function",
                          "function": {"name": use.get("name") or "",
                                       "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        elif isinstance(block.get("reasoningContent"), dict):
            rc = block["reasoningContent"]
            if isinstance(rc.get("reasoningText"), dict):
                rt = rc["reasoningText"]
                thinking.append({"type": "thinking", "thinking": rt.get("text") or "",
                                 "signature": rt.get("signature") or ""})
            elif rc.get("redactedContent"):
                thinking.append({"type": "redacted_thinking", "data": rc["redactedContent"]})
    chat_message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        chat_message["tool_calls"] = calls
    if thinking:
        chat_message["reasoning_content"] = "".join(t.get("thinking") or "" for t in thinking)
        chat_message["thinking_blocks"] = thinking
    out = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
           "model": (request or {}).get("model") or "",
           "choices": [{"index": 0, "message": chat_message, "logprobs": None,
                        "finish_reason": stop_to_chat(answer.get("stopReason")) or "stop"}]}
    usage = usage_to_chat(answer.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


# ============================================================================ errors


_ERROR_TYPE = {"ValidationException": "invalid_request_error", "AccessDeniedException": "permission_error",
               "ResourceNotFoundException": "invalid_request_error", "ThrottlingException": "rate_limit_error",
               "ServiceQuotaExceededException": "rate_limit_error", "ModelTimeoutException": "timeout_error",
               "ModelNotReadyException": "service_unavailable_error",
               "ServiceUnavailableException": "service_unavailable_error",
               "InternalServerException": "server_error", "ModelErrorException": "server_error",
               "ModelStreamErrorException": "server_error", "UnrecognizedClientException": "authentication_error",
               "InvalidSignatureException": "authentication_error",
               "ExpiredTokenException": "authentication_error"}


def exception_name(value) -> str | None:
    """``ValidationException`` from ``ValidationException:http://internal.amazon.com/…`` (or ``…#Name``)."""
    if not isinstance(value, str) or not value:
        return None
    name = value.split(":", 1)[0]
    name = name.rsplit("#", 1)[-1]
    return name[0].upper() + name[1:] if name else None


def _error_type(name: str | None, status: int) -> str:
    return _ERROR_TYPE.get(name or "") or ("server_error" if status >= 500 else "invalid_request_error")


def error_to_openai(data: bytes, status: int, error_type_header: str | None = None) -> bytes:
    """Bedrock's ``{"message": …}`` (+ ``x-amzn-ErrorType``) → OpenAI's envelope."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(parsed, dict):
        return data
    message = parsed.get("message") or parsed.get("Message")
    if not isinstance(message, str):
        return data
    name = exception_name(error_type_header) or exception_name(parsed.get("__type"))
    return orjson.dumps({"error": {"message": message, "type": _error_type(name, status),
                                   "code": name or str(status), "param": None}})


# ============================================================================ streams


class BedrockToChatStream:
    """ConverseStream events (``:event-type`` + JSON payload) → ``chat.completion.chunk`` payloads.

    ``messageStop`` carries the stop reason, the ``metadata`` event after it the usage (sent
    as a final usage chunk). A stream that ends before ``messageStop`` was cut: an error.
    """

    __slots__ = ("base", "started", "tools", "thinking", "finish", "usage", "ended")

    def __init__(self, request: dict | None = None) -> None:
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": (request or {}).get("model") or ""}
        self.started = False
        self.tools: dict[int, int] = {}  # contentBlockIndex → chat tool_call index
        self.thinking: dict[int, dict] = {}  # contentBlockIndex → accumulated thinking block
        self.finish = None
        self.usage = None
        self.ended = False

    def _chunk(self, delta: dict, finish=None) -> tuple[None, dict]:
        return None, {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: str | None, data: dict) -> list:
        if self.ended:
            return []
        out: list = []
        if not self.started:
            self.started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if event == "contentBlockDelta":
            delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
            index = data.get("contentBlockIndex", 0)
            if isinstance(delta.get("text"), str):
                if delta["text"]:
                    out.append(self._chunk({"content": delta["text"]}))
            elif isinstance(delta.get("toolUse"), dict):
                if index not in self.tools:  # a delta without its start: open the call anyway
                    self.tools[index] = len(self.tools)
                piece = delta["toolUse"].get("input")
                if isinstance(piece, str) and piece:
                    out.append(self._chunk({"tool_calls": [{"index": self.tools[index],
                                                            "function": {"arguments": piece}}]}))
            elif isinstance(delta.get("reasoningContent"), dict):
                rc = delta["reasoningContent"]
                block = self.thinking.setdefault(index, {"type": "thinking", "thinking": "", "signature": ""})
                if isinstance(rc.get("text"), str) and rc["text"]:
                    block["thinking"] += rc["text"]
                    out.append(self._chunk({"reasoning_content": rc["text"]}))
                if isinstance(rc.get("signature"), str):
                    block["signature"] += rc["signature"]
                if rc.get("redactedContent"):
                    self.thinking[index] = {"type": "redacted_thinking", "data": rc["redactedContent"]}
        elif event == "contentBlockStart":
            start = data.get("start") if isinstance(data.get("start"), dict) else {}
            use = start.get("toolUse")
            if isinstance(use, dict):
                n = len(self.tools)
                self.tools[data.get("contentBlockIndex", 0)] = n
                out.append(self._chunk({"tool_calls": [{"index": n, "id": use.get("toolUseId") or f"tooluse_{n}",
                                                        "type": "function",
                                                        "function": {"name": use.get("name") or "",
                                                                     "arguments": ""}}]}))
        elif event == "contentBlockStop":
            block = self.thinking.pop(data.get("contentBlockIndex", 0), None)
            if block is not None:  # the whole block, with its signature, for a client that sends it back
                out.append(self._chunk({"thinking_blocks": [block]}))
        elif event == "messageStop":
            self.finish = stop_to_chat(data.get("stopReason")) or "stop"
            out.append(self._chunk({}, self.finish))
        elif event == "metadata":
            if isinstance(data.get("usage"), dict):
                self.usage = data["usage"]
        return out  # messageStart and unknown events add nothing beyond the first role chunk

    def finish_stream(self) -> list:
        if self.ended:
            return []
        self.ended = True
        if self.finish is None:
            return [("error", {"message": "The Bedrock stream ended before messageStop.",
                               "type": "upstream_error", "code": "upstream_incomplete_stream"})]
        usage = usage_to_chat(self.usage)
        return [(None, {**self.base, "choices": [], "usage": usage})] if usage is not None else []


# ============================================================================ upstream I/O


def stream_url(url: str) -> str:
    """``…/model/{id}/converse[?q]`` → ``…/model/{id}/converse-stream[?q]``."""
    base, sep, query = url.partition("?")
    if base.endswith("/converse"):
        base += "-stream"
    return f"{base}{sep}{query}"


class BedrockIO:
    """Beyond the JSON translation: the URL per stream mode, SigV4 signing over the final bytes
    (the target's ``signer``; none with a Bedrock API key), the path sent exactly as signed,
    the binary event stream, and errors in Bedrock's shape.

    With several ``base_urls`` the signature is computed for the first endpoint's host."""

    __slots__ = ()

    def prepare(self, urls, headers: dict, body: bytes, request: dict, target):
        headers = dict(headers)
        if request.get("stream") is True:
            urls = tuple(stream_url(u) for u in urls)
            headers["accept"] = EVENTSTREAM
        else:
            headers["accept"] = "application/json"
        headers["content-type"] = "application/json"
        signer = getattr(target, "signer", None)
        if signer is not None:
            headers = signer.sign("POST", urls[0], headers, body)
        # The path goes out byte for byte as signed (a model id's ``:`` stays ``%3A``).
        return tuple(URL(u, encoded=True) for u in urls), headers

    def wrap(self, resp, translator, request, api, target_name):
        return BedrockResponse(resp, translator, request, api, target_name)


class BedrockResponse(TranslatedResponse):
    """A Bedrock answer: JSON translated as any other; the event stream decoded frame by frame
    (shown to the relay as ``text/event-stream``: what it sends on is the client's SSE)."""

    __slots__ = ("_eventstream",)

    def __init__(self, resp, translator, request, api, target) -> None:
        TranslatedResponse.__init__(self, resp, translator, request, api, target)
        self._eventstream = EVENTSTREAM in resp.headers.get("content-type", "")
        if self._eventstream:
            headers = CIMultiDict(resp.headers)
            headers["Content-Type"] = "text/event-stream"
            self.headers = headers

    def with_header(self, name: str, value: str) -> None:
        headers = CIMultiDict(self.headers)
        headers[name] = value
        self.headers = headers

    async def read(self) -> bytes:
        if self.status >= 400:
            return error_to_openai(await self._resp.read(), self.status,
                                   self._resp.headers.get("x-amzn-errortype"))
        return await TranslatedResponse.read(self)

    async def chunks(self):
        if not self._eventstream:
            async for chunk in TranslatedResponse.chunks(self):
                yield chunk
            return
        api = self.api
        frame = api.frame
        state = self.translator.stream(self.request)
        decoder = EventStreamDecoder()
        async for chunk in self._resp.chunks():
            try:
                messages = decoder.feed(chunk)
            except EventStreamError as exc:
                raise UpstreamError("broken", self.target, str(exc)) from None
            if not messages:
                continue
            out: list = []
            failed = False
            for message in messages:
                kind = message.message_type
                if kind != "event":  # exception / error: the stream ends here
                    out.append(("error", _stream_exception(message)))
                    failed = True
                    break
                try:
                    payload = orjson.loads(message.payload) if message.payload else {}
                except orjson.JSONDecodeError:
                    raise UpstreamError("broken", self.target, "the upstream sent an event that is not JSON") \
                        from None
                if type(payload) is not dict:
                    raise UpstreamError("broken", self.target, "the upstream sent an event that is not an object")
                out.extend(state.feed(message.event_type, payload))
            if out:
                yield frame(out)
            if failed:
                end = api.stream_end()
                if end:
                    yield end
                return
        if decoder.pending:
            raise UpstreamError("broken", self.target, "the upstream stream ended inside an event-stream message")
        out = state.finish()
        yield (frame(out) if out else b"") + api.stream_end()


def _stream_exception(message) -> dict:
    headers = message.headers
    name = exception_name(headers.get(":exception-type") or headers.get(":error-code"))
    text = headers.get(":error-message")
    try:
        payload = orjson.loads(message.payload) if message.payload else {}
    except orjson.JSONDecodeError:
        payload = {}
    if isinstance(payload, dict) and isinstance(payload.get("message") or payload.get("Message"), str):
        text = payload.get("message") or payload.get("Message")
    return {"message": f"Amazon Bedrock: {name or 'error'}: {text or 'stream error'}",
            "type": _error_type(name, 500), "code": name}


IO = BedrockIO()
