"""The admin API on the admin port: admin key, key management, usage, masked config, OpenAPI, reload hook."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port

ADMIN_KEY = "adm-secret-key-6f2e91"
PROVIDER_KEY = "sk-provider-admin-test-77d1"
LISTENER_KEY = "sk-listener-admin-test-3c3c"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(mock_llm, tmp_path_factory):
    ports = {"llm": free_port(), "admin": free_port()}
    config = {
        "version": "v0.4.0",
        "model_providers": [{"model": "openai/mock-model", "access_key": PROVIDER_KEY,
                             "base_url": f"{mock_llm.url}/v1", "default": True}],
        "listeners": [{"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1",
                       "auth": {"api_keys": [LISTENER_KEY]}}],
        "admin": {"address": "127.0.0.1", "port": ports["admin"]},
        "auth": {"keys_file": str(tmp_path_factory.mktemp("store") / "keys.json"), "sync_interval": "100ms"},
    }
    gateway = Gateway(config, tmp_path_factory.mktemp("gw-admin"),
                      env={"PLANO_ADMIN_KEY": ADMIN_KEY, "PLANO_ADMIN_PORT": str(ports["admin"])})
    gateway.start()
    gateway.admin = f"http://127.0.0.1:{ports['admin']}"
    yield gateway
    gateway.stop()


def admin(gw, method, path, key=ADMIN_KEY, **kw):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, gw.admin + path, headers=headers, **kw)


def test_admin_needs_the_admin_key(gw):
    assert admin(gw, "GET", "/admin/keys", key=None).status_code == 401
    assert admin(gw, "GET", "/admin/keys", key="adm-wrong-key-000000").status_code == 401
    assert admin(gw, "GET", "/admin/keys", key=LISTENER_KEY).status_code == 401  # a client key is not an admin key
    r = admin(gw, "GET", "/admin/keys")
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert ADMIN_KEY not in r.text


def test_metrics_and_healthz_stay_open(gw):
    assert httpx.get(gw.admin + "/healthz").status_code == 200
    assert httpx.get(gw.admin + "/metrics").status_code == 200


def test_create_use_usage_and_revoke_a_key(gw, llm):
    r = admin(gw, "POST", "/admin/keys", json={"id": "team-x", "models": ["openai/mock-model"],
                                                 "budget": {"tokens": 1000, "period": "day"}})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert created["id"] == "team-x" and key.startswith("sk-plano-")
    listed = admin(gw, "GET", "/admin/keys").json()["data"]
    entry = next(k for k in listed if k["id"] == "team-x")
    assert entry["status"] == "active" and "key" not in entry
    assert key not in json.dumps(listed)
    c = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key=key, max_retries=0)
    deadline = time.monotonic() + 10
    while True:
        try:
            c.chat.completions.create(model="mock-model", messages=MESSAGES)
            break
        except openai.AuthenticationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert llm.last.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    usage = admin(gw, "GET", "/admin/keys/team-x/usage").json()
    assert sum(p["tokens"] for p in usage["periods"].values()) == 8  # the mock's usage
    assert admin(gw, "POST", "/admin/keys", json={"id": "team-x"}).status_code == 409
    r = admin(gw, "DELETE", "/admin/keys/team-x")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    time.sleep(1.0)  # revocation bound: 1 s
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="mock-model", messages=MESSAGES)
    assert admin(gw, "DELETE", "/admin/keys/nope").status_code == 404
    assert admin(gw, "GET", "/admin/keys/nope/usage").status_code == 404


def test_invalid_key_specs_are_400_without_echoing_secrets(gw):
    r = admin(gw, "POST", "/admin/keys", json={"id": "bad id with spaces", "key": "sk-short"})
    assert r.status_code == 400
    assert "sk-short" not in r.text
    assert admin(gw, "POST", "/admin/keys", content=b"{not json").status_code == 400
    assert admin(gw, "POST", "/admin/keys", json={"budget": {"period": "day"}}).status_code == 400


def test_config_view_masks_every_secret(gw):
    r = admin(gw, "GET", "/admin/config")
    assert r.status_code == 200
    text = r.text
    for secret in (PROVIDER_KEY, LISTENER_KEY, ADMIN_KEY):
        assert secret not in text
    cfg = r.json()
    assert cfg["model_providers"][0]["access_key"] == "***"
    assert cfg["listeners"][0]["auth"]["api_keys"] == ["***"]
    assert cfg["listeners"][0]["port"] == gw.ports[0]  # the rest is there


def test_openapi_describes_listeners_and_admin(gw):
    r = httpx.get(gw.admin + "/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models", "/healthz", "/admin/keys",
                 "/admin/config", "/admin/reload", "/metrics"):
        assert path in spec["paths"], path
    assert any(s["url"] == gw.url() for s in spec["servers"])


def test_unknown_admin_paths_and_methods(gw):
    assert admin(gw, "GET", "/admin/nothing").status_code == 404
    assert admin(gw, "PUT", "/admin/keys").status_code == 405
    assert httpx.post(gw.admin + "/metrics").status_code == 405


def test_admin_off_without_an_admin_key_and_reload_hook(monkeypatch):
    from gateway.config import load_config_text
    from gateway.telemetry import admin as admin_mod

    monkeypatch.delenv("PLANO_ADMIN_KEY", raising=False)
    cfg = load_config_text("version: v0.4.0\nlisteners: [{type: model, name: llm, port: 18001, address: 127.0.0.1}]\n"
                           "model_providers: [{model: openai/x, access_key: sk-x-00000000, default: true}]\n")
    server = admin_mod.AdminServer("127.0.0.1", free_port(), config=cfg)
    assert server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        r = httpx.get(base + "/admin/keys", headers={"authorization": "Bearer anything-at-all"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
        monkeypatch.setenv("PLANO_ADMIN_KEY", ADMIN_KEY)
        calls = []
        admin_mod.set_reload_hook(lambda: calls.append(1) or "reloading")
        r = httpx.post(base + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 202 and r.json()["status"] == "reloading" and calls == [1]
        admin_mod.set_reload_hook(lambda: (_ for _ in ()).throw(ValueError("plano.yaml:3: bad")))
        r = httpx.post(base + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 400 and "plano.yaml:3" in r.json()["error"]["message"]
    finally:
        admin_mod.set_reload_hook(None)
        server.stop()
