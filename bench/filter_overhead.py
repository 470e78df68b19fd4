#!/usr/bin/env python3
"""What one identity HTTP filter in a model listener's ``input_filters`` costs.

Starts the shared mock upstream (../shared/bench/mock_upstream.py), an identity HTTP
filter (raw ASGI that answers the body it got; uvicorn + uvloop + httptools) and two
plano processes in front of the same mock: one without filters, one with
``input_filters: [identity]``. Then, at concurrency ``-c`` for ``-d`` seconds each,
a closed-loop aiohttp client posts the same non-streaming chat request to both and
prints p50/p99 and the p50 difference (target: ≤ 2 ms). Loopback only; bounded runs.

    .venv/bin/python bench/filter_overhead.py [-c 8] [-d 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from agent_chain import free_port, load, pct, stop_all, wait_http  # noqa: E402  (the same closed-loop client)

PY = sys.executable
SHARED = ROOT.parent / "shared" / "bench"


async def identity_app(scope, receive, send):
    """The identity filter: 200 with the request body, untouched."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/healthz":
        body = b"{}"
    else:
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(parts)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def uvicorn(app: str, app_dir: Path, port: int) -> list[str]:
    return [PY, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def plano_config(port: int, mock: int, filter_port: int | None) -> str:
    filters = ""
    chain = ""
    if filter_port:
        filters = f'filters:\n  - {{id: identity, type: http, url: "http://127.0.0.1:{filter_port}/identity"}}\n'
        chain = "    input_filters: [identity]\n"
    return f"""version: v0.4.0
{filters}model_providers:
  - {{model: openai/mock-model, access_key: sk-bench, base_url: "http://127.0.0.1:{mock}/v1", default: true}}
listeners:
  - type: model
    name: llm
    port: {port}
    address: 127.0.0.1
{chain}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-w", "--warmup", type=float, default=2.0)
    ap.add_argument("--shared-dir", default=str(SHARED), help="dir with mock_upstream.py (default ../shared/bench)")
    args = ap.parse_args()
    mock, ident, plain, filtered = free_port(), free_port(), free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="plano-filter-bench-"))
    procs = []
    try:
        procs.append(subprocess.Popen(uvicorn("mock_upstream:app", Path(args.shared_dir), mock), start_new_session=True))
        procs.append(subprocess.Popen(uvicorn("filter_overhead:identity_app", ROOT / "bench", ident),
                                      start_new_session=True))
        for name, port, fport in (("plain", plain, None), ("filtered", filtered, ident)):
            (tmp / f"{name}.yaml").write_text(plano_config(port, mock, fport))
            procs.append(subprocess.Popen([PY, "-m", "gateway", "up", str(tmp / f"{name}.yaml"), "--foreground"],
                                          cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{mock}/v1/models")
        for port in (ident, plain, filtered):
            wait_http(f"http://127.0.0.1:{port}/healthz")
        body = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "Hello, how are you?"}]})
        headers = {"content-type": "application/json"}

        def via(port):
            async def call(session):
                async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                        headers=headers) as r:
                    if r.status != 200:
                        raise SystemExit(f"plano on {port} answered {r.status}: {await r.text()}")
                    await r.read()
            return call

        p = asyncio.run(load(via(plain), args.concurrency, args.duration, args.warmup))
        f = asyncio.run(load(via(filtered), args.concurrency, args.duration, args.warmup))
        print(f"model listener, identity HTTP input filter, c={args.concurrency}, {args.duration:g}s each")
        print(f"{'target':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, v in (("plano, no filter", p), ("plano, identity filter", f)):
            print(f"{name:<26}{len(v) / args.duration:>10.0f}{pct(v, 50):>10.2f}{pct(v, 99):>10.2f}")
        added = pct(f, 50) - pct(p, 50)
        print(f"filter adds p50: {added:.2f} ms (target <= 2 ms) -> {'PASS' if added <= 2 else 'FAIL'}")
        return 0
    finally:
        stop_all(procs)


if __name__ == "__main__":
    raise SystemExit(main())
