"""Run one of the demo agents (``python -m examples.agents.<module>``) as a real process on a chosen port.

Used by end-to-end tracing tests: with ``PLANO_AGENT_USE_LLM=1`` and ``PLANO_LLM_URL``
pointing at plano's model listener, the agent calls plano back and forwards the
``traceparent`` / ``x-request-id`` it received, exactly as a user's own agent would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.gateway import REPO, free_port


class ExampleAgentProcess:
    """``python -m examples.agents.<module> --port N`` in its own process group."""

    def __init__(self, module: str, workdir: Path, *, port: int | None = None, env: dict | None = None) -> None:
        self.module = module
        self.port = port or free_port()
        self.log_path = workdir / f"agent-{module}-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PLANO_", "OTEL_"))}
        self.env = {**base, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> ExampleAgentProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"examples.agents.{self.module}", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> ExampleAgentProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.module} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"agent {self.module} not healthy in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
