"""The web console on the admin port, driven through a real gateway and a real headless browser.

One gateway (agent listener with scripted agents and tasks, a model listener with a virtual key,
tracing into plano's own trace receiver, the access log in a file) gets real requests: model
calls, a routed agent turn with a known trace id, a refused request and a task whose prompt
carries HTML. Then:

- over plain HTTP: every console page answers 401 without the admin key (and with a wrong one,
  or a client key), 403 without an admin key configured is the admin API's rule too; with the
  key the pages hold the request ids, the trace, the routing decision and the task; user data is
  escaped; no secret is rendered; the security headers are there;
- in Debian's chromium (Playwright): the login form, the traffic, trace, routing, task and key
  pages show what the test created, the live refresh swaps in new data, HTML in a prompt stays
  text, logging out brings the 401 back. Screenshots go to ``$PLANO_TEST_ARTIFACTS/console``
  (default ``tests/artifacts/console``). Without /usr/bin/chromium the browser tests skip.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import REPO, Gateway, free_port
from tests.support.task_agents import AgentFarm
from tests.support.task_gateway import config as task_config, wait_for, wait_terminal

ADMIN_KEY = "adm-console-key-5b7e2c91"
TEAM_KEY = "sk-console-team-6d1f0a9b2c"
CHROMIUM = "/usr/bin/chromium"
PAGES = ("/console/", "/console/traces", "/console/routing", "/console/tasks", "/console/keys")
XSS = '<img src=x id="xss-probe" onerror="document.title=\'pwned\'"><script>window.pwned=1</script>'
TASK_PROMPT = "What is the weather in Paris and find flights from NYC to Paris, then summarise " + XSS


def artifacts() -> Path:
    base = Path(os.environ.get("PLANO_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    path = base / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def farm():
    f = AgentFarm("weather", "flights", "summary").start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def receiver():
    """plano's own trace receiver (what ``plano trace listen`` runs), in this process."""
    from gateway.telemetry.receiver import TraceStore, build_server

    store = TraceStore()
    server, port = build_server(store, "127.0.0.1", 0, workers=2)
    server.start()
    store.port = port
    yield store
    server.stop(grace=0.5).wait(2)


@pytest.fixture(scope="module")
def gw(farm, receiver, mock_llm, tmp_path_factory):
    work = tmp_path_factory.mktemp("console")
    port, model_port, admin_port = free_port(), free_port(), free_port()
    tracing = {"random_sampling": 100, "opentracing_grpc_endpoint": f"http://127.0.0.1:{receiver.port}"}
    cfg = task_config(farm, port, store=f"sqlite:///{work}/tasks.db", tracing=tracing)
    cfg["model_providers"] = [{"model": "openai/mock-model", "access_key": "sk-provider-console-0c0c",
                               "base_url": f"{mock_llm.url}/v1", "default": True}]
    cfg["listeners"][1] = {"type": "model", "name": "models", "port": model_port, "address": "127.0.0.1", "auth": {}}
    cfg["admin"] = {"address": "127.0.0.1", "port": admin_port}
    cfg["auth"] = {"keys_file": str(work / "keys.json"), "sync_interval": "100ms",
                   "keys": [{"id": "team-console", "key": TEAM_KEY, "budget": {"tokens": 100000, "period": "day"}}]}
    g = Gateway(cfg, work, env={"PLANO_ADMIN_KEY": ADMIN_KEY, "PLANO_ACCESS_LOG": str(work / "access.log"),
                                "PLANO_HOME": str(work), "OTEL_BSP_SCHEDULE_DELAY": "100"}).start()
    g.base = f"http://127.0.0.1:{port}"
    g.models = f"http://127.0.0.1:{model_port}"
    g.admin = f"http://127.0.0.1:{admin_port}"
    yield g
    g.stop()


@pytest.fixture(scope="module")
def made(gw, receiver):
    """The traffic the console must show: ids of the requests, the routed turn's trace and the task."""
    out = {"model_ids": [], "trace_id": secrets.token_hex(16), "agent_id": "console-agent-" + secrets.token_hex(4)}
    for i in range(3):
        rid = f"console-model-{i}-{secrets.token_hex(3)}"
        r = httpx.post(f"{gw.models}/v1/chat/completions", headers={"authorization": f"Bearer {TEAM_KEY}",
                                                                    "x-request-id": rid},
                       json={"model": "mock-model", "messages": [{"role": "user", "content": f"hello {i}"}]},
                       timeout=20)
        assert r.status_code == 200, r.text
        out["model_ids"].append(rid)
    out["refused_id"] = "console-refused-" + secrets.token_hex(3)
    r = httpx.post(f"{gw.models}/v1/chat/completions", headers={"authorization": f"Bearer {TEAM_KEY}",
                                                                "x-request-id": out["refused_id"]},
                   json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, timeout=20)
    assert 400 <= r.status_code < 500, r.text
    r = httpx.post(f"{gw.base}/v1/chat/completions",
                   headers={"x-request-id": out["agent_id"],
                            "traceparent": f"00-{out['trace_id']}-{secrets.token_hex(8)}-01"},
                   json={"model": "any", "messages": [{"role": "user",
                                                       "content": "What is the weather forecast in Paris tomorrow?"}]},
                   timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{gw.base}/v1/tasks", json={"prompt": TASK_PROMPT, "user_id": "u-console"}, timeout=20)
    assert r.status_code == 201, r.text
    out["task_id"] = r.json()["id"]
    out["task"] = wait_terminal(gw.base, out["task_id"], timeout=60)
    assert out["task"]["status"] == "complete", out["task"]
    # the routed turn's spans reach the receiver through the telemetry sidecar, in batches
    wait_for(lambda: receiver.query(out["trace_id"]),
             lambda found: bool(found) and any("routing.strategy" in s["attributes"] for s in found[0]["spans"])
             and any(s["service"].endswith("(agent)") for s in found[0]["spans"]), timeout=30)
    return out


def get(gw, path: str, key: str | None = ADMIN_KEY, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(gw.admin + path, headers=headers, timeout=30, **kw)


# --------------------------------------------------------------------------- over HTTP


def test_every_page_needs_the_admin_key(gw, made):
    for path in PAGES + (f"/console/traces/{made['trace_id']}", f"/console/tasks/{made['task_id']}"):
        for key in (None, "adm-wrong-key-00000000", TEAM_KEY):
            r = get(gw, path, key)
            assert r.status_code == 401, (path, key, r.status_code)
            assert 'name="key"' in r.text  # the login form, nothing of the page's data
            assert "<table" not in r.text and "weather in Paris" not in r.text and made["agent_id"] not in r.text
        assert get(gw, path).status_code == 200, path
    r = get(gw, "/console", key=None)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    assert get(gw, "/console/static/console.js", key=None).status_code == 200  # no data in the assets


def test_login_cookie_and_logout(gw, made):
    bad = httpx.post(gw.admin + "/console/login", data={"key": "nope"}, timeout=10)
    assert bad.status_code == 401 and "not the admin key" in bad.text
    foreign = httpx.post(gw.admin + "/console/login", data={"key": ADMIN_KEY},
                         headers={"origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    ok = httpx.post(gw.admin + "/console/login", data={"key": ADMIN_KEY, "next": "https://evil.example/x"},
                    timeout=10)
    assert ok.status_code == 303 and ok.headers["location"] == "/console/"  # no open redirect
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN_KEY not in cookie
    with httpx.Client(base_url=gw.admin, timeout=30) as browser:
        browser.cookies.set("plano_console", ok.cookies["plano_console"])
        assert browser.get("/console/tasks").status_code == 200
        assert browser.post("/console/logout").status_code == 303
        assert browser.get("/console/tasks").status_code == 401  # the token is dead, even if replayed
        browser.cookies.set("plano_console", ok.cookies["plano_console"])
        assert browser.get("/console/tasks").status_code == 401


def test_pages_show_the_requests_and_tasks_over_http(gw, made):
    traffic = get(gw, "/console/")
    for rid in made["model_ids"] + [made["agent_id"], made["refused_id"]]:
        assert rid in traffic.text
    errors = traffic.text.split("<h2>Recent errors</h2>", 1)[1]
    assert made["refused_id"] in errors and made["model_ids"][0] not in errors
    assert "openai/mock-model" in traffic.text
    headers = traffic.headers
    assert "script-src 'self'" in headers["content-security-policy"] and "frame-ancestors 'none'" in \
        headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"

    trace = get(gw, f"/console/traces/{made['trace_id']}")
    assert trace.status_code == 200 and made["trace_id"] in trace.text
    assert 'data-component="orchestrator"' in trace.text and 'data-component="agent"' in trace.text
    assert "routing.confidence" in trace.text

    tasks = get(gw, "/console/tasks")
    assert made["task_id"] in tasks.text
    detail = get(gw, f"/console/tasks/{made['task_id']}")
    assert detail.status_code == 200
    assert "<img src=x" not in detail.text and "<script>window.pwned" not in detail.text  # escaped
    assert "&lt;img src=x" in detail.text
    assert "weather" in detail.text and "flights" in detail.text  # its steps

    keys = get(gw, "/console/keys")
    assert "team-console" in keys.text and TEAM_KEY not in keys.text
    for path in PAGES:
        body = get(gw, path).text
        assert TEAM_KEY not in body and ADMIN_KEY not in body and "sk-provider-console-0c0c" not in body


def test_routing_page_shows_the_decision_with_its_confidence(gw, made):
    page = get(gw, "/console/routing").text
    decisions = page.split("Recent decisions", 1)[1]
    row = next(r for r in decisions.split("<tr>") if made["trace_id"][:8] in r)
    assert "weather" in row
    confidence = re.search(r'class="confidence">([0-9.]+)', row)
    assert confidence and 0.0 <= float(confidence.group(1)) <= 1.0


def test_unknown_trace_and_task_are_404(gw, made):
    assert get(gw, "/console/traces/" + "0" * 32).status_code == 404
    assert get(gw, "/console/tasks/task_doesnotexist").status_code == 404
    assert get(gw, "/console/nowhere").status_code == 404


# --------------------------------------------------------------------------- in a browser

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"{CHROMIUM} is absent (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as pw:
        # --no-sandbox: the tests run as root in CI, where chromium's sandbox refuses to start
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def shot(page, name: str) -> Path:
    path = artifacts() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


@needs_chromium
def test_browser_without_the_key_gets_401_and_the_login_form(gw, made, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    try:
        for path in PAGES + (f"/console/tasks/{made['task_id']}",):
            response = page.goto(gw.admin + path)
            assert response.status == 401, path
            assert page.locator("input[name=key]").is_visible()
            assert page.locator("table").count() == 0 and "weather in Paris" not in page.content()
        shot(page, "01-login-401")
        page.fill("input[name=key]", "adm-wrong-key-00000000")
        with page.expect_navigation() as nav:
            page.click("#login")
        assert nav.value.status == 401 and page.locator(".error").inner_text().startswith("That is not")
    finally:
        ctx.close()


@needs_chromium
def test_browser_console_shows_traffic_traces_routing_tasks_and_keys(gw, made, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    try:
        page.goto(gw.admin + "/console/tasks")
        page.fill("input[name=key]", ADMIN_KEY)
        with page.expect_navigation():
            page.click("#login")
        assert page.url.endswith("/console/tasks")  # back where the login started
        assert not [c for c in ctx.cookies() if c["name"] == "plano_console" and not c["httpOnly"]]

        # tasks: the task the test created, then its steps; the HTML in its prompt stays text
        row = page.locator("table.tasks tr", has_text=made["task_id"])
        assert row.count() == 1 and "complete" in row.inner_text()
        shot(page, "02-tasks")
        row.locator("a").first.click()
        page.wait_for_url(f"**/console/tasks/{made['task_id']}")
        assert page.locator("#task-id").inner_text() == made["task_id"]
        assert XSS in page.locator("pre.prompt").inner_text()
        assert page.locator("#xss-probe").count() == 0 and page.evaluate("window.pwned") is None
        assert page.title() != "pwned"
        agents = page.locator("table.steps td:nth-child(2)").all_inner_texts()
        assert "weather" in agents and "flights" in agents
        shot(page, "03-task-steps")

        # traffic: the requests the test sent, the refused one among the errors
        page.goto(gw.admin + "/console/")
        recent = page.locator("table.recent").inner_text()
        for rid in made["model_ids"] + [made["agent_id"]]:
            assert rid in recent
        assert made["refused_id"] in page.locator("table.errors").inner_text()
        listeners = page.locator("table.listeners").inner_text()
        assert "team" in listeners and "models" in listeners
        assert "openai/mock-model" in page.locator("table.models").inner_text()
        before = int(page.locator("#total-requests").inner_text().replace(",", ""))
        shot(page, "04-traffic")
        # live: a new request shows up without reloading the page
        rid = "console-live-" + secrets.token_hex(3)
        r = httpx.post(f"{gw.models}/v1/chat/completions", headers={"authorization": f"Bearer {TEAM_KEY}",
                                                                    "x-request-id": rid},
                       json={"model": "mock-model", "messages": [{"role": "user", "content": "live"}]}, timeout=20)
        assert r.status_code == 200
        page.locator("table.recent", has_text=rid).wait_for(timeout=30_000)
        assert int(page.locator("#total-requests").inner_text().replace(",", "")) > before

        # traces: the routed turn, then its span tree
        page.goto(gw.admin + "/console/traces")
        link = page.locator(f"a[href='/console/traces/{made['trace_id']}']")
        assert link.count() >= 1
        shot(page, "05-traces")
        link.first.click()
        page.wait_for_url(f"**/console/traces/{made['trace_id']}")
        assert page.locator("#trace-id").inner_text() == made["trace_id"]
        components = set(page.locator("li.span").evaluate_all("els => els.map(e => e.dataset.component)"))
        assert {"orchestrator", "agent"} <= components, components
        routing_span = page.locator("li.span[data-component=orchestrator]", has_text="routing.confidence").first
        assert "selection.agents" in routing_span.inner_text()
        shot(page, "06-trace-tree")

        # routing: the decision of that turn, with its confidence
        page.goto(gw.admin + "/console/routing")
        decision = page.locator("table.decisions tr", has_text=made["trace_id"][:8])
        assert decision.count() == 1 and "weather" in decision.locator(".chosen").inner_text()
        assert 0.0 <= float(decision.locator(".confidence").inner_text().split()[0]) <= 1.0
        shot(page, "07-routing")

        # keys: the virtual key and its usage, never the key itself
        page.goto(gw.admin + "/console/keys")
        key_row = page.locator("table.keys tr", has_text="team-console")
        assert key_row.count() == 1 and "active" in key_row.inner_text()
        assert "tok" in key_row.inner_text() and TEAM_KEY not in page.content()
        shot(page, "08-keys")

        # logging out brings the 401 back
        with page.expect_navigation():
            page.click("header form button")
        response = page.goto(gw.admin + "/console/")
        assert response.status == 401
    finally:
        ctx.close()


def test_console_costs_nothing_on_the_proxy_path():
    """The model and agent listeners never import the console: it is loaded by the admin server only."""
    for rel in ("gateway/server/app.py", "gateway/listeners", "gateway/telemetry/request.py"):
        target = REPO / rel
        files = [target] if target.is_file() else list(target.rglob("*.py"))
        assert files
        for file in files:
            assert "gateway.console" not in file.read_text(), file
    text = (REPO / "gateway" / "telemetry" / "admin.py").read_text()
    assert text.count("from gateway.console import serve_console") == 2


def test_console_is_off_without_an_admin_key(monkeypatch):
    """No admin key configured: the console answers 403 (as /admin/* does), never an open page."""
    from gateway.config import load_config_text
    from gateway.telemetry.admin import AdminServer

    monkeypatch.delenv("PLANO_ADMIN_KEY", raising=False)
    cfg = load_config_text(f"""
version: v0.4.0
listeners: [{{type: model, name: llm, port: {free_port()}, address: 127.0.0.1}}]
model_providers: [{{model: openai/gpt-4o, access_key: x, default: true}}]
""")
    server = AdminServer("127.0.0.1", free_port(), cfg)
    assert server.start()
    try:
        for path in PAGES:
            r = httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=10)
            assert r.status_code == 403 and "PLANO_ADMIN_KEY" in r.text
        r = httpx.post(f"http://127.0.0.1:{server.port}/console/login", data={"key": ""}, timeout=10)
        assert r.status_code == 403 and "set-cookie" not in r.headers
    finally:
        server.stop()


def test_session_tokens_are_signed_expiring_and_bound_to_the_admin_key():
    from gateway.console import session

    token = session.issue(ADMIN_KEY, now=1_000_000)
    assert session.valid(token, ADMIN_KEY, now=1_000_001)
    assert ADMIN_KEY not in token
    assert not session.valid(token, ADMIN_KEY, now=1_000_000 + session.SESSION_SECONDS + 1)  # expired
    assert not session.valid(token, "adm-rotated-key-000000", now=1_000_001)  # the admin key changed
    version, expires, nonce, mac = token.split(".")
    assert not session.valid(".".join((version, str(int(expires) + 3600), nonce, mac)), ADMIN_KEY, now=1_000_001)
    assert not session.valid(token[:-1] + ("0" if token[-1] != "0" else "1"), ADMIN_KEY, now=1_000_001)
    assert session.cookie_value(f"other=1; {session.COOKIE}={token}; x=y") == token
