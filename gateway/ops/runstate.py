"""What a background ``plano up`` records about the gateway it started, for ``logs``, ``obs`` and ``cli_agent``.

``$PLANO_HOME/run/plano.json``: the pid, the config file, every served listener (name, type,
host, port), the admin address (``/metrics``) and the access log file. Readers check that the
pid is alive; a stale file (the gateway died or was stopped) counts as "not running".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_FILE = "plano.json"
ACCESS_LOG_FILE = "access.log"


def run_dir() -> Path:
    home = Path(os.environ.get("PLANO_HOME") or Path.home() / ".plano")
    path = home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def probe_host(address: str | None) -> str:
    if not address or address in ("0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return address


def describe(config, pid: int, config_path, access_log: str | None, environ=None) -> dict:
    from gateway.server.runner import served_listeners
    from gateway.telemetry.admin import admin_endpoint

    admin_address, admin_port = admin_endpoint(config, environ)
    return {
        "pid": pid,
        "config": str(Path(config_path).resolve()),
        "listeners": [{"name": l.name, "type": l.type, "host": probe_host(l.address), "port": l.port}
                      for l in served_listeners(config)],
        "admin": {"host": probe_host(admin_address), "port": admin_port} if admin_port else None,
        "access_log": access_log,
    }


def write_state(state: dict) -> Path:
    path = run_dir() / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(*, require_alive: bool = True) -> dict | None:
    """The recorded state, or None when there is none (or, with ``require_alive``, its gateway is gone)."""
    try:
        state = json.loads((run_dir() / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if require_alive and not (isinstance(state.get("pid"), int) and _alive(state["pid"])):
        return None
    return state


def access_log_path(state: dict | None) -> tuple[Path | None, str]:
    """Where the running (or last) gateway's access lines are, and a sentence saying why when there are none."""
    target = (state or {}).get("access_log") if state else None
    run = run_dir()
    if state is None:
        path = run / ACCESS_LOG_FILE
        return (path, "") if path.exists() else (None, f"no access log at {path}; start plano with 'plano up'")
    if target is None:
        return None, "the running gateway's access log is off (PLANO_ACCESS_LOG=off)"
    if target in ("-", "stderr"):
        return run / "plano.log", ""  # the access lines are mixed into the gateway's own log
    return Path(target), ""
