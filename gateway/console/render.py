"""The console's HTML, rendered on the server.

Everything that comes from data — prompts, model names, span attributes, error texts, key ids —
is user- or upstream-controlled, so every value goes through :func:`e` (HTML-escaped, quotes
included) and nothing is ever put into a ``<script>`` or an event attribute. The pages need no
inline script or style at all, which lets the server send a strict Content-Security-Policy
(``script-src 'self'``): even a missed escape could not run code. Bars are SVG attributes, not
inline CSS, for the same reason.
"""

from __future__ import annotations

import html
import json
import time
from datetime import datetime, timezone
from urllib.parse import quote

NAV = (("traffic", "/console/", "Traffic"), ("traces", "/console/traces", "Traces"),
       ("routing", "/console/routing", "Routing"), ("tasks", "/console/tasks", "Tasks"),
       ("keys", "/console/keys", "Keys"))
TRUNCATE = 160
SPAN_KEYS = (
    "request_id", "http.status_code", "llm.provider", "llm.model", "model.requested", "llm.is_streaming",
    "llm.time_to_first_token", "llm.duration_ms", "llm.usage.prompt_tokens", "llm.usage.completion_tokens",
    "llm.usage.cached_input_tokens", "selection.agents", "selection.determination_ms", "routing.strategy",
    "routing.decided_by", "routing.confidence", "routing.confidence_threshold", "routing.candidates",
    "routing.fallback_reason", "route.selected_model", "plano.route.name", "filter.outcome", "agent.outcome",
    "agent.retries", "plano.task.id", "signals.quality", "error.type",
)


def e(value) -> str:
    """HTML-escaped text of any value (``–`` for None)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:g}"
    elif not isinstance(value, str):
        value = json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    return html.escape(value, quote=True)


def short(value, limit: int = TRUNCATE) -> str:
    """Escaped and shortened; the whole text stays readable in the title tooltip."""
    text = value if isinstance(value, str) else ("–" if value is None else json.dumps(value, default=str))
    if len(text) <= limit:
        return e(text)
    return f'<span title="{e(text[:4000])}">{e(text[:limit - 1])}…</span>'


def url_part(value: str) -> str:
    return quote(str(value), safe="")


def when(ts: float | None) -> str:
    if not ts:
        return "–"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def ms(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


def seconds_ms(value: float | None) -> str:
    return "–" if value is None else ms(value * 1000)


def n(value) -> str:
    return "–" if value is None else f"{int(round(value)):,}"


def usd(value) -> str:
    if value is None:
        return "–"
    return f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def status_class(status) -> str:
    try:
        code = int(status)
    except (TypeError, ValueError):
        return "bad" if status in ("failed", "error", "cancelled") else "ok" if status == "complete" else "neutral"
    return "bad" if code >= 500 else "warn" if code >= 400 else "ok"


def badge(text, kind: str | None = None) -> str:
    return f'<span class="badge {e(kind or status_class(text))}">{e(text)}</span>'


def table(headers, rows, empty: str = "nothing yet", cls: str = "") -> str:
    """A table whose cells are already-rendered HTML (every caller escapes its values)."""
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="{e(cls)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def note(text: str | None) -> str:
    return f'<p class="note">{e(text)}</p>' if text else ""


def page(title: str, active: str, body: str, *, refresh: int = 0) -> str:
    current = ' class="active"'
    links = "".join(f'<a href="{href}"{current if key == active else ""}>{label}</a>' for key, href, label in NAV)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>plano console · {e(title)}</title>
<link rel="stylesheet" href="/console/static/console.css"><script src="/console/static/console.js" defer></script>
</head><body>
<header><span class="brand">plano</span><nav>{links}</nav>
<label class="live"><input type="checkbox" id="live" checked> live</label>
<form method="post" action="/console/logout"><button type="submit">Log out</button></form></header>
<main id="main" data-refresh="{int(refresh)}"><h1>{e(title)}</h1>
{body}
<p class="stamp">rendered {e(when(time.time()))}</p></main>
</body></html>"""


def login(message: str | None = None, next_path: str = "/console/") -> str:
    error = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>plano console · log in</title><link rel="stylesheet" href="/console/static/console.css"></head>
<body class="login"><main><h1>plano console</h1>
<p>The console needs the admin key (<code>PLANO_ADMIN_KEY</code> or <code>auth.admin_key</code>).</p>
{error}
<form method="post" action="/console/login">
<input type="hidden" name="next" value="{e(next_path)}">
<label>Admin key <input type="password" name="key" id="key" autocomplete="current-password" required autofocus></label>
<button type="submit" id="login">Log in</button></form></main></body></html>"""


def message_page(title: str, text: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>plano console · {e(title)}</title>
<link rel="stylesheet" href="/console/static/console.css"></head>
<body class="login"><main><h1>{e(title)}</h1><p>{e(text)}</p></main></body></html>"""


# --------------------------------------------------------------------------- traffic


def _rate(now: float, before: float | None, dt: float | None) -> str:
    if before is None or not dt or dt <= 0:
        return "–"
    return f"{max(0.0, now - before) / dt:.1f}/s"


def trace_link(trace_id, label: str | None = None) -> str:
    if not trace_id or not isinstance(trace_id, str) or not all(c in "0123456789abcdef" for c in trace_id):
        return "–"
    return f'<a href="/console/traces/{e(trace_id)}" class="mono">{e(label or trace_id[:8])}</a>'


def traffic(data: dict) -> str:
    snap, prev = data["snapshot"], data["previous"]
    dt = (snap.taken - prev.taken) if prev is not None else None
    requests = sum(l.requests for l in snap.listeners.values())
    client = sum(l.client_errors for l in snap.listeners.values())
    server = sum(l.server_errors for l in snap.listeners.values())
    in_flight = sum(l.in_flight for l in snap.listeners.values())
    calls = sum(m.calls for m in snap.models.values())
    tokens = sum(m.prompt + m.completion for m in snap.models.values())
    known = [c for c in data["costs"].values() if c is not None]
    cards = "".join(f'<div class="card"><div class="label">{e(label)}</div><div class="value" id="{e(ident)}">'
                    f'{e(value)}</div></div>' for ident, label, value in (
                        ("total-requests", "requests", n(requests)), ("total-4xx", "4xx", n(client)),
                        ("total-5xx", "5xx", n(server)), ("in-flight", "in flight", n(in_flight)),
                        ("llm-calls", "LLM calls", n(calls)), ("tokens", "tokens", n(tokens)),
                        ("cost", "cost", usd(sum(known)) if known else "–")))
    out = [note(data.get("error")), f'<section class="cards">{cards}</section>']
    rows = []
    for name in sorted(snap.listeners):
        l = snap.listeners[name]
        before = prev.listeners[name].requests if prev is not None and name in prev.listeners else None
        rows.append([e(name), n(l.requests), e(_rate(l.requests, before, dt)), n(l.client_errors),
                     n(l.server_errors), n(l.in_flight), e(seconds_ms(l.duration.quantile(0.5))),
                     e(seconds_ms(l.duration.quantile(0.95))), e(seconds_ms(l.duration.quantile(0.99)))])
    out.append("<h2>Listeners</h2>" + table(
        ("listener", "requests", "rate", "4xx", "5xx", "in flight", "p50", "p95", "p99"), rows,
        "no request yet", "listeners"))
    rows = []
    for key in sorted(snap.models, key=lambda k: -snap.models[k].calls):
        m = snap.models[key]
        rows.append([e(f"{m.provider}/{m.model}"), n(m.calls), n(m.errors), n(m.prompt), n(m.completion),
                     n(m.cached), e(seconds_ms(m.ttft.quantile(0.5))), e(seconds_ms(m.duration.quantile(0.5))),
                     e(seconds_ms(m.duration.quantile(0.95))), e(usd(data["costs"].get(key)))])
    out.append("<h2>LLM traffic by model</h2>" + table(
        ("model", "calls", "errors", "prompt tok", "completion tok", "cached tok", "TTFT p50", "p50", "p95", "cost"),
        rows, "no LLM call yet", "models"))
    out.append("<h2>Recent requests</h2>" + note(data.get("access_log_note")) + _requests(data["recent"], "recent"))
    out.append("<h2>Recent errors</h2>" + _requests(data["errors"], "errors", "no failed request in the log"))
    if data.get("pricing"):
        out.append(note(f"prices: {data['pricing']}; percentiles since the gateway started"))
    return "\n".join(out)


def _requests(records: list[dict], cls: str, empty: str = "no request in the access log yet") -> str:
    rows = []
    for r in records:
        who = r.get("model") or ",".join(str(a) for a in r.get("agents") or []) or None
        status = r.get("status")
        rows.append([e(str(r.get("time") or "")[:23]), e(r.get("listener")),
                     f'{e(r.get("method"))} {short(r.get("path"), 60)}',
                     badge(status if status is not None else "–"), short(who, 60),
                     e(ms(r.get("duration_ms"))), f'<span class="mono">{short(r.get("request_id"), 40)}</span>',
                     trace_link(r.get("trace_id")), short(r.get("error"), 80) if r.get("error") else ""])
    return table(("time (UTC)", "listener", "request", "status", "model / agents", "duration", "request id",
                  "trace", "error"), rows, empty, cls)


# --------------------------------------------------------------------------- traces


def component(service: str | None) -> str:
    service = service or ""
    return service[service.find("(") + 1:-1] if "(" in service and service.endswith(")") else service


def _roots(spans: list[dict]) -> list[dict]:
    ids = {s["span_id"] for s in spans}
    return sorted((s for s in spans if not s.get("parent_span_id") or s["parent_span_id"] not in ids),
                  key=lambda s: s.get("start_ns") or 0)


def trace_summary(trace: dict) -> dict:
    spans = trace["spans"]
    roots = _roots(spans)
    root = roots[0] if roots else spans[0]
    starts = [s["start_ns"] for s in spans if s.get("start_ns")]
    ends = [s["end_ns"] for s in spans if s.get("end_ns")]
    attrs = root.get("attributes") or {}
    return {"trace_id": trace["trace_id"], "start": min(starts) / 1e9 if starts else None,
            "duration_ms": (max(ends) - min(starts)) / 1e6 if starts and ends else None,
            "root": root.get("name"), "service": root.get("service"), "spans": len(spans),
            "errors": sum(1 for s in spans if (s.get("status") or {}).get("code") == 2),
            "request_id": attrs.get("request_id"), "status": attrs.get("http.status_code"),
            "components": sorted({component(s.get("service")) for s in spans})}


def traces(found: list[dict], why: str) -> str:
    rows = []
    for trace in found:
        s = trace_summary(trace)
        rows.append([trace_link(s["trace_id"], s["trace_id"][:16]), e(when(s["start"])), short(s["root"], 60),
                     e(s["service"]), badge(s["status"]) if s["status"] is not None else "–",
                     e(ms(s["duration_ms"])), n(s["spans"]),
                     badge(s["errors"], "bad") if s["errors"] else "0",
                     " ".join(f'<span class="comp {e(c)}">{e(c)}</span>' for c in s["components"]),
                     f'<span class="mono">{short(s["request_id"], 40)}</span>'])
    return note(why) + table(("trace", "start (UTC)", "root span", "service", "status", "duration", "spans",
                              "errors", "components", "request id"), rows,
                             "no trace received yet" if not why else "no trace to show", "traces")


def trace_detail(trace: dict) -> str:
    s = trace_summary(trace)
    spans = trace["spans"]
    start = min((sp["start_ns"] for sp in spans if sp.get("start_ns")), default=0)
    total = max((sp["end_ns"] for sp in spans if sp.get("end_ns")), default=start) - start or 1
    kids: dict[str, list[dict]] = {}
    for span in spans:
        if span.get("parent_span_id"):
            kids.setdefault(span["parent_span_id"], []).append(span)
    for group in kids.values():
        group.sort(key=lambda sp: sp.get("start_ns") or 0)
    seen: set[str] = set()

    def node(span: dict, depth: int) -> str:
        if span["span_id"] in seen or depth > 64:  # a malformed trace must not loop
            return ""
        seen.add(span["span_id"])
        attrs = span.get("attributes") or {}
        status = span.get("status") or {}
        error = status.get("code") == 2
        begin = span.get("start_ns") or start
        offset = begin - start
        width = max(0.4, 100.0 * ((span.get("end_ns") or begin) - begin) / total)
        x = 100.0 * offset / total
        bar = (f'<svg class="bar" viewBox="0 0 100 4" preserveAspectRatio="none" aria-hidden="true">'
               f'<rect x="{x:.2f}" y="0" width="{min(width, 100 - x):.2f}" height="4" '
               f'class="{e(component(span.get("service")))}"/></svg>')
        key_attrs = "".join(f'<span class="attr"><b>{e(k)}</b>={short(attrs[k], 80)}</span>'
                            for k in SPAN_KEYS if k in attrs and attrs[k] is not None)
        all_attrs = table(("attribute", "value"), [[e(k), short(v, 400)] for k, v in sorted(attrs.items())
                                                  if k != "service.name.override"], "no attributes")
        events = table(("event", "offset", "attributes"),
                       [[e(ev.get("name")), e(ms(((ev.get("time_ns") or start) - start) / 1e6)),
                         short(ev.get("attributes"), 200)] for ev in span.get("events") or ()], "no events")
        children = "".join(node(child, depth + 1) for child in kids.get(span["span_id"], ()))
        comp = component(span.get("service"))
        errmsg = f' <span class="errmsg">{e(status.get("message"))}</span>' if error and status.get("message") else ""
        return (f'<li class="span{" error" if error else ""}" data-component="{e(comp)}">'
                f'<div class="line"><span class="comp {e(comp)}">{e(comp or "?")}</span> '
                f'<span class="name">{"✗ " if error else ""}{e(span.get("name"))}</span> '
                f'<span class="dur">{e(ms(span.get("duration_ms")))}</span> '
                f'<span class="off">@+{e(ms(offset / 1e6))}</span>'
                f'{errmsg}'
                f'{bar}</div>'
                f'<div class="attrs">{key_attrs}</div>'
                f'<details><summary>all attributes and events</summary>{all_attrs}{events}</details>'
                f'{"<ul>" + children + "</ul>" if children else ""}</li>')

    tree = "".join(node(root, 0) for root in _roots(spans))
    head = (f'<p class="meta">trace <span class="mono" id="trace-id">{e(s["trace_id"])}</span> · '
            f'{e(when(s["start"]))} · {e(ms(s["duration_ms"]))} · {n(s["spans"])} spans'
            f'{" · " + badge(str(s["errors"]) + " error(s)", "bad") if s["errors"] else ""}</p>')
    return head + f'<ul class="tree">{tree}</ul>'


# --------------------------------------------------------------------------- routing


def routing(snap, decisions: list, why: str) -> str:
    out = []
    rows = [[e(listener), e(router), n(count), n(fallback)] for (listener, router), (count, fallback)
            in sorted(snap.router.items())]
    out.append("<h2>Decisions by router</h2>" + table(("listener", "router", "decisions", "fallbacks"), rows,
                                                      "no routing decision yet"))
    rows = []
    for listener in sorted(snap.agent_calls):
        per = snap.agent_calls[listener]
        whole = sum(per.values()) or 1
        for agent, count in sorted(per.items(), key=lambda kv: -kv[1]):
            rows.append([e(listener), e(f"agent {agent}"), n(count), e(f"{100 * count / whole:.0f}%")])
    llm_whole = sum(m.calls for m in snap.models.values()) or 1
    for key in sorted(snap.models, key=lambda k: -snap.models[k].calls):
        m = snap.models[key]
        rows.append([e("model calls"), e(f"{m.provider}/{m.model}"), n(m.calls),
                     e(f"{100 * m.calls / llm_whole:.0f}%")])
    out.append("<h2>Route share</h2>" + table(("listener", "route", "calls", "share"), rows, "no call yet"))
    rows = []
    for trace, span in decisions:
        attrs = span.get("attributes") or {}
        chosen = attrs.get("selection.agents") if "selection.agents" in attrs else attrs.get("route.selected_model")
        confidence = attrs.get("routing.confidence")
        threshold = attrs.get("routing.confidence_threshold")
        conf = "–" if confidence is None else f"{float(confidence):.2f}"
        if confidence is not None and threshold is not None:
            conf += f" (threshold {float(threshold):g})"
        rows.append([e(when((span.get("start_ns") or 0) / 1e9)), trace_link(trace["trace_id"]),
                     e(attrs.get("selection.listener") or attrs.get("model.requested")),
                     e(attrs.get("routing.decided_by") or attrs.get("routing.strategy")),
                     f'<span class="chosen">{short(chosen, 80)}</span>', f'<span class="confidence">{e(conf)}</span>',
                     short(attrs.get("routing.candidates"), 80),
                     e(ms(attrs.get("selection.determination_ms") or attrs.get("routing.determination_ms"))),
                     short(attrs.get("routing.fallback_reason") or attrs.get("routing.selection_reason"), 100)])
    out.append("<h2>Recent decisions (from traces)</h2>" + note(why) + table(
        ("time (UTC)", "trace", "listener / requested", "decided by", "chosen", "confidence", "candidates (score)",
         "took", "reason / fallback"), rows, "no routing span in the recent traces", "decisions"))
    return "\n".join(out)


# --------------------------------------------------------------------------- tasks


def tasks(found: list[dict], why: str) -> str:
    rows = []
    for t in found:
        end = t.get("completed_at") or time.time()
        rows.append([f'<a href="/console/tasks/{url_part(t["id"])}" class="mono">{e(t["id"])}</a>',
                     e(when(t.get("created_at"))), e(t.get("listener")), badge(t.get("status")), e(t.get("mode")),
                     f'<span class="prompt">{short(t.get("prompt"), 120)}</span>',
                     e(f'{t.get("steps_done", 0)}/{t.get("steps_total", 0)}'),
                     e(ms((end - (t.get("created_at") or end)) * 1000)), trace_link(t.get("trace_id"))])
    return note(why) + table(("task", "created (UTC)", "listener", "status", "mode", "prompt", "steps done",
                              "duration", "trace"), rows, "no task yet", "tasks")


def task_detail(t: dict) -> str:
    fields = [("id", f'<span class="mono" id="task-id">{e(t["id"])}</span>'), ("status", badge(t.get("status"))),
              ("listener", e(t.get("listener"))), ("mode", e(t.get("mode"))), ("user", e(t.get("user_id"))),
              ("sub agent", e(t.get("sub_agent"))), ("planner", e(t.get("planner"))),
              ("created", e(when(t.get("created_at")))), ("completed", e(when(t.get("completed_at")))),
              ("trace", trace_link(t.get("trace_id"), t.get("trace_id"))),
              ("metadata", short(t.get("metadata"), 400))]
    out = ['<dl class="fields">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in fields) + "</dl>",
           f'<h2>Prompt</h2><pre class="prompt">{e(t.get("prompt"))}</pre>']
    if t.get("result") is not None:
        out.append(f'<h2>Result</h2><pre>{e(_pretty(t["result"]))}</pre>')
    if t.get("error") is not None:
        out.append(f'<h2>Error</h2><pre class="bad">{e(_pretty(t["error"]))}</pre>')
    rows = []
    for s in t.get("steps") or ():
        rows.append([e(s.get("index")), e(s.get("tool")), short(s.get("action"), 80), badge(s.get("status")),
                     e(s.get("attempt")), e(s.get("parent")), e(",".join(str(d) for d in s.get("depends_on") or ())),
                     e(ms(s.get("duration_ms"))), short(s.get("request"), 120), short(s.get("output"), 120),
                     short(s.get("note") or s.get("error") or s.get("question"), 120)])
    out.append("<h2>Steps</h2>" + table(("#", "agent", "action", "status", "attempt", "parent", "after",
                                         "duration", "request", "output", "note / error"), rows,
                                        "no step planned yet", "steps"))
    rows = [[e(d.get("event")), badge(d.get("status"), "ok" if d.get("status") == "delivered" else "neutral"),
             e(d.get("attempts")), e(when(d.get("created_at"))), e(when(d.get("delivered_at"))),
             short(d.get("last_error"), 120)] for d in t.get("deliveries") or ()]
    out.append("<h2>Webhook deliveries</h2>" + table(("event", "status", "attempts", "queued", "delivered",
                                                      "last error"), rows, "no webhook for this task"))
    return "\n".join(out)


def period_name(index: str) -> str:
    """A budget bucket (:func:`gateway.auth.budget.period_index`: ``h<hours>``, ``d<days>``, ``m<YYYYMM>``,
    ``all``) as an operator reads it."""
    try:
        if index.startswith("h"):
            return datetime.fromtimestamp(int(index[1:]) * 3600, timezone.utc).strftime("%Y-%m-%d %H:00Z")
        if index.startswith("d"):
            return datetime.fromtimestamp(int(index[1:]) * 86400, timezone.utc).strftime("%Y-%m-%d")
        if index.startswith("m") and len(index) == 7:
            return f"{index[1:5]}-{index[5:]}"
    except (ValueError, OverflowError):
        pass
    return "total" if index == "all" else index


def _pretty(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return text if len(text) <= 20_000 else text[:20_000] + "\n…"


# --------------------------------------------------------------------------- keys


def keys(found: list[dict], why: str, where: str) -> str:
    rows = []
    for k in found:
        usage = k.get("usage") or {}
        periods = usage.get("periods") or {}
        used = "; ".join(f"{period_name(p)}: {n(v.get('tokens'))} tok, {usd(v.get('cost_usd'))}"
                         for p, v in sorted(periods.items()))
        budget = k.get("budget") or {}
        budget_text = ", ".join(f"{name} {budget[name]:,}" if isinstance(budget[name], (int, float)) else
                                f"{name} {budget[name]}"
                                for name in ("tokens", "cost_usd", "period") if budget.get(name))
        limits = ", ".join(" ".join(f"{v}" for v in (r.get("requests") or r.get("tokens"),
                                                   "req" if r.get("requests") else "tok", "/", r.get("unit")))
                           for r in k.get("rate_limits") or ())
        rows.append([f'<span class="mono">{e(k["id"])}</span>', badge(k.get("status"), {
                         "active": "ok", "revoked": "bad", "expired": "warn"}.get(k.get("status"), "neutral")),
                     f'<span class="mono masked">{e(k.get("fingerprint") or "••••")}</span>', e(k.get("source")),
                     short(", ".join(k["models"]) if k.get("models") else "all", 80),
                     short(", ".join(k["listeners"]) if k.get("listeners") else "all", 60),
                     short(", ".join(k["agents"]) if k.get("agents") else "all", 60), e(limits or "–"),
                     e(budget_text or "–"), e(k.get("expires_at")), e(used or "none yet")])
    return (note(why) + f'<p class="note">store: {e(where)}; keys are never shown (only a SHA-256 fingerprint). '
            'Create and revoke keys with the admin API (<code>/admin/keys</code>).</p>'
            + table(("id", "status", "key", "source", "models", "listeners", "agents", "rate limits", "budget",
                     "expires", "usage"), rows, "no virtual key configured", "keys"))
