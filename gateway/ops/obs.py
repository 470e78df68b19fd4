"""``plano obs``: a live terminal view of the running gateway, fed by its own telemetry.

Every figure but the recent calls comes from the admin port's Prometheus ``/metrics``, which
the supervising process sums over every worker (multiprocess mode), so the view is right with
``--workers N``. Recent calls and the last error come from the access log (one file that every
worker appends to). Percentiles are estimated from the histogram buckets since the gateway
started, as Prometheus' ``histogram_quantile`` does; rates are the change between two frames.
Cost is tokens × the pricing table (:mod:`gateway.telemetry.pricing`).
"""

from __future__ import annotations

import math
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------- scraping


@dataclass
class Histogram:
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    count: float = 0.0
    sum: float = 0.0

    def add(self, other: "Histogram") -> None:
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n
        self.count += other.count
        self.sum += other.sum

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation (Prometheus' estimate)."""
        if not self.buckets:
            return None
        bounds = sorted(self.buckets.items())
        total = bounds[-1][1]
        if total <= 0:
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for le, cum in bounds:
            if cum >= rank:
                if math.isinf(le):
                    return lower
                if cum == below:
                    return le
                return lower + (le - lower) * (rank - below) / (cum - below)
            lower, below = le, cum
        return lower


@dataclass
class ModelStats:
    provider: str
    model: str
    calls: float = 0.0
    errors: float = 0.0
    prompt: float = 0.0
    completion: float = 0.0
    cached: float = 0.0
    duration: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)


@dataclass
class ListenerStats:
    name: str
    requests: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    in_flight: float = 0.0
    duration: Histogram = field(default_factory=Histogram)


@dataclass
class Snapshot:
    taken: float
    listeners: dict[str, ListenerStats] = field(default_factory=dict)
    models: dict[tuple[str, str], ModelStats] = field(default_factory=dict)
    agent_calls: dict[str, dict[str, float]] = field(default_factory=dict)  # listener -> agent -> calls
    router: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (listener, router) -> [n, fallback]
    failovers: dict[tuple[str, str], float] = field(default_factory=dict)


def scrape(admin_url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(admin_url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


def parse_metrics(text: str, taken: float | None = None) -> Snapshot:
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot(taken if taken is not None else time.monotonic())
    listener_hist: dict[tuple, Histogram] = defaultdict(Histogram)
    model_hist: dict[tuple, Histogram] = defaultdict(Histogram)
    ttft_hist: dict[tuple, Histogram] = defaultdict(Histogram)

    def listener(name: str) -> ListenerStats:
        return snap.listeners.setdefault(name, ListenerStats(name))

    def model(provider: str, name: str) -> ModelStats:
        return snap.models.setdefault((provider, name), ModelStats(provider, name))

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "plano_http_requests_total":
                stats = listener(labels.get("listener", "?"))
                stats.requests += value
                klass = labels.get("status_class")
                if klass == "4xx":
                    stats.client_errors += value
                elif klass in ("5xx", "none"):
                    stats.server_errors += value
            elif name == "plano_http_in_flight_requests":
                listener(labels.get("listener", "?")).in_flight += value
            elif name.startswith("plano_http_request_duration_seconds"):
                _hist(listener_hist[(labels.get("listener", "?"), labels.get("handler"))], name, labels, value)
            elif name == "plano_llm_upstream_requests_total":
                stats = model(labels.get("provider", "?"), labels.get("model", "?"))
                stats.calls += value
                if labels.get("status_class") not in ("2xx", "1xx", "3xx") or labels.get("error_class") not in (
                        None, "", "none"):
                    stats.errors += value
            elif name == "plano_llm_tokens_total":
                stats = model(labels.get("provider", "?"), labels.get("model", "?"))
                kind = labels.get("kind")
                if kind == "prompt":
                    stats.prompt += value
                elif kind == "completion":
                    stats.completion += value
                elif kind == "cached":
                    stats.cached += value
            elif name.startswith("plano_llm_upstream_duration_seconds"):
                _hist(model_hist[(labels.get("provider", "?"), labels.get("model", "?"))], name, labels, value)
            elif name.startswith("plano_llm_time_to_first_token_seconds"):
                _hist(ttft_hist[(labels.get("provider", "?"), labels.get("model", "?"))], name, labels, value)
            elif name == "plano_agent_calls_total":
                per = snap.agent_calls.setdefault(labels.get("listener", "?"), {})
                agent = labels.get("agent", "?")
                per[agent] = per.get(agent, 0.0) + value
            elif name == "plano_router_decisions_total":
                entry = snap.router.setdefault((labels.get("listener", "?"), labels.get("router", "?")), [0.0, 0.0])
                entry[0] += value
                if labels.get("fallback") == "true":
                    entry[1] += value
            elif name == "plano_model_failovers_total":
                key = (labels.get("from_model", "?"), labels.get("to_model", "?"))
                snap.failovers[key] = snap.failovers.get(key, 0.0) + value
    for (name, _handler), h in listener_hist.items():
        listener(name).duration.add(h)
    for key, h in model_hist.items():
        model(*key).duration.add(h)
    for key, h in ttft_hist.items():
        model(*key).ttft.add(h)
    return snap


def _hist(h: Histogram, name: str, labels: dict, value: float) -> None:
    if name.endswith("_bucket"):
        le = labels.get("le", "+Inf")
        bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
        h.buckets[bound] = h.buckets.get(bound, 0.0) + value
    elif name.endswith("_count"):
        h.count += value
    elif name.endswith("_sum"):
        h.sum += value


# --------------------------------------------------------------------------- access log (recent calls)


def recent_calls(path: Path | None, n: int, max_bytes: int = 512 * 1024) -> tuple[list[dict], dict | None]:
    """The last ``n`` access records and the last failed one (status >= 400 or an error)."""
    from gateway.ops.logs import parse

    if path is None:
        return [], None
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return [], None
    records = [r for r in (parse(line) for line in data.split(b"\n")) if r is not None]
    failed = next((r for r in reversed(records) if (r.get("status") or 0) >= 400 or r.get("error")), None)
    return records[-n:] if n > 0 else [], failed


# --------------------------------------------------------------------------- rendering


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def _n(value: float) -> str:
    return f"{int(round(value)):,}"


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "–"


def _rate(now: float, before: float | None, dt: float | None) -> str:
    if before is None or not dt or dt <= 0:
        return "–"
    return f"{max(0.0, now - before) / dt:.1f}/s"


def build_frame(snap: Snapshot, prev: Snapshot | None, pricing, recent: list[dict], failed: dict | None,
                source: str, error: str | None = None):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    dt = (snap.taken - prev.taken) if prev is not None else None
    parts = []
    total_requests = sum(l.requests for l in snap.listeners.values())
    total_errors = sum(l.client_errors + l.server_errors for l in snap.listeners.values())
    costs = {}
    for key, m in snap.models.items():
        price = pricing.lookup(m.provider, m.model) if pricing is not None else None
        costs[key] = price.cost(m.prompt, m.completion, m.cached) if price is not None else None
    known = [c for c in costs.values() if c is not None]
    header = Text()
    header.append("plano obs", style="bold")
    header.append(f"  {source}  ")
    header.append(f"requests {_n(total_requests)}  errors {_n(total_errors)}  "
                  f"LLM calls {_n(sum(m.calls for m in snap.models.values()))}  "
                  f"cost {_usd(sum(known)) if known else '–'}")
    parts.append(header)
    if error:
        parts.append(Text(f"cannot read metrics: {error}", style="bold red"))

    lt = Table(title="Listeners", title_justify="left", expand=False)
    for col in ("listener", "requests", "rate", "4xx", "5xx", "in flight", "p50", "p95", "p99"):
        lt.add_column(col, justify="left" if col == "listener" else "right")
    for name in sorted(snap.listeners):
        l = snap.listeners[name]
        before = prev.listeners.get(name).requests if prev is not None and name in prev.listeners else None
        lt.add_row(name, _n(l.requests), _rate(l.requests, before, dt), _n(l.client_errors), _n(l.server_errors),
                   _n(l.in_flight), _ms(l.duration.quantile(0.5)), _ms(l.duration.quantile(0.95)),
                   _ms(l.duration.quantile(0.99)))
    parts.append(lt)

    mt = Table(title="LLM traffic by model", title_justify="left", expand=False)
    for col in ("model", "calls", "errors", "prompt tok", "completion tok", "cached tok", "TTFT p50", "p50",
                "p95", "p99", "cost"):
        mt.add_column(col, justify="left" if col == "model" else "right")
    for key in sorted(snap.models, key=lambda k: -snap.models[k].calls):
        m = snap.models[key]
        mt.add_row(f"{m.provider}/{m.model}", _n(m.calls), _n(m.errors), _n(m.prompt), _n(m.completion),
                   _n(m.cached), _ms(m.ttft.quantile(0.5)), _ms(m.duration.quantile(0.5)),
                   _ms(m.duration.quantile(0.95)), _ms(m.duration.quantile(0.99)), _usd(costs[key]))
    parts.append(mt)

    rt = Table(title="Route share", title_justify="left", expand=False)
    for col in ("listener", "route", "calls", "share"):
        rt.add_column(col, justify="left" if col in ("listener", "route") else "right")
    for listener_name in sorted(snap.agent_calls):
        per = snap.agent_calls[listener_name]
        whole = sum(per.values())
        for agent, n in sorted(per.items(), key=lambda kv: -kv[1]):
            rt.add_row(listener_name, f"agent {agent}", _n(n), _share(n, whole))
    llm_whole = sum(m.calls for m in snap.models.values())
    for key in sorted(snap.models, key=lambda k: -snap.models[k].calls):
        m = snap.models[key]
        rt.add_row("model calls", f"{m.provider}/{m.model}", _n(m.calls), _share(m.calls, llm_whole))
    parts.append(rt)
    if snap.router:
        decided = ", ".join(f"{listener} ({router}) {_n(n)}" + (f", {_n(fb)} fallback" if fb else "")
                            for (listener, router), (n, fb) in sorted(snap.router.items()))
        parts.append(Text(f"router decisions: {decided}"))
    if snap.failovers:
        moved = ", ".join(f"{a} → {b} {_n(n)}" for (a, b), n in sorted(snap.failovers.items()))
        parts.append(Text(f"model failovers: {moved}"))

    if recent:
        ct = Table(title="Recent calls", title_justify="left", expand=False)
        for col in ("time", "listener", "request", "status", "model / agents", "duration", "request id"):
            ct.add_column(col, justify="right" if col in ("status", "duration") else "left")
        for r in reversed(recent):
            who = r.get("model") or ",".join(r.get("agents") or []) or "–"
            ct.add_row(str(r.get("time", ""))[11:23], str(r.get("listener") or ""),
                       f"{r.get('method') or ''} {r.get('path') or ''}", str(r.get("status") or "–"), who,
                       f"{float(r.get('duration_ms') or 0):.0f}ms", str(r.get("request_id") or ""))
        parts.append(ct)
    if failed is not None:
        what = failed.get("error") or f"HTTP {failed.get('status')}"
        parts.append(Panel(Text(f"{failed.get('time')}  {failed.get('listener')}  {failed.get('method')} "
                                f"{failed.get('path')}  {failed.get('status')}  {what}  "
                                f"request_id={failed.get('request_id')}"), title="Last error",
                           title_align="left", border_style="red"))
    else:
        parts.append(Text("last error: none", style="green"))
    if pricing is not None:
        parts.append(Text(f"prices: {pricing.source}; percentiles since the gateway started", style="dim"))
    return Group(*parts)


# --------------------------------------------------------------------------- command


def _resolve(args):
    """(admin URL, pricing, access log path, what is shown) from the options and the running gateway."""
    from gateway.ops.runstate import access_log_path, read_state
    from gateway.telemetry.pricing import load_pricing

    state = read_state()
    config = None
    config_file = args.config or (state or {}).get("config")
    if config_file:
        try:
            from gateway.config import load_config

            config = load_config(config_file)
        except Exception:  # a config that no longer loads still leaves the metrics to show
            config = None
    admin = args.admin
    if not admin:
        recorded = (state or {}).get("admin")
        if recorded:
            admin = f"http://{recorded['host']}:{recorded['port']}"
        elif config is not None:
            from gateway.ops.runstate import probe_host
            from gateway.telemetry.admin import admin_endpoint

            address, port = admin_endpoint(config)
            admin = f"http://{probe_host(address)}:{port}"
        else:
            admin = "http://127.0.0.1:9092"
    pricing = load_pricing(args.pricing, config)
    if args.access_log:
        log_path = Path(args.access_log)
    else:
        log_path, _ = access_log_path(state)
    return admin, pricing, log_path


def cmd_obs(args) -> int:
    from rich.console import Console

    try:
        admin, pricing, log_path = _resolve(args)
    except (OSError, ValueError) as exc:
        print(f"plano obs: {exc}", file=sys.stderr)
        return 1
    refresh = args.refresh_ms / 1000.0 if args.refresh_ms else args.refresh
    refresh = max(0.1, refresh)
    console = Console(width=args.width) if args.width else Console()

    def frame(prev):
        error = None
        try:
            snap = parse_metrics(scrape(admin))
        except (OSError, ValueError) as exc:
            error = f"{admin}/metrics: {getattr(exc, 'reason', None) or exc}"
            snap = Snapshot(time.monotonic())
        recent, failed = recent_calls(log_path, args.recent)
        return snap, build_frame(snap, prev, pricing, recent, failed, admin, error), error

    if args.once:
        _, renderable, error = frame(None)
        console.print(renderable)
        return 1 if error else 0
    from rich.live import Live

    snap, renderable, _ = frame(None)
    try:
        with Live(renderable, console=console, refresh_per_second=max(1.0, 1.0 / refresh), screen=False) as live:
            while True:
                time.sleep(refresh)
                snap, renderable, _ = frame(snap)
                live.update(renderable)
    except KeyboardInterrupt:
        return 0
