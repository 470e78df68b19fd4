"""Rate limits: requests per listener / API key / header value, and Plano's token limits made correct.

Built once at start-up with :meth:`RateLimits.from_config`; the listeners then ask it:

* **Request limits** — listener ``requests_per_minute`` and ``rate_limits: [{requests, unit,
  per}]`` with ``per: listener | api_key | header:<name>``. ``limits.for_listener(name)``
  gives a :class:`ListenerLimits` or None (an unlimited listener pays nothing), and
  ``await listener_limits.admit(scope["headers"])`` a :class:`Verdict` (429) or None.
  All the limits of one request are checked and counted together: a request refused by
  one limit consumes none of the others. ``api_key`` buckets are keyed by a keyed hash of
  the client's credential (``Authorization: Bearer`` or ``x-api-key``), never the key;
  requests without a credential share one anonymous bucket, and requests without the
  ``header:<name>`` header one "absent" bucket (so dropping the header does not escape it).
* **Token limits** — Plano's top-level ``ratelimits: [{model, selector: {key, value},
  limit: {tokens, unit}}]``. A limit applies when its ``model`` matches the request's
  resolved target — ``*``, ``provider/*``, ``provider/model`` (provider spelling
  canonicalised) or the bare model id — and the request carries header ``selector.key``
  (read directly by its name: a client following Plano's protocol also sends
  ``x-arch-ratelimit-selector: <header>``, which names that same header, so it is honoured
  without being required) with value ``selector.value``; ``value: "*"`` gives each
  distinct value its own bucket (Plano treats ``*`` literally). ``limits.tokens(...)``
  gives a :class:`TokenCharge` or None; ``await charge.admit(estimated_input)`` reserves
  the estimate (429 when the budget cannot hold it), and the real total (prompt +
  completion, read from the JSON or streamed ``usage`` by
  :class:`~gateway.upstream.usage.UsageObserver`) replaces the reservation when the
  response ends. A window's budget can therefore be overdrawn by the one request that
  crossed it; the next ones wait.

**Window algorithm: sliding-window counter.** Each bucket keeps the count of the current
fixed window (aligned to the epoch: minutes start at :00, days at 00:00 UTC) and of the
previous one, and admits a request of cost ``k`` when
``prev * (1 - elapsed / window) + cur + k <= limit``. Why this and not the others:

* a fixed window admits up to 2N in a short burst straddling a boundary; the weighted
  previous window removes that (and makes "exactly N" hold for any burst shorter than
  ``window / N``, also across a boundary, not only inside one window);
* a token bucket / GCRA (Plano's ``governor``) lets a full bucket plus its refill through in
  one window (up to 2N per window) and cannot express "N per day" except as a rate;
* a sliding log is exact but stores one entry per request (per token for token limits).

The counter is two integers per bucket, one dict lookup in memory and one Lua script
(``EVALSHA``, one round trip, atomic across processes and replicas) in Redis. Its one
approximation — requests of the previous window are assumed evenly spread — errs on the
strict side: a window's burst fades out over the next window instead of vanishing at its
end (a limit of 1/second used at .000 admits again 2 s later; of 60/minute, 1 s into the
next minute). ``retry-after`` is computed exactly from the counts, so a client that waits
it is admitted.

**Shared state.** With ``state: {redis_url, key_prefix}`` every bucket is one Redis hash
``<prefix>rl:<bucket>`` ``{w, p, c}`` expiring after two windows, read, checked and
written by one script that uses Redis' own clock (``TIME``), so all replicas agree on
window boundaries whatever their clocks. A limit of N admits exactly N across any number
of gateway processes. When Redis fails or times out the request is admitted (fail open),
Redis is skipped for a second, and a warning is logged at most once per 30 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable

from gateway.config.providers import canonical_provider
from gateway.upstream.usage import UsageObserver

log = logging.getLogger("plano.ratelimit")

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


_HASHER = hashlib.blake2b(digest_size=12, person=b"plano-ratelimit")


def _hash(value: bytes) -> str:
    """A short personalised digest for bucket keys (header values, API keys): never the raw value."""
    h = _HASHER.copy()
    h.update(value)
    return h.hexdigest()


# --------------------------------------------------------------------------- verdicts


class Verdict:
    """The outcome of a rate-limit check: refused (``allowed`` False, status 429) or admitted.

    ``limit``/``remaining``/``reset`` describe the tightest limit that applied (None when
    unknown, e.g. Redis was unreachable); ``retry_after`` and ``reset`` are whole seconds.
    """

    __slots__ = ("allowed", "code", "limit", "message", "remaining", "reset", "retry_after")

    status = 429

    def __init__(self, allowed: bool, limit: int | None, remaining: int | None, reset: int | None,
                 retry_after: int | None = None, message: str = "", code: str = "rate_limit_exceeded") -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.retry_after = retry_after
        self.message = message
        self.code = code

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``retry-after`` (refused only) and ``x-ratelimit-limit/remaining/reset`` as ASGI headers."""
        if self.limit is None:
            return []
        out = [(b"x-ratelimit-limit", b"%d" % self.limit), (b"x-ratelimit-remaining", b"%d" % self.remaining),
               (b"x-ratelimit-reset", b"%d" % self.reset)]
        if not self.allowed and self.retry_after is not None:
            out.insert(0, (b"retry-after", b"%d" % self.retry_after))
        return out

    def error(self):
        """The :class:`~gateway.listeners.errors.GatewayError` (429, OpenAI envelope) to answer with,
        carrying :meth:`headers` (``retry-after`` and ``x-ratelimit-*``)."""
        from gateway.listeners.errors import GatewayError

        try:
            return GatewayError(429, self.message, code=self.code, headers=tuple(self.headers()))
        except TypeError:  # a GatewayError without extra response headers
            return GatewayError(429, self.message, code=self.code)

    def __repr__(self) -> str:
        return (f"Verdict(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
                f"reset={self.reset}, retry_after={self.retry_after})")


class Rule:
    """One limit: ``limit`` units per ``window`` seconds; ``describe`` names it in 429 messages."""

    __slots__ = ("describe", "key", "limit", "window", "window_ms")

    def __init__(self, key: str, limit: int, unit: str, describe: str) -> None:
        self.key = key
        self.limit = limit
        self.window = UNIT_SECONDS[unit]
        self.window_ms = self.window * 1000
        self.describe = describe


def _wait_ms(limit: int, window: int, prev: int, cur: int, elapsed: int, cost: int) -> int | None:
    """Milliseconds until a request of ``cost`` fits (None: never, it is larger than the limit).

    A request fits at elapsed time ``e`` when ``prev * (window - e) + (cur + cost) * window <= limit * window``
    (integer arithmetic: no rounding at the boundary).
    """
    if cost > limit:
        return None
    room = limit - cur - cost
    if room >= 0:
        if prev <= 0:
            return 0
        at = window - (room * window) // prev  # first elapsed ms at which the weighted previous window fits
        if at <= elapsed:
            return 0
        if at < window:
            return at - elapsed
    # Not in this window: in the next one this window's count is the weighted "previous".
    left = window - elapsed
    if cur <= 0:
        return left
    return left + max(0, window - ((limit - cost) * window) // cur)


def _verdict(rules: list[Rule], states: list[tuple[int, int]], now_ms: int, cost: int, allowed: bool,
             what: str) -> Verdict:
    """A :class:`Verdict` from the windows' (prev, cur) counts at ``now_ms`` (after the hit when allowed)."""
    best = None
    if allowed:  # the tightest limit: least remaining
        for rule, (prev, cur) in zip(rules, states):
            window = rule.window_ms
            elapsed = now_ms % window
            used = prev * (window - elapsed) / window + cur
            remaining = max(0, int(rule.limit - used))
            if best is None or remaining < best[1]:
                best = (rule, remaining, window - elapsed)
        rule, remaining, left = best
        return Verdict(True, rule.limit, remaining, max(1, -(-left // 1000)))
    # refused: the limit that keeps the request out the longest
    for rule, (prev, cur) in zip(rules, states):
        window = rule.window_ms
        elapsed = now_ms % window
        wait = _wait_ms(rule.limit, window, prev, cur, elapsed, cost)
        if wait == 0:
            continue
        if best is None or wait is None or (best[1] is not None and wait > best[1]):
            used = prev * (window - elapsed) / window + cur
            best = (rule, wait, max(0, int(rule.limit - used)))
            if wait is None:
                break
    if best is None:  # raced with a window roll-over: it would fit now; ask for a second
        rule, wait, remaining = rules[0], 1000, 0
    else:
        rule, wait, remaining = best
    if wait is None:
        retry = rule.window
        message = (f"Rate limit exceeded: this request needs {cost} {what}, more than the limit of "
                   f"{rule.describe} allows in a whole window.")
    else:
        retry = max(1, -(-wait // 1000))
        message = f"Rate limit exceeded: {rule.describe}. Retry after {retry}s."
    return Verdict(False, rule.limit, remaining, retry, retry, message,
                   "token_rate_limit_exceeded" if what == "tokens" else "rate_limit_exceeded")


#: Admitted without counting (shared state unreachable): no headers.
_OPEN = Verdict(True, None, None, None)


# --------------------------------------------------------------------------- backends


class MemoryWindows:
    """Sliding-window counters in this process: ``{bucket: [window index, prev, cur, window ms]}``."""

    #: Beyond this many buckets, those idle for two windows are swept (per-value buckets are client-chosen).
    MAX_BUCKETS = 100_000

    def __init__(self, clock=time.time) -> None:
        self.buckets: dict[str, list[int]] = {}
        self.clock = clock

    async def hit(self, rules: list[Rule], keys: list[str], cost: int, what: str,
                  want: bool = True) -> Verdict | None:
        return self.hit_now(rules, keys, cost, what, want)

    def hit_now(self, rules: list[Rule], keys: list[str], cost: int, what: str,
                want: bool = True) -> Verdict | None:
        """Count ``cost`` against every bucket, or refuse; None when admitted and ``want`` is False."""
        now = int(self.clock() * 1000)
        buckets = self.buckets
        states = []
        entries = []
        allowed = True
        for rule, key in zip(rules, keys):
            window = rule.window_ms
            index = now // window
            entry = buckets.get(key)
            if entry is None:
                entry = [index, 0, 0, window]
            elif entry[0] != index:
                entry = [index, entry[2] if entry[0] == index - 1 else 0, 0, window]
            entries.append(entry)
            prev, cur = entry[1], entry[2]
            if allowed and prev * (window - now % window) + (cur + cost) * window > rule.limit * window:
                allowed = False
            states.append((prev, cur))
        if allowed:
            for i, (key, entry) in enumerate(zip(keys, entries)):
                entry[2] += cost
                buckets[key] = entry
                states[i] = (entry[1], entry[2])
            if len(buckets) > self.MAX_BUCKETS:
                self._sweep(now)
            if not want:
                return None
        return _verdict(rules, states, now, cost, allowed, what)

    async def add(self, rules: list[Rule], keys: list[str], delta: int) -> None:
        self.add_now(rules, keys, delta)

    def add_now(self, rules: list[Rule], keys: list[str], delta: int) -> None:
        """Correct the current window by ``delta`` (a token reservation replaced by the real usage)."""
        now = int(self.clock() * 1000)
        for rule, key in zip(rules, keys):
            window = rule.window_ms
            index = now // window
            entry = self.buckets.get(key)
            if entry is None:
                entry = [index, 0, 0, window]
            elif entry[0] != index:
                entry = [index, entry[2] if entry[0] == index - 1 else 0, 0, window]
            entry[2] = max(0, entry[2] + delta)
            self.buckets[key] = entry

    def _sweep(self, now: int) -> None:
        """Drop buckets whose two windows are both over (they count nothing any more)."""
        stale = [k for k, e in self.buckets.items() if e[0] < now // e[3] - 1]
        for k in stale:
            del self.buckets[k]


_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local force = ARGV[2] == '1'
local n = #KEYS
local st = {}
local ok = 1
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local win = tonumber(ARGV[2 + 2 * i])
  local idx = math.floor(now / win)
  local v = redis.call('HMGET', KEYS[i], 'w', 'p', 'c')
  local w = tonumber(v[1]) or -2
  local p = tonumber(v[2]) or 0
  local c = tonumber(v[3]) or 0
  if w ~= idx then
    if w == idx - 1 then p = c else p = 0 end
    c = 0
  end
  st[i] = {idx, p, c, win}
  if not force and p * (win - (now - idx * win)) + (c + cost) * win > limit * win then ok = 0 end
end
local out = {now, ok}
for i = 1, n do
  local s = st[i]
  if ok == 1 and cost ~= 0 then
    local c = s[3] + cost
    if c < 0 then c = 0 end
    s[3] = c
    redis.call('HSET', KEYS[i], 'w', s[1], 'p', s[2], 'c', c)
    redis.call('PEXPIRE', KEYS[i], 2 * s[4] + 1000)
  end
  out[#out + 1] = s[2]
  out[#out + 1] = s[3]
end
return out
"""


class RedisWindows:
    """The same counters in Redis, one atomic script call per check (see the module docstring)."""

    def __init__(self, redis) -> None:
        self.redis = redis
        self.prefix = redis.key_prefix + "rl:"
        self.script = redis.register_script(_LUA)
        self._pending: set[asyncio.Task] = set()

    async def hit(self, rules: list[Rule], keys: list[str], cost: int, what: str,
                  want: bool = True) -> Verdict | None:
        redis = self.redis
        if not redis.available:
            return _OPEN if want else None
        args: list = [cost, 0]
        for rule in rules:
            args.append(rule.limit)
            args.append(rule.window_ms)
        prefix = self.prefix
        try:
            out = await self.script([prefix + k for k in keys], args)
        except Exception as exc:  # fail open: a rate limiter must never turn into an outage
            redis.failed("rate-limit check", exc)
            return _OPEN if want else None
        redis.succeeded()
        if out[1] == 1 and not want:
            return None
        states = [(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2)]
        return _verdict(rules, states, int(out[0]), cost, out[1] == 1, what)

    async def add(self, rules: list[Rule], keys: list[str], delta: int) -> None:
        redis = self.redis
        if not redis.available:
            return
        args: list = [delta, 1]
        for rule in rules:
            args.append(rule.limit)
            args.append(rule.window_ms)
        try:
            await self.script([self.prefix + k for k in keys], args)
        except Exception as exc:
            redis.failed("token usage update", exc)

    def add_now(self, rules: list[Rule], keys: list[str], delta: int) -> None:
        """Fire and forget: the response is never held up by the usage update."""
        try:
            task = asyncio.get_running_loop().create_task(self.add(rules, keys, delta))
        except RuntimeError:  # no running loop (shutdown): the update is lost, the window will forget it anyway
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for usage updates still in flight (at shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


# --------------------------------------------------------------------------- request limits


_LISTENER, _API_KEY, _HEADER = 0, 1, 2


class ListenerLimits:
    """The request limits of one listener. ``await admit(headers)`` -> :class:`Verdict` (429) or None."""

    __slots__ = ("_fixed_keys", "_kinds", "_needed", "backend", "listener", "rules")

    def __init__(self, listener: str, rules: list[tuple[Rule, int, bytes | None]], backend) -> None:
        self.listener = listener
        self.backend = backend
        self.rules = [r for r, _, _ in rules]
        self._kinds = [(kind, header) for _, kind, header in rules]
        needed: set[bytes] = set()
        for kind, header in self._kinds:
            if kind == _API_KEY:
                needed.update((b"authorization", b"x-api-key"))
            elif kind == _HEADER:
                needed.add(header)
        self._needed = frozenset(needed)
        self._fixed_keys = None if needed else [r.key for r in self.rules]

    def keys(self, headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        """The bucket of each rule for a request with these (lower-case, ASGI) headers."""
        if self._fixed_keys is not None:
            return self._fixed_keys
        found: dict[bytes, bytes] = {}
        needed = self._needed
        for k, v in headers:
            if k in needed and k not in found:
                found[k] = v
        out = []
        for rule, (kind, header) in zip(self.rules, self._kinds):
            if kind == _LISTENER:
                out.append(rule.key)
            elif kind == _API_KEY:
                key = _credential(found)
                out.append(rule.key + (":" + _hash(key) if key else ":-"))
            else:
                value = found.get(header)
                out.append(rule.key + (":" + _hash(value) if value is not None else ":-"))
        return out

    async def check(self, headers: Iterable[tuple[bytes, bytes]]) -> Verdict:
        """Count the request against every limit; the verdict either way (its headers for admitted responses)."""
        return await self.backend.hit(self.rules, self.keys(headers), 1, "requests", True)

    async def admit(self, headers: Iterable[tuple[bytes, bytes]]) -> Verdict | None:
        """Count the request; a refusal :class:`Verdict` (429), or None when admitted."""
        verdict = await self.backend.hit(self.rules, self.keys(headers), 1, "requests", False)
        return verdict if verdict is not None and not verdict.allowed else None


def _credential(found: dict[bytes, bytes]) -> bytes | None:
    auth = found.get(b"authorization")
    if auth:
        auth = auth.strip()
        if auth[:7].lower() == b"bearer ":
            auth = auth[7:].strip()
        if auth:
            return auth
    key = found.get(b"x-api-key")
    return key.strip() or None if key else None


def _per_text(per: str) -> str:
    if per == "listener":
        return ""
    if per == "api_key":
        return " per API key"
    return f" per '{per[7:]}' header value"


# --------------------------------------------------------------------------- token limits


class TokenRule:
    """One ``ratelimits`` entry, compiled."""

    __slots__ = ("header", "match", "rule", "value")

    def __init__(self, index: int, entry) -> None:
        model = entry.model.strip()
        if model == "*":
            self.match = ("any", None)
        elif "/" in model:
            prefix, rest = model.split("/", 1)
            prefix = canonical_provider(prefix)
            # "full": the canonical spelling, and the text as written (it may be a provider's configured name)
            self.match = ("provider", prefix) if rest == "*" else ("full", (f"{prefix}/{rest}", model))
        else:
            self.match = ("bare", model)
        self.header = entry.selector.key.strip().lower().encode("latin-1")
        value = entry.selector.value
        self.value = None if value == "*" else value.encode("latin-1")
        unit = entry.limit.unit
        tokens = max(0, int(entry.limit.tokens))
        per = f"per '{entry.selector.key}' value" if self.value is None else \
            f"for '{entry.selector.key}: {entry.selector.value}'"
        self.rule = Rule(f"tok:{index}:{model}:{tokens}/{unit}", tokens, unit,
                         f"{tokens} tokens per {unit} for model '{model}' {per}")

    def matches(self, provider_model: str, bare_model: str, name: str | None) -> bool:
        kind, what = self.match
        if kind == "any":
            return True
        if kind == "bare":
            return what == bare_model or what == name
        if kind == "provider":
            return provider_model.split("/", 1)[0] == what
        return provider_model == what[0] or name == what[1] or name == what[0]


class TokenCharge:
    """Token limits that apply to one request: ``await admit(estimate)``, then ``observe``/``record``."""

    __slots__ = ("_reserved", "backend", "keys", "rules")

    def __init__(self, rules: list[Rule], keys: list[str], backend) -> None:
        self.rules = rules
        self.keys = keys
        self.backend = backend
        self._reserved = 0

    async def admit(self, estimated_input_tokens: int) -> Verdict | None:
        """Reserve the request's estimated input tokens: a refusal :class:`Verdict` (429), or None."""
        cost = max(1, int(estimated_input_tokens))
        verdict = await self.backend.hit(self.rules, self.keys, cost, "tokens")
        if not verdict.allowed:
            return verdict
        if verdict.limit is not None:  # counted (not failed open)
            self._reserved = cost
        return None

    def record(self, used_tokens: int) -> None:
        """The request's real token usage: replaces the reservation. Never blocks (shared: fire and forget)."""
        delta = int(used_tokens) - self._reserved
        self._reserved = 0
        if delta:
            self.backend.add_now(self.rules, self.keys, delta)

    def observe(self, inner=None, estimated_input_tokens: int | None = None) -> UsageObserver:
        """A relay observer (``chunk``/``finish``) wrapping ``inner`` that records the usage at ``finish``."""
        estimate = self._reserved if estimated_input_tokens is None else estimated_input_tokens
        return UsageObserver(inner, lambda tokens, _measured: self.record(tokens), estimate)


# --------------------------------------------------------------------------- the whole


class RateLimits:
    """Every rate limit of a config: built once at start-up, asked per request."""

    def __init__(self, listeners: dict[str, ListenerLimits], token_rules: list[TokenRule], backend) -> None:
        self._listeners = listeners
        self.token_rules = token_rules
        self.backend = backend
        self._token_cache: dict[tuple, tuple[TokenRule, ...]] = {}
        self._token_headers = frozenset(r.header for r in token_rules)

    @classmethod
    def from_config(cls, config, redis=None, *, clock=time.time) -> RateLimits:
        """``redis``: a :class:`gateway.state.redis.SharedRedis` (shared limits) or None (this process)."""
        backend = RedisWindows(redis) if redis is not None else MemoryWindows(clock)
        listeners: dict[str, ListenerLimits] = {}
        for listener in getattr(config, "listeners", None) or ():
            rules: list[tuple[Rule, int, bytes | None]] = []
            name = listener.name
            rpm = getattr(listener, "requests_per_minute", None)
            if rpm:
                rules.append((Rule(f"req:{name}:rpm:{rpm}", rpm, "minute",
                                   f"{rpm} requests per minute on listener '{name}'"), _LISTENER, None))
            for i, limit in enumerate(getattr(listener, "rate_limits", None) or ()):
                per = limit.per
                kind = _LISTENER if per == "listener" else _API_KEY if per == "api_key" else _HEADER
                header = per[7:].strip().lower().encode("latin-1") if kind == _HEADER else None
                rules.append((Rule(f"req:{name}:{i}:{limit.requests}/{limit.unit}:{per}", limit.requests, limit.unit,
                                   f"{limit.requests} requests per {limit.unit}{_per_text(per)} on listener "
                                   f"'{name}'"), kind, header))
            if rules:
                listeners[name] = ListenerLimits(name, rules, backend)
        token_rules = [TokenRule(i, entry) for i, entry in enumerate(getattr(config, "ratelimits", None) or ())]
        return cls(listeners, token_rules, backend)

    @property
    def empty(self) -> bool:
        return not self._listeners and not self.token_rules

    def for_listener(self, name: str) -> ListenerLimits | None:
        """The request limits of listener ``name``, or None when it has none."""
        return self._listeners.get(name)

    def _rules_for(self, provider_model: str, bare_model: str, name: str | None) -> tuple[TokenRule, ...]:
        key = (provider_model, bare_model, name)
        rules = self._token_cache.get(key)
        if rules is None:
            rules = tuple(r for r in self.token_rules if r.matches(provider_model, bare_model, name))
            if len(self._token_cache) > 4096:  # wildcard providers: model ids are client-chosen
                self._token_cache.clear()
            self._token_cache[key] = rules
        return rules

    def tokens(self, provider_model: str, bare_model: str, headers: Iterable[tuple[bytes, bytes]],
               name: str | None = None) -> TokenCharge | None:
        """The token limits for a request to ``provider_model`` (``openai/gpt-4o``) / ``bare_model``
        (``gpt-4o``), ``name`` the provider entry's configured name; None when none applies."""
        if not self.token_rules:
            return None
        rules = self._rules_for(provider_model, bare_model, name)
        if not rules:
            return None
        wanted = self._token_headers
        found: dict[bytes, bytes] = {}
        for k, v in headers:
            if k in wanted and k not in found:
                found[k] = v
        chosen: list[Rule] = []
        keys: list[str] = []
        for rule in rules:
            value = found.get(rule.header)
            if value is None:
                continue
            if rule.value is None:
                keys.append(rule.rule.key + ":" + _hash(value))
            elif value == rule.value:
                keys.append(rule.rule.key + ":=")
            else:
                continue
            chosen.append(rule.rule)
        if not chosen:
            return None
        return TokenCharge(chosen, keys, self.backend)

    async def admit_tokens(self, provider_model: str, bare_model: str, headers, estimated_input_tokens: int,
                           name: str | None = None) -> tuple[Verdict | None, TokenCharge | None]:
        """One-call form of :meth:`tokens` + :meth:`TokenCharge.admit`: (refusal or None, charge or None)."""
        charge = self.tokens(provider_model, bare_model, headers, name)
        if charge is None:
            return None, None
        verdict = await charge.admit(estimated_input_tokens)
        return verdict, (None if verdict is not None else charge)

    async def aclose(self) -> None:
        """At shutdown: let fire-and-forget usage updates finish."""
        drain = getattr(self.backend, "drain", None)
        if drain is not None:
            await drain()


def refusal(verdict: Verdict, metrics, listener: str):
    """The 429 for a refused request (in the client's error shape, with the limit headers),
    counted in ``plano_rate_limited_total``."""
    if metrics is not None:
        try:
            metrics.limited(listener, verdict.code)
        except Exception:
            pass
    return verdict.error()
