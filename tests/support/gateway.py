"""Start the real gateway process (``python -m gateway up FILE --foreground``) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never one this process handed out before: the kernel
    may give a just-closed ephemeral port again, and a config that got the same port for two
    listeners fails to load (CI once saw that)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Gateway:
    def __init__(self, config: dict | str, workdir: Path, *, env: dict | None = None, workers: int = 1,
                 extra_args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "plano.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        self.config_path.write_text(text)
        self.config = yaml.safe_load(text)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.workers = workers
        self.extra_args = extra_args or []
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    @property
    def ports(self) -> list[int]:
        return [l["port"] for l in self.config.get("listeners", []) if l.get("type") in ("model", "agent")]

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.ports[0]}"

    def start(self, timeout: float = 30.0) -> "Gateway":
        cmd = [sys.executable, "-m", "gateway", "up", str(self.config_path), "--foreground",
               "--workers", str(self.workers), *self.extra_args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway not healthy in {timeout}s:\n{self.log()}")
            pending = {p for p in pending if not healthy(p)}
            time.sleep(0.03)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False
