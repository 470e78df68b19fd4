"""``python -m gateway.console.tracequery HOST PORT LIMIT [TRACE_ID]``: ask plano's trace receiver
for traces and print ``{"traces": [...]}`` or ``{"error": "..."}`` as JSON on stdout (exit 0 either way).

A separate process on purpose: the console runs inside the gateway's supervising process, which
forks workers later, and gRPC's threads must not be started there (see
:mod:`gateway.console.sources`). This process lives for one query.
"""

from __future__ import annotations

import sys

import orjson


def main(argv: list[str]) -> int:
    try:
        host, port, limit = argv[0], int(argv[1]), int(argv[2])
        trace_id = argv[3] if len(argv) > 3 and argv[3] else None
    except (IndexError, ValueError):
        sys.stdout.write('{"error": "usage: tracequery HOST PORT LIMIT [TRACE_ID]"}')
        return 0
    from gateway.telemetry.receiver import query

    try:
        answer = query(port, host, trace_id=trace_id, limit=limit, timeout=5.0)
    except Exception as exc:  # the receiver is down, or the endpoint is not plano's receiver
        answer = {"error": str(exc)[:500] or type(exc).__name__}
    sys.stdout.buffer.write(orjson.dumps(answer))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
