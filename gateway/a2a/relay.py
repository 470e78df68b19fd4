"""The last agent of a chain is an A2A agent: its answer as the client's chat completion.

The A2A answer (a message, a task's artifacts, streamed artifact updates) is text; the client
asked for OpenAI chat completions, so it gets a ``chat.completion`` (``stream: false``) or a
stream of ``chat.completion.chunk`` events ending in ``data: [DONE]`` (``stream: true``).

Streaming starts with the first piece of text, so a failure before it (the agent unreachable,
its task failed, the listener's deadline) is still a proper HTTP error; a failure after it ends
the stream with an in-stream ``data: {"error": …}`` event, as for any agent. With output
filters the whole answer is collected and filtered first (they see whole messages).
"""

from __future__ import annotations

import asyncio

import orjson

from gateway.listeners.errors import GatewayError
from gateway.listeners.http import JSON_CT, SSE_CT, send_body
from gateway.listeners.sse import openai_error_event
from gateway.orchestration.chain import filter_answer, stream_answer
from gateway.orchestration.compose import ChunkWriter
from gateway.upstream import UpstreamError


async def relay_a2a(send, upstream, agent, request: dict, payload: bytes, headers: dict[str, str], deadline,
                    rid: str, spans, call, filters=None, metrics=None) -> None:
    """Answer the client with A2A agent ``agent``'s answer to ``payload`` (see the module docstring).
    ``call``: the agent call's telemetry (finished here); ``filters``: a filter run when the agent
    has output filters."""
    model = request.get("model") if isinstance(request.get("model"), str) else agent.id
    span = getattr(call, "span", None)
    if request.get("stream") is not True or agent.output_filters is not None:
        parts: list[str] = []
        await stream_answer(upstream, agent, payload, headers, deadline, spans, parts.append, span=span,
                            metrics=metrics)
        text = "".join(parts)
        if agent.output_filters is not None:
            text = await filter_answer(agent, request, text, filters, deadline)
        writer = ChunkWriter(rid, model)
        if request.get("stream") is True:
            body = writer.delta(text) + writer.end(None)
            await send({"type": "http.response.start", "status": 200, "headers": [
                SSE_CT, (b"cache-control", b"no-cache"), (b"x-request-id", rid.encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        else:
            completion = {**{k: v for k, v in writer.base.items() if k != "object"}, "object": "chat.completion",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                       "finish_reason": "stop"}]}
            await send_body(send, 200, orjson.dumps(completion), [JSON_CT, (b"x-request-id", rid.encode())])
        call.finish(200)
        return

    writer = ChunkWriter(rid, model)
    started = False
    queue: asyncio.Queue = asyncio.Queue()

    async def produce() -> None:
        await stream_answer(upstream, agent, payload, headers, deadline, spans, queue.put_nowait, span=span,
                            metrics=metrics)

    worker = asyncio.create_task(produce())
    worker.add_done_callback(lambda _t: queue.put_nowait(None))
    try:
        while True:
            piece = await queue.get()
            if piece is None:
                break
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": [
                    SSE_CT, (b"cache-control", b"no-cache"), (b"x-request-id", rid.encode())]})
            await send({"type": "http.response.body", "body": writer.delta(piece), "more_body": True})
        try:
            worker.result()
        except (GatewayError, UpstreamError) as exc:
            err = exc if isinstance(exc, GatewayError) else GatewayError(exc.status, str(exc), code=f"agent_{exc.kind}")
            if not started:
                raise err from None
            call.finish(200, outcome="error", error=err.message)
            await send({"type": "http.response.body", "body": openai_error_event(err.message, err.type, err.code),
                        "more_body": False})
            return
        if not started:
            await send({"type": "http.response.start", "status": 200, "headers": [
                SSE_CT, (b"cache-control", b"no-cache"), (b"x-request-id", rid.encode())]})
        await send({"type": "http.response.body", "body": writer.end(None), "more_body": False})
        call.finish(200)
    finally:
        if not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
