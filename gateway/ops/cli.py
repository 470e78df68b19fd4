"""Argument parsers and glue for the operator subcommands (``init``, ``logs``, ``obs``, ``cli_agent``)
and the zero-config / access-log parts of ``plano up``; :mod:`gateway.cli` calls in here."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    init = sub.add_parser("init", help="write a starter plano.yaml from a template",
                          description="Without --template, a terminal gets an interactive wizard.")
    init.add_argument("--template", "-t", metavar="ID", help="template id (see --list-templates)")
    init.add_argument("--list-templates", action="store_true", help="list the templates and exit")
    init.add_argument("--output", "-o", metavar="FILE", help="file to write (default plano.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--clean", action="store_true", help="write an empty file (Plano compatibility)")

    logs = sub.add_parser("logs", help="show the running gateway's access log",
                          description="Reads the access log of the gateway started by 'plano up' "
                                      "($PLANO_HOME/run/access.log unless PLANO_ACCESS_LOG says otherwise).")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new requests (Ctrl-C stops)")
    logs.add_argument("--json", action="store_true", help="print the JSON lines as they are")
    logs.add_argument("--listener", "-l", action="append", default=[], metavar="NAME",
                      help="only this listener (repeatable)")
    logs.add_argument("--status", "-s", action="append", default=[], metavar="CODE",
                      help="only these statuses: 200, 4xx, 5xx, error (>= 400 or a broken stream); repeatable")
    logs.add_argument("--request-id", "-r", action="append", default=[], metavar="ID",
                      help="only this x-request-id (repeatable)")
    logs.add_argument("--model", action="append", default=[], metavar="MODEL", help="only this model (repeatable)")
    logs.add_argument("--lines", "-n", type=int, default=20,
                      help="matching lines shown from the end of the log first (default 20, 0 = none, -1 = all)")
    logs.add_argument("--file", metavar="PATH", help="read this access log file instead")

    obs = sub.add_parser("obs", help="live terminal view of the gateway's traffic, tokens, cost and routing",
                         description="Fed by the running gateway's /metrics (admin port; summed over every "
                                     "worker) and its access log (recent calls, last error).")
    obs.add_argument("--refresh", type=float, default=1.0, help="seconds between frames (default 1)")
    obs.add_argument("--refresh-ms", type=int, default=None, help="Plano compatibility: refresh in ms")
    obs.add_argument("--once", action="store_true", help="print one frame and exit")
    obs.add_argument("--admin", metavar="URL", help="admin base URL (default: the running gateway's, "
                                                    "else http://127.0.0.1:9092)")
    obs.add_argument("--config", metavar="FILE", help="config whose pricing source is used (default: the "
                                                      "running gateway's)")
    obs.add_argument("--pricing", metavar="FILE", help="pricing table (YAML/JSON, USD per 1M tokens)")
    obs.add_argument("--access-log", metavar="PATH", help="access log for recent calls (default: the running "
                                                          "gateway's)")
    obs.add_argument("--width", type=int, default=None, help="render at this width (default: the terminal's)")
    obs.add_argument("--recent", type=int, default=8, help="recent calls shown (default 8)")

    agent = sub.add_parser("cli_agent", help="start Claude Code or Codex pointed at plano's model listener",
                           description="Requires a running plano with a model listener.")
    agent.add_argument("tool", choices=["claude", "codex"])
    agent.add_argument("file", nargs="?", help="config file (default: the running gateway's, else ./plano.yaml)")
    agent.add_argument("--path", default=None, help="directory searched for the config file")
    agent.add_argument("--settings", default=None, metavar="JSON",
                       help="JSON settings: ANTHROPIC_* / model keys become environment variables, the rest "
                            "is passed to claude as --settings")
    agent.epilog = "Arguments after -- go to the tool: plano cli_agent claude -- -p 'explain this repo'"
    agent.set_defaults(args=[])


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``plano cli_agent claude [opts] -- TOOL ARGS``: plano's arguments and the tool's."""
    if "cli_agent" in argv and "--" in argv and argv.index("cli_agent") < argv.index("--"):
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def dispatch(args) -> int | None:
    """The subcommand's exit code, or None when it is not one of these."""
    command = getattr(args, "command", None)
    if command == "init":
        from gateway.ops.init import cmd_init

        return cmd_init(args)
    if command == "logs":
        from gateway.ops.logs import cmd_logs

        return cmd_logs(args)
    if command == "obs":
        from gateway.ops.obs import cmd_obs

        return cmd_obs(args)
    if command == "cli_agent":
        from gateway.ops.agent import cmd_cli_agent

        return cmd_cli_agent(args)
    return None


def zero_config_path(args) -> Path | None:
    """With no config file given or found: write the zero-config file, say what it holds, return its path."""
    from gateway.config import CONFIG_FILE_NAMES
    from gateway.ops.runstate import run_dir
    from gateway.ops.zeroconfig import DEFAULT_LISTENER_PORT, ZERO_CONFIG_FILE, synthesize

    if args.file is not None:
        return None
    base = Path(args.path)
    if any((base / name).is_file() for name in CONFIG_FILE_NAMES):
        return None
    port = args.listener_port or DEFAULT_LISTENER_PORT
    text, described = synthesize(port)
    path = run_dir() / ZERO_CONFIG_FILE
    path.write_text(text)
    print(f"plano: no config file in {base.resolve()} (looked for {', '.join(CONFIG_FILE_NAMES)}): zero-config mode")
    print(f"  model listener 'llm' on http://127.0.0.1:{port} (OpenAI /v1/chat/completions, /v1/models, "
          "Anthropic /v1/messages)")
    print("  providers (request 'provider/model', e.g. openai/gpt-4o-mini):")
    for line in described:
        print(f"    {line}")
    print(f"  config written to {path} (copy it to plano.yaml to customise)")
    sys.stdout.flush()
    return path


def background_env(environ) -> tuple[dict, str | None]:
    """The background gateway's environment and its access log: ``$PLANO_HOME/run/access.log`` unless
    ``PLANO_ACCESS_LOG`` names another file (``-``: into run/plano.log; ``off``: none)."""
    from gateway.ops.runstate import ACCESS_LOG_FILE, run_dir
    from gateway.telemetry.access_log import destination

    env = dict(environ)
    if not env.get("PLANO_ACCESS_LOG"):
        path = run_dir() / ACCESS_LOG_FILE
        try:
            if path.stat().st_size:
                path.replace(path.with_name(path.name + ".1"))  # each run starts a fresh one
        except FileNotFoundError:
            pass
        env["PLANO_ACCESS_LOG"] = str(path)
        return env, str(path)
    target = destination(env)
    if target is not None and target not in ("-", "stderr"):
        target = os.path.abspath(target)
        env["PLANO_ACCESS_LOG"] = target
    return env, target
