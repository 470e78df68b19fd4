"""Per-key spend budgets: tokens and/or USD per hour, day, month (UTC calendar) or in total.

**Local copy, synced in the background.** The request path never talks to Redis: a
request is refused when the key's ``spent`` (the last total read from Redis plus what
this worker charged since) has reached the budget, and a finished response adds its
usage to ``pending``. Every ``auth.sync_interval`` one pipelined round trip pushes the
pending deltas (``HINCRBY`` on ``<prefix>kb:<key id>:<period>``, fields ``t`` tokens and
``c`` micro-USD) and reads back the totals of every key this worker used recently — so
every worker of every replica sees the others' spend within an interval. The price of
not waiting on Redis: replicas may together overdraw a budget by what they spend in one
interval (plus, like every budget, the one request that crossed it). Without Redis the
ledger is this process's own.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

log = logging.getLogger("plano.auth")

_PERIOD_SECONDS = {"hour": 3600, "day": 86400, "month": 62 * 86400, "total": 0}

#: Every ledger of this process (the admin API reads them when there is no Redis).
LEDGERS: list = []


def period_index(period: str, now: float) -> str:
    if period == "hour":
        return "h%d" % int(now // 3600)
    if period == "day":
        return "d%d" % int(now // 86400)
    if period == "month":
        t = datetime.fromtimestamp(now, timezone.utc)
        return "m%04d%02d" % (t.year, t.month)
    return "all"


def price_of(prices: dict, names) -> tuple[float, float] | None:
    """USD per million (input, output) tokens for the first of ``names`` found in ``prices``."""
    for name in names:
        if name and name in prices:
            p = prices[name]
            return float(p.input), float(p.output)
    return None


class Ledger:
    def __init__(self, redis=None, clock=time.time) -> None:
        self.redis = redis
        self.clock = clock
        self.prefix = (redis.key_prefix if redis is not None else "plano:") + "kb:"
        self.spent: dict[str, list] = {}  # bucket -> [tokens, micro-USD] (synced total + local since)
        self.pending: dict[str, list] = {}  # bucket -> [tokens, micro-USD] not pushed yet
        self.active: dict[str, float] = {}  # bucket -> last use (read back while recent)
        self.ttl: dict[str, int] = {}
        LEDGERS.append(self)

    def bucket(self, key_id: str, period: str) -> str:
        return f"{key_id}:{period_index(period, self.clock())}"

    async def exhausted(self, key_id: str, budget: dict) -> str | None:
        """The 429 message when the key's budget is used up, else None. Reads Redis only the first time this
        worker sees the key in a period (no local copy yet); after that the background sync keeps it."""
        bucket = self.bucket(key_id, budget["period"])
        self.active[bucket] = self.clock()
        used = self.spent.get(bucket)
        if used is None:
            if self.redis is None:
                return None
            used = await self._fetch(bucket)
            if used is None:
                return None
        tokens_limit, cost_limit = budget.get("tokens"), budget.get("cost_usd")
        when = _PERIOD_TEXT[budget["period"]]
        if tokens_limit is not None and used[0] >= tokens_limit:
            return (f"Budget exhausted: API key '{key_id}' has used {used[0]} of its {tokens_limit} tokens "
                    f"{when}.")
        if cost_limit is not None and used[1] >= cost_limit * 1e6:
            return (f"Budget exhausted: API key '{key_id}' has spent ${used[1] / 1e6:.4f} of its "
                    f"${cost_limit:g} budget {when}.")
        return None

    async def _fetch(self, bucket: str):
        redis = self.redis
        if not redis.available:
            return None
        try:
            t, c = await redis.client().hmget(self.prefix + bucket, "t", "c")
        except Exception as exc:
            redis.failed("budget read", exc)
            return None
        redis.succeeded()
        local = self.spent.get(bucket) or [0, 0]  # charged while the read was in flight
        used = self.spent[bucket] = [int(t or 0) + local[0], int(c or 0) + local[1]]
        return used

    def charge(self, key_id: str, period: str, tokens: int, micro_usd: int) -> None:
        if tokens <= 0 and micro_usd <= 0:
            return
        bucket = self.bucket(key_id, period)
        used = self.spent.setdefault(bucket, [0, 0])
        used[0] += tokens
        used[1] += micro_usd
        self.active[bucket] = self.clock()
        self.ttl[bucket] = _PERIOD_SECONDS[period]
        if self.redis is not None:
            p = self.pending.setdefault(bucket, [0, 0])
            p[0] += tokens
            p[1] += micro_usd

    def usage(self, key_id: str) -> dict:
        """This process's view of a key's spend, by bucket."""
        prefix = key_id + ":"
        return {b[len(prefix):]: {"tokens": v[0], "cost_usd": v[1] / 1e6}
                for b, v in self.spent.items() if b.startswith(prefix)}

    async def sync(self) -> None:
        redis = self.redis
        if redis is None:
            return
        now = self.clock()
        for bucket in [b for b, t in self.active.items() if now - t > 600]:
            del self.active[bucket]  # not used for 10 minutes: stop reading it back
        if not self.pending and not self.active:
            return
        if not redis.available:
            return
        pending, self.pending = self.pending, {}
        reads = list(self.active)
        try:
            pipe = redis.client().pipeline(transaction=False)
            for bucket, (tokens, micro) in pending.items():
                name = self.prefix + bucket
                if tokens:
                    pipe.hincrby(name, "t", tokens)
                if micro:
                    pipe.hincrby(name, "c", micro)
                ttl = self.ttl.get(bucket, 0)
                if ttl:
                    pipe.expire(name, ttl * 2)
            for bucket in reads:
                pipe.hmget(self.prefix + bucket, "t", "c")
            out = await pipe.execute()
        except Exception as exc:
            for bucket, (tokens, micro) in pending.items():  # keep them for the next try
                p = self.pending.setdefault(bucket, [0, 0])
                p[0] += tokens
                p[1] += micro
            redis.failed("budget sync", exc)
            return
        redis.succeeded()
        for bucket, values in zip(reads, out[len(out) - len(reads):]):
            total = [int(values[0] or 0), int(values[1] or 0)]
            local = self.pending.get(bucket)  # charged while the round trip was in flight
            if local:
                total = [total[0] + local[0], total[1] + local[1]]
            self.spent[bucket] = total

    async def flush(self) -> None:
        """At shutdown: push what is pending."""
        self.active.clear()
        if self.pending:
            await self.sync()


_PERIOD_TEXT = {"hour": "this hour (UTC)", "day": "today (UTC)", "month": "this month (UTC)",
                "total": "in total"}
