"""The processes of a tree, read from /proc: CPU time and RSS of a gateway and its workers."""

from __future__ import annotations

import os


def _stats() -> tuple[dict[int, list[int]], dict[int, list[str]]]:
    children: dict[int, list[int]] = {}
    fields: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                row = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(row[1]), []).append(int(entry))
        fields[int(entry)] = row
    return children, fields


def _tree(pid: int) -> list[list[str]]:
    children, fields = _stats()
    rows, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in fields:
            rows.append(fields[p])
        todo.extend(children.get(p, ()))
    return rows


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(row[11]) + int(row[12]) for row in _tree(pid)) / tick


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(int(row[21]) * page for row in _tree(pid))
