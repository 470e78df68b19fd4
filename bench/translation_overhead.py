#!/usr/bin/env python3
"""What translating a client API costs: ``/v1/messages`` (Anthropic) to an OpenAI upstream, against
passthrough ``/v1/chat/completions``, on the same plano, the same mock upstream, in one run.

Per round, wrk measures (interleaved, so the VM's drift hits both alike):
- c=1, latency p50 of each path → the translation's added p50 (bar: ≤ 1 ms);
- c=32, throughput of each path → messages/chat (bar: ≥ 0.5).
The mock upstream is ``../shared/bench/mock_upstream.py`` (an OpenAI chat server); the
Anthropic request asks for the same one-word answer the chat request does.

    .venv/bin/python bench/translation_overhead.py [--rounds 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from agent_chain import free_port, shared_uvicorn, stop_all, wait_http  # noqa: E402

PY = sys.executable
CHAT = '{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}'
MESSAGES = '{"model":"mock-model","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'


def lua(tmp: Path, name: str, body: str, headers: dict[str, str]) -> Path:
    path = tmp / f"{name}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = '{body}'"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, duration: float, connections: int) -> tuple[float, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error answers\n{out}")
    return rps, float(p50.group(1)) * scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plano-translate-"))
    mock_port, port, admin = free_port(), free_port(), free_port()
    chat = lua(tmp, "chat", CHAT, {"Content-Type": "application/json"})
    messages = lua(tmp, "messages", MESSAGES, {"Content-Type": "application/json", "anthropic-version": "2023-06-01",
                                                "x-api-key": "unused"})
    cfg = tmp / "plano.yaml"
    cfg.write_text(f"version: v0.4.0\nlisteners:\n  - {{type: model, name: llm, port: {port}, address: 127.0.0.1}}\n"
                   f"model_providers:\n  - {{model: openai/mock-model, access_key: sk-bench, "
                   f"base_url: 'http://127.0.0.1:{mock_port}/v1', default: true}}\n")
    env = {**os.environ, "PLANO_ACCESS_LOG": str(tmp / "access.log"), "PLANO_ADMIN_PORT": str(admin),
           "PLANO_HOME": str(tmp / "home")}
    mock = shared_uvicorn("mock_upstream:app", mock_port)
    gw = subprocess.Popen([PY, "-m", "gateway", "up", str(cfg), "--foreground"], cwd=ROOT, env=env,
                          start_new_session=True, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        wait_http(f"http://127.0.0.1:{port}/healthz")
        chat_url = f"http://127.0.0.1:{port}/v1/chat/completions"
        msg_url = f"http://127.0.0.1:{port}/v1/messages"
        wrk(chat_url, chat, 1, 8)
        wrk(msg_url, messages, 1, 8)
        for n in range(args.rounds):
            _, chat_p50 = wrk(chat_url, chat, args.duration, 1)
            _, msg_p50 = wrk(msg_url, messages, args.duration, 1)
            chat_rps, _ = wrk(chat_url, chat, args.duration, 32)
            msg_rps, _ = wrk(msg_url, messages, args.duration, 32)
            rows.append((chat_p50, msg_p50, chat_rps, msg_rps))
            print(f"round {n + 1}: c=1 p50 chat {chat_p50:.3f} ms, messages {msg_p50:.3f} ms "
                  f"(+{msg_p50 - chat_p50:.3f} ms); c=32 chat {chat_rps:,.0f} req/s, messages {msg_rps:,.0f} req/s "
                  f"({msg_rps / chat_rps:.2f})", flush=True)
    finally:
        stop_all([gw, mock])
    added = statistics.median(m - c for c, m, _, _ in rows)
    ratio = statistics.median(mr / cr for _, _, cr, mr in rows)
    print(f"/v1/messages -> OpenAI upstream vs passthrough chat, {args.rounds} rounds x {args.duration:g}s: "
          f"added p50 at c=1 median {added:+.3f} ms (bar <= 1 ms); throughput at c=32 messages/chat median "
          f"{ratio:.2f} (bar >= 0.5)")
    return 0 if added <= 1.0 and ratio >= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
