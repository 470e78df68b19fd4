#!/usr/bin/env python3
"""plano benchmark harness: one command, every target, one table.

Starts ONE mock upstream (../shared/bench/mock_upstream.py) and measures, one target after the
other and all against that same mock:

  direct     the mock itself (the client's and the mock's own cost: the baseline)
  mini       ../shared/bench/mini_proxy.py, a raw-ASGI forwarder (the Python floor)
  starlette  bench/starlette_floor.py, the same forwarder as a Starlette app (framework cost)
  litellm    LiteLLM's proxy from bench/.venv-litellm, one worker, offline
  plano      `plano up CONFIG --foreground` from the repo .venv

For each: non-streaming throughput/latency with wrk (shared post.lua) at c=1 and c=32, and
streaming throughput/latency/TTFT with bench/loadgen.py (aiohttp + uvloop) at c=1 and c=32.
Warm-up traffic is excluded; with --repeat N every figure is the median of N runs. For plano it
also measures idle RSS of the process tree, `plano up` (daemon) time-to-healthy and
`plano up --foreground` time to /healthz 200.

This file uses only the standard library, so any python3 can run it; the processes it starts
use the repo venv (.venv/bin/python, .venv/bin/uvicorn, .venv/bin/plano) and LiteLLM uses its
own venv (bench/.venv-litellm, made by bench/setup_litellm.sh). Loopback only.

  python bench/run.py [--duration 10] [--only plano,mini] [--skip-litellm]
                      [--plano-workers N] [--repeat 1] [--json-out FILE]

Exit status: 0 when the harness ran (a target that fails to start or errors is reported in its
row, not as a failure); 1 when the harness itself could not run (no wrk, mock does not start,
the load client crashed, ...); 130 on Ctrl-C, 128+N on signal N. Every process it started is
stopped on every exit path.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = REPO / ".venv" / "bin"
LITELLM_VENV_BIN = BENCH / ".venv-litellm" / "bin"
ALL_TARGETS = ["direct", "mini", "starlette", "litellm", "plano"]
LOOPBACK = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
# LiteLLM refuses to start without a master key; every target gets the same Authorization header
# so the requests on the wire are identical (the others ignore it).
BENCH_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
AUTH_HEADER = f"Authorization: Bearer {BENCH_KEY}"

TARGETS = {  # what the table promises next to plano's figures
    "ns_c32_vs_mini": 0.7,
    "ns_c32_vs_litellm": 20.0,
    "added_p50_c1_ms": 1.5,
    "ttft_added_ms": 2.0,
    "idle_rss_mb": 150.0,
    "up_s": 2.0,
}


class HarnessError(Exception):
    """The harness itself cannot go on (as opposed to one target misbehaving)."""


class TargetError(Exception):
    """One target failed; its row says why and the run goes on."""


# --------------------------------------------------------------------------- processes


class Procs:
    """Every process the harness starts, each in its own process group, always stopped."""

    def __init__(self) -> None:
        self.live: list[tuple[str, subprocess.Popen]] = []
        self.daemon_pidfiles: list[Path] = []

    def start(self, name: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None,
              log: Path | None = None, stdout=None) -> subprocess.Popen:
        out = open(log, "ab") if log else (stdout if stdout is not None else subprocess.DEVNULL)  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [str(c) for c in cmd], env=env, cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT if log else None, start_new_session=True,
            )
        finally:
            if log:
                out.close()
        self.live.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while workers of its group linger: always sweep the group
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.live = [(n, p) for n, p in self.live if p is not proc]

    def stop_all(self) -> None:
        for _name, proc in reversed(list(self.live)):
            self.stop(proc, grace=5.0)
        for pidfile in self.daemon_pidfiles:
            _kill_daemon_from_pidfile(pidfile)
        self.daemon_pidfiles.clear()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_daemon_from_pidfile(pidfile: Path) -> None:
    """Last resort for the detached `plano up` daemon (its own session, pid in PLANO_HOME)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def run_client(procs: Procs, name: str, cmd: list, timeout: float, env: dict | None = None,
               cwd: Path | None = None) -> tuple[int, str, str]:
    """Run a command (load generator, `plano up`/`down`) to completion, bounded; (rc, stdout, stderr)."""
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=env,
                            cwd=str(cwd) if cwd else None)
    procs.live.append((name, proc))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.stop(proc, grace=2)
        raise HarnessError(f"{name} did not finish within {timeout:.0f}s: {' '.join(map(str, cmd))}")
    procs.live = [(n, p) for n, p in procs.live if p is not proc]
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- HTTP probes


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def chat_probe(url: str, model: str, stream: bool) -> tuple[int, dict, bytes]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()
    return http("POST", url, body, {"content-type": "application/json", "authorization": f"Bearer {BENCH_KEY}"},
                timeout=30)


def wait_for(check, timeout: float, proc: subprocess.Popen | None = None, interval: float = 0.01) -> float:
    """Poll ``check()`` until it is true; return the seconds it took. Bounded by ``timeout``."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        try:
            if check():
                return time.perf_counter() - t0
        except (OSError, ValueError):
            pass
        if proc is not None and proc.poll() is not None:
            raise TargetError(f"process exited with code {proc.returncode} before it was ready")
        if time.perf_counter() > deadline:
            raise TargetError(f"not ready within {timeout:.0f}s")
        time.sleep(interval)


def http_ok(url: str, method: str = "GET") -> bool:
    try:
        return http(method, url, timeout=1.0)[0] == 200
    except (OSError, ValueError):
        return False


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


# --------------------------------------------------------------------------- memory


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_memory_mb(pid: int) -> dict:
    """Sum of VmRSS (and of PSS, which does not double-count pages shared after fork) in MiB."""
    rss_kb = pss_kb = 0
    pids = process_tree(pid)
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
        except OSError:
            continue
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss_kb += int(line.split()[1])
        except OSError:
            pass
    return {"rss_mb": round(rss_kb / 1024, 1), "pss_mb": round(pss_kb / 1024, 1), "processes": len(pids)}


# --------------------------------------------------------------------------- wrk


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk time {text!r}")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not rps or not total:
        raise ValueError("wrk output has no Requests/sec line")
    pct = {m.group(1): _wrk_ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE)}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (sum(int(x) for x in sock.groups()) if sock else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "errors": errors,
        "latency": {"p50_ms": pct.get("50"), "p75_ms": pct.get("75"), "p90_ms": pct.get("90"),
                    "p99_ms": pct.get("99")},
    }


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args, procs: Procs, tmp: Path) -> None:
        self.a = args
        self.procs = procs
        self.tmp = tmp
        self.shared = Path(args.shared_dir).resolve()
        self.py = VENV_BIN / "python"
        self.uvicorn = VENV_BIN / "uvicorn"
        self.mock_port = 0
        self.failed = False  # some target failed: keep the logs

    # ---- checks and the shared mock

    def preflight(self) -> None:
        for path, what in [(self.shared / "mock_upstream.py", "mock upstream"),
                           (self.shared / "mini_proxy.py", "mini proxy"),
                           (self.shared / "post.lua", "wrk script"),
                           (self.py, "repo venv python"), (self.uvicorn, "repo venv uvicorn")]:
            if not path.exists():
                raise HarnessError(f"{what} not found at {path}")
        if not shutil.which("wrk"):
            raise HarnessError("wrk not found: apt-get install -y wrk")
        probe = subprocess.run([str(self.py), "-c", "import uvicorn, uvloop, httptools, aiohttp, orjson, starlette"],
                               check=False, capture_output=True, text=True)
        if probe.returncode != 0:
            raise HarnessError("repo venv lacks bench packages: .venv/bin/pip install uvicorn uvloop httptools "
                               f"aiohttp orjson starlette\n{probe.stderr.strip()}")

    def uvicorn_cmd(self, app: str, app_dir: Path, port: int) -> list:
        # access logs off for every uvicorn target (plano runs with access_log=False as well)
        return [self.uvicorn, app, "--app-dir", app_dir, "--host", LOOPBACK, "--port", port,
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]

    def start_mock(self) -> None:
        self.mock_port = free_port()
        env = dict(os.environ, MOCK_DELAY_MS="0")
        proc = self.procs.start("mock", self.uvicorn_cmd("mock_upstream:app", self.shared, self.mock_port),
                                env=env, cwd=self.tmp, log=self.tmp / "mock.log")
        try:
            wait_for(lambda: http_ok(f"http://{LOOPBACK}:{self.mock_port}/v1/models"), 30, proc)
        except TargetError as exc:
            raise HarnessError(f"mock upstream did not start: {exc}; log {self.tmp / 'mock.log'}") from None

    @property
    def mock_chat_url(self) -> str:
        return f"http://{LOOPBACK}:{self.mock_port}{CHAT_PATH}"

    # ---- target start-up

    def start_target(self, name: str):
        """Start ``name``; return (chat_url, main_proc or None, info dict)."""
        if name == "direct":
            return self.mock_chat_url, None, {}
        port = free_port()
        url = f"http://{LOOPBACK}:{port}{CHAT_PATH}"
        log = self.tmp / f"{name}.log"
        if name in ("mini", "starlette"):
            app, app_dir = ("mini_proxy:app", self.shared) if name == "mini" else ("starlette_floor:app", BENCH)
            env = dict(os.environ, UPSTREAM=self.mock_chat_url, CLIENT="aiohttp")
            proc = self.procs.start(name, self.uvicorn_cmd(app, app_dir, port), env=env, cwd=self.tmp, log=log)
            wait_for(lambda: chat_probe(url, "mock-model", False)[0] == 200, 30, proc, 0.05)
            return url, proc, {}
        if name == "litellm":
            return self.start_litellm(port, url, log)
        if name == "plano":
            return self.start_plano(port, url, log)
        raise HarnessError(f"unknown target {name}")

    def litellm_env(self) -> dict:
        home = self.tmp / "litellm-home"
        home.mkdir(exist_ok=True)
        # A clean environment: no DATABASE_URL/REDIS_* or provider keys leak in from the shell.
        return {
            "PATH": f"{LITELLM_VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else it downloads the cost map at import
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",  # do not load a .env file
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
            "PYTHONUNBUFFERED": "1",
        }

    def start_litellm(self, port: int, url: str, log: Path):
        exe = LITELLM_VENV_BIN / "litellm"
        if not exe.exists():
            raise TargetError(f"{exe} not found: run bench/setup_litellm.sh")
        cfg = self.tmp / "litellm.yaml"
        cfg.write_text(
            "model_list:\n"
            "  - model_name: mock-model\n"
            "    litellm_params:\n"
            "      model: openai/mock-model\n"
            f"      api_base: http://{LOOPBACK}:{self.mock_port}/v1\n"
            "      api_key: sk-bench\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "  set_verbose: false\n"
            "general_settings:\n"
            f"  master_key: {BENCH_KEY}\n"
        )
        proc = self.procs.start("litellm", [exe, "--config", cfg, "--host", LOOPBACK, "--port", port,
                                            "--num_workers", "1"],
                                env=self.litellm_env(), cwd=self.tmp, log=log)
        took = wait_for(lambda: http_ok(f"http://{LOOPBACK}:{port}/health/liveliness"), 180, proc, 0.1)
        wait_for(lambda: chat_probe(url, "mock-model", False)[0] == 200, 30, proc, 0.1)
        version = ""
        pip = LITELLM_VENV_BIN / "pip"
        if pip.exists():
            show = subprocess.run([str(pip), "show", "litellm"], check=False, capture_output=True, text=True)
            m = re.search(r"^Version:\s*(\S+)", show.stdout, re.MULTILINE)
            version = m.group(1) if m else ""
        return url, proc, {"version": version, "start_s": round(took, 2)}

    def plano_cmd(self) -> list:
        """The console script once `pip install -e .` has run; until then `python -m gateway` from
        the source tree (same code, same venv; PYTHONPATH is set in plano_env)."""
        exe = VENV_BIN / "plano"
        if exe.exists():
            return [exe]
        if (REPO / "gateway" / "__main__.py").exists():
            return [self.py, "-m", "gateway"]
        raise TargetError(f"{exe} not found: run .venv/bin/pip install -e . in the repo")

    def plano_config(self, port: int) -> Path:
        cfg = self.tmp / f"plano-{port}.yaml"
        cfg.write_text(
            "version: v0.4.0\n"
            "listeners:\n"
            "  - type: model\n"
            "    name: llm\n"
            f"    address: {LOOPBACK}\n"
            f"    port: {port}\n"
            "model_providers:\n"
            "  - model: openai/mock-model\n"
            "    access_key: sk-bench\n"
            f"    base_url: http://{LOOPBACK}:{self.mock_port}/v1\n"
            "    default: true\n"
        )
        return cfg

    def plano_env(self) -> dict:
        home = self.tmp / "plano-home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, PLANO_HOME=str(home))
        if not (VENV_BIN / "plano").exists():
            env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def plano_fg_cmd(self, cfg: Path) -> list:
        cmd = [*self.plano_cmd(), "up", cfg, "--foreground"]
        if self.a.plano_workers:
            cmd += ["--workers", str(self.a.plano_workers)]
        return cmd

    def start_plano(self, port: int, url: str, log: Path):
        cfg = self.plano_config(port)
        t0 = time.perf_counter()
        proc = self.procs.start("plano", self.plano_fg_cmd(cfg), env=self.plano_env(), cwd=self.tmp, log=log)
        wait_for(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), 60, proc)
        healthy_s = time.perf_counter() - t0
        model = None
        for candidate in ("mock-model", "openai/mock-model"):
            status, _h, body = chat_probe(url, candidate, False)
            if status == 200:
                model = candidate
                break
        if model is None:
            raise TargetError(f"chat request answered {status}: {body[:200]!r}")
        return url, proc, {"model": model, "fg_healthy_s": round(healthy_s, 3),
                           "invoked_as": " ".join(str(c) for c in self.plano_cmd())}

    # ---- plano's own start-up / memory figures

    def plano_startup(self) -> dict:
        plano = self.plano_cmd()
        out: dict = {"foreground_s": [], "idle": [], "daemon_up_s": [], "daemon_down_s": []}
        env = self.plano_env()
        for _ in range(self.a.startup_repeats):
            port = free_port()
            cfg = self.plano_config(port)
            t0 = time.perf_counter()
            proc = self.procs.start("plano-fg", self.plano_fg_cmd(cfg), env=env, cwd=self.tmp,
                                    log=self.tmp / "plano-startup.log")
            try:
                wait_for(lambda p=port: http_ok(f"http://{LOOPBACK}:{p}/healthz"), 60, proc)
                out["foreground_s"].append(round(time.perf_counter() - t0, 3))
                time.sleep(self.a.idle_settle)  # let start-up garbage settle, no traffic yet
                out["idle"].append(tree_memory_mb(proc.pid))
            finally:
                self.procs.stop(proc)

        pidfile = Path(env["PLANO_HOME"]) / "run" / "plano.pid"
        self.procs.daemon_pidfiles.append(pidfile)
        for _ in range(self.a.startup_repeats):
            port = free_port()
            cfg = self.plano_config(port)
            t0 = time.perf_counter()
            rc, sout, serr = run_client(self.procs, "plano up", [*plano, "up", cfg], timeout=90,
                                         env=env, cwd=self.tmp)
            if rc != 0:
                raise TargetError(f"`plano up FILE` exited {rc}: {(serr or sout).strip()[-300:]}")
            # healthy = the command has returned AND /healthz answers 200 (normally already true)
            if not http_ok(f"http://{LOOPBACK}:{port}/healthz"):
                wait_for(lambda p=port: http_ok(f"http://{LOOPBACK}:{p}/healthz"), 30)
            out["daemon_up_s"].append(round(time.perf_counter() - t0, 3))
            t1 = time.perf_counter()
            rc, sout, serr = run_client(self.procs, "plano down", [*plano, "down"], timeout=90,
                                         env=env, cwd=self.tmp)
            out["daemon_down_s"].append(round(time.perf_counter() - t1, 3))
            if rc != 0:
                raise TargetError(f"`plano down` exited {rc}: {(serr or sout).strip()[-300:]}")
            try:
                wait_for(lambda p=port: not port_open(p), 10)
            except TargetError:
                raise TargetError("port still open after `plano down`") from None
        out["foreground_median_s"] = statistics.median(out["foreground_s"])
        out["daemon_up_median_s"] = statistics.median(out["daemon_up_s"])
        out["idle_rss_mb"] = statistics.median(m["rss_mb"] for m in out["idle"])
        out["idle_pss_mb"] = statistics.median(m["pss_mb"] for m in out["idle"])
        return out

    # ---- load

    def wrk_script(self, model: str) -> Path:
        """The shared post.lua; a copy with another model name only if a target needs one."""
        post = self.shared / "post.lua"
        if model == "mock-model":
            return post
        text = post.read_text().replace('"model":"mock-model"', json.dumps({"model": model})[1:-1])
        script = self.tmp / f"post-{re.sub(r'[^A-Za-z0-9]+', '_', model)}.lua"
        script.write_text(text)
        return script

    def wrk(self, url: str, conc: int, duration: float, script: Path) -> dict:
        cmd = ["wrk", "-t1", f"-c{conc}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
               "-s", script, "-H", AUTH_HEADER, url]
        rc, out, err = run_client(self.procs, "wrk", cmd, timeout=duration + 60)
        if rc != 0:
            raise HarnessError(f"wrk exited {rc}: {err.strip() or out.strip()}")
        try:
            return parse_wrk(out)
        except ValueError as exc:
            raise HarnessError(f"{exc}\n{out}") from None

    def loadgen(self, url: str, conc: int, duration: float, warmup: float, model: str) -> dict:
        cmd = [self.py, BENCH / "loadgen.py", url, "--stream", "-c", conc, "-d", duration, "-w", warmup,
               "--model", model, "-H", AUTH_HEADER]
        rc, out, err = run_client(self.procs, "loadgen", cmd, timeout=duration + warmup + 90)
        if rc != 0:
            raise HarnessError(f"loadgen exited {rc}: {err.strip()[-2000:]}")
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HarnessError(f"loadgen printed no JSON: {out[-500:]} {err[-500:]}") from None

    def measure(self, name: str) -> dict:
        res: dict = {"target": name}
        proc = None
        try:
            url, proc, info = self.start_target(name)
            res.update(info)
            model = info.get("model", "mock-model")
            status, headers, body = chat_probe(url, model, True)
            res["stream_passthrough"] = headers.get("content-type", "").startswith("text/event-stream")
            if status != 200 or b"[DONE]" not in body:
                raise TargetError(f"streaming probe answered {status}: {body[:200]!r}")
            if proc is not None:
                res["rss_before_load"] = tree_memory_mb(proc.pid)
            d, w, reps = self.a.duration, self.a.warmup, self.a.repeat
            script = self.wrk_script(model)
            if w > 0:
                self.log(f"  {name}: warm-up {w:g}s (wrk c={max(self.a.concurrency)}), excluded")
                self.wrk(url, max(self.a.concurrency), w, script)
            res["nonstream"], res["stream"] = {}, {}
            for c in self.a.concurrency:
                runs = [self.wrk(url, c, d, script) for _ in range(reps)]
                res["nonstream"][str(c)] = combine(runs)
                self.log(f"  {name}: non-stream c={c}: {fmt_rate(res['nonstream'][str(c)]['rps'])} req/s, "
                         f"p50 {fmt_ms(res['nonstream'][str(c)]['latency']['p50_ms'])} ms")
            for c in self.a.concurrency:
                runs = [self.loadgen(url, c, d, w, model) for _ in range(reps)]
                res["stream"][str(c)] = combine(runs)
                self.log(f"  {name}: stream c={c}: {fmt_rate(res['stream'][str(c)]['rps'])} req/s, TTFT p50 "
                         f"{fmt_ms(res['stream'][str(c)]['ttft']['p50_ms'])} ms")
            if proc is not None:
                res["rss_after_load"] = tree_memory_mb(proc.pid)
                if proc.poll() is not None:
                    raise TargetError(f"exited with code {proc.returncode} during the run")
        except TargetError as exc:
            res["error"] = str(exc)
            self.failed = True
            self.log(f"  {name}: FAILED: {exc} (log: {self.tmp / (name + '.log')})")
        finally:
            for pname, p in list(self.procs.live):  # this target's processes; the mock stays
                if pname != "mock":
                    self.procs.stop(p)
        return res

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)


def combine(runs: list[dict]) -> dict:
    """Median of every numeric figure over repeated runs (the raw runs are kept)."""
    out = {"runs": len(runs), "rps": statistics.median(r["rps"] for r in runs),
           "errors": sum(r.get("errors", 0) for r in runs), "requests": sum(r.get("requests", 0) for r in runs)}
    for key in ("latency", "ttft"):
        if key in runs[0]:
            out[key] = {k: _median_or_none([r[key].get(k) for r in runs]) for k in runs[0][key]}
    if len(runs) > 1:
        out["raw"] = runs
    first_err = next((r["first_error"] for r in runs if r.get("first_error")), None)
    if first_err:
        out["first_error"] = first_err
    return out


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- report


def fmt_rate(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_ms(v, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def fmt_x(v) -> str:
    return "-" if v is None else (f"{v:.2f}x" if v < 10 else f"{v:.1f}x")


def _get(res: dict | None, mode: str, c: int, *path):
    cur = (res or {}).get(mode, {}).get(str(c))
    for p in path:
        if cur is None:
            return None
        cur = cur.get(p)
    return cur


def _ratio(a, b):
    return None if a is None or not b else a / b


def _sub(a, b):
    return None if a is None or b is None else a - b


def compute(results: dict, lo: int, hi: int) -> dict:
    direct, mini, lite = results.get("direct"), results.get("mini"), results.get("litellm")
    derived = {}
    for name, res in results.items():
        if res.get("error"):
            continue
        d = {
            "ns_hi_vs_mini": _ratio(_get(res, "nonstream", hi, "rps"), _get(mini, "nonstream", hi, "rps")),
            "ns_hi_vs_litellm": _ratio(_get(res, "nonstream", hi, "rps"), _get(lite, "nonstream", hi, "rps")),
            "st_hi_vs_mini": _ratio(_get(res, "stream", hi, "rps"), _get(mini, "stream", hi, "rps")),
            "st_hi_vs_litellm": _ratio(_get(res, "stream", hi, "rps"), _get(lite, "stream", hi, "rps")),
            "added_p50_lo_ms": _sub(_get(res, "nonstream", lo, "latency", "p50_ms"),
                                    _get(direct, "nonstream", lo, "latency", "p50_ms")),
            "added_p50_hi_ms": _sub(_get(res, "nonstream", hi, "latency", "p50_ms"),
                                    _get(direct, "nonstream", hi, "latency", "p50_ms")),
            "ttft_added_lo_ms": _sub(_get(res, "stream", lo, "ttft", "p50_ms"),
                                     _get(direct, "stream", lo, "ttft", "p50_ms")),
            "stream_added_lo_ms": _sub(_get(res, "stream", lo, "latency", "p50_ms"),
                                       _get(direct, "stream", lo, "latency", "p50_ms")),
        }
        derived[name] = d
    return derived


def render(meta: dict, results: dict, derived: dict, plano_startup: dict | None, lo: int, hi: int) -> str:
    L: list[str] = []
    L.append(f"plano bench  {meta['date']}  {meta['cpus']} cpus  duration {meta['duration_s']:g}s x "
             f"{meta['repeat']} (median), warm-up {meta['warmup_s']:g}s excluded; all rows -> one mock upstream; "
             f"loadavg before {meta['loadavg_before'][0]:.2f}")
    L.append("")
    note_mini = results.get("mini") and not results["mini"].get("error") and \
        not results["mini"].get("stream_passthrough", True)

    def row(cols, widths):
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))

    L.append("NON-STREAMING (wrk -t1, post.lua)   latency in ms; added = p50 minus direct p50")
    w = [10, 9, 7, 7, 8, 9, 7, 7, 8, 8, 9]
    L.append(row(["target", f"c={lo} r/s", "p50", "p99", "added", f"c={hi} r/s", "p50", "p99", "added",
                  "x mini", "x litellm"], w))
    for name, res in results.items():
        if res.get("error"):
            L.append(row([name, "n/a: " + res["error"][:90]], [10, 1]))
            continue
        d = derived.get(name, {})
        L.append(row([
            name,
            fmt_rate(_get(res, "nonstream", lo, "rps")), fmt_ms(_get(res, "nonstream", lo, "latency", "p50_ms")),
            fmt_ms(_get(res, "nonstream", lo, "latency", "p99_ms")),
            fmt_ms(d.get("added_p50_lo_ms"), True) if name != "direct" else "",
            fmt_rate(_get(res, "nonstream", hi, "rps")), fmt_ms(_get(res, "nonstream", hi, "latency", "p50_ms")),
            fmt_ms(_get(res, "nonstream", hi, "latency", "p99_ms")),
            fmt_ms(d.get("added_p50_hi_ms"), True) if name != "direct" else "",
            fmt_x(d.get("ns_hi_vs_mini")), fmt_x(d.get("ns_hi_vs_litellm")),
        ], w))
    L.append("")
    L.append("STREAMING (bench/loadgen.py, aiohttp+uvloop, SSE)   ms; TTFT = first 'data:' chunk; "
             "added = TTFT p50 minus direct")
    w = [10, 9, 8, 8, 8, 9, 8, 8, 8, 8, 9]
    L.append(row(["target", f"c={lo} r/s", "TTFT p50", "total50", "TTFT add", f"c={hi} r/s", "TTFT p50",
                  "TTFT p99", "total50", "x mini", "x litellm"], w))
    for name, res in results.items():
        if res.get("error"):
            L.append(row([name, "n/a"], [10, 1]))
            continue
        d = derived.get(name, {})
        mark = "*" if name == "mini" and note_mini else ""
        L.append(row([
            name + mark,
            fmt_rate(_get(res, "stream", lo, "rps")), fmt_ms(_get(res, "stream", lo, "ttft", "p50_ms")),
            fmt_ms(_get(res, "stream", lo, "latency", "p50_ms")),
            fmt_ms(d.get("ttft_added_lo_ms"), True) if name != "direct" else "",
            fmt_rate(_get(res, "stream", hi, "rps")), fmt_ms(_get(res, "stream", hi, "ttft", "p50_ms")),
            fmt_ms(_get(res, "stream", hi, "ttft", "p99_ms")), fmt_ms(_get(res, "stream", hi, "latency", "p50_ms")),
            fmt_x(d.get("st_hi_vs_mini")), fmt_x(d.get("st_hi_vs_litellm")),
        ], w))
    if note_mini:
        L.append("  * mini_proxy.py buffers the upstream SSE and sends it as one body: its TTFT equals its total "
                 "time (the starlette floor passes chunks through)")
    errs = [(n, m, c, _get(r, m, c, "errors")) for n, r in results.items() if not r.get("error")
            for m in ("nonstream", "stream") for c in (lo, hi) if _get(r, m, c, "errors")]
    for n, m, c, e in errs:
        L.append(f"  ! {n} {m} c={c}: {e} errors/non-2xx during the measurement "
                 f"({_get(results[n], m, c, 'first_error') or 'see wrk output'})")

    L.append("")
    L.append("MEMORY (process tree, MiB)          RSS idle   RSS after load   PSS after load")
    for name, res in results.items():
        if res.get("error") or "rss_before_load" not in res:
            continue
        before, after = res["rss_before_load"], res.get("rss_after_load") or {}
        L.append(f"  {name:<33} {before['rss_mb']:>8.1f}   {after.get('rss_mb', 0):>14.1f}   "
                 f"{after.get('pss_mb', 0):>14.1f}")

    plano = results.get("plano")
    if plano is not None:
        L.append("")
        L.append("PLANO vs TARGETS")
        d = derived.get("plano", {})
        checks = [
            (f"non-stream c={hi} throughput vs mini", d.get("ns_hi_vs_mini"), ">=", TARGETS["ns_c32_vs_mini"], "x"),
            (f"non-stream c={hi} throughput vs LiteLLM", d.get("ns_hi_vs_litellm"), ">=",
             TARGETS["ns_c32_vs_litellm"], "x"),
            (f"added latency p50 c={lo} (ms)", d.get("added_p50_lo_ms"), "<=", TARGETS["added_p50_c1_ms"], ""),
            (f"streaming TTFT added p50 c={lo} (ms)", d.get("ttft_added_lo_ms"), "<=", TARGETS["ttft_added_ms"], ""),
        ]
        if plano_startup and not plano_startup.get("error"):
            checks += [
                ("idle RSS, process tree (MiB)", plano_startup.get("idle_rss_mb"), "<=", TARGETS["idle_rss_mb"], ""),
                ("`plano up FILE` to healthy (s)", plano_startup.get("daemon_up_median_s"), "<=", TARGETS["up_s"], ""),
                ("`plano up --foreground` to /healthz 200 (s)", plano_startup.get("foreground_median_s"), "<=",
                 TARGETS["up_s"], ""),
            ]
        for label, value, op, target, unit in checks:
            if value is None:
                verdict, shown = "n/a", "-"
            else:
                ok = value >= target if op == ">=" else value <= target
                verdict, shown = ("PASS" if ok else "MISS"), (f"{value:.2f}{unit}")
            goal = f"target {op} {target:g}{unit}"
            L.append(f"  {label:<44} {shown:>10}   {goal:<16} {verdict}")
        if plano_startup:
            if plano_startup.get("error"):
                L.append(f"  start-up/RSS measurement failed: {plano_startup['error']}")
            else:
                L.append(f"  (start-up runs: foreground {plano_startup['foreground_s']} s, daemon up "
                         f"{plano_startup['daemon_up_s']} s, down {plano_startup['daemon_down_s']} s; "
                         f"idle PSS {plano_startup['idle_pss_mb']} MiB)")
    return "\n".join(L)


# --------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description="plano benchmark harness (see bench/README.md)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per figure (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target/client run, excluded")
    p.add_argument("--repeat", type=int, default=1, help="runs per figure; the median is reported (default 1)")
    p.add_argument("--only", default="", help=f"comma list out of {','.join(ALL_TARGETS)} (direct is always run)")
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--plano-workers", type=int, default=0, help="pass --workers N to plano (default: plano's own)")
    p.add_argument("--concurrency", default="1,32", help="two levels, low,high (default 1,32)")
    p.add_argument("--startup-repeats", type=int, default=3, help="plano start-up/RSS samples (default 3)")
    p.add_argument("--idle-settle", type=float, default=1.0, help="seconds after healthy before idle RSS")
    p.add_argument("--shared-dir", default=str(REPO.parent / "shared" / "bench"),
                   help="dir with mock_upstream.py, mini_proxy.py, post.lua (default ../shared/bench)")
    p.add_argument("--json-out", help="write every figure (and the raw runs) to this JSON file")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with target logs")
    a = p.parse_args(argv)
    try:
        a.concurrency = [int(x) for x in a.concurrency.split(",")]
    except ValueError:
        p.error("--concurrency takes two integers, e.g. 1,32")
    if len(a.concurrency) != 2 or min(a.concurrency) < 1:
        p.error("--concurrency takes two integers >= 1, e.g. 1,32")
    if not (0 < a.duration <= 600) or not (0 <= a.warmup <= 60) or not (1 <= a.repeat <= 20):
        p.error("need 0 < duration <= 600, 0 <= warmup <= 60, 1 <= repeat <= 20")
    if not (1 <= a.startup_repeats <= 20):
        p.error("--startup-repeats must be 1..20")
    wanted = [t.strip() for t in a.only.split(",") if t.strip()] or list(ALL_TARGETS)
    unknown = [t for t in wanted if t not in ALL_TARGETS]
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {ALL_TARGETS}")
    if a.skip_litellm:
        wanted = [t for t in wanted if t != "litellm"]
    a.targets = [t for t in ALL_TARGETS if t in wanted or t == "direct"]  # direct: the baseline for 'added'
    return a


VERSIONS_SNIPPET = (
    "import importlib.metadata as m, json; print(json.dumps({k: m.version(k) for k in "
    "('uvicorn', 'uvloop', 'httptools', 'aiohttp', 'orjson', 'starlette')}))"
)


def _versions(bench: Bench) -> dict:
    v = {"python": platform.python_version()}
    probe = subprocess.run(
        [str(bench.py), "-c", VERSIONS_SNIPPET], check=False, capture_output=True, text=True)
    if probe.returncode == 0:
        v.update(json.loads(probe.stdout))
    wrk = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", wrk.stdout + wrk.stderr)
    v["wrk"] = m.group(1) if m else "?"
    return v


def main(argv=None) -> int:
    args = parse_args(argv)
    procs = Procs()

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="plano-bench-"))
    lo, hi = sorted(args.concurrency)
    args.concurrency = [lo, hi]
    rc = 0
    bench = None
    try:
        bench = Bench(args, procs, tmp)
        bench.preflight()
        meta = {
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
            "loadavg_before": os.getloadavg(), "duration_s": args.duration, "warmup_s": args.warmup,
            "repeat": args.repeat, "concurrency": [lo, hi], "targets": args.targets,
            "plano_workers": args.plano_workers or None, "versions": _versions(bench), "tmp": str(tmp),
        }
        if meta["loadavg_before"][0] > 0.5 * (os.cpu_count() or 1):
            bench.log(f"warning: load average {meta['loadavg_before'][0]:.2f} before the run; figures will be noisy")
        bench.start_mock()
        bench.log(f"mock upstream on {LOOPBACK}:{bench.mock_port}; logs in {tmp}")
        results: dict = {}
        plano_startup = None
        for name in args.targets:
            bench.log(f"[{name}]")
            if name == "plano":
                try:
                    bench.log("  plano: start-up and idle-RSS samples")
                    plano_startup = bench.plano_startup()
                except TargetError as exc:
                    plano_startup = {"error": str(exc)}
                    bench.failed = True
                    bench.log(f"  plano start-up: FAILED: {exc}")
            results[name] = bench.measure(name)
            if name == "litellm" and results[name].get("version"):
                meta["versions"]["litellm"] = results[name]["version"]
        if "direct" in results and results["direct"].get("error"):
            raise HarnessError(f"the direct (mock) row failed: {results['direct']['error']}")
        derived = compute(results, lo, hi)
        print(render(meta, results, derived, plano_startup, lo, hi))
        if args.json_out:
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(
                {"meta": meta, "targets_spec": TARGETS, "results": results, "derived": derived,
                 "plano_startup": plano_startup}, indent=2, default=str))
            bench.log(f"wrote {args.json_out}")
    except HarnessError as exc:
        print(f"bench: harness failure: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        rc = 130
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        procs.stop_all()
        if not any(tmp.iterdir()):
            tmp.rmdir()
        elif args.keep_logs or rc != 0 or (bench is not None and bench.failed):
            print(f"bench: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
