"""The offline demo: ``python -m examples.run_demo --check`` from the repo root.

It starts the example agents, the local demo model and plano on fixed ports, asks
"What's the weather in Paris and find me flights from NYC to Paris" once and stops
everything again. The run happens once per module; the tests read its outcome.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_PORTS = (8001, 12000, 10500, 10502, 10504, 10510, 10520, 10530, 10540)
ANSWER_WAIT = 60.0  # start-up and the one question (normally a few seconds)
EXIT_WAIT = 15.0  # after the answer: SIGTERM to six local processes (normally well under a second)
BLOCKED_BITS = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def blocked_signals(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    except OSError:
        return None
    return None


@dataclass
class DemoRun:
    output: str = ""
    answer: str | None = None
    returncode: int | None = None
    exited_in_time: bool = False
    child_sigblk: dict[int, str] = field(default_factory=dict)  # pid -> command, for children with SIGTERM blocked
    children_seen: int = 0


@pytest.fixture(scope="module")
def demo() -> DemoRun:
    busy = [p for p in DEMO_PORTS if port_in_use(p)]
    if busy:
        pytest.skip(f"the demo needs fixed ports {DEMO_PORTS}; already in use on 127.0.0.1: {busy}")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("PLANO_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "examples.run_demo", "--check"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    answered = threading.Event()

    def read() -> None:
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace"))
            if lines[-1].startswith("A: "):
                answered.set()
        answered.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    run = DemoRun()
    seen: dict[int, tuple[str, int | None]] = {}
    try:
        deadline = time.monotonic() + ANSWER_WAIT
        while not answered.is_set() and time.monotonic() < deadline:
            # watch the services' signal masks while they run (Linux /proc only)
            if Path("/proc").is_dir():
                for child in children_of(proc.pid):
                    try:
                        cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    except OSError:
                        continue
                    mask = blocked_signals(child)
                    if mask is not None:
                        seen[child] = (cmd, mask)
            answered.wait(0.2)
        try:
            run.returncode = proc.wait(EXIT_WAIT)
            run.exited_in_time = True
        except subprocess.TimeoutExpired:
            pass
    finally:
        if proc.poll() is None or run.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the demo's own process group: it and its services
            except ProcessLookupError:
                pass
            proc.wait(10)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # services left behind by a clean exit, if any
            except ProcessLookupError:
                pass
        reader.join(5)
    run.output = "".join(lines)
    match = re.search(r"^A: (.*?)(?=^\S+ serving on|^\[\d{4}-|\Z)", run.output, re.DOTALL | re.MULTILINE)
    run.answer = match.group(1) if match else None
    run.children_seen = len(seen)
    run.child_sigblk = {pid: cmd for pid, (cmd, mask) in seen.items() if mask & BLOCKED_BITS}
    return run


def test_demo_answers_weather_and_flights(demo):
    assert demo.answer is not None, f"no answer in the demo output:\n{demo.output[-3000:]}"
    assert re.search(r"Paris[^\n]*-?\d+°C", demo.answer), demo.answer  # the weather agent's part
    assert re.search(r"\b(CDG|ORY)\b", demo.answer), demo.answer  # the flight agent's part
    assert re.search(r"\b(JFK|EWR|LGA)\b", demo.answer), demo.answer


def test_demo_check_exits_zero(demo):
    assert demo.exited_in_time, (
        f"run_demo --check answered but had not exited {EXIT_WAIT:g}s later (its services ignore SIGTERM, "
        f"see test_demo_services_can_be_stopped_with_sigterm):\n{demo.output[-2000:]}")
    assert demo.returncode == 0, demo.output[-3000:]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read signal masks")
def test_demo_services_can_be_stopped_with_sigterm(demo):
    """BUG in examples/run_demo.py: the services inherit a signal mask with SIGINT/SIGTERM blocked.

    ``signal.pthread_sigmask(SIG_BLOCK, {SIGINT, SIGTERM})`` runs before the services are
    spawned and a blocked mask survives fork+exec, so the SIGTERM sent on shutdown is never
    delivered: every service is SIGKILLed after 15 s instead (about 90 s for ``--check``,
    and plano never drains).
    """
    assert demo.children_seen >= 6, "did not see the demo's services"
    blocked = sorted(demo.child_sigblk.values())
    assert blocked == [], f"services started with SIGINT/SIGTERM blocked: {blocked}"
