"""The edge: one plain ASGI middleware in front of every listener (model and agent alike).

``Edge(app, ...)`` wraps a listener's app once, at start-up (:func:`gateway.auth.wire_edge`);
handlers never repeat its work. Per request it

1. refuses a JSON body nested deeper than ``max_json_depth`` (400, see :mod:`.hardening`);
2. on a listener with ``auth``: finds the client's key (``x-plano-api-key``, ``Authorization:
   Bearer``, ``x-api-key``, in that order), hashes it and looks it up (:mod:`.keys`); no key or
   an unknown, revoked or expired one is a 401, a key not allowed on this listener a 403;
3. **consumes** the key: the header that carried plano's key is removed before the listener
   sees the request, so it is never forwarded to a provider or an agent (a provider with
   ``passthrough_auth`` gets the client's *other* credential header, if any);
4. for a virtual key with restrictions: its request / token rate limits (429), its budget (429
   naming the budget), the model it asks for (403) or the agents routing picks (403), and it
   meters the response's token usage (and cost, with ``auth.prices``) for limits and budgets.

``/healthz`` and CORS preflights (``OPTIONS``) need no key. Errors use the client API's own
envelope: Anthropic's for ``/v1/messages``, OpenAI's otherwise.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging

import orjson

from gateway.auth.budget import price_of
from gateway.auth.hardening import error_body, json_too_deep
from gateway.auth.keys import PLANO_KEY_HEADER, credential_candidates
from gateway.listeners.errors import GatewayError

log = logging.getLogger("plano.auth")

_sha256 = hashlib.sha256
_EXEMPT = frozenset({"/healthz"})
_JSON_CT = (b"content-type", b"application/json")


class Denied(GatewayError):
    pass


async def send_denied(send, err: GatewayError, path: str) -> None:
    body = error_body(err, path)
    headers = [_JSON_CT, (b"content-length", b"%d" % len(body))]
    if err.headers:
        headers.extend(err.headers)
    if err.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="plano"'))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_all(receive, limit: int):
    """(body, replay receive) — the body is None when it is over ``limit`` or the client left;
    the replay hands the inner app exactly what was read, then the rest of the stream."""
    first = await receive()
    if first.get("type") != "http.request":
        return None, _replay([first], receive)
    if not first.get("more_body"):
        return first.get("body", b""), _replay([first], receive)
    messages = [first]
    total = len(first.get("body", b""))
    message = first
    while message.get("more_body"):
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            return None, _replay(messages, receive)
        total += len(message.get("body", b""))
        if total > limit:
            return None, _replay(messages, receive)
    body = b"".join(m.get("body", b"") for m in messages)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list, receive):
    queue = list(messages)

    async def replayed():
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


class Edge:
    """The middleware for one listener. ``guard`` is None on a listener without ``auth``."""

    __slots__ = ("app", "depth", "guard", "kind", "max_body", "name")

    def __init__(self, app, listener, kind: str, guard=None, *, max_json_depth: int = 64) -> None:
        self.app = app
        self.name = listener.name
        self.kind = kind
        self.guard = guard
        self.depth = max_json_depth
        self.max_body = getattr(listener, "max_body_bytes", None) or 10 * 1024 * 1024

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _scrubbing(send)
        guard = self.guard
        if guard is None:
            if scope["method"] == "POST":
                body, receive = await _read_all(receive, self.max_body)
                if body is not None and json_too_deep(body, self.depth):
                    await send_denied(send, _too_deep(self.depth), scope["path"])
                    return
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in _EXEMPT or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        try:
            record = guard.authenticate(scope)
        except GatewayError as err:
            await _drain(receive)
            await send_denied(send, err, path)
            return
        body = None
        if scope["method"] == "POST":
            body, receive = await _read_all(receive, self.max_body)
            if body is not None and json_too_deep(body, self.depth):
                await send_denied(send, _too_deep(self.depth), path)
                return
        if record is None or not record.restricted or body is None and scope["method"] != "POST":
            await self.app(scope, receive, send)  # listing models/agents: authenticated, not metered
            return
        try:
            agents, meter = await guard.admit(record, scope, body, self.app)
        except GatewayError as err:
            await send_denied(send, err, path)
            return
        if meter is not None:
            send = meter.wrap(send)
        token = ALLOWED_AGENTS.set(agents) if agents is not None else None
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                ALLOWED_AGENTS.reset(token)
            if meter is not None:
                meter.done()


def _scrubbing(send):
    """``send`` that removes secrets (registered keys, credential-looking strings) from error answers: an upstream
    that echoes the key plano sent it must not hand it to the client. Success answers pass untouched."""
    held = None

    async def scrubbed(message):
        nonlocal held
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] >= 400:
                held = message
                return
        elif held is not None and kind == "http.response.body":
            start, held = held, None
            if not message.get("more_body"):
                from gateway.listeners.http import scrub_error_body

                body = message.get("body", b"")
                clean = scrub_error_body(body)
                if clean is not body:
                    headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
                    headers.append((b"content-length", b"%d" % len(clean)))
                    start = {**start, "headers": headers}
                    message = {**message, "body": clean}
            await send(start)
        await send(message)

    return scrubbed


def _too_deep(limit: int) -> GatewayError:
    return GatewayError(400, f"The request body nests JSON deeper than this listener's limit of {limit} levels.",
                        code="json_too_deep")


async def _drain(receive) -> None:
    """Read (and drop) a refused request's body so the connection stays usable."""
    message = await receive()
    n = 0
    while message.get("more_body") and n < 1024:
        message = await receive()
        n += 1


class Guard:
    """Authentication and per-key policy for one listener (built once; asked per request)."""

    def __init__(self, listener, kind: str, listener_keys, store, *, limits_backend=None, ledger=None,
                 models=None, prices=None, agent_ids=()) -> None:
        self.listener = listener.name
        self.kind = kind
        self.own = listener_keys  # a holder with .table (the listener's api_keys / keys_file)
        self.store = store if (listener.auth.virtual_keys and store is not None) else None
        self.limits_backend = limits_backend
        self.ledger = ledger
        self.models = models  # ModelNames, for model checks and prices
        self.prices = prices or {}
        self.agent_ids = tuple(agent_ids)
        self.agents_guarded = False  # set by the runtime once the listener's selector is wrapped
        self._rules: dict = {}
        self._model_ok: dict = {}

    # -- who ----------------------------------------------------------------------------------

    def authenticate(self, scope):
        """The request's key record (its header removed from the scope), or a 401/403 GatewayError."""
        headers = scope["headers"]
        candidates = credential_candidates(headers)
        if not candidates:
            raise GatewayError(401, "This listener requires an API key: send 'Authorization: Bearer <key>' "
                               "or 'x-api-key: <key>'.", code="missing_api_key")
        own = self.own.table
        store = self.store
        record = used = None
        for name, value in candidates:
            digest = _sha256(value).digest()
            record = own.find(digest)
            if record is None and store is not None:
                record = store.table.find(digest)
            if record is not None:
                used = name
                break
        if record is None:
            raise GatewayError(401, "The API key is not valid for this listener.", code="invalid_api_key")
        if record.revoked:
            raise GatewayError(401, f"The API key '{record.id}' has been revoked.", code="revoked_api_key")
        if record.expires_at is not None and record.expired():
            raise GatewayError(401, f"The API key '{record.id}' has expired.", code="expired_api_key")
        if record.listeners is not None and self.listener not in record.listeners:
            raise GatewayError(403, f"The API key '{record.id}' may not use listener '{self.listener}'.",
                               code="listener_not_allowed")
        # consume plano's key: it never travels further (x-plano-api-key never does either)
        scope["headers"] = [h for h in headers if h[0] != used and h[0] != PLANO_KEY_HEADER]
        scope["plano.key_id"] = record.id
        return record

    # -- what ---------------------------------------------------------------------------------

    async def admit(self, record, scope, body, app):
        """Per-key checks for a restricted key: (the app to call, a usage meter or None)."""
        model_names = None
        if self.kind == "model" and body is not None and (record.models is not None or _has_cost(record)):
            model_names = self._requested(body)
            if record.models is not None and model_names is not None:
                self._check_model(record, model_names)
        agents = None
        if self.kind == "agent" and record.agents is not None:
            agents = self._agent_scope(record, scope)
        token_rules = None
        if record.rate_limits and self.limits_backend is not None:
            request_rules, token_rules, keys, token_keys = self._limit_rules(record)
            if request_rules:
                verdict = await self.limits_backend.hit(request_rules, keys, 1, "requests", False)
                if verdict is not None and not verdict.allowed:
                    raise verdict.error()
            if token_rules:
                verdict = await self.limits_backend.hit(token_rules, token_keys, 1, "tokens", False)
                if verdict is not None and not verdict.allowed:
                    raise verdict.error()
                token_rules = (token_rules, token_keys)
        budget = record.budget
        if budget is not None and self.ledger is not None:
            message = await self.ledger.exhausted(record.id, budget)
            if message is not None:
                raise GatewayError(429, message, code="budget_exceeded", type="insufficient_quota")
        meter = None
        if token_rules or budget is not None:
            price = None
            if budget is not None and budget.get("cost_usd") is not None and model_names is not None:
                price = price_of(self.prices, model_names[1]) or price_of(self.prices, ("*",))
            meter = UsageMeter(self, record, token_rules, price)
        return agents, meter

    def _requested(self, body: bytes):
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(request, dict):
            return None
        model = request.get("model")
        if model is not None and not isinstance(model, str):
            return None
        return self.models.names(model)

    def _check_model(self, record, model_names) -> None:
        requested, names, alias_targets = model_names
        key = (record.id, record.models, requested)
        ok = self._model_ok.get(key)
        if ok is None:
            ok = _allowed(record.models, names, alias_targets)
            if len(self._model_ok) > 10_000:
                self._model_ok.clear()
            self._model_ok[key] = ok
        if not ok:
            shown = requested if requested else "the default model"
            raise GatewayError(403, f"The API key '{record.id}' may not use model '{shown}'.",
                               code="model_not_allowed", param="model")

    def _agent_scope(self, record, scope):
        """The agents this key may call here (None: all of them); 403 when none, or when it cannot be enforced."""
        allowed = record.agents.intersection(self.agent_ids)
        if not allowed:
            raise GatewayError(403, f"The API key '{record.id}' may not call any agent of listener "
                               f"'{self.listener}'.", code="agent_not_allowed")
        if len(allowed) == len(self.agent_ids):
            return None
        if not self.agents_guarded or not scope["path"].endswith("/chat/completions"):
            # e.g. /v1/tasks, whose workflows call agents as tools: all-or-nothing for a restricted key
            raise GatewayError(403, f"The API key '{record.id}' may call only some agents of listener "
                               f"'{self.listener}', which cannot be enforced on {scope['path']}.",
                               code="agent_not_allowed")
        return (record.id, frozenset(allowed))

    def _limit_rules(self, record):
        cached = self._rules.get((record.id, record.rate_limits))
        if cached is None:
            from gateway.upstream.limits import Rule

            req, tok, keys, tkeys = [], [], [], []
            for i, limit in enumerate(record.rate_limits):
                limit = dict(limit)
                unit = limit.get("unit", "minute")
                if limit.get("requests"):
                    n = limit["requests"]
                    rule = Rule(f"vk:{record.id}:{i}:{n}r/{unit}", n, unit,
                                f"{n} requests per {unit} for API key '{record.id}'")
                    req.append(rule)
                    keys.append(rule.key)
                elif limit.get("tokens"):
                    n = limit["tokens"]
                    rule = Rule(f"vk:{record.id}:{i}:{n}t/{unit}", n, unit,
                                f"{n} tokens per {unit} for API key '{record.id}'")
                    tok.append(rule)
                    tkeys.append(rule.key)
            cached = self._rules[(record.id, record.rate_limits)] = (req, tok, keys, tkeys)
        return cached


def _has_cost(record) -> bool:
    return record.budget is not None and record.budget.get("cost_usd") is not None


def _match(pattern: str, name: str) -> bool:
    if pattern == "*" or pattern == name:
        return True
    return pattern.endswith("/*") and name.startswith(pattern[:-1])


def _allowed(patterns, names, alias_targets) -> bool:
    if any(_match(p, n) for p in patterns for n in names[:1]):  # the name the client sent, as written
        return True
    if alias_targets:  # an alias: every model it may go to must be allowed
        return all(any(_match(p, n) for p in patterns for n in target_names) for target_names in alias_targets)
    return any(_match(p, n) for p in patterns for n in names)


class ModelNames:
    """The names a requested model goes by (as sent, alias targets, provider names), from the config alone:
    the resolver is not asked (asking would advance an alias's round-robin)."""

    def __init__(self, config) -> None:
        self.aliases = {k: a.all_targets for k, a in (config.model_aliases or {}).items()}
        self.providers = list(config.model_providers or [])
        default = next((p for p in self.providers if p.default), None)
        self.default = default.effective_name if default is not None else None
        self._cache: dict = {}

    def names(self, requested: str | None):
        """(requested, names of the model, [names of each alias target] or None)."""
        found = self._cache.get(requested)
        if found is None:
            target = requested or self.default
            alias = self.aliases.get(target) if target else None
            if alias:
                groups = [self._provider_names(t) for t in alias]
                names = [target] + [n for g in groups for n in g]
                found = (requested, tuple(names), groups)
            else:
                found = (requested, tuple([target] + self._provider_names(target)) if target else (), None)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[requested] = found
        return found

    def _provider_names(self, name: str) -> list[str]:
        out = [name]
        for p in self.providers:
            if name in (p.effective_name, p.model, f"{p.provider}/{p.model_id}", p.model_id):
                out += [p.effective_name, p.model, f"{p.provider}/{p.model_id}", p.model_id]
                break
            if p.is_wildcard and name.startswith(p.prefix + "/"):
                out += [name, f"{p.provider}/{name.split('/', 1)[1]}", name.split("/", 1)[1]]
                break
        return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- agents


#: The agents the current request's key may call (None: any); set by the edge, read by the selector.
ALLOWED_AGENTS: contextvars.ContextVar = contextvars.ContextVar("plano_allowed_agents", default=None)


class CheckedSelector:
    """Routes as the listener's selector does; a turn routed to an agent the request's key may not call
    (:data:`ALLOWED_AGENTS`) is a 403. Installed once per agent listener with ``auth``."""

    def __init__(self, inner, listener: str) -> None:
        self._inner = inner
        self._listener = listener

    async def select(self, *args, **kwargs):
        selection = await self._inner.select(*args, **kwargs)
        allowed = ALLOWED_AGENTS.get()
        if allowed is not None:
            key, agents = allowed
            for agent in selection.agents:
                if agent not in agents:
                    raise GatewayError(403, f"The API key '{key}' may not call agent '{agent}' (chosen by "
                                       f"listener '{self._listener}' for this request).", code="agent_not_allowed")
        return selection

    def __getattr__(self, name):
        return getattr(self._inner, name)


def guard_agents(app, listener: str) -> bool:
    """Put a :class:`CheckedSelector` in front of an agent listener's selector; False when it has none."""
    selector = getattr(app, "selector", None)
    if selector is None or not hasattr(selector, "select"):
        return False
    if not isinstance(selector, CheckedSelector):
        app.selector = CheckedSelector(selector, listener)
    return True


# --------------------------------------------------------------------------- usage


class UsageMeter:
    """Reads the token usage of a response as it goes out (JSON body or SSE ``usage`` events) and charges
    the key's token limits and budget once the response is complete. Error answers charge nothing."""

    __slots__ = ("guard", "record", "token_rules", "price", "status", "json", "parts", "size", "extractor")

    MAX_JSON = 4 * 1024 * 1024

    def __init__(self, guard: Guard, record, token_rules, price) -> None:
        self.guard = guard
        self.record = record
        self.token_rules = token_rules
        self.price = price
        self.status = None
        self.json = True
        self.parts: list[bytes] = []
        self.size = 0
        self.extractor = None

    def wrap(self, send):
        async def metered(message):
            kind = message["type"]
            if kind == "http.response.start":
                self.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        from gateway.upstream.usage import UsageExtractor

                        self.json = False
                        self.extractor = UsageExtractor()
            elif kind == "http.response.body" and self.status is not None and self.status < 400:
                body = message.get("body", b"")
                if body:
                    if self.json:
                        if self.size <= self.MAX_JSON:
                            self.parts.append(body)
                            self.size += len(body)
                    else:
                        self.extractor.feed(body)
            await send(message)

        return metered

    def done(self) -> None:
        if self.status is None or self.status >= 400:
            return
        from gateway.telemetry.genai import parse_usage

        usage = None
        if self.json:
            if self.parts and self.size <= self.MAX_JSON:
                try:
                    answer = orjson.loads(b"".join(self.parts))
                except orjson.JSONDecodeError:
                    answer = None
                if isinstance(answer, dict):
                    usage = parse_usage(answer.get("usage"))
        elif self.extractor is not None:
            usage = self.extractor.finish()
        if usage is None:
            return
        prompt = usage.prompt or 0
        completion = usage.completion or 0
        total = usage.total if usage.total is not None else prompt + completion
        guard, record = self.guard, self.record
        if self.token_rules and total > 1:
            rules, keys = self.token_rules
            guard.limits_backend.add_now(rules, keys, total - 1)  # 1 was reserved at admission
        budget = record.budget
        if budget is not None and guard.ledger is not None:
            micro = 0
            if self.price is not None:
                micro = int(round(prompt * self.price[0] + completion * self.price[1]))  # $/Mtok * tok = µ$
            guard.ledger.charge(record.id, budget["period"], total, micro)
