"""Async tasks throughput and create latency (issue 14).

    python bench/tasks_bench.py                       # SQLite (a temp file), 1,000 tasks
    python bench/tasks_bench.py --store postgresql://postgres@127.0.0.1:5432/test
    python bench/tasks_bench.py --tasks 1000 --steps 2

Starts instant mock agents and a webhook receiver on loopback (tests/support/task_agents.py) and
a real gateway process, then:

1. **throughput**: creates N tasks (64 concurrent clients) and counts ``task.complete`` webhooks;
   tasks/s = N / (last webhook - first create). Every task is planned, run (1 or 2 agent calls),
   stored step by step, and its signed webhook delivered from the outbox.
2. **create latency while 100 run**: 100 tasks are held running (their agent waits), then 200
   creates one after another; p50 / p99 of the 201.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from tests.support.gateway import Gateway, free_port  # noqa: E402
from tests.support.task_agents import AgentFarm, WebhookReceiver  # noqa: E402
from tests.support.task_gateway import SECRET, config  # noqa: E402

PROMPTS = {1: "What is the weather in city {i}?",
           2: "What's the weather in city {i} and find flights to city {i}"}


async def create_all(base: str, n: int, prompt: str, concurrency: int = 64) -> list[str]:
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> None:
            async with sem:
                r = await client.post(f"{base}/v1/tasks", json={"prompt": prompt.format(i=i)})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return ids


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None, help="tasks.store (default: SQLite in a temp dir)")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1, choices=(1, 2))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    farm = AgentFarm("weather", "flights", "summary").start()
    hook = WebhookReceiver(SECRET).start()
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
    cfg = config(farm, port, store=store or f"sqlite:///{work}/tasks.db", webhook=hook.url,
                 extra_tasks={"lease": "15s", "max_running": 500, "webhook": {"progress": False}})
    gw = Gateway(cfg, work, env={"PLANO_HOME": str(work), "LOG_LEVEL": "warning"}, workers=args.workers).start()
    base = f"http://127.0.0.1:{port}"
    kind = "PostgreSQL" if store and store.startswith("postgres") else "SQLite"
    try:
        httpx.post(f"{base}/v1/tasks", json={"prompt": "warm up the weather"}, timeout=30)
        time.sleep(1.0)
        hook.reset()
        t0 = time.perf_counter()
        ids = asyncio.run(create_all(base, args.tasks, PROMPTS[args.steps]))
        created = time.perf_counter() - t0
        want = set(ids)
        while True:
            got = {d.body["task_id"] for d in hook.deliveries if d.event == "task.complete"} & want
            if len(got) == len(want) or time.perf_counter() - t0 > 600:
                break
            time.sleep(0.05)
        total = time.perf_counter() - t0
        print(f"{kind}: {len(got)}/{args.tasks} tasks ({args.steps} agent call(s) each) complete with webhook in "
              f"{total:.2f}s -> {len(got) / total:.0f} tasks/s (creates took {created:.2f}s)")

        gate = threading.Event()
        farm.set("weather", hold=gate)
        running = asyncio.run(create_all(base, 100, PROMPTS[1]))
        while len({c.task for c in farm.calls_of("weather")} & set(running)) < 100:
            time.sleep(0.05)
        lat = []
        with httpx.Client(timeout=30) as client:
            for i in range(200):
                s = time.perf_counter()
                r = client.post(f"{base}/v1/tasks", json={"prompt": f"find flights to city {i}", "mode": "test"})
                lat.append((time.perf_counter() - s) * 1000)
                assert r.status_code == 201
        gate.set()
        print(f"{kind}: create while 100 tasks run: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms "
              f"(200 creates)")
    finally:
        gw.stop()
        farm.stop()
        hook.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
