"""OpenAI Responses → OpenAI Chat Completions requests, and Chat Completions → Responses answers.

A Responses client reaching an upstream that has no Responses API (every
OpenAI-compatible server but OpenAI's own, and — through
:mod:`.chat_anthropic` — Anthropic) is translated here: its ``input`` items become
chat messages, the chat answer becomes a ``response`` object, and a chat stream
becomes the Responses event sequence clients rely on (Plano §4.5):
``response.created``, ``response.in_progress``, per output item
``response.output_item.added`` → (``response.content_part.added`` →
``response.output_text.delta``… → ``response.output_text.done`` →
``response.content_part.done``) or ``response.function_call_arguments.delta``… →
``response.function_call_arguments.done`` → ``response.output_item.done``, then
``response.completed``; every event numbered by ``sequence_number``.
"""

from __future__ import annotations

import time
from random import getrandbits

import orjson

_STATUS = {"length": "incomplete", "content_filter": "incomplete"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{getrandbits(192):048x}"


# ============================================================================ requests


def _part_to_chat(part) -> dict | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str):
            image = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            return {"type": "image_url", "image_url": image}
        return None
    if kind == "input_file":
        data = part.get("file_data")
        if isinstance(data, str):
            file = {"file_data": data}
            if part.get("filename"):
                file["filename"] = part["filename"]
            return {"type": "file", "file": file}
        return None
    return None


def _content_to_chat(content, *, text_only: bool = False):
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [p for p in (_part_to_chat(c) for c in content) if p is not None]
    if text_only or all(p["type"] == "text" for p in parts):
        return "".join(p.get("text") or "" for p in parts) if text_only or len(parts) != 1 else parts[0]["text"]
    return parts


def input_items(value) -> list:
    """A request's ``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def items_to_messages(items) -> list[dict]:
    messages: list[dict] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                messages.append({"role": "system", "content": _content_to_chat(item.get("content"))})
            elif role == "assistant":
                messages.append({"role": "assistant", "content": _content_to_chat(item.get("content"), text_only=True)})
            else:
                messages.append({"role": "user", "content": _content_to_chat(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id") or "", "type": "function",
                    "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not last.get("_closed"):
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = _content_to_chat(output, text_only=True) if isinstance(output, list) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": item.get("call_id") or "", "content": output})
        # reasoning, item_reference and hosted-tool items have no chat counterpart
    return messages


def responses_request_to_chat(req: dict, *, max_tokens_field: str = "max_tokens") -> dict:
    messages: list[dict] = []
    if isinstance(req.get("instructions"), str) and req["instructions"]:
        messages.append({"role": "system", "content": req["instructions"]})
    messages.extend(items_to_messages(input_items(req.get("input"))))
    out: dict = {"model": req.get("model"), "messages": messages}
    if isinstance(req.get("max_output_tokens"), int):
        out[max_tokens_field] = req["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if req.get(key) is not None:
            out[key] = req[key]
    if req.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    tools = []
    for tool in req.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function" and tool.get("name"):
            fn = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
            if tool.get("description"):
                fn["description"] = tool["description"]
            if tool.get("strict") is not None:
                fn["strict"] = tool["strict"]
            tools.append({"type": "function", "function": fn})
    if tools:
        out["tools"] = tools
        choice = req.get("tool_choice")
        if choice in ("auto", "none", "required"):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out.pop("parallel_tool_calls", None)
    text = req.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
            if fmt.get("strict") is not None:
                schema["strict"] = fmt["strict"]
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    return out


# ============================================================================ responses


def usage_to_responses(usage) -> dict | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    out_details = usage.get("completion_tokens_details") \
        if isinstance(usage.get("completion_tokens_details"), dict) else {}
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": details.get("cached_tokens") or 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": out_details.get("reasoning_tokens") or 0},
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def response_shell(request: dict, response_id: str, model: str, status: str) -> dict:
    """A ``response`` object without output, echoing the request's parameters as OpenAI does."""
    tools = request.get("tools") if isinstance(request.get("tools"), list) else []
    return {
        "id": response_id, "object": "response", "created_at": int(time.time()), "status": status,
        "background": request.get("background") is True, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "model": model or request.get("model") or "", "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": request.get("store", True) is not False,
        "temperature": request.get("temperature"), "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"), "tools": tools, "top_p": request.get("top_p"),
        "truncation": "disabled", "usage": None, "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _message_item(text: str, item_id: str | None = None, status: str = "completed") -> dict:
    return {"type": "message", "id": item_id or new_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_item(text: str, item_id: str | None = None) -> dict:
    return {"type": "reasoning", "id": item_id or new_id("rs"), "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def chat_response_to_responses(completion: dict, request: dict, response_id: str | None = None) -> dict:
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    finish = choice.get("finish_reason")
    out = response_shell(request, response_id or new_id("resp"), completion.get("model") or "",
                         _STATUS.get(finish, "completed"))
    if out["status"] == "incomplete":
        out["incomplete_details"] = {"reason": "max_output_tokens" if finish == "length" else "content_filter"}
    output = out["output"]
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(reasoning))
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    if isinstance(content, str) and (content or not message.get("tool_calls")):
        output.append(_message_item(content))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            output.append({"type": "function_call", "id": new_id("fc"), "call_id": call.get("id") or "",
                           "name": fn.get("name") or "", "arguments": fn.get("arguments") or "",
                           "status": "completed"})
    out["usage"] = usage_to_responses(completion.get("usage"))
    return out


def output_text(response: dict) -> str:
    """The concatenated ``output_text`` of a response object (what the SDKs' ``output_text`` gives)."""
    texts = []
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
    return "".join(texts)


# ============================================================================ streams


class ChatToResponsesStream:
    """``chat.completion.chunk`` payloads → the Responses stream event sequence.

    Output items are opened as their content arrives (reasoning, the message text, one
    function call per tool-call index) and all finished, in order, when the upstream
    ends; ``response.completed`` carries the whole response with usage.
    """

    __slots__ = ("request", "response", "seq", "items", "text_item", "reasoning_item", "tools", "finish",
                 "usage", "done")

    def __init__(self, request: dict | None = None, response_id: str | None = None) -> None:
        self.request = request or {}
        self.response = response_shell(self.request, response_id or new_id("resp"), "", "in_progress")
        self.seq = 0
        self.items: list[dict] = []  # output items being built (accumulated text / arguments)
        self.text_item: int | None = None
        self.reasoning_item: int | None = None
        self.tools: dict[int, int] = {}  # chat tool_call index → output index
        self.finish = None
        self.usage = None
        self.done = False

    def _event(self, kind: str, payload: dict) -> tuple[str, dict]:
        payload["type"] = kind
        payload["sequence_number"] = self.seq
        self.seq += 1
        return kind, payload

    def _snapshot(self) -> dict:
        return {**self.response, "output": [dict(item) for item in self.items]}

    def _add(self, item: dict, out: list) -> int:
        index = len(self.items)
        self.items.append(item)
        out.append(self._event("response.output_item.added", {"output_index": index, "item": dict(item)}))
        return index

    def start(self, data: dict | None = None) -> list:
        out: list = []
        if data and data.get("model"):
            self.response["model"] = data["model"]
        out.append(self._event("response.created", {"response": self._snapshot()}))
        out.append(self._event("response.in_progress", {"response": self._snapshot()}))
        return out

    def feed(self, event: str | None, data: dict) -> list:
        if self.done:
            return []
        if "error" in data and not data.get("choices"):
            err = data["error"]
            return [("error", err if isinstance(err, dict) else {"message": str(err)})]
        out = self.start(data) if self.seq == 0 else []
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self.reasoning_item is None:
                    self.reasoning_item = self._add({"type": "reasoning", "id": new_id("rs"), "summary": [],
                                                     "content": []}, out)
                    self.items[self.reasoning_item]["_text"] = ""
                self.items[self.reasoning_item]["_text"] += reasoning
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.text_item is None:
                    item = {"type": "message", "id": new_id("msg"), "status": "in_progress", "role": "assistant",
                            "content": []}
                    self.text_item = index = self._add(item, out)
                    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    out.append(self._event("response.content_part.added", {
                        "item_id": item["id"], "output_index": index, "content_index": 0, "part": part}))
                    item["_text"] = ""
                item = self.items[self.text_item]
                item["_text"] += text
                out.append(self._event("response.output_text.delta", {
                    "item_id": item["id"], "output_index": self.text_item, "content_index": 0, "delta": text,
                    "logprobs": []}))
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                n = call.get("index", 0)
                fn = call.get("function") or {}
                if n not in self.tools:
                    self.tools[n] = self._add({"type": "function_call", "id": new_id("fc"),
                                               "call_id": call.get("id") or f"call_{n}", "name": fn.get("name") or "",
                                               "arguments": "", "status": "in_progress"}, out)
                item = self.items[self.tools[n]]
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    item["arguments"] += args
                    out.append(self._event("response.function_call_arguments.delta", {
                        "item_id": item["id"], "output_index": self.tools[n], "delta": args}))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def finish_stream(self) -> list:
        if self.done:
            return []
        out = self.start() if self.seq == 0 else []
        self.done = True
        final: list[dict] = []
        for index, item in enumerate(self.items):
            kind = item["type"]
            if kind == "message":
                text = item.pop("_text", "")
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                out.append(self._event("response.output_text.done", {
                    "item_id": item["id"], "output_index": index, "content_index": 0, "text": text, "logprobs": []}))
                out.append(self._event("response.content_part.done", {
                    "item_id": item["id"], "output_index": index, "content_index": 0, "part": part}))
                item.update(status="completed", content=[part])
            elif kind == "function_call":
                out.append(self._event("response.function_call_arguments.done", {
                    "item_id": item["id"], "output_index": index, "name": item["name"],
                    "arguments": item["arguments"]}))
                item["status"] = "completed"
            elif kind == "reasoning":
                item["content"] = [{"type": "reasoning_text", "text": item.pop("_text", "")}]
            out.append(self._event("response.output_item.done", {"output_index": index, "item": dict(item)}))
            final.append(item)
        response = self.response
        response["output"] = final
        response["status"] = _STATUS.get(self.finish, "completed")
        if response["status"] == "incomplete":
            response["incomplete_details"] = {
                "reason": "max_output_tokens" if self.finish == "length" else "content_filter"}
        response["usage"] = usage_to_responses(self.usage)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return out
