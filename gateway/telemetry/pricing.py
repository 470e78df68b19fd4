"""Model prices for cost figures (``plano obs``): a table shipped with plano, overridable.

Prices are USD per 1M tokens (``input``, ``output``, ``cached_input``). Sources, first found
wins: an explicit file (``plano obs --pricing``), the config's first Plano cost source
(``model_metrics_sources: [{type: cost, provider: models.dev, url: https://...}]``, fetched; a
source that cannot be fetched falls back to the shipped table, saying so), else
``gateway/telemetry/pricing.yaml``. The config's ``auth.prices`` (the prices cost budgets use) win
over any of them for the models they name. Files are this module's format (``models: {key: {...}}``) or
models.dev's ``api.json`` (``{provider: {models: {id: {cost: {input, output, cache_read}}}}}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import yaml


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt: float, completion: float, cached: float = 0.0) -> float:
        """USD for the given token counts (``prompt`` includes ``cached``, as OpenAI reports it)."""
        cached = min(cached or 0.0, prompt or 0.0)
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        return ((prompt - cached) * self.input + cached * cached_rate + completion * self.output) / 1e6


class Pricing:
    def __init__(self, prices: dict[str, Price], source: str) -> None:
        self.prices = prices
        self.source = source

    def lookup(self, provider: str | None, model: str) -> Price | None:
        """``provider/model``, then the bare model id, then the longest key the (dated) model starts with."""
        candidates = [f"{provider}/{model}", model] if provider else [model]
        if "/" in model:
            candidates.append(model.split("/", 1)[1])
        for key in candidates:
            found = self.prices.get(key)
            if found is not None:
                return found
        best = None
        for key, price in self.prices.items():
            bare = key.split("/", 1)[1] if "/" in key else key
            for cand in candidates:
                for prefix in (key, bare):
                    if cand.startswith(prefix + "-") and (best is None or len(prefix) > best[0]):
                        best = (len(prefix), price)
        if best is None and provider:
            found = self.prices.get(f"{provider}/*")
            return found
        return best[1] if best else None


def _from_data(data) -> dict[str, Price]:
    prices: dict[str, Price] = {}
    if not isinstance(data, dict):
        raise ValueError("a pricing file is a mapping")
    if isinstance(data.get("models"), dict):
        for key, p in data["models"].items():
            if isinstance(p, dict) and "input" in p and "output" in p:
                cached = p.get("cached_input")
                prices[str(key)] = Price(float(p["input"]), float(p["output"]),
                                         float(cached) if cached is not None else None)
        return prices
    for provider, entry in data.items():  # models.dev api.json
        models = entry.get("models") if isinstance(entry, dict) else None
        if not isinstance(models, dict):
            continue
        for model_id, m in models.items():
            cost = m.get("cost") if isinstance(m, dict) else None
            if isinstance(cost, dict) and "input" in cost and "output" in cost:
                cached = cost.get("cache_read")
                prices[f"{provider}/{model_id}"] = Price(float(cost["input"]), float(cost["output"]),
                                                         float(cached) if cached is not None else None)
    return prices


def load_file(path: str | Path) -> Pricing:
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    return Pricing(_from_data(data), str(path))


def shipped() -> Pricing:
    text = resources.files("gateway.telemetry").joinpath("pricing.yaml").read_text(encoding="utf-8")
    return Pricing(_from_data(yaml.safe_load(text)), "plano's pricing table")


MODELS_DEV_URL = "https://models.dev/api.json"


def fetch(url: str, timeout: float = 5.0) -> Pricing:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode("utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = yaml.safe_load(text)
    prices = _from_data(data)
    if not prices:
        raise ValueError("no model prices in it")
    return Pricing(prices, url)


def load_pricing(explicit: str | None = None, config=None) -> Pricing:
    table = _base_pricing(explicit, config)
    auth = getattr(config, "auth", None)
    overlay = getattr(auth, "prices", None) or {}
    if overlay:
        table.prices = {**table.prices, **{key: Price(float(p.input), float(p.output)) for key, p in overlay.items()}}
        table.source += " + the config's auth.prices"
    return table


def _base_pricing(explicit: str | None, config) -> Pricing:
    if explicit:
        parsed = urlparse(explicit)
        return fetch(explicit) if parsed.scheme in ("http", "https") else load_file(explicit)
    for source in getattr(config, "model_metrics_sources", None) or []:
        if getattr(source, "type", None) == "cost":
            url = getattr(source, "url", None) or (MODELS_DEV_URL if source.provider == "models.dev" else None)
            if url is None:
                table = shipped()
                table.source += f" (cost source '{source.provider}' needs a url)"
                return table
            try:
                return fetch(url)
            except (OSError, ValueError) as exc:
                table = shipped()
                table.source += f" (could not use {url}: {getattr(exc, 'reason', None) or exc})"
                return table
    return shipped()
