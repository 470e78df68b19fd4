"""A plano config with a team of scripted agents and ``tasks:`` set up for tests, and polling helpers."""

from __future__ import annotations

import time

import httpx

from tests.support.gateway import free_port

AGENTS = {
    "weather": "Weather: current conditions and forecasts for cities.",
    "flights": "Flight search: flights, airlines and fares between cities.",
    "summary": "Writes summaries and travel reports from the information it is given.",
    "backup_weather": "Weather backup service: weather conditions and forecasts for cities.",
    "auth": "Authentication: refreshes expired tokens and re-authenticates sessions.",
    "chat": "Team chat: posts messages to chat channels.",
}
SECRET = "whsec-test-0123456789"


def config(farm, port: int, *, store: str | None = None, agents=None, webhook: str | None = None,
           extra_tasks: dict | None = None, tracing: dict | None = None) -> dict:
    names = list(agents or farm.names)
    tasks = {"lease": "1s", "poll_interval": "100ms", "retry": {"attempts": 2, "backoff": "50ms"},
             "webhook": {"secret": SECRET, "schedule": ["300ms", "300ms", "300ms", "300ms"],
                         "allowed_urls": ["http://127.0.0.1:*"]}}
    if store:
        tasks["store"] = store
    if webhook:
        tasks["webhook"]["url"] = webhook
    for key, value in (extra_tasks or {}).items():
        if isinstance(value, dict) and isinstance(tasks.get(key), dict):
            tasks[key] = {**tasks[key], **value}
        else:
            tasks[key] = value
    cfg = {
        "version": "v0.4.0",
        "agents": [{"id": n, "url": farm.url(n)} for n in names],
        # an explicit model listener on a free port: no implicit one on 0.0.0.0:12000 (replicas, parallel runs)
        "model_providers": [{"model": "openai/unused", "access_key": "sk-unused",
                             "base_url": f"{farm.url(names[0])}/v1", "default": True}],
        "listeners": [{"type": "agent", "name": "team", "port": port, "address": "127.0.0.1",
                       "router": "embedded",
                       "agents": [{"id": n, "description": AGENTS.get(n, n)} for n in names]},
                      {"type": "model", "name": "models", "port": free_port(), "address": "127.0.0.1"}],
        "tasks": tasks,
    }
    if tracing:
        cfg["tracing"] = tracing
    return cfg


def wait_for(fetch, predicate, timeout: float = 20.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    value = fetch()
    while not predicate(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(every)
        value = fetch()
    return value


def task(base: str, task_id: str) -> dict:
    return httpx.get(f"{base}/v1/tasks/{task_id}", timeout=10).json()


def terminal(t: dict) -> bool:
    return t.get("status") in ("complete", "failed", "cancelled")


def wait_terminal(base: str, task_id: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: task(base, task_id), terminal, timeout)
