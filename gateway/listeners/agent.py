"""The agent listener: one endpoint in front of a team of agents.

``POST /v1/chat/completions``, ``POST /v1/messages`` (Anthropic) and ``POST /v1/responses``
(OpenAI Responses), also under ``/agents/``: one request path parameterised by the client
API (:class:`~gateway.wire.api.ClientAPI`), as on the model listener. Agents speak Chat
Completions, so a Messages or Responses request is translated to chat at the edge (the
wire layer's translators) and everything the path sends back — the last agent's answer,
JSON or stream, a composed ``answers: all`` reply, an error — is re-expressed in the
client's API on its way out (:class:`~gateway.wire.relay.TranslatingSend`); a chat client
gets the agents' bytes as before. Then: parse at the edge, let the selector choose the
agents for the latest user turn, run the intermediate ones collecting their
answers, then relay the last agent's response to the client as it is produced —
with the agent's real status. The listener ``timeout`` bounds the whole chain.
Each agent's ``input_filters`` / ``output_filters`` wrap its own call.

``answers: all`` on the listener (plano extension; default ``last`` is the above): a
multi-agent turn runs its independent agents side by side and replies with every
agent's answer in the routed order (see :mod:`gateway.orchestration.compose`).
``GET /v1/models`` lists the listener's agents; ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import orjson

from gateway.config.providers import OPENAI_CHAT

from gateway.filters import FilterRegistry, FilterRun, filter_run
from gateway.filters.output import relay_json_filtered, relay_stream_filtered
from gateway.listeners.errors import GatewayError, bad_request
from gateway.listeners.http import (
    JSON_CT,
    SSE_CT,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    cors_preflight,
    dispatch,
    healthz,
    read_body,
    request_id,
    send_body,
)
from gateway.listeners.relay import relay_json, relay_stream
from gateway.llm.resolver import ModelResolver
from gateway.orchestration.chain import (
    Deadline,
    agent_call,
    agent_endpoint,
    agent_failed,
    agent_upstream_error,
    collect_answer,
    filter_answer,
    filter_conversation,
    handoff,
    stream_answer,
)
from gateway.orchestration.compose import (
    AgentRun,
    ChunkWriter,
    completion,
    error_note,
    heading,
    stages,
    sum_usage,
    wait_first_outcome,
)
from gateway.routing.selector import AgentSelector, Selection
from gateway.telemetry import Telemetry
from gateway.upstream import PoolRegistry, Upstream, UpstreamError, forward_headers
from gateway.upstream.limits import refusal
from gateway.wire.anthropic import MESSAGES
from gateway.wire.api import ClientAPI
from gateway.wire.openai_chat import CHAT
from gateway.wire.relay import TranslatingSend, send_error
from gateway.wire.responses import RESPONSES
from gateway.wire.translate import translator

log = logging.getLogger("plano.agent")

_NO_DROP: frozenset[bytes] = frozenset()


class AgentListener:
    """ASGI app for one ``type: agent`` listener."""

    def __init__(self, config, listener, upstream: Upstream, resolver: ModelResolver | None = None,
                 filters: FilterRegistry | None = None, telemetry: Telemetry | None = None,
                 pools: PoolRegistry | None = None, limits=None) -> None:
        self.name = listener.name
        self.tel = telemetry or Telemetry(None, metrics=False)
        self.timeout = listener.timeout
        self.answers = getattr(listener, "answers", None) or "last"
        self.max_body = listener.max_body_bytes or 10 * 1024 * 1024
        self.upstream = upstream
        self.limits = limits.for_listener(self.name) if limits is not None else None  # request limits
        if resolver is None:
            resolver = ModelResolver(config.model_providers or [], config.model_aliases or {}, default_timeout=None)
        self.selector = AgentSelector(listener, config, resolver, upstream)
        self._listener, self._config, self._resolver = listener, config, resolver
        if pools is None:
            pools = filters.pools if filters is not None else PoolRegistry(config)
        if filters is None:
            filters = FilterRegistry(config, upstream, pools)
        retry_defaults = (getattr(listener, "retry", None), getattr(getattr(config, "overrides", None), "retry", None))
        self.endpoints = {
            a.id: agent_endpoint(config.agent_by_id(a.id), filters.chain(a.input_filters, "input"),
                                 filters.chain(a.output_filters, "output"), pools=pools,
                                 retry_defaults=retry_defaults)
            for a in listener.agents or []
        }
        self._models_body = orjson.dumps({"object": "list", "data": [
            {"id": a.id, "object": "model", "created": 0, "owned_by": "agent"} for a in listener.agents or []]})
        self._routes = {
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/agents/v1/models"): self.list_models,
            ("OPTIONS", "/v1/models"): cors_preflight,
            ("GET", "/healthz"): healthz,
        }
        for api in (CHAT, MESSAGES, RESPONSES):  # one request path, parameterised by the client API
            self._routes[("POST", api.path)] = self._routes[("POST", "/agents" + api.path)] = partial(self.handle, api)
        self.chat_completions = self._routes[("POST", CHAT.path)]  # in-process callers (A2A, MCP) speak chat
        # A2A agents upstream (their cards), A2A and MCP served by this listener (gateway.a2a, gateway.mcp_gateway)
        self._cards: asyncio.Task | None = None
        self._cards_pending = any(e.a2a is not None for e in self.endpoints.values())
        self.protocols = _protocol_routes(self, config, listener)
        # ``/v1/tasks`` (async tasks, gateway.tasks): this listener's agents are the workflows' tools
        self.tasks = _mount_tasks(self, config, upstream, self.tel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tasks = self.tasks
        if tasks is not None:
            if not tasks.runtime.started:
                await _start_tasks()
            if scope["path"].startswith("/v1/tasks"):
                await tasks(scope, receive, send)
                return
        if self._cards_pending:
            await self._await_cards(scope["path"] != "/healthz")
        if self.protocols is not None and await self.protocols(scope, receive, send):
            return
        await dispatch(self._routes, self.name, scope, receive, send)

    async def _await_cards(self, wait: bool) -> None:
        """Read the A2A agents' cards once, at the listener's first request (``plano up``'s health
        probe): it does not wait for them; every other request does (routing may need them)."""
        if self._cards is None:
            self._cards = asyncio.get_running_loop().create_task(self._load_cards())
        if wait:
            await asyncio.shield(self._cards)

    async def _load_cards(self) -> None:
        from gateway.a2a.upstream import CARD_TIMEOUT

        agents = [e for e in self.endpoints.values() if e.a2a is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.a2a.load_card(self.upstream, e.pool, e.target) for e in agents)),
                                   CARD_TIMEOUT * 4 + 1)
        except Exception:  # noqa: BLE001 - cards are best effort; agents are called anyway
            log.exception("listener '%s': reading A2A agent cards failed", self.name)
        described = {e.id: e.a2a.description for e in agents if e.a2a.description}
        missing = [a for a in self._listener.agents or [] if not a.description and a.id in described]
        if missing:  # the router learns these agents from their cards
            agents_now = [a.model_copy(update={"description": described[a.id]}) if a in missing else a
                          for a in self._listener.agents]
            listener = self._listener.model_copy(update={"agents": agents_now})
            self.selector = AgentSelector(listener, self._config, self._resolver, self.upstream)
        self._cards_pending = False

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._models_body, [JSON_CT])

    async def handle(self, api: ClientAPI, scope: Scope, receive: Receive, send: Send) -> None:
        """One client request of API ``api``: parse → (to chat) → select → agents → answer (in ``api``)."""
        rid = request_id(scope)
        ctx = scope[_TELEMETRY_KEY] = self.tel.start_request(self.name, "agent", scope["method"], scope["path"],
                                                             scope["headers"], rid)
        client_send = send = ctx.wrap_send(send)
        error: str | None = None
        size = 0
        try:
            body = await read_body(scope, receive, self.max_body)
            size = len(body)
            request = api.parse(body)
            if api is not CHAT:
                if api is RESPONSES and request.get("previous_response_id"):
                    # Conversation state lives on model listeners (the agents see whole conversations).
                    raise bad_request("previous_response_id is not supported on agent listeners: send the whole "
                                      "conversation as input.", param="previous_response_id",
                                      code="unsupported_parameter")
                to_chat = translator(api.name, OPENAI_CHAT)
                client_request, request = request, to_chat.request(request)
                if request.get("model") is None:
                    request.pop("model", None)
                if not request["messages"]:
                    raise bad_request("The request has no messages for the agents.",
                                      param="input" if api is RESPONSES else "messages")
                send = TranslatingSend(send, to_chat, client_request, api, rid)
            if self.limits is not None:
                verdict = await self.limits.admit(scope["headers"])
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
            deadline = Deadline(self.timeout)
            headers = self._agent_headers(scope, rid)
            with ctx.routing() as routing:
                forced = scope.get("plano.agent")  # in process only: an MCP agent tool names its agent
                try:
                    selection = Selection([forced], "named", "asked by name", None, 0.0, decided_by="named") \
                        if forced in self.endpoints else await asyncio.wait_for(
                            self.selector.select(request["messages"], headers, ctx, routing.span), deadline.remaining())
                except TimeoutError:
                    raise deadline.expired_error() from None
                plan = None
                if self.answers == "all" and len(selection.agents) > 1:
                    plan = stages(selection.agents, selection.sequenced)
                    routing.span.set("plano.answers", "all")
                    routing.span.set("plano.agents.parallel", _parallel(plan))
                routing.finish(selection.agents, router=selection.router, fallback=selection.fallback,
                               reason=selection.reason, duration_ms=selection.duration_ms)
            log.debug("request_id=%s router=%s agents=%s reason=%s", rid, selection.router, selection.agents,
                      selection.reason)
            if plan is not None:
                await self._answer_all(scope, send, request, plan, headers, deadline, rid, ctx)
                return
            messages = request["messages"]
            *intermediate, last = selection.agents
            for index, agent_id in enumerate(intermediate):
                agent = self.endpoints[agent_id]
                call = ctx.agent_call(agent_id, index=index)
                try:
                    agent_headers = call.inject({**headers, "x-plano-agent-id": agent_id})
                    if agent.filtered:
                        answer = await self._filtered_answer(scope, agent, request, messages, agent_headers,
                                                             deadline, rid)
                    else:
                        payload = orjson.dumps({**request, "messages": messages})
                        answer = await collect_answer(self.upstream, agent, payload, agent_headers, deadline,
                                                      _attempt_spans(call), span=call.span,
                                                      metrics=self.tel.metrics)
                except GatewayError as err:
                    call.finish(err.status, outcome=_outcome(err), error=err.message)
                    raise
                call.finish(200)
                messages = handoff(messages, agent_id, answer)
            await self._final(scope, send, request, messages, self.endpoints[last], headers, deadline, rid,
                              ctx.agent_call(last, index=len(intermediate)))
        except GatewayError as err:
            error = err.message
            await send_error(client_send, api, err, rid)
        except ClientDisconnected:
            error = "client disconnected"
        finally:
            ctx.finish(bytes_in=size, error=error)

    async def _answer_all(self, scope: Scope, send: Send, request: dict, plan: list[list[str]], headers,
                          deadline, rid: str, ctx) -> None:
        """``answers: all``: run the plan's stages (the agents of a stage side by side), reply with
        every agent's answer in the routed order as one completion or one stream."""
        changed = asyncio.Event()
        order = [agent_id for stage in plan for agent_id in stage]
        runs = {agent_id: AgentRun(agent_id, changed) for agent_id in order}
        parallel = _parallel(plan)

        async def one(agent_id: str, index: int, messages: list[dict], side_by_side: bool) -> None:
            run = runs[agent_id]
            agent = self.endpoints[agent_id]
            call = ctx.agent_call(agent_id, index=index)
            if side_by_side:
                call.span.set("plano.agents.parallel", parallel)
            try:
                agent_headers = call.inject({**headers, "x-plano-agent-id": agent_id})
                filters = self._filter_run(scope, rid) if agent.filtered else None
                if agent.input_filters is not None:
                    messages = await filter_conversation(agent, request, messages, filters, deadline)
                payload = orjson.dumps({**request, "messages": messages})
                if agent.output_filters is None:
                    run.usage, run.model = await stream_answer(self.upstream, agent, payload, agent_headers,
                                                               deadline, _attempt_spans(call), run.add,
                                                               span=call.span, metrics=self.tel.metrics)
                else:  # output filters see the whole answer, as for a chained agent
                    parts: list[str] = []
                    run.usage, run.model = await stream_answer(self.upstream, agent, payload, agent_headers,
                                                               deadline, _attempt_spans(call), parts.append,
                                                               span=call.span, metrics=self.tel.metrics)
                    run.add(await filter_answer(agent, request, "".join(parts), filters, deadline))
            except GatewayError as err:
                call.finish(err.status, outcome=_outcome(err), error=err.message)
                run.close(err)
                return
            except asyncio.CancelledError:
                call.finish(None, outcome="cancelled")
                run.close(GatewayError(499, "cancelled", code="cancelled"))
                raise
            except Exception as exc:  # never leave the reply waiting on a run that will not end
                log.exception("request_id=%s agent '%s' failed", rid, agent_id)
                err = GatewayError(500, f"Agent '{agent_id}': internal error ({type(exc).__name__}).",
                                   code="internal_error")
                call.finish(500, error=err.message)
                run.close(err)
                return
            call.finish(200)
            run.close()

        async def drive() -> None:
            messages = request["messages"]
            index = 0
            for stage in plan:
                await asyncio.gather(*(one(agent_id, index + i, messages, len(stage) > 1)
                                       for i, agent_id in enumerate(stage)))
                index += len(stage)
                for agent_id in stage:  # later stages build on these answers, as in a chain
                    if runs[agent_id].error is None:
                        messages = handoff(messages, agent_id, runs[agent_id].text)

        ordered = [runs[agent_id] for agent_id in order]
        model = request.get("model") if isinstance(request.get("model"), str) else self.name
        driver = asyncio.create_task(drive())
        try:
            if request.get("stream") is not True:
                await driver
                if all(run.error is not None for run in ordered):
                    raise ordered[0].error
                body = orjson.dumps(completion(rid, model, ordered))
                await send_body(send, 200, body, [JSON_CT, (b"x-request-id", rid.encode())])
                return
            await wait_first_outcome(ordered, changed)  # every agent failed: the first failure's error
            await send({"type": "http.response.start", "status": 200, "headers": [
                SSE_CT, (b"cache-control", b"no-cache"), (b"x-request-id", rid.encode())]})
            writer = ChunkWriter(rid, model)
            for position, run in enumerate(ordered):
                await send({"type": "http.response.body", "body": writer.delta(heading(run.agent_id, position)),
                            "more_body": True})
                async for piece in run.pieces():
                    await send({"type": "http.response.body", "body": writer.delta(piece), "more_body": True})
                if run.error is not None:
                    note = ("\n" if run.parts else "") + error_note(run.error)
                    await send({"type": "http.response.body", "body": writer.delta(note), "more_body": True})
            await send({"type": "http.response.body", "body": writer.end(sum_usage(ordered)), "more_body": False})
        finally:
            if not driver.done():
                driver.cancel()
                await asyncio.gather(driver, return_exceptions=True)  # settle the cancelled runs

    async def _filtered_answer(self, scope: Scope, agent, request: dict, messages: list[dict], headers, deadline,
                               rid: str) -> str:
        """An intermediate agent with filters: its input filters on the conversation it gets, its
        output filters on its answer."""
        run = self._filter_run(scope, rid)
        if agent.input_filters is not None:
            messages = await filter_conversation(agent, request, messages, run, deadline)
        payload = orjson.dumps({**request, "messages": messages})
        answer = await collect_answer(self.upstream, agent, payload, headers, deadline)
        if agent.output_filters is not None:
            answer = await filter_answer(agent, request, answer, run, deadline)
        return answer

    def _filter_run(self, scope: Scope, rid: str) -> FilterRun:
        run = filter_run(scope, rid, {"x-arch-agent-listener-name": self.name})
        run.telemetry = scope.get(_TELEMETRY_KEY)
        return run

    async def _final(self, scope: Scope, send: Send, request: dict, messages: list[dict], agent, headers, deadline,
                     rid, call) -> None:
        observer = _AgentObserver(call)
        try:
            await self._final_call(scope, send, request, messages, agent, call.inject(
                {**headers, "x-plano-agent-id": agent.id}), deadline, rid, observer)
        except GatewayError as err:
            call.finish(err.status, outcome=_outcome(err), error=err.message)
            raise

    async def _final_call(self, scope: Scope, send: Send, request: dict, messages: list[dict], agent, headers,
                          deadline, rid, observer) -> None:
        if agent.input_filters is not None:
            messages = await filter_conversation(agent, request, messages, self._filter_run(scope, rid), deadline)
        payload = orjson.dumps({**request, "messages": messages})
        if agent.a2a is not None:  # an A2A agent: its answer becomes the client's chat completion
            from gateway.a2a.relay import relay_a2a

            run = self._filter_run(scope, rid) if agent.output_filters is not None else None
            await relay_a2a(send, self.upstream, agent, request, payload, headers, deadline, rid,
                            _attempt_spans(observer.call), observer.call, run, self.tel.metrics)
            return
        invalid = GatewayError(502, f"Agent '{agent.id}' returned a response that is not a JSON object.",
                               code="agent_invalid_response")

        def describe(status: int, message: str) -> GatewayError:
            return agent_failed(agent.id, status, message)

        try:
            async with agent_call(self.upstream, agent, payload, headers, deadline,
                                  _attempt_spans(observer.call)) as resp:
                output = agent.output_filters
                if request.get("stream") is True:
                    if output is None:
                        await relay_stream(send, resp, rid, invalid_json=invalid, describe=describe,
                                           target=f"agent '{agent.id}'", call=observer)
                    else:
                        await relay_stream_filtered(send, resp, rid, output, self._filter_run(scope, rid),
                                                    invalid_json=invalid, describe=describe,
                                                    target=f"agent '{agent.id}'", call=observer)
                elif output is None:
                    await relay_json(send, resp, rid, invalid, describe, call=observer)
                else:
                    await relay_json_filtered(send, resp, rid, output, self._filter_run(scope, rid), invalid,
                                              describe, call=observer)
        except UpstreamError as err:
            raise agent_upstream_error(agent, err) from None

    def _agent_headers(self, scope: Scope, rid: str) -> dict[str, str]:
        """Client headers minus hop-by-hop ones, plus correlation and listener identity (never provider keys)."""
        headers = forward_headers(scope["headers"], _NO_DROP)
        headers["x-request-id"] = rid
        headers["content-type"] = "application/json"
        headers["x-arch-agent-listener-name"] = self.name
        return headers


_TELEMETRY_KEY = "plano.telemetry"


def _mount_tasks(app, config, upstream, telemetry):
    from gateway.tasks.wiring import mount

    return mount(app, config, upstream, telemetry)


async def _start_tasks() -> None:
    from gateway.tasks.wiring import start

    try:
        await start()
    except Exception:  # the store is unreachable: /v1/tasks answers 503, chat keeps working
        log.exception("the task runtime could not start")


def _protocol_routes(app, config, listener):
    """The listener's A2A (agent card, JSON-RPC) and MCP endpoints, or None when both are off.

    Built lazily on their first request, so the SDKs load only when a client speaks them."""
    if not (getattr(listener, "a2a", False) or getattr(listener, "mcp", False)):
        return None
    from gateway.a2a.routes import ProtocolRoutes

    return ProtocolRoutes(app, config, listener)


def _attempt_spans(call):
    """Attempt spans under an agent call's span (only recorded for calls that may retry)."""
    span = getattr(call, "span", None)
    if span is None or not span.recording:
        return None
    from gateway.telemetry.tracing import AGENT, KIND_CLIENT

    def start(number: int, endpoint: str):
        return call.ctx.child(f"attempt {number}", AGENT, {"plano.attempt": number, "plano.endpoint": endpoint},
                              kind=KIND_CLIENT, parent=span)

    return start


def _parallel(plan: list[list[str]]) -> str:
    """The agents that run side by side under a plan (comma-separated, routed order; "" if none)."""
    return ",".join(agent_id for stage in plan if len(stage) > 1 for agent_id in stage)


def _outcome(err: GatewayError) -> str:
    code = err.code or ""
    for kind in ("timeout", "connect", "invalid_response"):
        if code.endswith(kind):
            return kind
    return "timeout" if err.status == 504 else "error"


class _AgentObserver:
    """Adapts the relay's observer calls (``chunk``, ``finish``) to the final agent's telemetry."""

    __slots__ = ("call",)

    def __init__(self, call) -> None:
        self.call = call

    def chunk(self, data: bytes) -> None:
        pass

    def finish(self, status, *, completion=None, response_bytes=None, error=None, error_class=None) -> None:
        outcome = None
        if error:
            outcome = "invalid_response" if error_class == "parse" else "error"
        self.call.finish(status, outcome=outcome, error=error)
