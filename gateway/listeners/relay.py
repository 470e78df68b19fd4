"""Relaying an upstream's answer (LLM or agent) to the client.

JSON is passed on byte for byte; SSE is passed on event by event (see
:mod:`gateway.listeners.sse`); error statuses keep their status and reach the
client in the OpenAI error envelope. A stream that breaks after the headers went
out ends with an in-stream error event, since the status can no longer change.
"""

from __future__ import annotations

from typing import Callable

import orjson

from gateway.listeners.errors import GatewayError
from gateway.listeners.http import JSON_CT, SSE_CT, Send, send_body
from gateway.listeners.sse import EventAligner, openai_error_event
from gateway.upstream import UpstreamError, response_headers

MAX_ERROR_BODY = 1 << 20  # error bodies relayed up to 1 MiB

#: Builds the client-facing error for an upstream error status from (status, upstream message).
Describe = Callable[[int, str], GatewayError]
#: The 502 for a 2xx answer that is not a JSON object, or a factory for it (built only when needed).
Invalid = GatewayError | Callable[[], GatewayError]


def upstream_message(data: bytes, status: int) -> tuple[dict | None, str]:
    """(parsed JSON object or None, the best human message found in an error body)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return parsed, err["message"]
        if isinstance(err, str):
            return parsed, err
        for key in ("message", "detail"):
            if isinstance(parsed.get(key), str):
                return parsed, parsed[key]
        return parsed, orjson.dumps(parsed).decode()[:500]
    text = data.decode("utf-8", "replace").strip()[:500]
    return None, text or f"HTTP {status}"


async def relay_error(send: Send, status: int, upstream_headers, data: bytes, rid: str,
                      describe: Describe | None = None) -> None:
    """Relay an upstream 4xx/5xx with its status.

    Without ``describe`` an OpenAI-shaped JSON body passes through verbatim (the
    model proxy's contract); any other body, or any body when ``describe`` is given,
    is rewritten into our envelope.
    """
    data = data[:MAX_ERROR_BODY]
    parsed, message = upstream_message(data, status)
    if describe is not None:
        data = describe(status, message).openai_body()
    elif parsed is None or not isinstance(parsed.get("error"), dict):
        data = GatewayError(status, f"Upstream error: {message}", code="upstream_error").openai_body()
    out = response_headers(upstream_headers, keep_type=False)
    out += [JSON_CT, (b"x-request-id", rid.encode())]
    await send_body(send, status, data, out)


async def relay_stream(send: Send, resp, rid: str, *, invalid_json: Invalid,
                       describe: Describe | None = None, target: str = "upstream", call=None) -> None:
    """Relay a response to a ``stream: true`` request (SSE, or JSON if the upstream ignored stream).

    ``call`` (optional) observes the relay for telemetry: ``chunk(bytes)`` per forwarded
    piece (first token, final usage) and ``finish(status, ...)`` once at the end.
    """
    status = resp.status
    if status >= 400:
        await relay_error(send, status, resp.headers, await resp.read(), rid, describe)
        if call is not None:
            call.finish(status)
        return
    if "text/event-stream" not in resp.headers.get("content-type", ""):
        # The upstream ignored ``stream: true``: the client still gets the stream it asked for.
        data = await resp.read()
        parsed = json_object(data, invalid_json)
        await send_body(send, status, completion_as_sse(parsed), client_headers(resp, SSE_CT, rid))
        if call is not None:
            call.finish(status, completion=parsed, response_bytes=len(data))
        return
    await send({"type": "http.response.start", "status": status, "headers": client_headers(resp, SSE_CT, rid)})
    aligner = EventAligner()
    sent = 0
    try:
        async for chunk in resp.chunks():
            ready = aligner.feed(chunk)
            if ready:
                if call is not None:
                    call.chunk(ready)
                    sent += len(ready)
                await send({"type": "http.response.body", "body": ready, "more_body": True})
    except Exception as exc:  # the stream broke after the headers went out
        err = exc if isinstance(exc, UpstreamError) else classify_break(exc, target)
        await send({"type": "http.response.body", "body": openai_error_event(str(err), code=f"upstream_{err.kind}")})
        if call is not None:
            call.finish(status, response_bytes=sent, error=str(err), error_class="stream")
        return
    tail = aligner.pending.strip()
    end = openai_error_event("Upstream stream ended inside an event.", code="upstream_incomplete_event") if tail else b""
    await send({"type": "http.response.body", "body": end, "more_body": False})
    if call is not None:
        call.finish(status, response_bytes=sent, error="incomplete final event" if tail else None,
                    error_class="stream" if tail else None)


async def relay_json(send: Send, resp, rid: str, invalid_json: Invalid,
                     describe: Describe | None = None, call=None) -> None:
    """Relay a complete JSON response, refusing a 2xx body that is not a JSON object (502)."""
    data = await resp.read()
    status = resp.status
    if status >= 400:
        await relay_error(send, status, resp.headers, data, rid, describe)
        if call is not None:
            call.finish(status, response_bytes=len(data))
        return
    try:
        parsed = json_object(data, invalid_json)
    except GatewayError:
        if call is not None:
            call.finish(status, response_bytes=len(data), error="invalid JSON response", error_class="parse")
        raise
    await send_body(send, status, data, client_headers(resp, JSON_CT, rid))
    if call is not None:
        call.finish(status, completion=parsed, response_bytes=len(data))


def json_object(data: bytes, invalid: Invalid) -> dict:
    """A 2xx body must be a JSON object; anything else is the upstream's fault (502).

    ``invalid``: the error to raise, or a factory for it (so the hot path builds none).
    """
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid if isinstance(invalid, GatewayError) else invalid()
    return parsed


def client_headers(resp, content_type: tuple[bytes, bytes], rid: str) -> list[tuple[bytes, bytes]]:
    """Response headers for the client: the upstream's worth keeping, our content type and request id."""
    out = response_headers(resp.headers, keep_type=False)
    out.append(content_type)
    if content_type is SSE_CT:  # ours replaces the upstream's (agents commonly send one too)
        out = [h for h in out if h[0] != b"cache-control"]
        out.append((b"cache-control", b"no-cache"))
    out.append((b"x-request-id", rid.encode()))
    return out


def classify_break(exc: Exception, target: str) -> UpstreamError:
    """The :class:`UpstreamError` for an exception raised while a response body streamed in."""
    import asyncio

    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError("timeout", target)
    return UpstreamError("broken", target, type(exc).__name__)


def completion_as_sse(completion: dict) -> bytes:
    """A whole ``chat.completion`` re-expressed as ``chat.completion.chunk`` events + ``[DONE]``."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint") if k in completion}
    base["object"] = "chat.completion.chunk"
    events = []
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta = {"role": message.get("role", "assistant")}
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])
                                   if isinstance(call, dict)]
        index = choice.get("index", 0)
        events.append({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        events.append({**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    if completion.get("usage") is not None:
        events.append({**base, "choices": [], "usage": completion["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
