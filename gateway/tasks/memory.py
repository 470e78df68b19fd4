"""Execution memory: which recovery worked for which agent and failure kind.

Recorded by the executor whenever a failed step was adapted — ``prepare:<agent>`` (another agent
ran first, e.g. a token refresh, then the failed agent was called again), ``replace:<agent>``
(another agent answered instead) or ``reformulate:<agent>`` (the agent was asked again with the
request put another way) — with whether it worked. Stored with the tasks
(``plano_task_memory``; bounded by ``tasks.memory.max_entries``, least recently updated dropped).

Consulted twice: the planner puts a recovery that worked at least ``min_successes`` times (and
more often than it failed) into the plan from the start (not a reformulation: its wording depends
on the error), and the executor tries the remembered recovery first when a step fails. The reason is the step's ``note`` in the trace.
"""

from __future__ import annotations

import re

from gateway.tasks.planner import action_of


def failure_kind(err) -> str:
    """A stable name for how a step failed: the error code and status, plus a marker word the
    agent's message names (``agent_error:401:token_expired``)."""
    code = getattr(err, "code", None) or "error"
    status = getattr(err, "status", None)
    kind = f"{code}:{status}" if status else code
    marker = re.search(r"\b([a-z]+_(?:expired|invalid|missing|required|denied|revoked|limit|not_found))\b",
                       getattr(err, "message", "") or str(err))
    return f"{kind}:{marker.group(1)}" if marker else kind


def best(entries: list[dict], agent: str, min_successes: int, failure: str | None = None) -> dict | None:
    for e in entries:  # the store returns them most successful first
        if e["agent"] != agent or (failure is not None and e["failure"] != failure):
            continue
        if e["successes"] >= min_successes and e["successes"] > e["failures"]:
            return e
    return None


def describe(entry: dict) -> str:
    kind, _, other = entry["recovery"].partition(":")
    what = {"prepare": f"running {other} first fixed it",
            "reformulate": f"asking {other} again, reformulated, worked"}.get(kind, f"{other} answered instead")
    return (f"execution memory: {entry['agent']} failed with {entry['failure']} in earlier runs; "
            f"{what} {entry['successes']} time(s)")


def apply(steps: list[dict], entries: list[dict], min_successes: int, known: set[str]) -> list[dict]:
    """The plan with remembered recoveries applied up front (indices renumbered)."""
    if not entries:
        return steps
    out: list[dict] = []
    mapping: dict[int, int] = {}
    for s in steps:
        entry = best([e for e in entries if not e["recovery"].startswith("reformulate:")], s["tool"], min_successes)
        other = entry["recovery"].partition(":")[2] if entry else None
        if entry is None or other not in known:
            mapping[s["index"]] = len(out)
            out.append({**s, "deps": [mapping[d] for d in s["deps"]]})
            continue
        deps = [mapping[d] for d in s["deps"]]
        if entry["recovery"].startswith("prepare:"):
            request = f"{s['tool']} needs this first ({entry['failure']}): {s['request']}"
            out.append({**s, "index": len(out), "tool": other, "action": action_of(request), "request": request,
                        "deps": deps, "note": describe(entry), "memory": entry["recovery"]})
            mapping[s["index"]] = len(out)
            out.append({**s, "index": len(out), "deps": sorted({*deps, len(out) - 1})})
        else:
            mapping[s["index"]] = len(out)
            out.append({**s, "index": len(out), "tool": other, "deps": deps, "note": describe(entry),
                        "memory": entry["recovery"]})
    return out
