"""A mock Gemini API upstream on 127.0.0.1 speaking ``generateContent``'s real wire format.

Shapes from the Gemini API reference (ai.google.dev/api/generate-content):

- ``POST /v1beta/models/{model}:generateContent`` → a ``GenerateContentResponse``
  (``candidates[].content.parts[]`` with ``text`` / ``thought`` / ``functionCall``
  (+ ``thoughtSignature``), ``finishReason``, ``usageMetadata`` with ``promptTokenCount``,
  ``candidatesTokenCount``, ``cachedContentTokenCount``, ``thoughtsTokenCount``,
  ``totalTokenCount``; ``modelVersion``, ``responseId``);
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` → ``data: {GenerateContentResponse}``
  events separated by CRLF CRLF, the last carrying ``finishReason`` (without ``alt=sse``: a
  JSON array of the same objects, as the real API answers);
- auth with ``x-goog-api-key`` (or ``?key=``): none → 403 ``PERMISSION_DENIED``, ``bad`` → 400
  ``INVALID_ARGUMENT``; errors as ``{"error": {"code", "message", "status"}}``;
- request checks the real API makes: unknown fields are refused (``Invalid JSON payload
  received. Unknown name …``), roles must be ``user``/``model``, parts must be non-empty, a
  ``functionResponse`` needs a ``name``, ``contents`` must not be empty.

Scripted with :class:`~tests.support.mock_openai_wire.Turn` (text, tool calls, reasoning as
thought parts when ``includeThoughts``, an error status, ``garbage``, ``broken_sse``,
``bad_event``, ``no_finish`` — a stream that ends without ``finishReason``, ``mid_error``
— an error event mid-stream). Unscripted, it echoes the last user text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tests.support.mock_openai_wire import MockServer, Turn, pieces

_PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")

# Field names (camelCase and the snake_case the API also accepts) per message level.
_TOP = {"contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
        "generationConfig", "generation_config", "safetySettings", "safety_settings", "cachedContent",
        "cached_content", "labels"}
_CONTENT = {"role", "parts"}
_PART = {"text", "inlineData", "inline_data", "fileData", "file_data", "functionCall", "function_call",
         "functionResponse", "function_response", "thought", "thoughtSignature", "thought_signature",
         "executableCode", "codeExecutionResult", "videoMetadata"}
_GEN = {"maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount", "seed",
        "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
        "thinkingConfig", "responseModalities", "responseLogprobs", "logprobs", "mediaResolution"}
_FUNCTION_DECL = {"name", "description", "parameters", "parametersJsonSchema", "response", "behavior"}
_SCHEMA_REFUSED = {"additionalProperties", "$schema"}


def _error(status: int, google_status: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": google_status}}, status=status)


def _unknown(level: str, obj: dict, allowed: set[str]) -> str | None:
    for key in obj:
        if key not in allowed:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{level}': Cannot find field."
    return None


def _check_schema(schema: Any, where: str) -> str | None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _SCHEMA_REFUSED:
                return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            found = _check_schema(value, where)
            if found:
                return found
    elif isinstance(schema, list):
        for value in schema:
            found = _check_schema(value, where)
            if found:
                return found
    return None


def validate(body: Any) -> str | None:
    """The first error the real API would report for this request body, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    problem = _unknown("", body, _TOP)
    if problem:
        return problem
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return f"Invalid value at 'contents[{i}]'"
        problem = _unknown(f"contents[{i}]", content, _CONTENT)
        if problem:
            return problem
        if content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role = {content.get('role')!r})"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            if not isinstance(part, dict) or not part:
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field"
            problem = _unknown(f"contents[{i}].parts[{j}]", part, _PART)
            if problem:
                return problem
            fr = part.get("functionResponse") or part.get("function_response")
            if fr is not None and (not isinstance(fr, dict) or not fr.get("name")):
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: Name cannot be empty."
            if fr is not None and not isinstance(fr.get("response"), dict):
                return f"Invalid value at 'contents[{i}].parts[{j}].function_response.response' (type.googleapis.com/google.protobuf.Struct)"
            fc = part.get("functionCall") or part.get("function_call")
            if fc is not None and (not isinstance(fc, dict) or not fc.get("name")
                                   or not isinstance(fc.get("args", {}), dict)):
                return f"Invalid value at 'contents[{i}].parts[{j}].function_call'"
            inline = part.get("inlineData") or part.get("inline_data")
            if inline is not None and not (isinstance(inline, dict) and (inline.get("mimeType") or inline.get("mime_type"))
                                           and isinstance(inline.get("data"), str)):
                return f"Invalid value at 'contents[{i}].parts[{j}].inline_data'"
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system is not None and (not isinstance(system, dict) or not isinstance(system.get("parts"), list)):
        return "Invalid value at 'system_instruction'"
    gen = body.get("generationConfig") or body.get("generation_config") or {}
    problem = _unknown("generation_config", gen, _GEN)
    if problem:
        return problem
    for k, tool in enumerate(body.get("tools") or []):
        for m, decl in enumerate(tool.get("functionDeclarations") or tool.get("function_declarations") or []):
            problem = _unknown(f"tools[{k}].function_declarations[{m}]", decl, _FUNCTION_DECL) \
                or _check_schema(decl.get("parameters"), f"tools[{k}].function_declarations[{m}].parameters")
            if problem:
                return problem
    config = (body.get("toolConfig") or body.get("tool_config") or {}).get("functionCallingConfig")
    if config is not None and config.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return "Invalid value at 'tool_config.function_calling_config.mode'"
    return None


def last_user_text(body: Any) -> str:
    for content in reversed((body or {}).get("contents") or []):
        if content.get("role") != "user":
            continue
        texts = [p["text"] for p in content.get("parts") or [] if isinstance(p.get("text"), str)]
        if texts:
            return " ".join(texts)
        responses = [p.get("functionResponse") for p in content.get("parts") or [] if p.get("functionResponse")]
        if responses:
            return json.dumps(responses[-1].get("response"))
    return ""


class MockGemini(MockServer):
    name = "mock-gemini"
    signature = "c2lnbmF0dXJlLWZyb20tZ2VtaW5p"  # what a thoughtSignature looks like: base64

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without "
                                                    "established identity). Please use API Key or other form of API "
                                                    "consumer identity to call this API.")
        if key == "bad":
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        if request.method != "POST":
            return _error(405, "INVALID_ARGUMENT", "Method not allowed")
        m = _PATH.match(request.path)
        if m is None:
            return web.Response(status=404, text="<!DOCTYPE html><html><body>Error 404 (Not Found)!!1</body></html>",
                                content_type="text/html")
        model, method = m.groups()
        problem = validate(body)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem)
        turn = self.next_turn()
        if turn.status >= 400:
            if isinstance(turn.error, str):
                return web.Response(text=turn.error, status=turn.status, content_type="text/html")
            return web.json_response(turn.error or {"error": {"code": turn.status, "message": "The model is overloaded. "
                                                              "Please try again later.", "status": "UNAVAILABLE"}},
                                     status=turn.status)
        if turn.kind == "garbage" and method == "generateContent":
            return web.Response(body=b"<html>\x00 not json", status=200, content_type="application/json")
        gen = body.get("generationConfig") or {}
        include_thoughts = bool((gen.get("thinkingConfig") or {}).get("includeThoughts"))
        text = turn.text if turn.text is not None else ("" if turn.tool_calls else f"echo: {last_user_text(body)}")
        reasoning = turn.reasoning if include_thoughts else None
        inp, out, cached = turn.usage
        thoughts = 5 if turn.reasoning else 0
        usage = {"promptTokenCount": inp, "candidatesTokenCount": out, "totalTokenCount": inp + out + thoughts,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": inp}]}
        if cached:
            usage["cachedContentTokenCount"] = cached
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        finish = "MAX_TOKENS" if turn.kind == "max_tokens" else ("SAFETY" if turn.kind == "safety" else "STOP")
        calls = [{"functionCall": {"name": name, "args": args}, **({"thoughtSignature": self.signature} if i == 0 else {})}
                 for i, (name, args) in enumerate(turn.tool_calls)]
        common = {"modelVersion": model, "responseId": "mockResp123"}
        if method == "generateContent":
            parts: list[dict] = []
            if reasoning:
                parts.append({"text": reasoning, "thought": True})
            if text:
                parts.append({"text": text})
            parts.extend(calls)
            return web.json_response({"candidates": [{"content": {"parts": parts, "role": "model"},
                                                      "finishReason": finish, "index": 0}],
                                      "usageMetadata": usage, **common})
        # streamGenerateContent
        chunks: list[dict] = []
        partial = {"promptTokenCount": inp, "totalTokenCount": inp}
        for piece in pieces(reasoning or ""):
            chunks.append({"candidates": [{"content": {"parts": [{"text": piece, "thought": True}], "role": "model"},
                                           "index": 0}], "usageMetadata": partial, **common})
        for piece in pieces(text):
            chunks.append({"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
                           "usageMetadata": partial, **common})
        if calls:
            chunks.append({"candidates": [{"content": {"parts": calls, "role": "model"}, "index": 0}],
                           "usageMetadata": partial, **common})
        if not chunks:
            chunks.append({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "index": 0}], **common})
        if turn.kind != "no_finish":
            last = chunks[-1]["candidates"][0]
            last["finishReason"] = finish
            chunks[-1]["usageMetadata"] = usage
        if request.query.get("alt") != "sse":
            return web.json_response(chunks)
        events = [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]
        if turn.kind == "bad_event":
            events.insert(1, b"data: {not json\r\n\r\n")
        if turn.kind == "garbage":
            events = [b"\x00\x01garbage without any event boundary"]
        if turn.kind == "mid_error":
            events.insert(1, b"data: " + json.dumps({"error": {"code": 503, "message": "The model is overloaded.",
                                                               "status": "UNAVAILABLE"}}).encode() + b"\r\n\r\n")
            events = events[:2]
        return await self.sse(request, events, broken=turn.kind == "broken_sse")


__all__ = ["MockGemini", "Turn", "validate"]
