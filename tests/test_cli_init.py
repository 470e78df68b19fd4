"""``plano init``: every template is written, validates and starts; --force; the wizard through a pty."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from gateway.ops.init import TEMPLATES
from tests.support.gateway import REPO, Gateway, free_port

IDS = [t.id for t in TEMPLATES]
PLANO_TEMPLATES = {"sub_agent_orchestration", "coding_agent_routing", "preference_aware_routing",
                   "filter_chain_guardrails", "conversational_state_v1_responses"}


def plano(*args, cwd=None, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_list_templates_names_plano_and_our_templates():
    r = plano("init", "--list-templates")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert PLANO_TEMPLATES <= listed
    assert {"offline_demo", "reliability_failover", "async_tasks"} <= listed
    assert listed == set(IDS)


def _served_ports(config: dict) -> list[int]:
    return [l["port"] for l in config["listeners"] if l.get("type") in ("model", "agent")]


@pytest.mark.parametrize("template", IDS)
def test_template_is_written_validates_and_starts(tmp_path, template):
    out = tmp_path / "plano.yaml"
    r = plano("init", "--template", template, "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "plano validate" in r.stdout
    text = out.read_text()
    assert text.startswith(f"# plano init --template {template}\n")

    # validates as written (unset key variables are warnings, not errors)
    v = plano("validate", str(out), env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""})
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith("OK")

    # and starts: the same config with its listeners moved to free ports
    config = yaml.safe_load(text)
    for listener in config["listeners"]:
        listener["port"] = free_port()
        listener["address"] = "127.0.0.1"
    (tmp_path / "run").mkdir()
    gw = Gateway(config, tmp_path / "run", env={"PLANO_ADMIN_PORT": "0", "PLANO_ACCESS_LOG": "off",
                                                "PLANO_HOME": str(tmp_path / "home")})
    with gw:
        for port in _served_ports(config):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                assert resp.status == 200
        model_listener = next((l for l in config["listeners"] if l["type"] == "model"), None)
        if model_listener is not None and config.get("model_providers"):
            import json

            with urllib.request.urlopen(f"http://127.0.0.1:{model_listener['port']}/v1/models", timeout=5) as resp:
                ids = {m["id"] for m in json.loads(resp.read())["data"]}
            first = config["model_providers"][0]["model"]
            assert first in ids or first.split("/", 1)[1] in ids, ids


def test_init_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "plano.yaml"
    out.write_text("mine: true\n")
    r = plano("init", "--template", "offline_demo", cwd=tmp_path)
    assert r.returncode == 1
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_text() == "mine: true\n"
    r = plano("init", "--template", "offline_demo", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith("# plano init --template offline_demo")


def test_init_default_output_and_clean(tmp_path):
    r = plano("init", "-t", "reliability_failover", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "plano.yaml").read_text().startswith("# plano init --template reliability_failover")
    r = plano("init", "--clean", "-o", "empty.yaml", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "empty.yaml").read_text() == "\n"


def test_init_unknown_template_and_no_tty(tmp_path):
    r = plano("init", "--template", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "unknown template 'nope'" in r.stderr and "offline_demo" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gateway", "init"], cwd=tmp_path, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2 and "--template" in r.stderr
    assert not (tmp_path / "plano.yaml").exists()


# --------------------------------------------------------------------------- the wizard, through a pty


class Pty:
    def __init__(self, args, cwd) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=cwd, stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, env={**os.environ, "TERM": "dumb"})
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown; output so far:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    data = b""
                if not data:
                    raise AssertionError(f"exited before showing {text!r}; output:\n{self.seen}")
                self.seen += data.decode("utf-8", "replace")
        found, self.seen = self.seen, self.seen[self.seen.index(text) + len(text):]
        return found

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self, timeout: float = 30.0) -> int:
        try:
            # drain what is left so the child never blocks on a full terminal buffer
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    try:
                        self.seen += os.read(self.master, 4096).decode("utf-8", "replace")
                    except OSError:
                        break
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            os.close(self.master)


def test_wizard_on_a_terminal_writes_the_chosen_template_with_its_ports(tmp_path):
    port = free_port()
    term = Pty(["init"], tmp_path)
    term.expect("Template (number or id) [1]:")
    term.send("coding_agent_routing")
    term.expect("Port for listener 'llm' [12000]:")
    term.send("not-a-port")
    term.expect("a port is a number")
    term.expect("Port for listener 'llm' [12000]:")
    term.send(str(port))
    term.expect("Write to [plano.yaml]:")
    term.send("mine.yaml")
    term.expect("wrote mine.yaml (template coding_agent_routing)")
    assert term.wait() == 0
    text = (tmp_path / "mine.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["listeners"][0]["port"] == port
    assert text.startswith("# plano init --template coding_agent_routing")  # comments kept
    assert plano("validate", str(tmp_path / "mine.yaml")).returncode == 0


def test_wizard_asks_before_overwriting_and_keeps_the_file_on_no(tmp_path):
    (tmp_path / "plano.yaml").write_text("mine: true\n")
    term = Pty(["init"], tmp_path)
    term.expect("Template (number or id) [1]:")
    term.send(str(IDS.index("reliability_failover") + 1))
    term.expect("Port for listener 'llm' [12000]:")
    term.send("")
    term.expect("Write to [plano.yaml]:")
    term.send("")
    term.expect("plano.yaml exists. Overwrite it? (y/N):")
    term.send("n")
    term.expect("nothing written")
    assert term.wait() == 1
    assert (tmp_path / "plano.yaml").read_text() == "mine: true\n"

    term = Pty(["init"], tmp_path)
    term.expect("Template (number or id) [1]:")
    term.send("offline_demo")
    for _ in range(2):  # the agent listener and the model listener
        term.expect("Port for listener")
        term.send("")
    term.expect("Write to [plano.yaml]:")
    term.send("")
    term.expect("Overwrite it? (y/N):")
    term.send("y")
    term.expect("wrote plano.yaml")
    assert term.wait() == 0
    assert (tmp_path / "plano.yaml").read_text().startswith("# plano init --template offline_demo")
