"""OpenAI Chat Completions ⇄ Gemini API ``generateContent``: requests, JSON answers, streams, errors, usage.

Plano's own translator (no SDK): Chat requests become ``POST {base}/v1beta/models/{model}:generateContent``
(``:streamGenerateContent?alt=sse`` when streaming) with ``x-goog-api-key``; Anthropic Messages
and Responses clients reach Gemini through the Chat bridge (:mod:`.chat_anthropic`,
:mod:`.responses_chat`). Streams are translated event by event (each SSE event is one
``GenerateContentResponse``), nothing is buffered.

Mapping decisions:

- system/developer messages → ``systemInstruction.parts``; ``user`` → role ``user``,
  ``assistant`` → role ``model``; consecutive turns of one role are merged (Gemini wants
  alternating turns).
- content: text → ``{text}``; ``image_url`` / ``input_audio`` / ``file`` with data (``data:``
  URL or base64) → ``inlineData {mimeType, data}``; an http(s) image URL → ``fileData
  {mimeType, fileUri}`` (mime type from the extension, else ``image/jpeg``).
- tools: ``functionDeclarations`` (``parameters`` = the JSON schema less ``$schema``,
  ``additionalProperties`` and ``strict``, which the Gemini API refuses); assistant
  ``tool_calls`` → ``functionCall {name, args}``; ``role: tool`` → ``functionResponse
  {name, response}`` (the name found from the call's id; a JSON-object result is the
  response, anything else ``{"content": text}``); tool_choice ``auto``/``none``/``required``/
  named → ``toolConfig.functionCallingConfig`` ``AUTO``/``NONE``/``ANY``/``ANY`` +
  ``allowedFunctionNames``.
- Gemini's ``thoughtSignature`` on a ``functionCall`` must come back with the call on the
  next turn (Gemini 3 refuses the turn otherwise): it rides in the tool call id
  (``call_<n>_ts_<urlsafe base64>``, which the Anthropic bridge keeps as the ``tool_use`` id)
  and in ``extra_content.google.thought_signature`` (as Google's own OpenAI layer sends it).
- generation: ``max_completion_tokens``/``max_tokens`` → ``maxOutputTokens``, ``stop`` →
  ``stopSequences``, ``n`` → ``candidateCount``, temperature/top_p/top_k/seed/penalties,
  ``response_format`` json → ``responseMimeType`` (+ ``responseJsonSchema``),
  ``reasoning_effort`` → ``thinkingConfig.thinkingBudget`` (low 1024, medium 8192, high 24576),
  an Anthropic-style ``thinking`` → ``thinkingConfig {thinkingBudget, includeThoughts}``.
- answers: ``thought: true`` text parts → ``reasoning_content``; finish reasons ``STOP`` →
  ``stop`` (``tool_calls`` when the turn called functions), ``MAX_TOKENS`` → ``length``,
  safety/recitation/blocklist/prohibited/SPII → ``content_filter``; a prompt blocked by
  ``promptFeedback.blockReason`` → an empty answer with ``content_filter``.
- usage: ``prompt_tokens = promptTokenCount`` (it includes ``cachedContentTokenCount``, →
  ``prompt_tokens_details.cached_tokens``); ``completion_tokens = candidatesTokenCount +
  thoughtsTokenCount`` (OpenAI counts reasoning as completion; → ``reasoning_tokens``).
- errors: ``{"error": {code, message, status}}`` (also as a one-element list) → OpenAI's
  envelope, ``code`` = the Google status (``INVALID_ARGUMENT`` ...); the client API's relay
  re-wraps it for Anthropic/Responses clients.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
import uuid

import orjson

# This module is imported at the end of gateway.wire.translate, once TranslatedResponse exists.
from gateway.wire.translate import TranslatedResponse

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}
_EFFORT_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
#: JSON-schema keywords the Gemini API's ``parameters`` (an OpenAPI subset) refuses.
_SCHEMA_DROP = frozenset({"$schema", "additionalProperties", "strict", "$id"})
_MIME_BY_EXT = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                "webp": "image/webp", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf"}
_SIG_MARK = "_ts_"
_RAW_MARK = "_tx_"
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")


def finish_to_chat(reason, called: bool):
    if reason is None:
        return None
    out = _FINISH.get(reason, "stop")
    return "tool_calls" if called and out == "stop" else out


# ============================================================================ usage


def usage_to_chat(meta) -> dict | None:
    if not isinstance(meta, dict):
        return None
    prompt = meta.get("promptTokenCount") or 0
    thoughts = meta.get("thoughtsTokenCount") or 0
    completion = (meta.get("candidatesTokenCount") or 0) + thoughts
    total = meta.get("totalTokenCount") or (prompt + completion + (meta.get("toolUsePromptTokenCount") or 0))
    usage: dict = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    cached = meta.get("cachedContentTokenCount")
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


# ============================================================================ requests: chat → gemini


def _data_url(url: str) -> tuple[str, str] | None:
    if url.startswith("data:") and ";base64," in url:
        mime, data = url[5:].split(";base64,", 1)
        return mime or "application/octet-stream", data
    return None


def _guess_mime(url: str, default: str) -> str:
    path = url.split("?", 1)[0].rsplit(".", 1)
    return _MIME_BY_EXT.get(path[-1].lower(), default) if len(path) == 2 else default


def _part(part) -> dict | None:
    if isinstance(part, str):
        return {"text": part}
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "text":
        return {"text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            return None
        inline = _data_url(url)
        if inline:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        return {"fileData": {"mimeType": _guess_mime(url, "image/jpeg"), "fileUri": url}}
    if kind == "input_audio":
        audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
        if isinstance(audio.get("data"), str):
            return {"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio["data"]}}
        return None
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        data = file.get("file_data")
        if isinstance(data, str):
            inline = _data_url(data)
            if inline:
                return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
            return {"inlineData": {"mimeType": _guess_mime(file.get("filename") or "", "application/pdf"),
                                   "data": data}}
        if isinstance(file.get("file_id"), str):
            return {"fileData": {"mimeType": _guess_mime(file["file_id"], "application/pdf"), "fileUri": file["file_id"]}}
    return None


def _parts(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if isinstance(content, list):
        return [p for p in (_part(x) for x in content) if p is not None and p.get("text") != ""]
    return []


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _args(text) -> dict:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def encode_call_id(n, signature: str | None, gemini_id: str | None = None) -> str:
    """A tool call id carrying Gemini's thought signature in characters any client keeps (``[A-Za-z0-9_-]``):
    a standard base64 signature (what Gemini sends) as URL-safe base64 after ``_ts_``; anything else
    base64url-encoded after ``_tx_``."""
    base = gemini_id or f"call_{n}{uuid.uuid4().hex[:12]}"
    if not signature:
        return base
    if _B64.match(signature) and len(signature) % 4 == 0:
        return f"{base}{_SIG_MARK}{signature.rstrip('=').translate(_TO_URLSAFE)}"
    return f"{base}{_RAW_MARK}{base64.urlsafe_b64encode(signature.encode()).decode().rstrip('=')}"


def decode_call_id(call_id: str) -> tuple[str, str | None]:
    """(the id without the signature, the thought signature or None)."""
    if _SIG_MARK in call_id:
        base, _, packed = call_id.partition(_SIG_MARK)
        return base, packed.translate(_FROM_URLSAFE) + "=" * (-len(packed) % 4)
    if _RAW_MARK in call_id:
        base, _, packed = call_id.partition(_RAW_MARK)
        try:
            return base, base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return call_id, None
    return call_id, None


def _signature_of(call: dict) -> str | None:
    extra = call.get("extra_content")
    if isinstance(extra, dict) and isinstance(extra.get("google"), dict):
        sig = extra["google"].get("thought_signature")
        if isinstance(sig, str) and sig:
            return sig
    return decode_call_id(call.get("id") or "")[1]


def clean_schema(schema):
    """A JSON schema without the keywords Gemini's ``parameters`` refuses (recursively)."""
    if isinstance(schema, dict):
        return {k: clean_schema(v) for k, v in schema.items() if k not in _SCHEMA_DROP}
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _function_response(content) -> dict:
    text = _text(content) if not isinstance(content, str) else content
    if text.strip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"content": text}


def chat_request_to_gemini(req: dict) -> dict:
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool call id → function name

    def add(role: str, parts: list[dict]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in req.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(p for p in _parts(content) if "text" in p)
        elif role == "user":
            add("user", _parts(content))
        elif role == "assistant":
            parts = _parts(content)  # thought summaries are not sent back (their signatures are)
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                name = fn.get("name") or ""
                if call.get("id"):
                    names[call["id"]] = name
                part: dict = {"functionCall": {"name": name, "args": _args(fn.get("arguments"))}}
                signature = _signature_of(call)
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            add("model", parts)
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id") or ""
            name = names.get(call_id) or message.get("name") or call_id
            add("user", [{"functionResponse": {"name": name, "response": _function_response(content)}}])
    out: dict = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: dict = {}
    max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        config["maxOutputTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                     ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if req.get(src) is not None:
            config[dst] = req[src]
    n = req.get("n")
    if isinstance(n, int) and n > 1:
        config["candidateCount"] = n
    stop = req.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str)]
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt.get("json_schema"), dict) else None
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    thinking = req.get("thinking")
    effort = req.get("reasoning_effort")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        config["thinkingConfig"] = {"includeThoughts": True,
                                    **({"thinkingBudget": thinking["budget_tokens"]}
                                       if isinstance(thinking.get("budget_tokens"), int) else {})}
    elif effort in _EFFORT_BUDGET:
        config["thinkingConfig"] = {"thinkingBudget": _EFFORT_BUDGET[effort]}
    elif effort == "none":
        config["thinkingConfig"] = {"thinkingBudget": 0}
    if config:
        out["generationConfig"] = config
    tools = [t for t in (req.get("tools") or ()) if isinstance(t, dict)]
    declarations = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if not fn.get("name"):
            continue
        decl = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params.get("properties"):
            decl["parameters"] = clean_schema(params)
        declarations.append(decl)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = req.get("tool_choice")
    mode = None
    allowed = None
    if choice == "auto":
        mode = "AUTO"
    elif choice == "none":
        mode = "NONE"
    elif choice == "required":
        mode = "ANY"
    elif isinstance(choice, dict):
        fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        if fn.get("name"):
            mode, allowed = "ANY", [fn["name"]]
    if mode is not None and declarations:
        config_fc: dict = {"mode": mode}
        if allowed:
            config_fc["allowedFunctionNames"] = allowed
        out["toolConfig"] = {"functionCallingConfig": config_fc}
    return out


# ============================================================================ JSON answers: gemini → chat


def _candidate_message(candidate: dict, counter) -> tuple[dict, bool]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict] = []
    content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
    for part in content.get("parts") or ():
        if not isinstance(part, dict):
            continue
        if "functionCall" in part and isinstance(part["functionCall"], dict):
            calls.append(_tool_call(part, next(counter)))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return message, bool(calls)


def _tool_call(part: dict, n: int) -> dict:
    fc = part["functionCall"]
    signature = part.get("thoughtSignature") if isinstance(part.get("thoughtSignature"), str) else None
    call = {"id": encode_call_id(n, signature, fc.get("id") if isinstance(fc.get("id"), str) else None),
            "type": "function",
            "function": {"name": fc.get("name") or "", "arguments": orjson.dumps(fc.get("args") or {}).decode()}}
    if signature:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _completion_id(answer: dict) -> str:
    rid = answer.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def gemini_response_to_chat(answer: dict, request: dict | None = None) -> dict:
    counter = itertools.count()
    choices = []
    for i, candidate in enumerate(answer.get("candidates") or ()):
        if not isinstance(candidate, dict):
            continue
        message, called = _candidate_message(candidate, counter)
        choices.append({"index": candidate.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": finish_to_chat(candidate.get("finishReason") or "STOP", called)})
    if not choices:  # the prompt was blocked (promptFeedback.blockReason) or nothing came back
        blocked = isinstance(answer.get("promptFeedback"), dict) and answer["promptFeedback"].get("blockReason")
        choices.append({"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": "content_filter" if blocked else "stop"})
    out = {"id": _completion_id(answer), "object": "chat.completion", "created": int(time.time()),
           "model": answer.get("modelVersion") or (request or {}).get("model") or "", "choices": choices}
    usage = usage_to_chat(answer.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


# ============================================================================ errors


_STATUS_TYPE = {"INVALID_ARGUMENT": "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
                "OUT_OF_RANGE": "invalid_request_error", "NOT_FOUND": "invalid_request_error",
                "UNAUTHENTICATED": "authentication_error", "PERMISSION_DENIED": "permission_error",
                "RESOURCE_EXHAUSTED": "rate_limit_error", "DEADLINE_EXCEEDED": "timeout_error",
                "UNAVAILABLE": "service_unavailable_error", "INTERNAL": "server_error"}


def error_to_openai(data: bytes, status: int) -> bytes:
    """Google's ``{"error": {code, message, status}}`` (or a list of one) → OpenAI's envelope.
    A body in no known shape comes back as it was (the relay wraps it with its text)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return data
    google_status = err.get("status") if isinstance(err.get("status"), str) else None
    kind = _STATUS_TYPE.get(google_status or "") or ("server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": err["message"], "type": kind,
                                   "code": google_status or str(err.get("code") or status), "param": None}})


# ============================================================================ streams


class GeminiToChatStream:
    """Gemini ``GenerateContentResponse`` SSE events → ``chat.completion.chunk`` payloads, one by one.

    Each event carries new text (or whole function calls); ``usageMetadata`` is cumulative
    (the last one wins, sent as a final usage chunk); the last event has ``finishReason``.
    A stream that ends without one was cut: an error, not a silent short answer.
    """

    __slots__ = ("base", "started", "finish", "usage", "calls", "ended", "blocked")

    def __init__(self, request: dict | None = None) -> None:
        self.base = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": (request or {}).get("model") or ""}
        self.started = False
        self.finish = None
        self.usage = None
        self.calls = 0
        self.ended = False
        self.blocked = False

    def _chunk(self, delta: dict, finish=None, index: int = 0) -> tuple[None, dict]:
        return None, {**self.base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: str | None, data: dict) -> list:
        if self.ended:
            return []
        err = data.get("error")
        if isinstance(err, dict):
            return [("error", {"message": err.get("message") or "Gemini stream error",
                               "type": _STATUS_TYPE.get(err.get("status") or "", "upstream_error"),
                               "code": err.get("status")})]
        out: list = []
        if not self.started:
            self.started = True
            rid = data.get("responseId")
            self.base["id"] = f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"
            if isinstance(data.get("modelVersion"), str):
                self.base["model"] = data["modelVersion"]
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(data.get("usageMetadata"), dict):
            self.usage = data["usageMetadata"]
        candidates = data.get("candidates")
        if not candidates:
            feedback = data.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                self.blocked = True
                self.finish = "content_filter"
                out.append(self._chunk({}, "content_filter"))
            return out
        for candidate in candidates:
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", 0)
            content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
            for part in content.get("parts") or ():
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("functionCall"), dict):
                    call = _tool_call(part, self.calls)
                    out.append(self._chunk({"tool_calls": [{"index": self.calls, **call}]}, index=index))
                    self.calls += 1
                elif isinstance(part.get("text"), str) and part["text"]:
                    key = "reasoning_content" if part.get("thought") else "content"
                    out.append(self._chunk({key: part["text"]}, index=index))
            reason = candidate.get("finishReason")
            if reason:
                self.finish = finish_to_chat(reason, self.calls > 0)
                out.append(self._chunk({}, self.finish, index=index))
        return out

    def finish_stream(self) -> list:
        if self.ended:
            return []
        self.ended = True
        if self.finish is None:
            return [("error", {"message": "The Gemini stream ended before its last event (no finishReason).",
                               "type": "upstream_error", "code": "upstream_incomplete_stream"})]
        usage = usage_to_chat(self.usage)
        return [(None, {**self.base, "choices": [], "usage": usage})] if usage is not None else []


# ============================================================================ upstream I/O


def stream_url(url: str) -> str:
    """``…/models/m:generateContent[?q]`` → ``…/models/m:streamGenerateContent?[q&]alt=sse``."""
    base, sep, query = url.partition("?")
    base = base.replace(":generateContent", ":streamGenerateContent", 1)
    return f"{base}?{query}&alt=sse" if sep else f"{base}?alt=sse"


class GeminiIO:
    """What differs in talking to Gemini beyond the JSON translation: the URL per stream mode,
    and errors in Google's envelope."""

    __slots__ = ()

    def prepare(self, urls, headers: dict, body: bytes, request: dict, target):
        headers = dict(headers)
        if request.get("stream") is True:
            headers["accept"] = "text/event-stream"
            return tuple(stream_url(u) for u in urls), headers
        headers["accept"] = "application/json"
        return urls, headers

    def wrap(self, resp, translator, request, api, target_name):
        return GeminiResponse(resp, translator, request, api, target_name)


class GeminiResponse(TranslatedResponse):
    """A Gemini answer: errors re-enveloped (OpenAI's) before the relay wraps them for the client."""

    __slots__ = ()

    async def read(self) -> bytes:
        if self.status >= 400:
            return error_to_openai(await self._resp.read(), self.status)
        return await TranslatedResponse.read(self)


IO = GeminiIO()
