"""Relaying an upstream's answer (LLM or agent) to the client, in the client API's wire format.

JSON is passed on byte for byte; SSE is passed on event by event (see
:mod:`gateway.wire.sse`); error statuses keep their status and reach the client in
its API's error envelope (``api``: a :class:`~gateway.wire.api.ClientAPI`; None is
OpenAI Chat Completions, the agents' API). A stream that breaks after the headers
went out ends with an in-stream error event of the client's API, since the status
can no longer change. A translated upstream reaches these functions already
re-expressed in the client's API (:mod:`gateway.wire.translate`), so the relays do
not know whether they pass through or translate.

Relays report to one observer (``call``): the telemetry call, or an
:class:`Observers` fan-out (telemetry, token usage for limits, stored Responses state).
"""

from __future__ import annotations

from typing import Callable

import orjson

from gateway.listeners.http import JSON_CT, SSE_CT, Send, send_body
from gateway.wire.errors import GatewayError
from gateway.wire.openai_chat import completion_as_sse
from gateway.wire.sse import EventAligner, openai_error_event
from gateway.upstream import UpstreamError, response_headers

MAX_ERROR_BODY = 1 << 20  # error bodies relayed up to 1 MiB

#: Builds the client-facing error for an upstream error status from (status, upstream message).
Describe = Callable[[int, str], GatewayError]
#: The 502 for a 2xx answer that is not a JSON object, or a factory for it (built only when needed).
Invalid = GatewayError | Callable[[], GatewayError]


class Observers:
    """Several relay observers as one: each gets every ``chunk`` and the ``finish``, in order."""

    __slots__ = ("items",)

    def __init__(self, items) -> None:
        self.items = items

    def chunk(self, data: bytes) -> None:
        for item in self.items:
            item.chunk(data)

    def finish(self, status, **kwargs) -> None:
        for item in self.items:
            item.finish(status, **kwargs)


def observers(*items):
    """One observer for the relay from several (None entries skipped): the item itself when only one."""
    present = [i for i in items if i is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Observers(present)


class StreamUsage:
    """Reads token usage from an Anthropic Messages or Responses stream for an observer that knows only
    OpenAI-shaped ``usage`` events: Messages split it across ``message_start`` (input, cache) and
    ``message_delta`` (output); Responses nest it in ``response.completed``. Passes everything on to
    ``inner`` and adds ``usage=`` to its ``finish``. Only chunks naming those events are parsed."""

    __slots__ = ("inner", "usage")

    _MARKERS = (b"message_start", b"message_delta", b"response.completed", b"response.incomplete")

    def __init__(self, inner) -> None:
        self.inner = inner
        self.usage: dict | None = None

    def chunk(self, data: bytes) -> None:
        self.inner.chunk(data)
        if b'"usage"' not in data or not any(m in data for m in self._MARKERS):
            return
        from gateway.wire.sse import event_data, split_events

        for block in split_events(data):
            payload = event_data(block)
            if not payload or b'"usage"' not in payload:
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if type(event) is not dict:
                continue
            kind = event.get("type")
            found = None
            if kind == "message_start" and isinstance(event.get("message"), dict):
                found = event["message"].get("usage")
            elif kind == "message_delta":
                found = event.get("usage")
            elif kind in ("response.completed", "response.incomplete") and isinstance(event.get("response"), dict):
                found = event["response"].get("usage")
            if isinstance(found, dict):
                merged = {**(self.usage or {}), **{k: v for k, v in found.items() if v is not None}}
                if "total_tokens" not in found and "input_tokens" in merged and "output_tokens" in merged:
                    merged["total_tokens"] = (merged.get("input_tokens") or 0) + (merged.get("cache_read_input_tokens")
                                              or 0) + (merged.get("cache_creation_input_tokens") or 0) + \
                        (merged.get("output_tokens") or 0)
                self.usage = merged

    def finish(self, status, **kwargs) -> None:
        if self.usage is not None and kwargs.get("usage") is None and kwargs.get("completion") is None:
            kwargs["usage"] = self.usage
        self.inner.finish(status, **kwargs)

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "inner"), name)


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
                      describe: Describe | None = None, api=None) -> None:
    """Relay an upstream 4xx/5xx with its status.

    Without ``describe`` a body already in the client API's error envelope passes
    through verbatim (the model proxy's contract); any other body — another API's
    envelope, HTML, text — or any body when ``describe`` is given, is rewritten into
    the client API's envelope with the upstream's message.
    """
    data = data[:MAX_ERROR_BODY]
    parsed, message = upstream_message(data, status)
    if api is not None:
        if describe is not None:
            data = api.error_body(describe(status, message), rid)
        elif parsed is None or not api.native_error(parsed):
            data = api.error_body(GatewayError(status, f"Upstream error: {message}", code="upstream_error"), rid)
    elif describe is not None:
        data = describe(status, message).openai_body()
    elif parsed is None or not isinstance(parsed.get("error"), dict) or parsed.get("type") == "error":
        data = GatewayError(status, f"Upstream error: {message}", code="upstream_error").openai_body()
    out = response_headers(upstream_headers, keep_type=False)
    out += [JSON_CT, (b"x-request-id", rid.encode())]
    await send_body(send, status, data, out)


async def relay_stream(send: Send, resp, rid: str, *, invalid_json: Invalid,
                       describe: Describe | None = None, target: str = "upstream", call=None, api=None) -> None:
    """Relay a response to a ``stream: true`` request (SSE, or JSON if the upstream ignored stream).

    ``call`` (optional) observes the relay for telemetry: ``chunk(bytes)`` per forwarded
    piece (first token, final usage) and ``finish(status, ...)`` once at the end.
    """
    status = resp.status
    if status >= 400:
        await relay_error(send, status, resp.headers, await resp.read(), rid, describe, api)
        if call is not None:
            call.finish(status)
        return
    if "text/event-stream" not in resp.headers.get("content-type", ""):
        # The upstream ignored ``stream: true``: the client still gets the stream it asked for.
        data = await resp.read()
        parsed = json_object(data, invalid_json)
        events = completion_as_sse(parsed) if api is None else api.as_sse(parsed)
        await send_body(send, status, events, client_headers(resp, SSE_CT, rid))
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
        event = openai_error_event if api is None else api.error_event
        await send({"type": "http.response.body", "body": event(str(err), code=f"upstream_{err.kind}")})
        if call is not None:
            call.finish(status, response_bytes=sent, error=str(err), error_class="stream")
        return
    tail = aligner.pending.strip()
    event = openai_error_event if api is None else api.error_event
    end = event("Upstream stream ended inside an event.", code="upstream_incomplete_event") if tail else b""
    await send({"type": "http.response.body", "body": end, "more_body": False})
    if call is not None:
        call.finish(status, response_bytes=sent, error="incomplete final event" if tail else None,
                    error_class="stream" if tail else None)


async def relay_json(send: Send, resp, rid: str, invalid_json: Invalid,
                     describe: Describe | None = None, call=None, api=None) -> None:
    """Relay a complete JSON response, refusing a 2xx body that is not a JSON object (502)."""
    data = await resp.read()
    status = resp.status
    if status >= 400:
        await relay_error(send, status, resp.headers, data, rid, describe, api)
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


async def send_error(send: Send, api, err: GatewayError, rid: str | None = None) -> None:
    """``err`` in the client API's envelope (``api``: a :class:`~gateway.wire.api.ClientAPI`)."""
    headers = [JSON_CT]
    if rid:
        headers.append((b"x-request-id", rid.encode()))
    if err.headers:
        headers.extend(err.headers)
    await send_body(send, err.status, api.error_body(err, rid), headers)


def error_from_openai(status: int, data: bytes) -> GatewayError:
    """The :class:`GatewayError` an OpenAI-enveloped error body describes (message, type, code, param kept)."""
    parsed, message = upstream_message(data, status)
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        return GatewayError(status, message, code=err.get("code") if isinstance(err.get("code"), str) else None,
                            param=err.get("param") if isinstance(err.get("param"), str) else None,
                            type=err.get("type") if isinstance(err.get("type"), str) else None)
    return GatewayError(status, message)


class TranslatingSend:
    """An ASGI ``send`` that re-expresses a Chat Completions answer in another client API.

    For listeners that build their answer in Chat Completions themselves (the agent
    listener: its agents speak chat; replies composed from several agents; A2A agents): a
    ``text/event-stream`` 2xx is translated event by event as it is sent
    (:class:`~gateway.wire.translate.ClientStream`); a JSON 2xx and any error status are
    held until complete, then sent translated — the answer through the translator, an error
    in the client API's own envelope — with their Content-Length recomputed.

    ``observer`` (optional) sees what the client gets, in the client's API: ``chunk(bytes)``
    per stream piece and ``finish(status, completion=...)`` once (stored Responses state).
    """

    __slots__ = ("api", "held", "observer", "request", "rid", "send", "start", "stream", "translator")

    def __init__(self, send: Send, translator, request: dict, api, rid: str, observer=None) -> None:
        self.send = send
        self.translator = translator
        self.request = request  # the client's request (the translation reads e.g. its model, tools)
        self.api = api
        self.rid = rid
        self.observer = observer
        self.start: dict | None = None
        self.stream = None
        self.held: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != b"content-length"]
            self.start = {**message, "headers": headers}
            if status < 400 and any(k.lower() == b"content-type" and b"text/event-stream" in v for k, v in headers):
                from gateway.wire.translate import ClientStream

                self.stream = ClientStream(self.translator, self.request, self.api, "agent")
                await self.send(self.start)
            return
        if kind != "http.response.body":
            await self.send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.stream is not None:
            out = self.stream.feed(body)
            if not more:
                try:
                    out += self.stream.end()
                except UpstreamError as err:
                    out += self.api.error_event(str(err), code=f"upstream_{err.kind}")
            if self.observer is not None:
                if out:
                    self.observer.chunk(out)
                if not more:
                    self.observer.finish(self.start["status"])
            if out or not more:
                await self.send({"type": "http.response.body", "body": out, "more_body": more})
            return
        self.held.append(body)
        if more:
            return
        await self._send_whole(b"".join(self.held))

    async def _send_whole(self, data: bytes) -> None:
        start = self.start or {"type": "http.response.start", "status": 200, "headers": [JSON_CT]}
        status = start["status"]
        answer = None
        if status >= 400:
            data = self.api.error_body(error_from_openai(status, data), self.rid)
        else:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if type(parsed) is dict:
                answer = self.translator.response(parsed, self.request)
                data = orjson.dumps(answer)
        if self.observer is not None:
            self.observer.finish(status, completion=answer)
        await self.send({**start, "headers": [*start["headers"], (b"content-length", str(len(data)).encode())]})
        await self.send({"type": "http.response.body", "body": data})
