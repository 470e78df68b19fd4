"""Several worker processes (``plano up --workers 2``) sharing one SQLite task store.

Creates land on either worker (the kernel spreads connections); each worker runs what it holds
and claims orphaned/queued tasks from the shared store. Every task completes, every step is
called exactly once (no worker runs another's step, concurrently or later), and every task gets
one signed ``task.complete`` webhook.
"""

from __future__ import annotations

import re
from collections import Counter

import httpx

from tests.support.gateway import Gateway, free_port
from tests.support.task_agents import AgentFarm, WebhookReceiver
from tests.support.task_gateway import SECRET, config, task, terminal, wait_for

PROMPT = "What's the weather in city {i} and find flights to city {i}, then write a travel summary of both"
N = 40


def test_two_workers_on_one_sqlite_store_run_every_task_once_and_complete_all(tmp_path):
    farm = AgentFarm("weather", "flights", "summary").start()
    hook = WebhookReceiver(SECRET).start()
    for name in farm.names:
        farm.set(name, delay=0.05)
    port = free_port()
    # a small max_running: part of the tasks wait in the store and are claimed by whichever worker
    # has room, so both workers' pollers contend for the same rows
    cfg = config(farm, port, store=f"sqlite:///{tmp_path}/tasks.db", webhook=hook.url,
                 extra_tasks={"max_running": 5, "webhook": {"progress": False}})
    gw = Gateway(cfg, tmp_path, env={"PLANO_HOME": str(tmp_path), "LOG_LEVEL": "info"}, workers=2).start()
    base = f"http://127.0.0.1:{port}"
    try:
        ids = []
        # a generous read timeout: this checks that every create is answered, not how fast (a busy
        # CI box once took over 10 s on one create); a hang still fails, with both workers' log
        with httpx.Client(timeout=httpx.Timeout(60, connect=10),
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for i in range(N):  # a new connection each: spread over the two workers
                try:
                    r = client.post(f"{base}/v1/tasks", json={"prompt": PROMPT.format(i=i)})
                except httpx.TimeoutException as exc:
                    raise AssertionError(f"create {i} of {N} got no answer ({exc!r}); gateway log:\n"
                                         f"{gw.log()[-8000:]}") from exc
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
        done = wait_for(lambda: [task(base, i) for i in ids], lambda ts: all(terminal(t) for t in ts), 90, every=0.3)
        assert [t["status"] for t in done] == ["complete"] * N, [t.get("error") for t in done]
        calls = Counter((c.agent, c.task) for c in farm.calls if c.task in ids)
        assert set(calls.values()) == {1} and len(calls) == 3 * N, "every step exactly once"
        got = wait_for(lambda: [d for d in hook.deliveries if d.event == "task.complete"],
                       lambda ds: {d.body["task_id"] for d in ds} >= set(ids), timeout=30)
        assert all(d.verified for d in got)
        assert sorted(Counter(d.body["task_id"] for d in got if d.body["task_id"] in ids).values()) == [1] * N
        owners = set(re.findall(r"tasks: store .*, owner (w_[0-9a-f]+)", gw.log()))
        assert len(owners) == 2, f"both workers run a task runtime: {owners}"
    finally:
        gw.stop()
        farm.stop()
        hook.stop()
