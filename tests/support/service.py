"""A Python service (``python -m <module> --port N``) run as a real process on loopback for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.gateway import REPO, free_port


class ServiceProcess:
    """One service in its own process group, with its output in a log file and a /healthz wait."""

    def __init__(self, module: str, args: list[str], workdir: Path, *, label: str, port: int | None = None,
                 env: dict | None = None) -> None:
        self.module = module
        self.args = list(args)
        self.label = label
        self.port = port or free_port()
        self.log_path = workdir / f"{label.replace(' ', '-')}-{self.port}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"} if env is None else env
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self):
        """Start the process without waiting (start several, then :meth:`wait_healthy` each)."""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                                     cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def start(self, timeout: float = 20.0):
        return self.launch().wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} not healthy in {timeout}s:\n{self.log()}")
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
