"""Helpers for end-to-end observability tests: gateway environment, span trees, /metrics, access logs, leaks."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.otlp import CollectedSpan, OTLPReceiver

#: OTLP span kinds as exported (protobuf enum values).
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2

#: Export batches every 100 ms in test gateways (the default is 1 s).
BATCH_DELAY_MS = 100


def gateway_env(**extra: str) -> dict[str, str]:
    """Environment for a test gateway: nothing inherited that steers telemetry, fast span batches.

    The admin server is off (``PLANO_ADMIN_PORT=0``) unless the test sets ``PLANO_ADMIN_PORT=""``
    to let the config's ``admin`` block decide. Values here override :class:`Gateway`'s inherited env.
    """
    env = {k: "" for k in os.environ if k.startswith(("OTEL_", "PLANO_")) or k in ("PROMETHEUS_MULTIPROC_DIR",
                                                                                    "LOG_LEVEL", "LOG_FORMAT")}
    env.update({"OTEL_BSP_SCHEDULE_DELAY": str(BATCH_DELAY_MS), "PLANO_ADMIN_PORT": "0",
                "PLANO_ACCESS_LOG": "off"})
    env.update(extra)
    return env


def wait_until(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    """Poll ``check`` until it returns something truthy (returned) or ``timeout`` passes (last value returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- spans -------------------------------------------------------------------------------


def spans_when(receiver: OTLPReceiver, complete: Callable[[list[CollectedSpan]], bool],
               timeout: float = 10.0) -> list[CollectedSpan]:
    """The receiver's spans once ``complete(spans)`` holds (or whatever arrived within ``timeout``)."""
    found: list[CollectedSpan] = []

    def check():
        nonlocal found
        found = receiver.spans()
        return complete(found)

    wait_until(check, timeout)
    return found


def by_id(spans: Iterable[CollectedSpan]) -> dict[str, CollectedSpan]:
    return {s.span_id: s for s in spans}


def ancestors(span: CollectedSpan, index: dict[str, CollectedSpan]) -> list[CollectedSpan]:
    """The span's parent, grandparent, ... as far as they were exported (nearest first)."""
    out = []
    seen = {span.span_id}
    parent = span.parent_id
    while parent and parent in index and parent not in seen:
        seen.add(parent)
        span = index[parent]
        out.append(span)
        parent = span.parent_id
    return out


def describe(spans: Iterable[CollectedSpan]) -> str:
    return "\n".join(f"  {s.service:22} {s.name!r} trace={s.trace_id} id={s.span_id} parent={s.parent_id}"
                     for s in spans)


def span_strings(span: CollectedSpan) -> list[str]:
    """Every string a collector stores for ``span``: name, status, attribute keys/values, events, resource."""
    out = [span.name, span.status_message or "", span.service or ""]

    def walk(value) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bytes):
            out.append(value.decode("utf-8", "replace"))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                out.append(str(k))
                walk(v)

    walk(span.attributes)
    walk(span.resource)
    for name, attrs, _ in span.events:
        out.append(name)
        walk(attrs)
    for link in span.raw.links:
        walk({kv.key: str(kv.value) for kv in link.attributes})
    return out


def export_bytes(receiver: OTLPReceiver) -> bytes:
    """Every export request the receiver got, re-serialised: strings appear verbatim in protobuf bytes."""
    with receiver._lock:
        requests = list(receiver.requests)
    return b"".join(r.SerializeToString() for r in requests)


# -- /metrics ----------------------------------------------------------------------------


def scrape(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def parse_samples(text: str) -> list[tuple[str, dict, float]]:
    """``(sample name, labels, value)`` of a Prometheus exposition (raises if it is not valid)."""
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def metric_sum(samples: list[tuple[str, dict, float]], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for n, lbl, v in samples if n == name and all(lbl.get(k) == val for k, val in labels.items()))


def label_values(samples: list[tuple[str, dict, float]], name: str, label: str) -> set:
    return {lbl.get(label) for n, lbl, v in samples if n == name and v}


# -- access log --------------------------------------------------------------------------


def access_lines(path: Path) -> list[dict]:
    """The access log's lines, each parsed as JSON (a line that is not JSON fails the test)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"access log line is not JSON: {line!r}") from None
    return out
