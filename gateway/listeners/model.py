"""The model listener: every client API in front of every configured provider.

Routes: ``POST /v1/chat/completions`` (OpenAI Chat), ``POST /v1/messages`` (Anthropic
Messages, any query string such as ``?beta=true``), ``POST /v1/responses`` (OpenAI
Responses) — one request path, parameterised by the client API
(:class:`~gateway.wire.api.ClientAPI`): parse → resolve → filters → call (with
failover and translation, :mod:`gateway.llm.call`) → relay → telemetry. Plus
``POST /v1/messages/count_tokens``, ``POST /v1/embeddings`` (passthrough to OpenAI-compatible
providers), ``GET``/``DELETE /v1/responses/{id}`` (and ``/input_items``),
``POST /v1/responses/{id}/cancel`` (``background: true`` responses plano runs for translated
upstreams), ``GET /v1/models`` (+ CORS preflight) and ``GET /healthz``.

When the client API is the upstream's, the body is parsed once (orjson), checked at the
edge, its ``model`` rewritten to the provider's id, and forwarded; the answer is relayed
as it arrives — JSON untouched, SSE event by event. Otherwise the target's translator
re-expresses the request and the answer (event by event). Errors always come back in the
client API's envelope. With ``input_filters`` / ``output_filters`` the same path runs
through :mod:`gateway.filters`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

import orjson

from gateway.config.providers import OPENAI_RESPONSES
from gateway.filters import FilterRegistry, filter_run, shapes
from gateway.filters.output import relay_json_filtered, relay_stream_filtered
from gateway.listeners.http import (
    DEFAULT_MAX_JSON_DEPTH,
    JSON_CT,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    cors_preflight,
    dispatch,
    drain,
    healthz,
    read_body,
    request_id,
    send_body,
)
from gateway.llm.call import LLMCaller, not_served
from gateway.llm.prompt_cache import CacheOutcome, PromptCaching
from gateway.llm.resolver import ModelResolver
from gateway.llm.targets import Target, client_credential, embeddings_urls, passthrough_headers
from gateway.model_routing import ROUTING_PATHS, ModelRouting, routing_endpoint
from gateway.telemetry import Telemetry
from gateway.upstream import Upstream, UpstreamError
from gateway.upstream.headers import provider_headers
from gateway.upstream.limits import RateLimits, refusal
from gateway.upstream.usage import estimate_tokens
from gateway.wire.anthropic import MESSAGES, estimate_input_tokens, parse_messages_request
from gateway.wire.api import ClientAPI
from gateway.wire.embeddings import PATH as EMBEDDINGS_PATH
from gateway.wire.embeddings import parse_embeddings_request
from gateway.wire.errors import GatewayError
from gateway.wire.openai_chat import CHAT
from gateway.wire.relay import StreamUsage, observers, relay_json, relay_stream, send_error, upstream_message
from gateway.wire.responses import RESPONSES, input_items, new_id

log = logging.getLogger("plano.model")

_RESPONSES_PREFIX = "/v1/responses/"
_CLIENT_APIS = {CHAT.name: CHAT, MESSAGES.name: MESSAGES, RESPONSES.name: RESPONSES}


class ModelListener:
    """ASGI app for one ``type: model`` listener."""

    def __init__(self, listener, resolver: ModelResolver, upstream: Upstream,
                 filters: FilterRegistry | None = None, telemetry: Telemetry | None = None,
                 caller: LLMCaller | None = None, limits: RateLimits | None = None, *,
                 state_storage=None) -> None:
        self.name = listener.name
        self.tel = telemetry or Telemetry(None, metrics=False)
        self.max_body = getattr(listener, "max_body_bytes", None) or 10 * 1024 * 1024
        # Checked while reading the body: a model listener without ``auth`` has no edge middleware.
        self.max_json_depth = getattr(listener, "max_json_depth", None) or DEFAULT_MAX_JSON_DEPTH
        self.resolver = resolver
        self.upstream = upstream
        self.caller = caller or LLMCaller(upstream)
        self.rate_limits = limits  # token limits (``ratelimits``), asked per resolved model
        self.limits = limits.for_listener(self.name) if limits is not None else None  # request limits
        self.input_chain = filters.chain(listener.input_filters, "input") if filters else None
        self.output_chain = filters.chain(listener.output_filters, "output") if filters else None
        self.filtered = self.input_chain is not None or self.output_chain is not None
        self._models_body = orjson.dumps({"object": "list", "data": resolver.model_list()})
        # ``state_storage`` (None: SQLite under $PLANO_HOME); the listener's config carries the section.
        self._state_config = state_storage if state_storage is not None else getattr(listener, "_state_storage", None)
        self._state = None  # the Responses state store, opened on first use (in the worker's loop)
        self._background: dict[str, asyncio.Task] = {}  # background responses running in this worker, by id
        # Preference routing, sessions and prompt caching read the whole config (None: listener alone).
        config = getattr(listener, "_config", None)
        self.model_routing = ModelRouting(config, resolver, upstream)
        self.prompt_caching = PromptCaching.from_config(config)
        self._routes = {
            ("POST", CHAT.path): partial(self.handle, CHAT),
            ("POST", MESSAGES.path): partial(self.handle, MESSAGES),
            ("POST", RESPONSES.path): partial(self.handle, RESPONSES),
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
            ("POST", EMBEDDINGS_PATH): self.embeddings,
            ("GET", "/v1/models"): self.list_models,
            ("OPTIONS", "/v1/models"): cors_preflight,
            ("GET", "/healthz"): healthz,
            ("GET", "/agents/v1/models"): self.list_models,
        }
        for path, api in ROUTING_PATHS.items():  # the Routing API: the decision only, no model call
            self._routes[("POST", path)] = partial(routing_endpoint, self, _CLIENT_APIS[api])
        self.chat_completions = self._routes[("POST", CHAT.path)]  # kept for callers of the old name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is not None:
            await handler(scope, receive, send)
        elif scope["path"].startswith(_RESPONSES_PREFIX):
            await self.stored_response(scope, receive, send)
        elif scope["path"].startswith(MESSAGES.path):  # Anthropic clients get 404/405 in their own shape
            await drain(receive)
            path = scope["path"]
            if any(p == path for _, p in self._routes):
                err = GatewayError(405, f"Method {scope['method']} is not allowed on {path}", code="method_not_allowed")
            else:
                err = GatewayError(404, f"Unknown path {path} on listener '{self.name}'", code="not_found")
            await send_error(send, MESSAGES, err, request_id(scope))
        else:
            await dispatch(self._routes, self.name, scope, receive, send)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._models_body, [JSON_CT, (b"access-control-allow-origin", b"*")])

    # ------------------------------------------------------------------ the request path

    async def handle(self, api: ClientAPI, scope: Scope, receive: Receive, send: Send) -> None:
        """One client request of API ``api``: parse → resolve → filters → call → relay → telemetry."""
        rid = request_id(scope)
        ctx = self.tel.start_request(self.name, "model", scope["method"], scope["path"], scope["headers"], rid)
        request: dict | None = None
        error: str | None = None
        status: int | None = None  # None: the LLM call recorded what the client got
        size = 0
        try:
            body = await read_body(scope, receive, self.max_body, self.max_json_depth)
            size = len(body)
            request = api.parse(body)
            if self.limits is not None:
                verdict = await self.limits.admit(scope["headers"])
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
            if self.filtered:
                await self._filtered(api, scope, send, request, rid, ctx)
                return
            await self._call(api, scope, send, request, request.get("model"), rid, ctx, None, None)
        except GatewayError as err:
            error, status = err.message, err.status
            await send_error(ctx.wrap_send(send), api, err, rid)
        except UpstreamError as err:
            error, status = str(err), err.status
            log.warning("request_id=%s upstream=%s %s", rid, err.target, err)
            await send_error(ctx.wrap_send(send), api, GatewayError(err.status, error, code=f"upstream_{err.kind}",
                                                                    headers=err.response_headers()), rid)
        except ClientDisconnected:
            error = "client disconnected"
        finally:
            ctx.finish(status, bytes_in=size, messages=api.messages(request) if request else None, error=error)

    async def _call(self, api: ClientAPI, scope: Scope, send: Send, request: dict, requested: str | None, rid: str,
                    ctx, output, run) -> None:
        """Resolve the request's model, call it (with failover and translation) and relay the answer.

        ``requested`` is the model the client asked for (an input filter may have changed ``request``'s);
        ``output``/``run``: the listener's output filters, when it has any.
        """
        routing = self.model_routing
        decision = None
        if routing.active or "routing_preferences" in request:
            decision = await routing.decide(api.name, scope["headers"], request, ctx, rid)
            if decision is not None and decision.model:
                request["model"] = decision.model
        target = self.resolver.resolve(request.get("model"))
        route = target.routes.get(api.name)
        if route is None:
            raise not_served(target, api)
        fallbacks = [t for t in self.resolver.fallbacks(request.get("model"), target) if api.name in t.routes] \
            if target.fallbacks or self.resolver.alias_fallbacks or self.resolver.alias_groups else []
        stream = request.get("stream") is True
        recorder = None
        if api is RESPONSES and route.api != OPENAI_RESPONSES:  # translated: plano keeps the conversation
            if request.get("background") is True and "_plano_response_id" not in request:
                await self._start_background(scope, send, request, requested, rid, target, output, run)
                return
            recorder = await self._conversation(request, target)
        charge = None
        if self.rate_limits is not None and self.rate_limits.token_rules:
            charge = self.rate_limits.tokens(f"{target.provider}/{target.model_id}", target.model_id,
                                             scope["headers"], name=target.name)
            if charge is not None:
                verdict = await charge.admit(estimate_tokens(request))
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
        call = ctx.llm_call(target.provider, requested, target.model_id, stream=stream, request=request,
                            path=api.path)
        # What the relay reports to: telemetry, token usage when a token limit applies, stored state.
        observer = call if charge is None else charge.observe(call)
        if stream and api is not CHAT:  # usage lives in other events than OpenAI chat's
            observer = StreamUsage(observer)
        if recorder is not None:
            observer = observers(observer, recorder)
        caching = self.prompt_caching
        if caching is not None and any(k == b"x-plano-cache" and v.lower() == b"off" for k, v in scope["headers"]):
            caching = None  # ``X-Plano-Cache: off``: no markers for this call
        if caching is not None:
            observer = CacheOutcome(observer, self.tel.metrics, target.name)
        forwarded = provider_headers(scope["headers"])  # an allow-list: no cookies, no oversized headers

        def build(current: Target) -> tuple[dict[str, str], dict]:
            # With fallbacks each model gets its own copy: one provider's key never reaches another.
            headers = self._upstream_headers(scope, current, rid, dict(forwarded) if fallbacks else forwarded)
            call.inject(headers)
            request["model"] = current.model_id
            if caching is not None:  # cache_control breakpoints for this model only (a copy when added)
                return headers, caching.apply(request, current, current.routes.get(api.name), api.name)
            return headers, request

        try:
            async with self.caller.open(target, fallbacks, build, client=api,
                                        on_failover=_failover_recorder(ctx, call) if fallbacks else None,
                                        attempt_spans=_attempt_spans(ctx, call.span)) as resp:
                current = resp.origin or target
                invalid = target_invalid(current)
                if decision is not None:
                    resp.with_header("x-plano-route", decision.route or "none")
                    if decision.pinned or decision.switched:
                        resp.with_header("x-plano-session", "pinned" if decision.pinned else "switched")
                if stream:
                    if output is None:
                        await relay_stream(send, resp, rid, invalid_json=invalid, target=current.name,
                                           call=observer, api=api)
                    else:
                        await relay_stream_filtered(send, resp, rid, output, run, invalid_json=invalid,
                                                    target=current.name, call=observer, api=api)
                elif output is None:
                    await relay_json(send, resp, rid, invalid, call=observer, api=api)
                else:
                    await relay_json_filtered(send, resp, rid, output, run, invalid, call=observer, api=api)
        except BaseException as exc:
            _failed(observer, exc)
            raise

    async def _filtered(self, api: ClientAPI, scope: Scope, send: Send, request: dict, rid: str, ctx) -> None:
        """The same request path with the listener's filter chains: input filters see the whole client
        body before the model is resolved (a filter may change ``model``), output filters the answer."""
        run = filter_run(scope, rid)
        run.telemetry = ctx
        requested = request.get("model")
        if self.input_chain is not None:
            request = await self.input_chain.run(request, api.path, run,
                                                 shapes.chat_request if api is CHAT else None)
        send = ctx.wrap_send(send)  # output filters change the body: count what the client really gets
        await self._call(api, scope, send, request, requested, rid, ctx, self.output_chain, run)

    def _upstream_headers(self, scope: Scope, target: Target, rid: str, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` (the client's forwardable ones, updated in place) plus ours and ``target``'s auth."""
        headers["x-request-id"] = rid
        headers["content-type"] = "application/json"
        if target.passthrough_auth:
            credential = client_credential(scope["headers"])
            if credential:
                headers.update(passthrough_headers(target, credential))
        elif target.auth_headers:
            headers.update(target.auth_headers)
        elif target.missing_key_env:
            raise GatewayError(
                401,
                f"No API key for model provider '{target.name}': environment variable "
                f"'{target.missing_key_env}' was not set when the gateway started.",
                code="missing_provider_key",
            )
        if target.extra_headers:
            headers.update(target.extra_headers)
        return headers

    # ------------------------------------------------------------------ count_tokens

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/messages/count_tokens``: the Anthropic upstream's own count, else an estimate
        (:func:`gateway.wire.anthropic.estimate_input_tokens`)."""

        async def prepare(body: bytes):
            request = parse_messages_request(body, count_tokens=True)
            target = self.resolver.resolve(request.get("model"))
            route = target.routes.get(MESSAGES.name)
            if route is not None and route.translator is None:  # a native Messages upstream counts itself
                return target, tuple(_count_url(u) for u in route.urls), request
            answer = orjson.dumps({"input_tokens": estimate_input_tokens(request)})
            return answer, [(b"x-plano-token-count", b"estimate")]

        await self._one_call(MESSAGES, scope, receive, send, prepare)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/embeddings``: passed through to the resolved model's OpenAI-compatible
        ``/embeddings``; a provider without one answers a 400 that names it."""

        async def prepare(body: bytes):
            request = parse_embeddings_request(body)
            if self.limits is not None:
                verdict = await self.limits.admit(scope["headers"])
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
            target = self.resolver.resolve(request.get("model"))
            urls = embeddings_urls(target)
            if urls is None:
                raise GatewayError(400, f"Model '{target.name}' ({target.display}) has no OpenAI-compatible "
                                        "embeddings API that plano can reach; configure an OpenAI-compatible "
                                        "embeddings model.", code="embeddings_not_supported", param="model")
            return target, urls, request

        await self._one_call(CHAT, scope, receive, send, prepare)

    async def _one_call(self, api: ClientAPI, scope: Scope, receive: Receive, send: Send, prepare) -> None:
        """The request path of the endpoints that make at most one plain provider call (count_tokens,
        embeddings): read the body, ``await prepare(body)`` → ``(target, urls, request)`` to pass the
        request through to ``urls``, or ``(answer, extra headers)`` to answer 200 at once; errors in
        ``api``'s envelope; one telemetry request either way."""
        rid = request_id(scope)
        ctx = self.tel.start_request(self.name, "model", scope["method"], scope["path"], scope["headers"], rid)
        error: str | None = None
        status: int | None = None
        size = 0
        try:
            body = await read_body(scope, receive, self.max_body, self.max_json_depth)
            size = len(body)
            prepared = await prepare(body)
            if len(prepared) == 2:
                answer, extra = prepared
                status = 200
                await send_body(send, 200, answer, [JSON_CT, (b"x-request-id", rid.encode()), *extra])
                return
            target, urls, request = prepared
            request["model"] = target.model_id
            headers = self._upstream_headers(scope, target, rid, provider_headers(scope["headers"]))
            async with self.upstream.call(target.pool, urls, headers=headers, body=orjson.dumps(request),
                                          timeout=target.timeout, policy=target.policy,
                                          target=target.name) as resp:
                status = resp.status
                await relay_json(send, resp, rid, target_invalid(target), api=api)
        except GatewayError as err:
            error, status = err.message, err.status
            await send_error(send, api, err, rid)
        except UpstreamError as err:
            error, status = str(err), err.status
            await send_error(send, api, GatewayError(err.status, error, code=f"upstream_{err.kind}",
                                                     headers=err.response_headers()), rid)
        except ClientDisconnected:
            error = "client disconnected"
        finally:
            ctx.finish(status, bytes_in=size, error=error)

    # ------------------------------------------------------------------ Responses state

    async def state(self):
        if self._state is None:
            from gateway.state.responses import open_store

            self._state = await open_store(self._state_config)
        return self._state

    async def _conversation(self, request: dict, target: Target):
        """Merge the stored conversation into a translated Responses request (``previous_response_id``)
        and return the observer that stores this turn (None with ``store: false``)."""
        previous = request.get("previous_response_id")
        items = input_items(request.get("input"))
        if isinstance(previous, str) and previous:
            store = await self.state()
            stored = await store.get(previous)
            if stored is None:
                raise GatewayError(404, f"Previous response with id '{previous}' not found.",
                                   code="previous_response_not_found", param="previous_response_id")
            items = [*stored.items, *items]
            request["input"] = items
        if request.get("store") is False:
            return None
        from gateway.state.responses import ResponseRecorder

        return ResponseRecorder(await self.state(), items, target.name)

    # ------------------------------------------------------------------ background responses and cancel

    async def _start_background(self, scope: Scope, send: Send, request: dict, requested, rid: str,
                                target: Target, output, run) -> None:
        """``background: true`` (translated upstreams): store the response as ``queued``, answer it at
        once, and run the call in a task of this worker that stores the outcome — ``completed`` (by the
        usual recorder), ``failed`` with the error, or ``cancelled`` by ``POST /v1/responses/{id}/cancel``.
        Native Responses upstreams run background requests themselves (the request passes through)."""
        if request.get("stream") is True:
            raise GatewayError(400, "background responses cannot be streamed through plano yet: send "
                                    "stream: false and poll GET /v1/responses/{id}.", code="unsupported_parameter",
                               param="stream")
        if request.get("store") is False:
            raise GatewayError(400, "background responses must be stored: store: false cannot be combined "
                                    "with background: true.", code="invalid_request", param="background")
        from gateway.state.responses import StoredResponse
        from gateway.wire.translate.responses_chat import response_shell

        store = await self.state()
        response_id = new_id("resp")
        request["_plano_response_id"] = response_id
        shell = response_shell(request, response_id, target.model_id, "queued")
        items = input_items(request.get("input"))
        if isinstance(request.get("previous_response_id"), str) and request["previous_response_id"]:
            previous = await store.get(request["previous_response_id"])
            if previous is None:
                raise GatewayError(404, f"Previous response with id '{request['previous_response_id']}' not found.",
                                   code="previous_response_not_found", param="previous_response_id")
            items = [*previous.items, *items]
        record = StoredResponse(response_id, items, shell, target.model_id, target.name, time.time())
        await store.put(record)
        ctx = self.tel.start_request(self.name, "model", "POST", RESPONSES.path, scope["headers"], rid)
        task = asyncio.get_running_loop().create_task(
            self._run_background(scope, request, requested, rid, ctx, output, run, record))
        self._background[response_id] = task
        task.add_done_callback(lambda _t: self._background.pop(response_id, None))
        await send_body(send, 200, orjson.dumps(shell), [JSON_CT, (b"x-request-id", rid.encode())])

    async def _run_background(self, scope, request, requested, rid, ctx, output, run, record) -> None:
        store = await self.state()
        captured = _Captured()
        status = None
        error = None
        await store.put(_with_status(record, "in_progress"))
        try:
            await self._call(RESPONSES, scope, captured, request, requested, rid, ctx, output, run)
            status = captured.status
            if status is not None and status >= 400:
                _, message = upstream_message(captured.body, status)
                error = GatewayError(status, message, code="upstream_error")
        except asyncio.CancelledError:
            status = 499
            await store.put(_with_status(record, "cancelled"))
            raise
        except GatewayError as err:
            error, status = err, err.status
        except UpstreamError as err:
            error, status = GatewayError(err.status, str(err), code=f"upstream_{err.kind}"), err.status
        except Exception as exc:  # noqa: BLE001 - a background task has nobody else to report to
            log.exception("request_id=%s background response %s failed", rid, record.id)
            error, status = GatewayError(500, f"internal error ({type(exc).__name__})", code="internal_error"), 500
        finally:
            ctx.finish(status, error=error.message if error is not None else None)
        if error is not None:
            await store.put(_with_status(record, "failed", {"code": error.code or "server_error",
                                                            "message": error.message}))

    async def cancel_response(self, response_id: str, rid: str, send: Send) -> None:
        """``POST /v1/responses/{id}/cancel``: a background response still running in this worker stops and
        is stored ``cancelled``; anything else answers a Responses-shaped error saying why not."""
        store = await self.state()
        task = self._background.get(response_id)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stored = await store.get(response_id)
        if stored is None:
            raise _no_response(response_id)
        answer = stored.response
        if answer.get("background") is not True:
            raise GatewayError(400, "Only responses created with background: true can be cancelled.",
                               code="response_not_cancellable", param="response_id")
        if answer.get("status") in ("queued", "in_progress"):  # running in another worker or replica
            raise GatewayError(409, f"Response '{response_id}' is running in another gateway worker; it can "
                                    "only be cancelled there.", code="response_not_cancellable",
                               param="response_id")
        if answer.get("status") != "cancelled":
            raise GatewayError(400, f"Cannot cancel a response whose status is '{answer.get('status')}'.",
                               code="response_not_cancellable", param="response_id")
        await send_body(send, 200, orjson.dumps(answer), [JSON_CT, (b"x-request-id", rid.encode())])

    async def stored_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and
        ``POST /v1/responses/{id}/cancel``."""
        await drain(receive)
        rid = request_id(scope)
        rest = scope["path"][len(_RESPONSES_PREFIX):]
        response_id, _, tail = rest.partition("/")
        method = scope["method"]
        try:
            if tail == "cancel" and response_id:
                if method != "POST":
                    raise GatewayError(405, f"Method {method} is not allowed on {scope['path']}",
                                       code="method_not_allowed")
                await self.cancel_response(response_id, rid, send)
                return
            if not response_id or tail not in ("", "input_items") or (tail and method != "GET") \
                    or method not in ("GET", "DELETE"):
                if method not in ("GET", "DELETE") and response_id and not tail:
                    raise GatewayError(405, f"Method {method} is not allowed on {scope['path']}",
                                       code="method_not_allowed")
                raise GatewayError(404, f"Unknown path {scope['path']} on listener '{self.name}'", code="not_found")
            store = await self.state()
            if method == "DELETE":
                if not await store.delete(response_id):
                    raise _no_response(response_id)
                answer = {"id": response_id, "object": "response.deleted", "deleted": True}
            else:
                stored = await store.get(response_id)
                if stored is None:
                    raise _no_response(response_id)
                if tail:
                    answer = {"object": "list", "data": stored.items, "first_id": None, "last_id": None,
                              "has_more": False}
                else:
                    answer = stored.response
            await send_body(send, 200, orjson.dumps(answer), [JSON_CT, (b"x-request-id", rid.encode())])
        except GatewayError as err:
            await send_error(send, RESPONSES, err, rid)


class _Captured:
    """The ``send`` of a background response: nobody listens, the status and body are kept."""

    __slots__ = ("body", "parts", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.parts: list[bytes] = []
        self.body = b""

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.parts.append(message.get("body", b""))
            if not message.get("more_body"):
                self.body = b"".join(self.parts)


def _with_status(record, status: str, error: dict | None = None):
    """A copy of a stored background response with a new status (and error)."""
    from dataclasses import replace

    response = {**record.response, "status": status}
    if error is not None:
        response["error"] = error
    return replace(record, response=response, created_at=time.time())


def _no_response(response_id: str) -> GatewayError:
    return GatewayError(404, f"No response found with id '{response_id}'.", code="response_not_found",
                        param="response_id")


def _count_url(url: str) -> str:
    base, sep, query = url.partition("?")
    return f"{base}/count_tokens{sep}{query}"


_ERROR_CLASS = {"connect": "connect", "reset": "connect", "open": "connect", "overloaded": "connect",
                "timeout": "timeout", "broken": "stream"}


def _failed(call, exc: BaseException) -> None:
    """Close an LLM call's telemetry when the upstream call failed before the relay could."""
    if isinstance(exc, UpstreamError):
        call.finish(exc.status, error=str(exc), error_class=_ERROR_CLASS.get(exc.kind, "other"))
    elif isinstance(exc, GatewayError):
        call.finish(exc.status, error=exc.message, error_class="parse")
    elif isinstance(exc, asyncio.CancelledError):
        call.finish(None, error="cancelled", error_class="other")
    else:
        call.finish(None, error=type(exc).__name__, error_class="other")


def _failover_recorder(ctx, call):
    """Records a move to a fallback model on the LLM call's telemetry (span, metrics labels)."""

    def moved(current: Target, following: Target, reason: str) -> None:
        call.provider, call.model = following.provider, following.model_id
        span = call.span
        if span.recording:
            span.set("llm.model", following.model_id)
            span.set("plano.failover.from", current.name)
            span.set("plano.failover.reason", reason)
        if not call._owns_span:
            ctx.model, ctx.upstream = following.model_id, following.provider

    return moved


def _attempt_spans(ctx, parent):
    """Attempt spans (children of the LLM span) for calls that may retry; None with tracing off."""
    if not parent.recording:
        return None
    from gateway.telemetry.tracing import KIND_CLIENT, LLM

    def start(number: int, endpoint: str):
        return ctx.child(f"attempt {number}", LLM, {"plano.attempt": number, "plano.endpoint": endpoint},
                         kind=KIND_CLIENT, parent=parent)

    return start


def _invalid_response(target: Target) -> GatewayError:
    return GatewayError(
        502,
        f"Upstream {target.name} returned a response that is not a JSON object.",
        code="upstream_invalid_response",
    )


def target_invalid(target: Target) -> Callable[[], GatewayError]:
    """The (lazy) 502 for a target's non-JSON answer: built only when an upstream misbehaves."""
    return partial(_invalid_response, target)
