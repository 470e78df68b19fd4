"""Relaying an answer through output filters to the client.

The counterparts of :func:`~gateway.listeners.relay.relay_json` and
:func:`~gateway.listeners.relay.relay_stream`, used only when a chain is configured
(the unfiltered path stays byte-for-byte). Error statuses are relayed as they are,
never filtered. A JSON answer is filtered whole before anything is sent, so a
block or a closed failure is an ordinary error response. In a stream the headers
have gone out, so those end it with an in-stream error event instead.

``api`` (a :class:`~gateway.wire.api.ClientAPI`; None: Chat Completions, the agents' API)
is the client's API on the model listener: the filters are called on its path
(``/v1/messages`` …) with the answer in its shape, and every error — an upstream
status, a block, a filter failing closed, a broken stream — reaches the client in that
API's envelope or in-stream error event, whatever happened.
"""

from __future__ import annotations

import orjson

from gateway.filters.chain import CHAT_PATH, FilterChain
from gateway.filters.context import FilterRun
from gateway.listeners.http import JSON_CT, SSE_CT, Send, send_body
from gateway.listeners.relay import (
    Describe,
    Invalid,
    classify_break,
    client_headers,
    completion_as_sse,
    json_object,
    relay_error,
)
from gateway.listeners.sse import EventAligner, openai_error_event
from gateway.upstream import UpstreamError


def _error_event(api):
    return openai_error_event if api is None else api.error_event


async def relay_json_filtered(send: Send, resp, rid: str, chain: FilterChain, run: FilterRun,
                              invalid_json: Invalid, describe: Describe | None = None, call=None, api=None) -> None:
    data = await resp.read()
    if resp.status >= 400:
        await relay_error(send, resp.status, resp.headers, data, rid, describe, api)
        if call is not None:
            call.finish(resp.status, response_bytes=len(data))
        return
    parsed = json_object(data, invalid_json)
    if call is not None:  # the upstream call is done; the filters' time is on their own spans
        call.finish(resp.status, completion=parsed, response_bytes=len(data))
    answer = await chain.run(parsed, CHAT_PATH if api is None else api.path, run)
    await send_body(send, resp.status, orjson.dumps(answer), client_headers(resp, JSON_CT, rid))


async def relay_stream_filtered(send: Send, resp, rid: str, chain: FilterChain, run: FilterRun, *,
                                invalid_json: Invalid, describe: Describe | None = None,
                                target: str = "upstream", call=None, api=None) -> None:
    if resp.status >= 400:
        await relay_error(send, resp.status, resp.headers, await resp.read(), rid, describe, api)
        if call is not None:
            call.finish(resp.status)
        return
    stream = chain.stream(run, CHAT_PATH if api is None else api.path)
    error_event = _error_event(api)
    if "text/event-stream" not in resp.headers.get("content-type", ""):
        parsed = json_object(await resp.read(), invalid_json)
        if call is not None:
            call.finish(resp.status, completion=parsed)
        events = completion_as_sse(parsed) if api is None else api.as_sse(parsed)
        body = await stream.feed(events)
        body += await stream.finish() if stream.error is None else b""
        if stream.error is not None:  # nothing sent yet: an ordinary error response
            raise stream.error
        await send_body(send, resp.status, body, client_headers(resp, SSE_CT, rid))
        return
    await send({"type": "http.response.start", "status": resp.status, "headers": client_headers(resp, SSE_CT, rid)})
    aligner = EventAligner()
    try:
        async for chunk in resp.chunks():
            ready = aligner.feed(chunk)
            if ready:
                if call is not None:
                    call.chunk(ready)
                out = await stream.feed(ready)
                if stream.error is not None:
                    break
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        else:
            out = await stream.finish()
    except Exception as exc:  # the upstream stream broke; held (unfiltered) text is dropped, never sent
        err = exc if isinstance(exc, UpstreamError) else classify_break(exc, target)
        await send({"type": "http.response.body", "body": error_event(str(err), code=f"upstream_{err.kind}")})
        if call is not None:
            call.finish(resp.status, error=str(err), error_class="stream")
        return
    if call is not None:
        call.finish(resp.status)
    if stream.error is not None:  # a filter blocked, or failed closed: what came before it, then the error
        err = stream.error
        await send({"type": "http.response.body", "body": out + error_event(err.message, err.type, err.code)})
        return
    tail = aligner.pending.strip()
    end = error_event("Upstream stream ended inside an event.", code="upstream_incomplete_event") if tail else b""
    await send({"type": "http.response.body", "body": out + end, "more_body": False})
