"""Hot reload: what ``plano reload``, SIGHUP and the admin endpoint share.

The running gateway re-reads its ``plano.yaml``; a file that does not validate leaves the
old config serving, and the reason is logged and written to ``$PLANO_HOME/run/reload.json``
(``{"pid", "seq", "ok", "generation", "message"}``) for whoever asked: ``plano reload``
validates the file itself first, signals the gateway, then waits for that status.

What a reload swaps, and how:
- the same listener sockets (names, addresses, ports): every worker builds a new
  :class:`~gateway.server.runtime.Runtime` and swaps it in; requests in flight finish on the
  old one, which is closed when they are done; connections stay open;
- other listener sockets (a port added, moved or removed): the supervisor binds what is new,
  starts a new generation of workers on the new config, waits until they serve, then stops
  the old generation, which drains as on SIGTERM (needs ``--workers`` 2 or more; a single
  in-process worker refuses such a reload and keeps serving — restart it).
Process-wide settings (tracing, admin address, worker count, ``state.redis_url``) apply at the
next start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def status_path() -> Path:
    home = Path(os.environ.get("PLANO_HOME") or Path.home() / ".plano")
    path = home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path / "reload.json"


def write_status(ok: bool, message: str, generation: int | None = None, pid: int | None = None) -> None:
    """Record the outcome of the latest reload (best effort: a read-only home only loses the note)."""
    data = {"pid": pid or os.getpid(), "seq": time.time(), "ok": ok, "generation": generation,
            "message": message}
    try:
        path = status_path()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def read_status() -> dict | None:
    try:
        return json.loads(status_path().read_text())
    except (OSError, ValueError):
        return None


def request_and_wait(pid: int | None = None, timeout: float = 30.0) -> str:
    """SIGHUP ``pid`` (default: this process) and wait for the outcome it records.

    Returns the status message of a reload that took; raises :class:`RuntimeError` with the
    reason of one that did not (the old config keeps serving). ``POST /admin/reload`` runs this.
    """
    import signal

    pid = pid or os.getpid()
    before = read_status()
    before_seq = before.get("seq") if before and before.get("pid") == pid else None
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status()
        if status and status.get("pid") == pid and status.get("seq") != before_seq:
            if status.get("ok"):
                return str(status.get("message", "reloaded"))
            raise RuntimeError(str(status.get("message", "reload failed")))
        time.sleep(0.05)
    raise RuntimeError(f"the reload did not report its outcome within {timeout:.0f}s; see the gateway log")
