"""The ``plano`` command: ``up``, ``down``, ``reload``, ``validate``, ``trace``, ``init``, ``logs``, ``obs``,
``cli_agent``, ``--version``.

``plano up FILE`` validates the config, starts ``plano up FILE --foreground`` as a
detached process (its own session, output in ``$PLANO_HOME/run/plano.log``),
records its pid and returns once every listener answers ``GET /healthz``.
``plano up --with-tracing`` first makes sure the built-in trace receiver
(``plano trace listen``) runs and points the gateway at it.
"""

from __future__ import annotations

import argparse
import os
import secrets
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
    up.add_argument("--with-tracing", action="store_true",
                    help="start the built-in trace receiver (plano trace listen) and send traces to it")
    up.add_argument("--tracing-port", type=int, default=_trace_port(), help="receiver port for --with-tracing (4317)")
    up.add_argument("--listener-port", type=int, default=None,
                    help="zero-config only (no config file found): port of the model listener (default 12000)")

    down = sub.add_parser("down", help="stop the gateway started with 'plano up'")
    down.add_argument("--timeout", type=float, default=40.0, help="seconds before SIGKILL")

    reload = sub.add_parser("reload", help="make the running gateway re-read its plano.yaml (SIGHUP)",
                            description="The new config is validated first: an invalid one leaves the old one "
                                        "serving and the reason is printed. In-flight requests finish on the "
                                        "config they started with.")
    reload.add_argument("--pid", type=int, help="the gateway's process (default: the one 'plano up' started)")
    reload.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome")

    validate = sub.add_parser("validate", help="check a config file and print every problem")
    validate.add_argument("file", nargs="?")
    validate.add_argument("--path", default=".")

    trace = sub.add_parser("trace", help="built-in trace receiver and terminal trace viewer",
                           description="TARGET: last (default), any, listen, down/stop, an 8-hex short id "
                                       "or a 32-hex trace id.")
    trace.add_argument("target", nargs="?", default="last")
    trace.add_argument("--port", type=int, default=_trace_port(),
                       help="receiver port (default $PLANO_TRACE_PORT or 4317)")
    trace.add_argument("--host", default="127.0.0.1", help="listen: address to bind (default 127.0.0.1)")
    trace.add_argument("--foreground", action="store_true", help="listen: run in this terminal")
    trace.add_argument("--json", action="store_true", help="print traces as JSON")
    trace.add_argument("--list", action="store_true", help="one line per trace")
    trace.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                       help="only traces with a span whose attribute KEY equals VALUE (repeatable, AND)")
    trace.add_argument("--since", help="only traces newer than e.g. 30s, 5m, 2h, 1d")
    trace.add_argument("--limit", type=int, default=None, help="at most N traces (0 = no limit)")
    trace.add_argument("--filter", action="append", default=[], metavar="PATTERN",
                       help="attribute keys to show, '*' globs (repeatable)")
    trace.add_argument("--verbose", "-v", action="store_true", help="show every attribute")
    trace.add_argument("--no-interactive", action="store_true", help="accepted for Plano compatibility")

    from gateway.ops.cli import add_parsers, dispatch, split_passthrough

    add_parsers(sub)
    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    if passthrough:
        args.args = passthrough
    handled = dispatch(args)
    if handled is not None:
        return handled
    if args.command == "trace":
        return cmd_trace(args)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "down":
        return cmd_down(args)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "reload":
        return cmd_reload(args)
    parser.print_help()
    return 0


def _load(args):
    """(path, config), or (None, None) after printing every error and every warning of the file."""
    from gateway.config import ConfigError, find_config_file, load_config

    try:
        path = find_config_file(args.file, Path(args.path))
        return path, load_config(path)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        for warning in err.warnings:
            print(f"warning: {warning.format(err.source)}", file=sys.stderr)
        return None, None


def _warnings(config) -> list[str]:
    """The config's warnings, each naming the file they were found in (not a default name)."""
    source = getattr(config, "source", None) or "plano.yaml"
    return [w.format(source) if hasattr(w, "format") else str(w) for w in getattr(config, "warnings", []) or []]


def cmd_validate(args) -> int:
    path, config = _load(args)
    if config is None:
        return 1
    for warning in _warnings(config):
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
    from gateway.ops.cli import zero_config_path

    zero = zero_config_path(args)  # no config file anywhere: a synthesised one (Plano's zero-config up)
    if zero is not None:
        args.file = str(zero)
    elif args.listener_port is not None:
        print("plano: --listener-port applies only to zero-config 'plano up' (no config file); "
              "set the port in the config", file=sys.stderr)
        return 2
    path, config = _load(args)
    if config is None:
        return 1
    if getattr(args, "with_tracing", False):
        if _ensure_trace_listener(args.tracing_port) != 0:
            return 1
        # The gateway (this process or the background one, which inherits the environment) sends
        # every trace to the receiver; sampling 100% unless the config says otherwise.
        os.environ["PLANO_TRACING_ENDPOINT"] = f"http://127.0.0.1:{args.tracing_port}"
        os.environ.setdefault("PLANO_TRACING_SAMPLING", "100")
    if args.foreground:
        from gateway.logs import setup_logging
        from gateway.server.runner import serve

        setup_logging()
        for warning in _warnings(config):
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


#: Environment variable carrying the id a background start gives its gateway; ``/healthz`` echoes it
#: in the ``x-plano-instance`` header, so ``plano up`` knows the answer came from the process it started.
INSTANCE_ENV = "PLANO_INSTANCE_ID"
INSTANCE_HEADER = "x-plano-instance"


def _start_background(path: Path, config, workers: int, args) -> int:
    from gateway.server.runner import served_listeners

    running = _read_pid()
    if running:
        print(f"plano is already running (pid {running}); run 'plano down' first", file=sys.stderr)
        return 1
    logs = _fresh_log(run_dir() / "plano.log")
    from gateway.ops.cli import background_env

    instance = secrets.token_hex(8)
    env, access_log = background_env(os.environ)
    cmd = [sys.executable, "-m", "gateway", "up", str(path), "--foreground", "--workers", str(workers),
           "--drain-timeout", str(args.drain_timeout)]
    started = time.monotonic()
    with open(logs, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(Path(path).resolve().parent),
                                env={**env, INSTANCE_ENV: instance})
    _pidfile().write_text(str(proc.pid))
    from gateway.ops.runstate import describe, write_state

    write_state(describe(config, proc.pid, path, access_log, env))
    listeners = served_listeners(config)
    pending = {(l.name, _probe_host(l.address), l.port, getattr(l, "tls", None) is not None) for l in listeners}
    deadline = started + args.wait
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            _pidfile().unlink(missing_ok=True)
            _report_early_exit(proc.returncode, logs)
            return 1
        # Only this instance's answer counts: another process may answer /healthz on a port we failed to bind.
        pending = {p for p in pending if not _healthy(p[1], p[2], instance, tls=p[3])}
        if pending:
            time.sleep(0.02)
    if pending:
        if proc.poll() is not None:  # it died between the last check and the deadline
            _pidfile().unlink(missing_ok=True)
            _report_early_exit(proc.returncode, logs)
            return 1
        names = ", ".join(f"'{name}' ({host}:{port})" for name, host, port in sorted(pending))
        os.killpg(proc.pid, signal.SIGTERM)
        _pidfile().unlink(missing_ok=True)
        print(f"plano: listener {names} did not become healthy within {args.wait:.0f}s; see {logs}",
              file=sys.stderr)
        return 1
    took = time.monotonic() - started
    print(f"plano {__version__} is up (pid {proc.pid}, {took:.2f}s); config {path}")
    for l in listeners:
        print(f"  {l.type:5} listener '{l.name}': http://{_probe_host(l.address)}:{l.port}")
    print(f"  logs: {logs}" + (f"\n  access log: {access_log} (plano logs -f)" if access_log else "")
          + "\n  stop: plano down")
    return 0


def _fresh_log(path: Path) -> Path:
    """Each background run writes a fresh log; the previous run's is kept as ``<name>.1``."""
    try:
        if path.stat().st_size:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    return path


def _report_early_exit(code: int, logs: Path) -> None:
    """The gateway exited during start-up: this run's log, with its fatal error (``plano: ...``) last."""
    lines = _tail(logs).splitlines()
    fatal = next((line for line in reversed(lines) if line.startswith("plano: ")), None)
    print(f"plano exited with code {code} during start-up; log ({logs}):", file=sys.stderr)
    for line in lines:
        if line is not fatal:
            print(f"  {line}", file=sys.stderr)
    print(fatal or f"plano: start-up failed (exit code {code}); see {logs}", file=sys.stderr)


def _probe_host(address: str | None) -> str:
    if not address or address in ("0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return address


def _healthy(host: str, port: int, instance: str | None = None, *, tls: bool = False) -> bool:
    """``/healthz`` answers 200 (and, with ``instance``, names that instance in ``x-plano-instance``).

    A TLS listener is probed over HTTPS without verifying its certificate: this is a local liveness
    check of the process just started, not a trust decision."""
    context = None
    if tls:
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{'https' if tls else 'http'}://{host}:{port}/healthz", timeout=0.5,
                                    context=context) as resp:
            return resp.status == 200 and (instance is None or resp.headers.get(INSTANCE_HEADER) == instance)
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def cmd_reload(args) -> int:
    """SIGHUP the gateway, then print the outcome it records (gateway/server/reload.py)."""
    pid = args.pid or _read_pid()
    if pid is None or not _alive(pid):
        print("plano is not running (no gateway started by 'plano up'; use --pid for a foreground one)",
              file=sys.stderr)
        return 1
    from gateway.server.reload import request_and_wait

    try:
        print(request_and_wait(pid, args.timeout))
        return 0
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1


def cmd_down(args) -> int:
    code = _stop_background("plano", _read_pid(), _pidfile(), args.timeout)
    receiver = _trace_pid()
    if receiver is None:
        _trace_owner_file().unlink(missing_ok=True)
    elif _trace_owner_file().exists():  # started by 'plano up --with-tracing': it goes with the gateway
        _stop_trace_listener()
    else:
        print(f"plano trace listener (pid {receiver}) is still running (started by 'plano trace listen'); "
              "stop it with 'plano trace down'")
    return code


def _stop_background(label: str, pid: int | None, pidfile: Path, timeout: float) -> int:
    """Stop a background process group started by ``plano``: SIGTERM, then SIGKILL after ``timeout``."""
    if pid is None:
        pidfile.unlink(missing_ok=True)
        print(f"{label} is not running")
        return 0
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap(pid)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        print(f"{label} (pid {pid}) did not stop in {timeout:.0f}s; killed")
    else:
        print(f"{label} (pid {pid}) stopped")
    pidfile.unlink(missing_ok=True)
    return 0


# --------------------------------------------------------------------------- plano trace


def _trace_port() -> int:
    try:
        return int(os.environ.get("PLANO_TRACE_PORT") or 4317)
    except ValueError:
        return 4317


def _trace_pidfile() -> Path:
    return run_dir() / "trace.pid"


def _trace_pid() -> int | None:
    try:
        pid = int(_trace_pidfile().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _receiver_answers(port: int) -> bool:
    from gateway.telemetry.receiver import query

    try:
        query(port, limit=1, timeout=0.5)
        return True
    except ConnectionError:
        return False


def cmd_trace(args) -> int:
    target = (args.target or "last").lower()
    if target == "listen":
        if args.foreground:
            from gateway.telemetry.receiver import serve

            return serve(args.host, args.port)
        return _start_trace_listener(args.host, args.port)
    if target in ("down", "stop"):
        return _stop_trace_listener()
    return _show_traces(args, target)


def _trace_owner_file() -> Path:
    """Present while the running trace receiver was started by ``plano up --with-tracing`` (``plano down``
    then stops it too); a receiver started by ``plano trace listen`` is left to ``plano trace down``."""
    return run_dir() / "trace.by-up"


def _ensure_trace_listener(port: int) -> int:
    if _trace_pid() and _receiver_answers(port):
        return 0
    started_here = _trace_pid() is None
    code = _start_trace_listener("127.0.0.1", port, quiet=True)
    if code == 0 and started_here:
        _trace_owner_file().write_text("plano up --with-tracing\n")
    return code


def _start_trace_listener(host: str, port: int, *, quiet: bool = False, wait: float = 15.0) -> int:
    running = _trace_pid()
    if running:
        print(f"plano trace listener is already running (pid {running}); stop it with 'plano trace down'")
        return 0
    logs = run_dir() / "trace.log"
    cmd = [sys.executable, "-m", "gateway", "trace", "listen", "--foreground", "--host", host, "--port", str(port)]
    with open(logs, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _trace_pidfile().write_text(str(proc.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _trace_pidfile().unlink(missing_ok=True)
            print(f"plano trace listener exited with code {proc.returncode}; last log lines ({logs}):",
                  file=sys.stderr)
            print(_tail(logs, 10), file=sys.stderr)
            return 1
        if _receiver_answers(port):
            shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
            print(f"plano trace listener is up (pid {proc.pid}): OTLP/gRPC on {shown}:{port}"
                  + ("" if quiet else "\n  view: plano trace    list: plano trace --list    stop: plano trace down"))
            return 0
        time.sleep(0.05)
    print(f"plano trace listener did not answer within {wait:.0f}s; see {logs}", file=sys.stderr)
    os.killpg(proc.pid, signal.SIGTERM)
    _trace_pidfile().unlink(missing_ok=True)
    return 1


def _stop_trace_listener(timeout: float = 10.0) -> int:
    _trace_owner_file().unlink(missing_ok=True)
    return _stop_background("plano trace listener", _trace_pid(), _trace_pidfile(), timeout)


def _show_traces(args, target: str) -> int:
    import orjson

    from gateway.telemetry.receiver import query
    from gateway.telemetry.viewer import (
        SelectionError,
        parse_since,
        render,
        render_list,
        select,
        summary,
    )

    if args.limit is not None and args.limit < 0:
        print("plano trace: --limit must be >= 0", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
        data = query(args.port)
    except SelectionError as err:
        print(f"plano trace: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"plano trace: {err}; start one with 'plano trace listen'", file=sys.stderr)
        return 1
    listing = args.list
    if listing and target == "last":
        target = "any"
    limit = args.limit if args.limit is not None else (20 if listing or target == "any" else None)
    try:
        traces = select(data.get("traces", []), target, where=args.where, since=since, limit=limit or None)
    except SelectionError as err:
        print(f"plano trace: {err}", file=sys.stderr)
        return 2
    if not traces:
        if args.json:
            print("[]")
        else:
            print("no matching traces" if data.get("traces") else "no traces received yet", file=sys.stderr)
        return 1 if target not in ("last", "any") else 0
    if args.json:
        out = [summary(t) for t in traces] if listing else traces
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif listing:
        render_list(traces)
    else:
        render(traces, patterns=args.filter or None, verbose=args.verbose)
    return 0


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
