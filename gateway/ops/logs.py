"""``plano logs``: the running gateway's access log, filtered, optionally followed.

Lines are the JSON records of :mod:`gateway.telemetry.access_log` (one per request, every
worker appending to one file). Lines that are not access records (a gateway log mixed in
when the access log goes to stderr) are skipped. ``--follow`` reads on from the end, notices
when a new ``plano up`` starts a fresh file, and stops on Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import orjson


def parse(line: bytes | str) -> dict | None:
    line = line.strip()
    if not line or line[:1] not in ("{", b"{"):
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("type") != "access":
        return None
    return record


def _status_matches(status, error, wanted: list[str]) -> bool:
    for w in wanted:
        w = w.strip().lower()
        if w in ("error", "errors", "failed"):
            if (isinstance(status, int) and status >= 400) or error:
                return True
        elif len(w) == 3 and w.endswith("xx") and w[0].isdigit():
            if isinstance(status, int) and status // 100 == int(w[0]):
                return True
        elif w.isdigit():
            if status == int(w):
                return True
    return False


class Filter:
    def __init__(self, listeners=(), statuses=(), request_ids=(), models=()) -> None:
        self.listeners = set(listeners)
        self.statuses = list(statuses)
        self.request_ids = set(request_ids)
        self.models = set(models)

    def __call__(self, r: dict) -> bool:
        if self.listeners and r.get("listener") not in self.listeners:
            return False
        if self.request_ids and r.get("request_id") not in self.request_ids:
            return False
        if self.models and r.get("model") not in self.models:
            return False
        if self.statuses and not _status_matches(r.get("status"), r.get("error"), self.statuses):
            return False
        return True


def format_record(r: dict) -> str:
    parts = [
        r.get("time") or "-",
        f"{r.get('listener') or '-'}",
        f"{r.get('method') or '-'} {r.get('path') or '-'}",
        str(r.get("status") if r.get("status") is not None else "-"),
        f"{r.get('duration_ms', 0):.1f}ms",
    ]
    if r.get("model"):
        parts.append(f"model={r['model']}")
    if r.get("upstream"):
        parts.append(f"upstream={r['upstream']}")
    if r.get("agents"):
        parts.append("agents=" + ",".join(r["agents"]))
    parts.append(f"request_id={r.get('request_id') or '-'}")
    if r.get("error"):
        parts.append(f"error={r['error']!r}")
    return "  ".join(parts)


def _emit(record: dict, raw: bytes, as_json: bool, out) -> None:
    if as_json:
        out.write(raw.decode("utf-8", "replace").rstrip("\n") + "\n")
    else:
        out.write(format_record(record) + "\n")
    out.flush()


def read_matching(path: Path, keep: Filter, last: int) -> tuple[list[tuple[dict, bytes]], int]:
    """The last ``last`` matching records (all when negative) and the offset read up to (whole lines only)."""
    chosen: deque = deque(maxlen=None if last < 0 else last)
    offset = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            offset += len(raw)
            if last == 0:
                continue
            record = parse(raw)
            if record is not None and keep(record):
                chosen.append((record, raw))
    return list(chosen), offset


def follow(path: Path, offset: int, keep: Filter, as_json: bool, out, poll: float = 0.2,
           stop=lambda: False) -> None:
    f = open(path, "rb") if path.exists() else None
    inode = _inode(path) if f else None
    if f:
        f.seek(offset)
    pending = b""
    while not stop():
        chunk = f.read() if f else b""
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                record = parse(raw)
                if record is not None and keep(record):
                    _emit(record, raw + b"\n", as_json, out)
            continue
        # nothing new: a fresh file (next 'plano up' rotated it) or one that appeared since
        current = _inode(path)
        if current is not None and (current != inode or (f and _size(path) < f.tell())):
            if f:
                f.close()
            f = open(path, "rb")
            inode = current
            pending = b""
            continue
        time.sleep(poll)


def _inode(path: Path):
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def cmd_logs(args) -> int:
    from gateway.ops.runstate import access_log_path, read_state

    if args.file:
        path, why = Path(args.file), ""
    else:
        path, why = access_log_path(read_state())
    if path is None:
        print(f"plano logs: {why}", file=sys.stderr)
        return 1
    keep = Filter(args.listener, args.status, args.request_id, args.model)
    out = sys.stdout
    offset = 0
    if path.exists():
        records, offset = read_matching(path, keep, args.lines)
        for record, raw in records:
            _emit(record, raw, args.json, out)
    elif not args.follow:
        print(f"plano logs: no access log at {path}", file=sys.stderr)
        return 1
    if not args.follow:
        return 0
    print(f"plano logs: following {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        follow(path, offset, keep, args.json, out)
    except KeyboardInterrupt:
        pass
    return 0
