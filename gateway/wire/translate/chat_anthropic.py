"""OpenAI Chat Completions ⇄ Anthropic Messages: requests, JSON responses, stream events, usage.

Plano's own code (no litellm): these sit on every translated request, so they are
plain dict walks with no validation beyond what a translation needs — anything the
other side does not know is left out rather than guessed at.

Mapping decisions (both directions unless noted):

- system: chat ``system``/``developer`` messages ⇄ Anthropic ``system`` (string, or text
  blocks; ``cache_control`` on blocks kept when going to Anthropic).
- content: text ⇄ ``text`` blocks; ``image_url`` (data: URL ⇄ ``base64`` source, else ``url``
  source); Anthropic ``document`` (PDF base64 ⇄ chat ``file`` part with ``file_data``,
  text source → text).
- tools: ``{"type": "function", "function": {name, description, parameters}}`` ⇄
  ``{name, description, input_schema}``; assistant ``tool_calls`` ⇄ ``tool_use`` blocks
  (arguments JSON string ⇄ ``input`` object); ``role: tool`` messages ⇄ ``tool_result``
  blocks in a user turn (consecutive ones merged into one turn).
- tool_choice: ``auto``/``none``/``required``/named function ⇄ ``auto``/``none``/``any``/
  ``tool``; ``parallel_tool_calls: false`` ⇄ ``disable_parallel_tool_use: true``.
- thinking: Anthropic ``thinking`` blocks ⇄ chat ``reasoning_content`` (text) plus
  ``thinking_blocks`` (the blocks with their ``signature``s, so a chat client that sends
  the assistant turn back round-trips them to Anthropic intact; ``redacted_thinking``
  too). A chat request's ``thinking`` field (an extension some SDKs send) is forwarded.
- stop reasons: ``end_turn``/``stop_sequence``/``pause_turn`` → ``stop``, ``max_tokens`` →
  ``length``, ``tool_use`` → ``tool_calls``, ``refusal`` → ``content_filter``; and back.
- usage: Anthropic ``input_tokens`` excludes cached tokens, OpenAI ``prompt_tokens``
  includes them: ``prompt_tokens = input + cache_read + cache_creation``,
  ``prompt_tokens_details.cached_tokens = cache_read``; and back.
- ``max_tokens``: Anthropic requires it; 4096 when a chat request has none (Plano's default).
"""

from __future__ import annotations

import time

import orjson

DEFAULT_MAX_TOKENS = 4096

_STOP_TO_CHAT = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_to_chat(reason):
    return _STOP_TO_CHAT.get(reason, "stop") if reason is not None else None


def stop_to_anthropic(reason):
    return _STOP_TO_ANTHROPIC.get(reason, "end_turn") if reason is not None else None


def _loads_object(text) -> dict:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"_value": value}


# ============================================================================ usage


def usage_to_chat(usage) -> dict | None:
    if not isinstance(usage, dict):
        return None
    inp = usage.get("input_tokens") or 0
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    out = usage.get("output_tokens") or 0
    prompt = inp + read + write
    chat = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}
    if read or write:
        chat["prompt_tokens_details"] = {"cached_tokens": read}
    return chat


def usage_to_anthropic(usage) -> dict:
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = usage.get("prompt_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {"input_tokens": max(0, prompt - cached), "output_tokens": usage.get("completion_tokens") or 0,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


# ============================================================================ requests: chat → anthropic


def _image_source(url: str) -> dict:
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": header or "image/png", "data": data}
    return {"type": "url", "url": url}


def _chat_part_to_block(part) -> dict | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "text":
        block = {"type": "text", "text": part.get("text") or ""}
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        return block
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "image", "source": _image_source(url)} if isinstance(url, str) else None
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        data = file.get("file_data")
        if isinstance(data, str) and data.startswith("data:") and ";base64," in data:
            media, b64 = data[5:].split(";base64,", 1)
            return {"type": "document", "source": {"type": "base64", "media_type": media or "application/pdf",
                                                   "data": b64}}
        return None
    return None


def _chat_content_to_blocks(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [b for b in (_chat_part_to_block(p) for p in content) if b is not None]
    return []


def _tool_result_content(content):
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = [b for b in _chat_content_to_blocks(content) if b["type"] in ("text", "image")]
    return blocks


def chat_request_to_anthropic(req: dict) -> dict:
    system: list[dict] = []
    messages: list[dict] = []

    def add(role: str, blocks: list[dict]) -> None:
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
            system.extend(b for b in _chat_content_to_blocks(content) if b["type"] == "text")
        elif role == "user":
            add("user", _chat_content_to_blocks(content))
        elif role == "assistant":
            blocks: list[dict] = []
            for tb in message.get("thinking_blocks") or ():
                if isinstance(tb, dict) and tb.get("type") in ("thinking", "redacted_thinking"):
                    blocks.append(dict(tb))
            blocks.extend(_chat_content_to_blocks(content))
            if isinstance(message.get("refusal"), str) and not blocks:
                blocks.append({"type": "text", "text": message["refusal"]})
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
                               "input": _loads_object(fn.get("arguments"))})
            add("assistant", blocks)
        elif role in ("tool", "function"):
            add("user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
                          "content": _tool_result_content(content)}])
    out: dict = {"model": req.get("model"), "messages": [m for m in messages if m["content"]]}
    if system:
        out["system"] = system
    max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
    out["max_tokens"] = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    for key in ("temperature", "top_p", "top_k", "thinking"):
        if req.get(key) is not None:
            out[key] = req[key]
    stop = req.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    if req.get("stream") is True:
        out["stream"] = True
    tools = [t for t in (req.get("tools") or ()) if isinstance(t, dict)]
    if tools:
        out["tools"] = [_tool_to_anthropic(t) for t in tools]
    choice = _tool_choice_to_anthropic(req.get("tool_choice"), req.get("parallel_tool_calls"))
    if choice is not None and (tools or choice.get("type") == "none"):
        out["tool_choice"] = choice
    user = req.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    return out


def _tool_to_anthropic(tool: dict) -> dict:
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    out = {"name": fn.get("name") or "", "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice_to_anthropic(choice, parallel) -> dict | None:
    out = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict):
        fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        if fn.get("name"):
            out = {"type": "tool", "name": fn["name"]}
    if parallel is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


# ============================================================================ requests: anthropic → chat


def _source_url(source) -> str | None:
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        return f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
    if source.get("type") == "url":
        return source.get("url")
    return None


def _block_to_chat_part(block) -> dict | None:
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        url = _source_url(block.get("source"))
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    if kind == "document":
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        if source.get("type") == "text":
            return {"type": "text", "text": source.get("data") or ""}
        if source.get("type") == "base64":
            part = {"type": "file", "file": {"file_data": _source_url(source)}}
            if block.get("title"):
                part["file"]["filename"] = block["title"]
            return part
        if source.get("type") == "url":
            return {"type": "text", "text": source.get("url") or ""}
    return None


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _simplify(parts: list[dict]):
    """A list of text parts becomes one string only when it is a single part (kept verbatim otherwise)."""
    if len(parts) == 1 and parts[0].get("type") == "text":
        return parts[0]["text"]
    return parts


def anthropic_request_to_chat(req: dict, *, max_tokens_field: str = "max_tokens") -> dict:
    messages: list[dict] = []
    system = req.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        parts = [{"type": "text", "text": b.get("text") or ""} for b in system
                 if isinstance(b, dict) and b.get("type") == "text"]
        if parts:
            messages.append({"role": "system", "content": _simplify(parts)})
    for message in req.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": "assistant" if role == "assistant" else "user", "content": content})
            continue
        if not isinstance(content, list):
            continue
        if role == "assistant":
            texts: list[str] = []
            calls: list[dict] = []
            thinking: list[dict] = []
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind == "text":
                    texts.append(block.get("text") or "")
                elif kind == "tool_use":
                    calls.append({"id": block.get("id") or "", "type": "function",
                                  "function": {"name": block.get("name") or "",
                                               "arguments": orjson.dumps(block.get("input") or {}).decode()}})
                elif kind in ("thinking", "redacted_thinking"):
                    thinking.append(block)
            out: dict = {"role": "assistant", "content": "".join(texts) if texts else None}
            if calls:
                out["tool_calls"] = calls
            if thinking:
                out["thinking_blocks"] = thinking
            messages.append(out)
            continue
        parts: list[dict] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                result = block.get("content")
                text = _text_of(result) if not isinstance(result, str) else result
                if block.get("is_error") and text:
                    text = f"Error: {text}"
                messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})
            else:
                part = _block_to_chat_part(block)
                if part is not None:
                    parts.append(part)
        if parts:
            messages.append({"role": "user", "content": _simplify(parts)})
    out = {"model": req.get("model"), "messages": messages}
    if isinstance(req.get("max_tokens"), int):
        out[max_tokens_field] = req["max_tokens"]
    for key in ("temperature", "top_p"):
        if req.get(key) is not None:
            out[key] = req[key]
    if req.get("stop_sequences"):
        out["stop"] = req["stop_sequences"]
    if req.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    tools = [t for t in (req.get("tools") or ()) if isinstance(t, dict) and t.get("name")
             and (t.get("type") in (None, "custom") or "input_schema" in t)]
    if tools:
        out["tools"] = [{"type": "function", "function": _function_of(t)} for t in tools]
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "auto":
            out["tool_choice"] = "auto"
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool" and choice.get("name"):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        if choice.get("disable_parallel_tool_use") is True and tools:
            out["parallel_tool_calls"] = False
    if "tool_choice" in out and not tools and out["tool_choice"] != "none":
        del out["tool_choice"]
    metadata = req.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    return out


def _function_of(tool: dict) -> dict:
    fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return fn


# ============================================================================ JSON responses


def anthropic_response_to_chat(msg: dict) -> dict:
    texts: list[str] = []
    calls: list[dict] = []
    thinking: list[dict] = []
    for block in msg.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id") or "", "type": "function",
                          "function": {"name": block.get("name") or "",
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(block)
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(b.get("thinking") or "" for b in thinking if b.get("type") == "thinking")
        message["thinking_blocks"] = thinking
    out = {"id": msg.get("id") or "", "object": "chat.completion", "created": int(time.time()),
           "model": msg.get("model") or "",
           "choices": [{"index": 0, "message": message, "logprobs": None,
                        "finish_reason": stop_to_chat(msg.get("stop_reason")) or "stop"}]}
    usage = usage_to_chat(msg.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def chat_response_to_anthropic(completion: dict) -> dict:
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict] = []
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        content.extend(b for b in blocks if isinstance(b, dict))
    else:
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            content.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
                            "input": _loads_object(fn.get("arguments"))})
    mid = completion.get("id") or ""
    return {"id": mid if str(mid).startswith("msg_") else f"msg_{mid}", "type": "message", "role": "assistant",
            "model": completion.get("model") or "", "content": content,
            "stop_reason": stop_to_anthropic(choice.get("finish_reason")) or "end_turn", "stop_sequence": None,
            "usage": usage_to_anthropic(completion.get("usage"))}


# ============================================================================ streams


class AnthropicToChatStream:
    """Anthropic Messages stream events → ``chat.completion.chunk`` payloads, event by event."""

    __slots__ = ("base", "blocks", "input_usage", "tools", "usage", "finish", "thinking")

    def __init__(self, request: dict | None = None) -> None:
        self.base = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()), "model": ""}
        self.blocks: dict[int, str] = {}  # anthropic block index → type
        self.tools: dict[int, int] = {}  # anthropic block index → chat tool_call index
        self.thinking: dict[int, dict] = {}  # thinking block index → accumulated block
        self.input_usage: dict = {}
        self.usage: dict = {}
        self.finish = None

    def _chunk(self, delta: dict, finish=None) -> tuple[None, dict]:
        return None, {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: str | None, data: dict) -> list:
        if self.base is None:  # ended
            return []
        kind = data.get("type") or event
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            index = data.get("index", 0)
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [self._chunk({"content": delta.get("text") or ""})]
            if dtype == "input_json_delta":
                return [self._chunk({"tool_calls": [{"index": self.tools.get(index, 0),
                                                     "function": {"arguments": delta.get("partial_json") or ""}}]})]
            if dtype == "thinking_delta":
                block = self.thinking.get(index)
                if block is not None:
                    block["thinking"] += delta.get("thinking") or ""
                return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
            if dtype == "signature_delta":
                block = self.thinking.get(index)
                if block is not None:
                    block["signature"] = block.get("signature", "") + (delta.get("signature") or "")
                return []
            return []
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            index = data.get("index", 0)
            btype = block.get("type")
            self.blocks[index] = btype
            if btype == "tool_use":
                n = len(self.tools)
                self.tools[index] = n
                return [self._chunk({"tool_calls": [{"index": n, "id": block.get("id") or "", "type": "function",
                                                     "function": {"name": block.get("name") or "", "arguments": ""}}]})]
            if btype == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            if btype == "thinking":
                self.thinking[index] = {"type": "thinking", "thinking": block.get("thinking") or "",
                                        "signature": block.get("signature") or ""}
            elif btype == "redacted_thinking":
                return [self._chunk({"thinking_blocks": [dict(block)]})]
            return []
        if kind == "content_block_stop":
            block = self.thinking.pop(data.get("index", 0), None)
            if block is not None:  # the whole block, with its signature, for a client that sends it back
                return [self._chunk({"thinking_blocks": [block]})]
            return []
        if kind == "message_start":
            message = data.get("message") or {}
            self.base["id"] = message.get("id") or ""
            self.base["model"] = message.get("model") or ""
            if isinstance(message.get("usage"), dict):
                self.input_usage = message["usage"]
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            delta = data.get("delta") or {}
            if isinstance(data.get("usage"), dict):
                self.usage = data["usage"]
            self.finish = stop_to_chat(delta.get("stop_reason"))
            return [self._chunk({}, self.finish or "stop")]
        if kind == "message_stop":
            return self.end()
        if kind == "error":
            return [("error", data.get("error") if isinstance(data.get("error"), dict) else data)]
        return []  # ping and unknown events

    def end(self) -> list:
        if self.base is None:
            return []
        usage = {**self.input_usage, **{k: v for k, v in self.usage.items() if v is not None}}
        out = []
        chat_usage = usage_to_chat(usage) if usage else None
        if chat_usage is not None:
            out.append((None, {**self.base, "choices": [], "usage": chat_usage}))
        self.base = None  # ended: a late message_stop or the end of input adds nothing
        return out

    def finish_stream(self) -> list:
        return self.end()


class ChatToAnthropicStream:
    """``chat.completion.chunk`` payloads → Anthropic Messages stream events, chunk by chunk.

    Blocks are opened as content of a new kind arrives (thinking, text, one per tool call)
    and closed before the next opens; ``message_delta`` (stop reason, usage) and
    ``message_stop`` are sent once the upstream ends (its ``[DONE]`` or end of body),
    since OpenAI-style streams send usage after the finish reason.
    """

    __slots__ = ("started", "index", "open", "tool_blocks", "stop", "usage", "model", "id", "done", "current_tool")

    def __init__(self, request: dict | None = None) -> None:
        self.started = False
        self.index = -1
        self.open: str | None = None
        self.tool_blocks: dict[int, int] = {}
        self.current_tool: int | None = None
        self.stop = None
        self.usage: dict | None = None
        self.model = (request or {}).get("model") or ""
        self.id = ""
        self.done = False

    def _start(self, data: dict, out: list) -> None:
        self.started = True
        cid = data.get("id") or ""
        self.id = cid if str(cid).startswith("msg_") else f"msg_{cid}"
        self.model = data.get("model") or self.model
        out.append(("message_start", {"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}))

    def _close(self, out: list) -> None:
        if self.open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self.index}))
            self.open = None
            self.current_tool = None

    def _open(self, kind: str, block: dict, out: list) -> None:
        self._close(out)
        self.index += 1
        self.open = kind
        out.append(("content_block_start", {"type": "content_block_start", "index": self.index,
                                            "content_block": block}))

    def feed(self, event: str | None, data: dict) -> list:
        out: list = []
        if "error" in data and not data.get("choices"):
            err = data["error"]
            return [("error", err if isinstance(err, dict) else {"message": str(err)})]
        if not self.started:
            self._start(data, out)
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self.open != "thinking":
                    self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
                out.append(("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                    "delta": {"type": "thinking_delta", "thinking": reasoning}}))
            for tb in delta.get("thinking_blocks") or ():
                if isinstance(tb, dict) and tb.get("signature") and self.open == "thinking":
                    out.append(("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                        "delta": {"type": "signature_delta",
                                                                  "signature": tb["signature"]}}))
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open != "text":
                    self._open("text", {"type": "text", "text": ""}, out)
                out.append(("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                    "delta": {"type": "text_delta", "text": text}}))
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                n = call.get("index", 0)
                fn = call.get("function") or {}
                if n not in self.tool_blocks:
                    self._open("tool_use", {"type": "tool_use", "id": call.get("id") or f"toolu_{n}",
                                            "name": fn.get("name") or "", "input": {}}, out)
                    self.tool_blocks[n] = self.index
                    self.current_tool = n
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    out.append(("content_block_delta", {"type": "content_block_delta", "index": self.tool_blocks[n],
                                                        "delta": {"type": "input_json_delta", "partial_json": args}}))
            if choice.get("finish_reason"):
                self.stop = stop_to_anthropic(choice["finish_reason"])
        return out

    def finish_stream(self) -> list:
        if self.done:
            return []
        self.done = True
        out: list = []
        if not self.started:
            self._start({}, out)
        self._close(out)
        usage = usage_to_anthropic(self.usage) if self.usage else {"output_tokens": 0}
        out.append(("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": self.stop or "end_turn", "stop_sequence": None},
                                      "usage": usage}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out
