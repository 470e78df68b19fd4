"""``plano trace [last|any|ID]``: pick traces from the receiver and render their span trees in the terminal.

Selection: ``last`` (newest), ``any`` (every trace that matches, newest first, up to
``--limit``), or a trace id (8-hex short prefix or the full 32 hex). ``--where k=v``
keeps traces with a span whose attribute ``k`` equals ``v`` (repeatable, all must
hold; ``service`` and ``name`` match span fields); ``--since 5m|2h|1d`` keeps recent
ones. ``--filter`` globs choose which attribute keys are shown (``--verbose``: all).
``--json`` prints the selected traces (``--list --json``: their summaries).
"""

from __future__ import annotations

import fnmatch
import re
import time

import orjson

# Attributes worth a glance; the rest with --verbose or --filter.
KEY_ATTRIBUTES = (
    "request_id", "http.status_code", "llm.provider", "llm.model", "model.requested", "llm.is_streaming",
    "llm.time_to_first_token", "llm.duration_ms", "llm.usage.prompt_tokens", "llm.usage.completion_tokens",
    "llm.usage.cached_input_tokens", "llm.usage.reasoning_tokens", "selection.agents",
    "selection.determination_ms", "routing.strategy", "routing.fallback_reason", "route.selected_model",
    "filter.outcome", "agent.outcome", "agent.retries", "signals.quality", "signals.quality_score", "error.type",
)
SERVICE_COLOURS = {
    "inbound": "bright_white", "llm": "magenta", "agent": "green", "orchestrator": "cyan", "routing": "cyan",
    "filter": "yellow", "handoff": "blue",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SelectionError(Exception):
    """Bad selection arguments (unknown --where key, malformed --since, bad target)."""


def parse_since(value: str) -> float:
    """``5m`` / ``2h`` / ``1d`` / ``30s`` -> seconds."""
    match = _DURATION.match(value or "")
    if not match:
        raise SelectionError(f"--since expects e.g. 30s, 5m, 2h or 1d, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_where(items: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SelectionError(f"--where expects key=value, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


def _span_value(span: dict, key: str):
    if key in ("service", "name", "trace_id", "span_id"):
        return span.get(key)
    return span["attributes"].get(key)


def _matches(value, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, list):
        return any(_matches(v, wanted) for v in value)
    return str(value) == wanted


def select(traces: list[dict], target: str = "last", *, where=None, since: float | None = None,
           limit: int | None = None, now: float | None = None) -> list[dict]:
    """The traces ``target`` + filters select, newest first."""
    target = (target or "last").lower()
    conditions = parse_where(where) if where and isinstance(where[0], str) else list(where or ())
    for key, _ in conditions:
        if key in ("service", "name", "trace_id", "span_id"):
            continue
        if not any(key in s["attributes"] for t in traces for s in t["spans"]):
            raise SelectionError(f"unknown attribute key {key!r} in --where (no stored span has it)")
    out = traces
    if since is not None:
        cutoff = ((now or time.time()) - since) * 1e9
        out = [t for t in out if any((s.get("start_ns") or 0) >= cutoff for s in t["spans"])]
    for key, wanted in conditions:
        out = [t for t in out if any(_matches(_span_value(s, key), wanted) for s in t["spans"])]
    if target not in ("last", "any"):
        if not re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{32}", target):
            raise SelectionError(f"trace target must be last, any, an 8-hex short id or a 32-hex id; got {target!r}")
        out = [t for t in out if t["trace_id"].startswith(target)]
    elif target == "last":
        out = out[:1]
    if limit:
        out = out[:limit]
    return out


def summary(trace: dict) -> dict:
    spans = trace["spans"]
    root = _roots(spans)[0] if spans else None
    starts = [s["start_ns"] for s in spans if s.get("start_ns")]
    ends = [s["end_ns"] for s in spans if s.get("end_ns")]
    return {
        "trace_id": trace["trace_id"],
        "start": _iso(min(starts)) if starts else None,
        "duration_ms": round((max(ends) - min(starts)) / 1e6, 3) if starts and ends else None,
        "root": root["name"] if root else None,
        "service": root["service"] if root else None,
        "spans": len(spans),
        "errors": sum(1 for s in spans if s["status"]["code"] == 2),
        "services": sorted({s["service"] for s in spans}),
    }


def _iso(ns: int) -> str:
    seconds = ns / 1e9
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"


def _roots(spans: list[dict]) -> list[dict]:
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if not s.get("parent_span_id") or s["parent_span_id"] not in ids]
    return sorted(roots, key=lambda s: s.get("start_ns") or 0)


def _children(spans: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for span in spans:
        if span.get("parent_span_id"):
            out.setdefault(span["parent_span_id"], []).append(span)
    for kids in out.values():
        kids.sort(key=lambda s: s.get("start_ns") or 0)
    return out


def shown_attributes(span: dict, patterns: list[str] | None, verbose: bool) -> dict:
    attrs = span["attributes"]
    if verbose:
        return {k: v for k, v in attrs.items() if k != "service.name.override"}
    if patterns:
        return {k: v for k, v in attrs.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    return {k: attrs[k] for k in KEY_ATTRIBUTES if k in attrs}


def _console():
    """A terminal console; piped output gets a wide fixed width so ids and lines are not wrapped."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    return console


def render(traces: list[dict], *, patterns=None, verbose: bool = False, console=None) -> None:
    """Print each trace as a tree: name, service, duration, status, chosen attributes."""
    from rich.text import Text
    from rich.tree import Tree

    console = console or _console()
    for trace in traces:
        spans = trace["spans"]
        info = summary(trace)
        header = Text.assemble(("trace ", "bold"), (trace["trace_id"], "bold cyan"),
                               f"  {info['start'] or ''}  {_ms(info['duration_ms'])}  {info['spans']} spans")
        if info["errors"]:
            header.append(f"  {info['errors']} error(s)", style="bold red")
        tree = Tree(header)
        kids = _children(spans)
        trace_start = min((s["start_ns"] for s in spans if s.get("start_ns")), default=0)

        for root in _roots(spans):
            _add(tree, root, kids, trace_start, patterns, verbose)
        console.print(tree)


def _add(node, span: dict, kids: dict, trace_start: int, patterns, verbose: bool) -> None:
    branch = node.add(_label(span, trace_start, patterns, verbose))
    for child in kids.get(span["span_id"], ()):
        _add(branch, child, kids, trace_start, patterns, verbose)


def _label(span: dict, trace_start: int, patterns, verbose: bool):
    from rich.text import Text

    service = span.get("service") or ""
    component = service[service.find("(") + 1:-1] if "(" in service and service.endswith(")") else service
    colour = SERVICE_COLOURS.get(component, "white")
    error = span["status"]["code"] == 2
    text = Text()
    text.append("✗ " if error else "", style="bold red")
    text.append(span["name"], style="bold red" if error else "bold")
    text.append(f"  {service}", style=colour)
    offset = ((span.get("start_ns") or trace_start) - trace_start) / 1e6
    text.append(f"  {_ms(span.get('duration_ms'))}", style="bold")
    text.append(f"  @+{offset:.1f}ms", style="dim")
    if error and span["status"].get("message"):
        text.append(f"  {span['status']['message']}", style="red")
    attrs = shown_attributes(span, patterns, verbose)
    if attrs:
        text.append("\n")
        text.append("  ".join(f"{k}={_short(v)}" for k, v in attrs.items()), style="dim")
    return text


def _ms(value) -> str:
    if value is None:
        return "?"
    return f"{value:.1f}ms" if value < 10_000 else f"{value / 1000:.2f}s"


def _short(value, limit: int = 80) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_list(traces: list[dict], console=None) -> None:
    from rich.table import Table

    console = console or _console()
    table = Table(show_edge=False, header_style="bold")
    for column in ("trace id", "start", "duration", "root span", "service", "spans", "errors"):
        table.add_column(column)
    for trace in traces:
        s = summary(trace)
        table.add_row(s["trace_id"], s["start"] or "", _ms(s["duration_ms"]), s["root"] or "", s["service"] or "",
                      str(s["spans"]), str(s["errors"]) if s["errors"] else "")
    console.print(table)
