"""Tasks survive ``kill -9``: after a restart (SQLite) or on the surviving replica (PostgreSQL) every
task reaches a terminal state and every webhook is delivered; no step runs twice at the same time.

The PostgreSQL test needs ``PLANO_TEST_POSTGRES_DSN`` (e.g. postgresql://postgres@127.0.0.1:5432/test);
it works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections import defaultdict

import httpx
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.task_agents import AgentFarm, WebhookReceiver
from tests.support.task_gateway import SECRET, config, task, terminal, wait_for

PROMPT = "What's the weather in city {i} and find flights to city {i}, then write a travel summary of both"
N = 20


def create_many(base: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = httpx.post(f"{base}/v1/tasks", json={"prompt": PROMPT.format(i=i), "metadata": {"n": i}}, timeout=10)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def all_terminal(base: str, ids: list[str], timeout: float = 90.0) -> list[dict]:
    return wait_for(lambda: [task(base, i) for i in ids], lambda ts: all(terminal(t) for t in ts), timeout,
                    every=0.3)


def no_step_ran_twice_at_once(farm: AgentFarm, ids: list[str]) -> None:
    by_step = defaultdict(list)
    for c in farm.calls:
        if c.task in ids:
            by_step[(c.task, c.step)].append((c.started, c.ended or float("inf")))
    for key, spans in by_step.items():
        spans.sort()
        for (s1, e1), (s2, _) in zip(spans, spans[1:]):
            assert s2 >= e1, f"step {key} ran twice at the same time: {spans}"


@pytest.fixture
def farm():
    f = AgentFarm("weather", "flights", "summary").start()
    yield f
    f.stop()


@pytest.fixture
def hook():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


def test_kill_9_while_20_tasks_run_then_restart_finishes_every_task_and_webhook(farm, hook, tmp_path):
    for name in farm.names:
        farm.set(name, delay=0.5)
    port = free_port()
    # timeout 5s: a delivery the kill interrupts mid-attempt is claimable again after 15 s (timeout + margin)
    cfg = config(farm, port, store=f"sqlite:///{tmp_path}/tasks.db", webhook=hook.url,
                 extra_tasks={"webhook": {"attempts": 50, "timeout": "5s"}})
    # webhooks of tasks that complete before the crash stay in the outbox until the receiver accepts
    hook.refuse, hook.refuse_event = 10**6, "task.complete"
    gw = Gateway(cfg, tmp_path, env={"PLANO_HOME": str(tmp_path)}).start()
    base = f"http://127.0.0.1:{port}"
    try:
        ids = create_many(base, N)
        wait_for(lambda: len([c for c in farm.calls if c.task in ids]), lambda n: n >= N, timeout=30)
        gw.stop(signal.SIGKILL)
        hook.refuse = 0
        gw = Gateway(cfg, tmp_path, env={"PLANO_HOME": str(tmp_path)}).start()
        done = all_terminal(base, ids)
        assert [t["status"] for t in done] == ["complete"] * N, [t.get("error") for t in done]
        for t in done:
            assert t["result"]["text"].startswith("summary did")
        got = wait_for(lambda: {d.body["task_id"] for d in hook.deliveries if d.event == "task.complete"},
                       lambda s: set(ids) <= s, timeout=60)
        assert set(ids) <= got
        for i in ids:  # one delivery id per event, however often it was attempted
            assert len({d.id for d in hook.for_task(i, "task.complete", every=True)}) == 1
            assert all(d.verified for d in hook.for_task(i, "task.complete"))
        no_step_ran_twice_at_once(farm, ids)
    finally:
        gw.stop()


DSN = os.environ.get("PLANO_TEST_POSTGRES_DSN")


@pytest.fixture
def pg_store():
    if not DSN:
        pytest.skip("PLANO_TEST_POSTGRES_DSN is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"plano_t_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in DSN else "?"
    yield f"{DSN}{sep}search_path={schema}"
    asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


def test_two_replicas_on_postgres_the_survivor_finishes_the_dead_ones_tasks(farm, hook, tmp_path, pg_store):
    for name in farm.names:
        farm.set(name, delay=0.4)
    ports = [free_port(), free_port()]
    replicas = []
    for k, port in enumerate(ports):
        cfg = config(farm, port, store=pg_store, webhook=hook.url, extra_tasks={"lease": "2s"})
        work = tmp_path / f"r{k}"
        work.mkdir()
        replicas.append(Gateway(cfg, work, env={"PLANO_HOME": str(work)}).start())
    a, b = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        ids = create_many(a, N)  # held and run by replica A
        wait_for(lambda: len([c for c in farm.calls if c.task in ids]), lambda n: n >= N // 2, timeout=30)
        replicas[0].stop(signal.SIGKILL)
        done = all_terminal(b, ids)
        assert [t["status"] for t in done] == ["complete"] * N, [t.get("error") for t in done]
        got = wait_for(lambda: {d.body["task_id"] for d in hook.deliveries if d.event == "task.complete"},
                       lambda s: set(ids) <= s, timeout=60)
        assert set(ids) <= got
        no_step_ran_twice_at_once(farm, ids)
    finally:
        for r in replicas:
            r.stop()
