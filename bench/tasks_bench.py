"""Async tasks throughput and create latency (issue 14).

    python bench/tasks_bench.py                       # SQLite (a temp file), 1,000 tasks
    python bench/tasks_bench.py --store postgresql://postgres@127.0.0.1:5432/test
    python bench/tasks_bench.py --tasks 1000 --steps 2 --workers 2 --runs 3

Three processes, so that what is measured is the gateway and not the harness:

- **the gateway** (``plano up``, a temp dir, the config of tests/support/task_gateway.py);
- **the far side** (this file with ``--serve``; aiohttp + uvloop): instant mock agents (one port
  each, OpenAI chat completions) and the webhook receiver, which verifies every signature and
  records when each ``task.complete`` arrived; a small control port says how many arrived and
  holds / releases the agents' answers;
- **the client** (this process; aiohttp + uvloop, 64 connections).

An earlier version ran the agents, the webhook receiver and an httpx client in one process:
that process was at 80 % of a core while the gateway was at 25 %, so it measured the client.

1. **throughput**: creates N tasks (64 concurrent clients) and waits for every signed
   ``task.complete`` webhook; tasks/s = N / (last webhook - first create). Every task is
   planned, run (1 or 2 agent calls), stored step by step, and its webhook delivered from the
   outbox. ``--runs`` repeats it on the same gateway; the median is printed last.
2. **create latency while 100 run**: 100 tasks are held running (their agent waits), then 200
   creates one after another; p50 / p99 of the 201.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS = {1: "What is the weather in city {i}?",
           2: "What's the weather in city {i} and find flights to city {i}"}
AGENTS = ("weather", "flights", "summary")


# -- the far side: agents + webhook receiver (a process of its own) ------------------------------


def serve() -> None:
    """Agents and webhook receiver; prints one JSON line with the ports, then serves until stdin closes."""
    import uvloop
    from aiohttp import web

    from tests.support.task_agents import verify
    from tests.support.task_gateway import SECRET

    state = {"complete": {}, "bad": 0, "held": set(), "gate": None}

    def completion(name: str, text: str) -> bytes:
        return json.dumps({"id": "chatcmpl-b", "object": "chat.completion", "created": 0, "model": name,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}).encode()

    def agent(name: str):
        body = completion(name, f"{name} answered")

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            gate = state["gate"]
            if gate is not None:
                state["held"].add(request.headers.get("x-plano-task-id"))
                await gate.wait()
            return web.Response(body=body, content_type="application/json")
        return handle

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not verify(SECRET, raw, headers):
            state["bad"] += 1
            return web.Response(status=401)
        if headers.get("x-plano-event") == "task.complete":
            state["complete"].setdefault(json.loads(raw)["task_id"], time.time())
        return web.Response(body=b"{}", content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        ids = (await request.json()).get("ids") if request.can_read_body else None
        done = state["complete"]
        if ids is not None:
            times = [done[i] for i in ids if i in done]
        else:
            times = list(done.values())
        return web.json_response({"complete": len(times), "last": max(times) if times else None,
                                  "bad_signatures": state["bad"], "held": len(state["held"])})

    async def hold(request: web.Request) -> web.Response:
        on = (await request.json())["on"]
        if on:
            state["gate"], state["held"] = asyncio.Event(), set()
        elif state["gate"] is not None:
            gate, state["gate"] = state["gate"], None
            gate.set()
        return web.json_response({"ok": True})

    async def main() -> None:
        ports = {}
        runners = []
        for name, app in [*((n, web.Application()) for n in AGENTS), ("hook", web.Application()),
                          ("control", web.Application())]:
            if name == "hook":
                app.router.add_post("/{tail:.*}", hook)
            elif name == "control":
                app.router.add_post("/stats", stats)
                app.router.add_post("/hold", hold)
            else:
                app.router.add_route("*", "/{tail:.*}", agent(name))
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports[name] = site._server.sockets[0].getsockname()[1]
            runners.append(runner)
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
        for r in runners:
            await r.cleanup()

    uvloop.run(main())


class _Farm:
    """What tests.support.task_gateway.config needs of an agent farm (names and URLs)."""

    def __init__(self, ports: dict) -> None:
        self.names = AGENTS
        self.ports = ports

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


# -- the client ---------------------------------------------------------------------------------------


async def create_all(session, base: str, n: int, prompt: str, concurrency: int = 64, **extra) -> list[str]:
    ids: list[str] = []
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            async with session.post(f"{base}/v1/tasks", json={"prompt": prompt.format(i=i), **extra}) as r:
                body = await r.json()
                assert r.status == 201, body
                ids.append(body["id"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (Linux /proc): the gateway's own cost per
    task, which a shared machine's load does not change the way it changes wall-clock rates."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def bench(args, base: str, control: str, pid: int) -> None:
    import aiohttp

    kind = "PostgreSQL" if args.store and args.store.startswith("postgres") else "SQLite"
    conn = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def stats(ids=None) -> dict:
            async with s.post(f"{control}/stats", json={"ids": ids}) as r:
                return await r.json()

        await create_all(s, base, 20, PROMPTS[args.steps])  # warm up: connections, encoder, store
        await asyncio.sleep(1.0)
        rates = []
        for run in range(args.runs):
            t0 = time.time()
            cpu0 = cpu_seconds(pid)
            ids = await create_all(s, base, args.tasks, PROMPTS[args.steps])
            created = time.time() - t0
            while True:
                st = await stats(ids)
                if st["complete"] >= len(ids) or time.time() - t0 > 600:
                    break
                await asyncio.sleep(0.05)
            total = (st["last"] or time.time()) - t0
            cpu = (cpu_seconds(pid) - cpu0) * 1000 / max(1, st["complete"])
            rates.append(st["complete"] / total)
            print(f"{kind}: {st['complete']}/{args.tasks} tasks ({args.steps} agent call(s) each) complete with "
                  f"signed webhook in {total:.2f}s -> {rates[-1]:.0f} tasks/s (creates took {created:.2f}s; "
                  f"gateway CPU {cpu:.2f} ms/task; bad signatures: {st['bad_signatures']})", flush=True)
        if args.runs > 1:
            print(f"{kind}: median of {args.runs} runs: {statistics.median(rates):.0f} tasks/s "
                  f"(runs: {', '.join(f'{r:.0f}' for r in rates)})", flush=True)

        async with s.post(f"{control}/hold", json={"on": True}):
            pass
        running = await create_all(s, base, 100, PROMPTS[1])
        while (await stats())["held"] < 100:
            await asyncio.sleep(0.05)
        lat = []
        for i in range(200):
            t = time.perf_counter()
            async with s.post(f"{base}/v1/tasks", json={"prompt": f"find flights to city {i}", "mode": "test"}) as r:
                await r.read()
                assert r.status == 201
            lat.append((time.perf_counter() - t) * 1000)
        async with s.post(f"{control}/hold", json={"on": False}):
            pass
        print(f"{kind}: create while {len(running)} tasks run: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms "
              f"(200 creates)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None, help="tasks.store (default: SQLite in a temp dir)")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1, choices=(1, 2))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="throughput runs on the same gateway (median printed)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve()
        return 0

    import uvloop

    from tests.support.gateway import Gateway, free_port
    from tests.support.task_gateway import config

    far = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           cwd=REPO, text=True)
    ports = json.loads(far.stdout.readline())
    farm = _Farm(ports)
    hook_url = f"http://127.0.0.1:{ports['hook']}/hooks/plano"
    work = Path(tempfile.mkdtemp(prefix="plano-tasks-bench-"))
    store = args.store
    if store and store.startswith("postgres"):
        import asyncpg

        schema = f"plano_bench_{secrets.token_hex(3)}"

        async def ddl(sql):
            conn = await asyncpg.connect(store)
            await conn.execute(sql)
            await conn.close()

        asyncio.run(ddl(f"CREATE SCHEMA {schema}"))
        store = f"{store}{'&' if '?' in store else '?'}search_path={schema}"
    port = free_port()
    cfg = config(farm, port, store=store or f"sqlite:///{work}/tasks.db", webhook=hook_url,
                 extra_tasks={"lease": "15s", "poll_interval": "500ms", "max_running": 500,
                              "webhook": {"progress": False}})
    env = {"PLANO_HOME": str(work), "LOG_LEVEL": "warning", "PLANO_ACCESS_LOG": str(work / "access.log")}
    gw = Gateway(cfg, work, env=env, workers=args.workers).start()
    try:
        uvloop.run(bench(args, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ports['control']}", gw.proc.pid))
    finally:
        gw.stop()
        far.stdin.close()
        far.wait(10)
        if store and store.startswith("postgres"):
            asyncio.run(ddl(f"DROP SCHEMA {schema} CASCADE"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
