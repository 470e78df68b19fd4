"""A2A agents upstream: ``agents: - {id, type: a2a, url}``.

**The card.** When the runtime starts — before the worker serves, and on reload before the new
configuration is swapped in (:mod:`gateway.a2a.lifecycle`) — plano reads the agent's card at ``{url}/.well-known/agent-card.json``,
falling back to 0.3's ``/.well-known/agent.json``, through the agent's pool, and parses it with
``a2a-sdk`` (which maps 0.3 cards onto 1.0's shape). From it: the JSON-RPC interface (its path,
kept on the configured endpoints so pools, load balancing and breakers still apply; the card's
host is not trusted over the config), the protocol version (1.0 preferred when the card offers
both) and, when the listener gives the agent no ``description``, a routing description built from
the card's description and its skills (name, description, examples as ``Handles:`` lines). A card
that cannot be read is a start-up warning naming the agent and the URLs tried; the agent is then
called at its configured URL with 1.0 methods, and a ``-32601`` answer switches it to 0.3 once.

**The call.** ``SendStreamingMessage`` when the card says ``capabilities.streaming`` (pieces of the
answer reach the client as they arrive), else ``SendMessage``; 0.3 names (``message/stream``,
``message/send``) for a 0.3 agent. 1.0 calls carry ``A2A-Version: 1.0``. Each call is one
:meth:`Upstream.call` with the agent's pool and call policy (retries, breakers, the listener's
deadline), so filters, retries, breakers and traces apply as to any agent. A task that is not
finished when the response ends is polled with ``GetTask`` (0.25 s, doubling to 2 s) until it
ends, within the listener's deadline; when the deadline passes (or the client goes away) plano
sends ``CancelTask`` and answers 504. A task that fails, is rejected or canceled is the agent's
failure (502 naming the agent and the task's own message); ``input-required`` answers with the
agent's question.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from urllib.parse import urlsplit

import orjson

from gateway.a2a import wire
from gateway.listeners.errors import GatewayError
from gateway.listeners.sse import EventAligner, event_data, split_events
from gateway.upstream import UpstreamError, timeout_policy

log = logging.getLogger("plano.a2a")

CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")
CARD_TIMEOUT = 5.0
_POLL_FIRST = 0.25
_POLL_MAX = 2.0


class A2AAgent:
    """The A2A side of one ``type: a2a`` agent (one per agent per listener per worker)."""

    def __init__(self, agent_id: str, bases: list[str], configured_description: str | None = None) -> None:
        self.id = agent_id
        self.bases = [b.rstrip("/") for b in bases]
        parts = urlsplit(self.bases[0])
        self.path = parts.path or ""  # the JSON-RPC path on each endpoint (the configured url's, until a card says)
        self.version = "1.0"
        self.version_known = False
        self.streaming = False
        self.card: dict | None = None
        self.card_error: str | None = None
        self.description: str | None = None  # the routing description from the card
        self.loaded = False
        self._ids = itertools.count(1)
        self.configured_description = configured_description

    @property
    def urls(self) -> list[str]:
        return [_origin(b) + self.path for b in self.bases]

    # -- the card ------------------------------------------------------------------------

    async def load_card(self, upstream, pool, target: str) -> None:
        """Read and apply the agent card (never raises: a missing card is a warning)."""
        tried = []
        prefixes = [self.bases] if _origin(self.bases[0]) == self.bases[0] else \
            [self.bases, [_origin(b) for b in self.bases]]
        for prefix, path in ((prefix, path) for prefix in prefixes for path in CARD_PATHS):
            url = prefix[0] + path
            tried.append(url)
            try:
                async with upstream.call(pool, [b + path for b in prefix], headers={"accept": "application/json"},
                                         body=None, method="GET", timeout=timeout_policy(CARD_TIMEOUT, 2.0),
                                         target=target) as resp:
                    status = resp.status
                    data = await resp.read()
            except UpstreamError as err:
                self.card_error = str(err)
                continue
            if status != 200:
                self.card_error = f"HTTP {status}"
                continue
            try:
                self.apply_card(orjson.loads(data))
            except Exception as exc:  # noqa: BLE001 - a broken card is a warning, not a crash
                self.card_error = f"unusable agent card at {url}: {str(exc)[:200]}"
                break
            self.card_error = None
            self.loaded = True
            log.info("a2a agent '%s': card '%s' (protocol %s, %s, path %s)", self.id, self.card.get("name"),
                     self.version, "streaming" if self.streaming else "no streaming", self.path or "/")
            return
        self.loaded = True
        log.warning("a2a agent '%s': no agent card (%s; tried %s); calling %s with A2A %s methods",
                    self.id, self.card_error, ", ".join(tried), self.urls[0], self.version)

    def apply_card(self, data: dict) -> None:
        from a2a.client.card_resolver import parse_agent_card
        from google.protobuf.json_format import MessageToDict

        raw = data if isinstance(data, dict) else {}
        declared = raw.get("protocolVersion")
        card = parse_agent_card(dict(raw))
        self.card = MessageToDict(card)
        interfaces = [i for i in card.supported_interfaces if (i.protocol_binding or "JSONRPC").upper() == "JSONRPC"]
        if not interfaces:
            raise ValueError("the card offers no JSONRPC interface")
        best = max(interfaces, key=lambda i: wire.major(i.protocol_version or declared) == "1.0")
        self.version = wire.major(best.protocol_version or declared or "1.0")
        self.version_known = True
        path = urlsplit(best.url).path.rstrip("/") if best.url else ""
        self.path = path
        self.streaming = bool(card.capabilities.streaming)
        lines = [card.description.strip()] if card.description else []
        for skill in card.skills:
            text = skill.description.strip() or skill.name
            if text:
                lines.append(f"{text.rstrip('.')}.")
            if skill.examples:
                lines.append("Handles: " + "; ".join(skill.examples))
        self.description = "\n".join(x for x in lines if x) or card.name or None

    # -- calls ---------------------------------------------------------------------------

    def headers(self, base: dict[str, str]) -> dict[str, str]:
        out = {**base, "content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.version == "1.0":
            out["a2a-version"] = "1.0"
        return out

    async def stream_answer(self, upstream, agent, body: bytes, headers: dict[str, str], deadline, attempt_spans,
                            on_text, span=None, metrics=None) -> tuple[dict | None, str | None]:
        """Call the agent with the chat request ``body`` and hand its answer text to ``on_text`` as it
        arrives. Returns (usage, model) like :func:`gateway.orchestration.chain.stream_answer`."""
        request = orjson.loads(body)
        messages = request.get("messages") or []
        answer = wire.AnswerText(on_text)
        try:
            await self._run(upstream, agent, messages, headers, deadline, attempt_spans, answer, span, metrics)
        except asyncio.CancelledError:
            if answer.task_id and not answer.done:
                _background(self._cancel(upstream, agent, answer.task_id, headers, metrics))
            raise
        if answer.error is not None:
            if span is not None and span.recording:
                span.set("a2a.task_state", answer.state)
            raise GatewayError(502, f"Agent '{self.id}': A2A task {answer.state}: {answer.error[:300]}",
                               code="agent_error")
        if span is not None and span.recording:
            span.update({"a2a.task_state": answer.state or "message"})
        return None, None

    async def _run(self, upstream, agent, messages, headers, deadline, attempt_spans, answer, span, metrics) -> None:
        stream = self.streaming
        kind = "stream" if stream else "send"
        method = wire.METHODS[self.version][kind]
        params = {"message": wire.user_message(messages, self.version)}
        if not stream:
            params["configuration"] = {"blocking": True} if self.version == "0.3" else {"returnImmediately": False}
        if span is not None and span.recording:
            span.update({"a2a.method": method, "a2a.protocol_version": self.version, "a2a.agent": self.id})
        try:
            await self._call(upstream, agent, method, params, headers, deadline, attempt_spans, answer, metrics,
                             stream=stream)
        except _MethodNotFound:
            if self.version_known or self.version != "1.0":
                raise GatewayError(502, f"Agent '{self.id}' does not know the A2A method {method}.",
                                   code="agent_error") from None
            log.warning("a2a agent '%s' does not know %s; speaking A2A 0.3 to it from now on", self.id, method)
            self.version, self.version_known = "0.3", True
            return await self._run(upstream, agent, messages, headers, deadline, attempt_spans, answer, span, metrics)
        if answer.task_id and span is not None and span.recording:
            span.update({"a2a.task_id": answer.task_id})
        delay = _POLL_FIRST
        while not answer.done:
            if not answer.task_id:
                raise GatewayError(502, f"Agent '{self.id}' ended its A2A answer without a message or a task.",
                                   code="agent_invalid_response")
            left = deadline.remaining()
            if left is not None and left <= delay:
                await self._cancel(upstream, agent, answer.task_id, headers, metrics)
                raise deadline.expired_error()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
            get = wire.METHODS[self.version]["get"]
            await self._call(upstream, agent, get, {"id": answer.task_id}, headers, deadline, None, answer, metrics,
                             stream=False)
            if span is not None and span.recording:
                span.event("a2a.poll", {"a2a.method": get, "a2a.task_state": answer.state})

    async def _call(self, upstream, agent, method: str, params: dict, headers, deadline, attempt_spans, answer,
                    metrics, *, stream: bool) -> None:
        body = wire.rpc(method, params, next(self._ids))
        started = time.perf_counter()
        outcome = "error"
        try:
            async with upstream.call(agent.pool, self.urls, headers=self.headers(headers), body=body,
                                     timeout=deadline.policy(agent), policy=agent.policy, deadline=deadline.at,
                                     attempt_spans=attempt_spans, target=agent.target) as resp:
                if resp.status >= 400:
                    from gateway.listeners.relay import upstream_message
                    from gateway.orchestration.chain import agent_failed

                    data = await resp.read()
                    raise agent_failed(self.id, resp.status, upstream_message(data, resp.status)[1])
                if "text/event-stream" in resp.headers.get("content-type", ""):
                    await self._read_stream(resp, answer)
                else:
                    self._result(orjson.loads(await resp.read()), method, answer)
            outcome = "ok"
        except UpstreamError as err:
            from gateway.orchestration.chain import agent_upstream_error

            outcome = err.kind
            raise agent_upstream_error(agent, err) from None
        except orjson.JSONDecodeError:
            raise GatewayError(502, f"Agent '{self.id}' answered A2A {method} with something that is not JSON.",
                               code="agent_invalid_response") from None
        finally:
            if metrics is not None:
                metrics.protocol("a2a", method, "upstream", outcome, time.perf_counter() - started)

    async def _read_stream(self, resp, answer) -> None:
        aligner = EventAligner()
        try:
            async for chunk in resp.chunks():
                for block in split_events(aligner.feed(chunk)):
                    payload = event_data(block)
                    if payload is None or not payload.strip():
                        continue
                    try:
                        reply = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise GatewayError(502, f"Agent '{self.id}' sent an A2A stream event that is not JSON.",
                                           code="agent_invalid_response") from None
                    self._result(reply, "stream", answer)
        except (GatewayError, UpstreamError):
            raise
        except Exception as exc:  # noqa: BLE001 - the body broke mid-way
            from gateway.listeners.relay import classify_break

            raise classify_break(exc, f"agent '{self.id}'") from None

    def _result(self, reply, method: str, answer) -> None:
        if not isinstance(reply, dict):
            raise GatewayError(502, f"Agent '{self.id}' answered A2A {method} with no JSON-RPC response.",
                               code="agent_invalid_response")
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            if code == -32601:
                raise _MethodNotFound()
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise GatewayError(502, f"Agent '{self.id}' answered A2A {method} with error {code}: "
                               f"{str(message)[:300]}", code="agent_error")
        answer.feed(reply.get("result"))

    async def _cancel(self, upstream, agent, task_id: str, headers, metrics) -> None:
        """Best effort: ask the agent to stop a task plano no longer waits for."""
        method = wire.METHODS[self.version]["cancel"]
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with upstream.call(agent.pool, self.urls, headers=self.headers(headers),
                                     body=wire.rpc(method, {"id": task_id}, next(self._ids)),
                                     timeout=timeout_policy(3.0, 2.0), target=agent.target) as resp:
                await resp.read()
        except Exception as exc:  # noqa: BLE001
            outcome = "error"
            log.info("a2a agent '%s': %s for task %s failed: %s", self.id, method, task_id, exc)
        if metrics is not None:
            metrics.protocol("a2a", method, "upstream", outcome, time.perf_counter() - started)


class _MethodNotFound(Exception):
    pass


_pending: set[asyncio.Task] = set()


def _background(coro) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _origin(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"
