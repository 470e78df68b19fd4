"""Cost and latency per model, for ``selection_policy`` and the routing budget (Plano §1.3, §4.10).

Sources (``model_metrics_sources``, at most one of each type):

- ``{type: cost, provider: models.dev | digitalocean, url?, refresh_interval?, model_aliases?}``:
  models.dev's ``api.json`` or DigitalOcean's model catalog (default URLs as Plano's), fetched
  on first use and then every ``refresh_interval`` seconds (default 3600). Until a fetch has
  succeeded — and for models the source does not list — plano's shipped pricing table
  (``gateway/telemetry/pricing.yaml``) answers, so ``prefer: cheapest`` works offline.
- ``{type: latency, provider: prometheus, url, query, refresh_interval?}``: an instant PromQL
  query (``GET <url>/api/v1/query?query=…``) whose result vector carries a ``model`` (or
  ``model_name``) label per series; the value is the model's latency (lower is faster).
  Refreshed every ``refresh_interval`` seconds (default 60).

``model_aliases`` map a catalog key to a configured model name. Fetches run off the event
loop (a thread), the first one is awaited for at most a few seconds by the decision that
needs it; a failed fetch keeps the previous data and says so once in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request

from gateway.telemetry.pricing import Price, Pricing, _from_data, shipped

log = logging.getLogger("plano.routing")

DIGITALOCEAN_CATALOG_URL = "https://api.digitalocean.com/v2/gen-ai/models/catalog"
MODELS_DEV_URL = "https://models.dev/api.json"
_FIRST_FETCH_WAIT = 5.0  # seconds a decision waits for a source's very first fetch


def _fetch_json(url: str, timeout: float = 30.0):
    req = urllib.request.Request(url, headers={"accept": "application/json", "user-agent": "plano"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def _digitalocean_prices(data) -> dict[str, Price]:
    """DigitalOcean's gen-ai model catalog: a list of models with per-million input/output prices."""
    items = (data.get("data") or data.get("models") or []) if isinstance(data, dict) else data
    prices: dict[str, Price] = {}
    for m in items if isinstance(items, list) else ():
        if not isinstance(m, dict):
            continue
        key = m.get("id") or m.get("name") or m.get("model")
        pricing = m.get("pricing") if isinstance(m.get("pricing"), dict) else m
        inp = pricing.get("input_price_per_million") or pricing.get("input")
        out = pricing.get("output_price_per_million") or pricing.get("output")
        if isinstance(key, str) and isinstance(inp, (int, float)) and isinstance(out, (int, float)):
            prices[key] = Price(float(inp), float(out))
    return prices


def _prometheus_values(data) -> dict[str, float]:
    result = ((data or {}).get("data") or {}).get("result") if isinstance(data, dict) else None
    out: dict[str, float] = {}
    for series in result or ():
        if not isinstance(series, dict):
            continue
        labels = series.get("metric") or {}
        name = labels.get("model") or labels.get("model_name") or labels.get("llm_model")
        value = series.get("value")
        if isinstance(name, str) and isinstance(value, list) and len(value) == 2:
            try:
                number = float(value[1])
            except (TypeError, ValueError):
                continue
            if number == number:  # not NaN
                out[name] = number
    return out


class _Source:
    """One periodically refreshed source; ``data`` stays None until a fetch succeeded."""

    def __init__(self, label: str, url: str, interval: float, parse) -> None:
        self.label = label
        self.url = url
        self.interval = interval
        self.parse = parse
        self.data = None
        self.fetched_at = -1e18
        self._task: asyncio.Task | None = None
        self._warned = False

    async def _refresh(self) -> None:
        try:
            raw = await asyncio.to_thread(_fetch_json, self.url)
            parsed = self.parse(raw)
            if not parsed:
                raise ValueError("no usable entries in it")
            self.data = parsed
            self._warned = False
        except Exception as exc:  # noqa: BLE001 - a metrics source never fails a request
            if not self._warned:
                log.warning("model metrics source %s (%s) could not be used: %s", self.label, self.url, exc)
                self._warned = True
        finally:
            self.fetched_at = time.monotonic()

    async def current(self):
        """The data, refreshed when stale; the first fetch is awaited (briefly), later ones run behind."""
        now = time.monotonic()
        task = self._task
        if (task is None or task.done()) and now - self.fetched_at >= self.interval:
            task = self._task = asyncio.ensure_future(self._refresh())
        if self.data is None and task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), _FIRST_FETCH_WAIT)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        return self.data


class ModelMetrics:
    """Cost and latency lookups per configured model name (see the module docstring)."""

    def __init__(self, sources=(), resolver=None) -> None:
        self.resolver = resolver
        self.static = shipped()
        self.cost: _Source | None = None
        self.latency: _Source | None = None
        self.cost_aliases: dict[str, str] = {}
        for src in sources or ():
            kind = getattr(src, "type", None)
            if kind == "cost" and self.cost is None:
                provider = src.provider
                url = src.url or (MODELS_DEV_URL if provider == "models.dev" else DIGITALOCEAN_CATALOG_URL)
                parse = _from_data if provider == "models.dev" else _digitalocean_prices
                self.cost = _Source(f"cost/{provider}", url, float(src.refresh_interval or 3600), parse)
                self.cost_aliases = {v: k for k, v in (src.model_aliases or {}).items()}
            elif kind == "latency" and self.latency is None:
                url = src.url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": src.query})
                self.latency = _Source("latency/prometheus", url, float(src.refresh_interval or 60),
                                       _prometheus_values)

    def _names(self, model: str) -> tuple[str | None, list[str]]:
        """(provider, candidate keys) for a configured model name: the name, its alias in the source,
        ``provider/model_id`` and the bare id."""
        provider, model_id = None, model
        if self.resolver is not None:
            try:
                target = self.resolver.resolve(model)
                provider, model_id = target.provider, target.model_id
            except Exception:  # noqa: BLE001 - an unknown model simply has no data
                pass
        keys = [model]
        alias = self.cost_aliases.get(model)
        if alias:
            keys.insert(0, alias)
        if provider:
            keys.append(f"{provider}/{model_id}")
        keys.append(model_id)
        return provider, list(dict.fromkeys(keys))

    async def price(self, model: str) -> Price | None:
        """USD per 1M tokens for ``model``: the cost source first, then the shipped table."""
        provider, keys = self._names(model)
        if self.cost is not None:
            data = await self.cost.current()
            if data:
                table = Pricing(data, self.cost.label)
                for key in keys:
                    found = table.prices.get(key)
                    if found is not None:
                        return found
                found = table.lookup(provider, keys[-1])
                if found is not None:
                    return found
        for key in keys:
            found = self.static.prices.get(key)
            if found is not None:
                return found
        return self.static.lookup(provider, keys[-1])

    async def latency_of(self, model: str) -> float | None:
        if self.latency is None:
            return None
        data = await self.latency.current()
        if not data:
            return None
        _, keys = self._names(model)
        for key in keys:
            if key in data:
                return data[key]
        return None

    async def rank(self, models, prefer: str | None) -> list[str]:
        """``models`` ordered by ``prefer`` (cheapest: input+output price ascending; fastest: latency
        ascending); models without data keep their order after the others; none/None: as given."""
        models = list(models)
        if prefer not in ("cheapest", "fastest") or len(models) < 2:
            return models
        values: list[float | None] = []
        for m in models:
            if prefer == "cheapest":
                p = await self.price(m)
                values.append(None if p is None else p.input + p.output)
            else:
                values.append(await self.latency_of(m))
        order = sorted(range(len(models)), key=lambda i: (values[i] is None, values[i] or 0.0, i))
        return [models[i] for i in order]
