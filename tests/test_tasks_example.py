"""examples/task_delegating_agent.py: delegates via /v1/tasks, resumes on the signed webhook; two agents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.gateway import Gateway, free_port
from tests.support.task_agents import AgentFarm
from tests.support.task_gateway import SECRET, config, wait_for

REPO = Path(__file__).resolve().parents[1]


def test_the_example_agent_delegates_and_resumes_on_the_webhook(tmp_path):
    farm = AgentFarm("weather", "flights").start()
    agent_port, port = free_port(), free_port()
    farm.set("weather", text="sunny in Paris")
    farm.set("flights", text="AF011 NYC-Paris")
    gw = Gateway(config(farm, port, store=f"sqlite:///{tmp_path}/t.db",
                        webhook=f"http://127.0.0.1:{agent_port}/hooks/plano"), tmp_path,
                 env={"PLANO_HOME": str(tmp_path)}).start()
    agent = subprocess.Popen([sys.executable, str(REPO / "examples" / "task_delegating_agent.py"), "--plano",
                              f"http://127.0.0.1:{port}", "--port", str(agent_port), "--secret", SECRET])
    try:
        wait_for(lambda: _up(agent_port), bool, timeout=20)
        r = httpx.post(f"http://127.0.0.1:{agent_port}/ask", json={
            "session": "s1", "question": "What's the weather in Paris and find flights from NYC to Paris"})
        assert r.status_code == 202 and r.json()["status"] == "delegated_to_plano"
        state = wait_for(lambda: httpx.get(f"http://127.0.0.1:{agent_port}/sessions/s1").json(),
                         lambda s: s["status"] == "resumed", timeout=30)
        assert [s["tool"] for s in state["result"]["steps"]] == ["weather", "flights"]
        assert "sunny in Paris" in state["result"]["text"] and "AF011" in state["result"]["text"]
    finally:
        agent.terminate()
        agent.wait(10)
        gw.stop()
        farm.stop()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/sessions/x", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
