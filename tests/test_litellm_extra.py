"""The litellm extra: ``litellm/<provider>/<model>`` entries through litellm's transformations.

The end-to-end tests need the extra and run in a venv that has it (README › litellm)::

    python -m venv /tmp/ll-venv
    /tmp/ll-venv/bin/pip install -c constraints.txt -e '.[test]'
    /tmp/ll-venv/bin/pip install --no-deps --require-hashes -r constraints-litellm.txt
    /tmp/ll-venv/bin/python -m pytest tests/test_litellm_extra.py

Without it they skip, and what remains checks that a config naming a litellm model is refused
with the install command, and that the pinned constraints stay in step with constraints.txt.
Upstreams are mocks on loopback speaking Cohere v2's and Ollama's documented wire formats.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config_text

REPO = Path(__file__).resolve().parents[1]
HAS_LITELLM = importlib.util.find_spec("litellm") is not None
needs_litellm = pytest.mark.skipif(
    not HAS_LITELLM, reason="the litellm extra is not installed: pip install --no-deps --require-hashes "
    "-r constraints-litellm.txt in a separate venv (README › litellm)")

CONFIG = """
version: v0.4.0
listeners:
  - {type: model, name: llm, port: 18999, address: 127.0.0.1}
model_providers:
  - model: litellm/cohere/command-r-plus
    access_key: co-key
    default: true
"""


def _issues(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "plano.yaml")
    return str(info.value)


# ------------------------------------------------------------------ without the extra


def test_litellm_entry_without_the_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litellm" else real(name, *a))
    text = _issues(CONFIG)
    assert "model_providers[0].model" in text
    assert "litellm, which is not installed" in text
    assert "pip install --no-deps --require-hashes -r constraints-litellm.txt" in text
    assert "litellm" not in sys.modules or HAS_LITELLM  # validation never imports it


@pytest.mark.parametrize("model, needle", [
    ("litellm/command-r", "litellm/<litellm provider>/<model>"),
    ("litellm/cohere/*", "wildcards are not supported"),
])
def test_litellm_entry_names_one_model(model, needle):
    assert needle in _issues(CONFIG.replace("litellm/cohere/command-r-plus", model))


def test_default_config_never_imports_litellm(tmp_path):
    import subprocess

    code = ("import sys; from gateway.config import load_config_text; from gateway.llm.resolver import ModelResolver;"
            "cfg = load_config_text(open(sys.argv[1]).read(), 'p.yaml');"
            "ModelResolver(cfg.model_providers, None, default_timeout=None);"
            "print('litellm' in sys.modules)")
    path = tmp_path / "plano.yaml"
    path.write_text(CONFIG.replace("litellm/cohere/command-r-plus", "openai/gpt-4o"))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` of a constraints file (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--") else ""
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)(.*)", line)
        assert m, f"not an exact pin: {line!r}"
        out[m.group(1).lower().replace("_", "-")] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3)))
    return out


def test_litellm_constraints_pin_one_audited_version_with_hashes():
    pins = _pins(REPO / "constraints-litellm.txt")
    assert pins["litellm"] == ("1.91.5", ["db09c6ea0b7c7de034b6c8b628208b000b54e02ef557468f84c2e63fbd7c8560"])
    base = _pins(REPO / "constraints.txt")
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name} is pinned without --hash"
        if name in base and name != "openai":  # openai: litellm needs <3, plano's test clients pin 3.x
            assert version == base[name][0], f"{name}: constraints-litellm.txt {version} != {base[name][0]}"
    assert int(pins["openai"][0].split(".")[0]) < 3


def test_the_extra_is_optional():
    text = (REPO / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "litellm" not in deps
    assert re.search(r'^litellm = \[\s*"litellm==1\.91\.5",\s*\]', text, re.M)


# ------------------------------------------------------------------ with the extra, end to end


@pytest.fixture(scope="module")
def mocks():
    from tests.support.mock_litellm_providers import MockCohere, MockOllama

    co, ol = MockCohere().start(), MockOllama().start()
    yield co, ol
    co.stop()
    ol.stop()


@pytest.fixture(scope="module")
def gw(mocks, tmp_path_factory):
    from tests.support.gateway import Gateway, free_port

    co, ol = mocks
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "litellm/cohere/command-r-plus", "access_key": "co-key", "base_url": f"{co.url}/v2/chat",
             "default": True},
            {"model": "litellm/cohere/command-a", "access_key": "wrong", "base_url": f"{co.url}/v2/chat"},
            {"model": "litellm/ollama_chat/llama3.2", "base_url": ol.url},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("litellm-gw"), env={"PLANO_HOME": str(tmp_path_factory.mktemp("h"))})
    g.start(timeout=120)
    yield g
    g.stop()


@pytest.fixture
def up(mocks):
    for m in mocks:
        m.reset()
    return mocks


@pytest.fixture
def oc(gw):
    import openai

    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=30)


@needs_litellm
def test_chat_completion_through_litellm_to_cohere(oc, up):
    co, _ = up
    resp = oc.chat.completions.create(model="litellm/cohere/command-r-plus", max_tokens=50, temperature=0.3,
                                      messages=[{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Bonjour"}])
    assert resp.choices[0].message.content == "Bonjour"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 7)
    seen = co.last
    assert seen.path == "/v2/chat"
    assert seen.headers["authorization"] == "Bearer co-key"  # the entry's key, never the client's
    assert "sk-client" not in str(seen.headers)
    assert seen.body["model"] == "command-r-plus"
    assert seen.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert seen.body["max_tokens"] == 50 and seen.body["temperature"] == 0.3
    assert "stream" not in seen.body


@needs_litellm
def test_tool_calls_come_back_in_openai_shape(oc, up):
    from tests.support.mock_openai_wire import Turn

    co, _ = up
    co.enqueue(Turn(tool_calls=[("get_weather", {"city": "Paris"})]))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    resp = oc.chat.completions.create(model="litellm/cohere/command-r-plus", tools=tools,
                                      messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city": "Paris"}'
    assert co.last.body["tools"][0]["function"]["name"] == "get_weather"


@needs_litellm
def test_stream_through_litellm_chunk_parser(oc, up):
    co, _ = up
    stream = oc.chat.completions.create(model="litellm/cohere/command-r-plus", stream=True,
                                        stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "streaming works"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streaming works"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert co.last.body["stream"] is True
    assert co.last.headers["accept"] == "text/event-stream"


@needs_litellm
def test_provider_error_reaches_the_client_in_openai_envelope(oc, up):
    import openai

    with pytest.raises(openai.AuthenticationError) as info:
        oc.chat.completions.create(model="litellm/cohere/command-a", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    assert info.value.body["message"] == "invalid api token"
    assert "wrong" not in str(info.value.body)  # the key never shows in the error


@needs_litellm
def test_anthropic_client_through_the_chat_bridge_to_litellm(gw, up):
    import anthropic

    ac = anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0, timeout=30)
    msg = ac.messages.create(model="litellm/cohere/command-r-plus", max_tokens=64,
                             messages=[{"role": "user", "content": "hola"}])
    assert msg.content[0].text == "hola"
    assert msg.stop_reason == "end_turn"


@needs_litellm
def test_ollama_native_api_and_stream_refused_clearly(oc, up):
    import openai

    _, ol = up
    resp = oc.chat.completions.create(model="litellm/ollama_chat/llama3.2",
                                      messages=[{"role": "user", "content": "native ollama"}])
    assert resp.choices[0].message.content == "native ollama"
    assert ol.last.path == "/api/chat"
    assert ol.last.body["model"] == "llama3.2"
    with pytest.raises(openai.BadRequestError) as info:
        list(oc.chat.completions.create(model="litellm/ollama_chat/llama3.2", stream=True,
                                        messages=[{"role": "user", "content": "x"}]))
    assert "Streaming is not available" in str(info.value)


@needs_litellm
def test_unknown_litellm_provider_is_a_config_error():
    assert "litellm does not know the provider" in _issues(CONFIG.replace("cohere/command-r-plus", "nosuch/model"))


@needs_litellm
def test_translation_never_loads_litellm_proxy_server():
    from gateway.wire.translate.litellm_extra import LitellmAdapter, translators

    adapter = LitellmAdapter("cohere/command-r-plus", None)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body = translators(adapter)["openai_chat"].request(request)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "litellm.proxy.proxy_server" not in sys.modules
