"""The ``plano`` command: ``up``, ``down``, ``validate``, ``--version``.

``plano up FILE`` validates the config, starts ``plano up FILE --foreground`` as a
detached process (its own session, output in ``$PLANO_HOME/run/plano.log``),
records its pid and returns once every listener answers ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gateway import __version__


def plano_home() -> Path:
    return Path(os.environ.get("PLANO_HOME") or Path.home() / ".plano")


def run_dir() -> Path:
    path = plano_home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plano", description="Multi-agent orchestration gateway and model proxy.")
    parser.add_argument("--version", action="version", version=f"plano {__version__}")
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("up", help="start the gateway")
    up.add_argument("file", nargs="?", help="config file (default: ./plano.yaml, then ./config.yaml)")
    up.add_argument("--path", default=".", help="directory searched for the config file (default: .)")
    up.add_argument("--foreground", action="store_true", help="run in this process until SIGINT/SIGTERM")
    up.add_argument(
        "--workers",
        default=os.environ.get("PLANO_WORKERS", "1"),
        help="worker processes: a number or 'auto' (one per core); default 1 or $PLANO_WORKERS",
    )
    up.add_argument("--drain-timeout", type=float, default=30.0, help="seconds in-flight requests get on shutdown")
    up.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /healthz (background mode)")

    down = sub.add_parser("down", help="stop the gateway started with 'plano up'")
    down.add_argument("--timeout", type=float, default=40.0, help="seconds before SIGKILL")

    validate = sub.add_parser("validate", help="check a config file and print every problem")
    validate.add_argument("file", nargs="?")
    validate.add_argument("--path", default=".")

    args = parser.parse_args(argv)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "down":
        return cmd_down(args)
    if args.command == "validate":
        return cmd_validate(args)
    parser.print_help()
    return 0


def _load(args):
    from gateway.config import ConfigError, find_config_file, load_config

    try:
        path = find_config_file(args.file, Path(args.path))
        return path, load_config(path)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return None, None


def cmd_validate(args) -> int:
    path, config = _load(args)
    if config is None:
        return 1
    for warning in getattr(config, "warnings", []) or []:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"OK: {path}")
    return 0


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise SystemExit(f"plano: --workers must be a number or 'auto', got {value!r}") from None
    if n < 1:
        raise SystemExit("plano: --workers must be at least 1")
    return n


def cmd_up(args) -> int:
    workers = _workers(str(args.workers))
    path, config = _load(args)
    if config is None:
        return 1
    if args.foreground:
        from gateway.logs import setup_logging
        from gateway.server.runner import serve

        setup_logging()
        for warning in getattr(config, "warnings", []) or []:
            import logging

            logging.getLogger("plano.config").warning("%s", warning)
        return serve(config, workers=workers, drain_timeout=args.drain_timeout)
    return _start_background(path, config, workers, args)


def _pidfile() -> Path:
    return run_dir() / "plano.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid() -> int | None:
    try:
        pid = int(_pidfile().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _start_background(path: Path, config, workers: int, args) -> int:
    from gateway.server.runner import served_listeners

    running = _read_pid()
    if running:
        print(f"plano is already running (pid {running}); run 'plano down' first", file=sys.stderr)
        return 1
    logs = run_dir() / "plano.log"
    cmd = [sys.executable, "-m", "gateway", "up", str(path), "--foreground", "--workers", str(workers),
           "--drain-timeout", str(args.drain_timeout)]
    started = time.monotonic()
    with open(logs, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(Path(path).resolve().parent))
    _pidfile().write_text(str(proc.pid))
    listeners = served_listeners(config)
    pending = {(l.name, _probe_host(l.address), l.port) for l in listeners}
    deadline = started + args.wait
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            _pidfile().unlink(missing_ok=True)
            print(f"plano exited with code {proc.returncode} during start-up; last log lines ({logs}):", file=sys.stderr)
            print(_tail(logs), file=sys.stderr)
            return 1
        pending = {p for p in pending if not _healthy(p[1], p[2])}
        if pending:
            time.sleep(0.02)
    if pending:
        print(f"plano did not become healthy within {args.wait:.0f}s; see {logs}", file=sys.stderr)
        os.killpg(proc.pid, signal.SIGTERM)
        _pidfile().unlink(missing_ok=True)
        return 1
    took = time.monotonic() - started
    print(f"plano {__version__} is up (pid {proc.pid}, {took:.2f}s); config {path}")
    for l in listeners:
        print(f"  {l.type:5} listener '{l.name}': http://{_probe_host(l.address)}:{l.port}")
    print(f"  logs: {logs}\n  stop: plano down")
    return 0


def _probe_host(address: str | None) -> str:
    if not address or address in ("0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return address


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=0.5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def cmd_down(args) -> int:
    pid = _read_pid()
    if pid is None:
        _pidfile().unlink(missing_ok=True)
        print("plano is not running")
        return 0
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + args.timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap(pid)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        print(f"plano (pid {pid}) did not stop in {args.timeout:.0f}s; killed")
    else:
        print(f"plano (pid {pid}) stopped")
    _pidfile().unlink(missing_ok=True)
    return 0


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
