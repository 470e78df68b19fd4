"""``plano init``: write a starter ``plano.yaml`` from a template shipped with plano.

Templates are plain YAML files in ``gateway/templates/`` (package data), each valid as
written (``plano validate`` passes; unset ``$..._API_KEY`` variables are warnings). On a
terminal without ``--template`` a small wizard asks for the template, the listener ports and
the output file; elsewhere ``--template`` is required. An existing file is never overwritten
without ``--force``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_OUTPUT = "plano.yaml"


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    summary: str
    origin: str  # "plano" (equivalent of a Plano template) or "plano-py" (ours)

    def text(self) -> str:
        return resources.files("gateway.templates").joinpath(f"{self.id}.yaml").read_text(encoding="utf-8")


TEMPLATES: tuple[Template, ...] = (
    Template("sub_agent_orchestration", "Sub-agent orchestration",
             "agent listener routing turns to weather / flight agents, chained", "plano"),
    Template("coding_agent_routing", "Coding-agent routing",
             "model listener for Claude Code / Codex with coding routes and a small fast alias", "plano"),
    Template("preference_aware_routing", "Preference-aware routing",
             "model listener with routes described in plain words", "plano"),
    Template("filter_chain_guardrails", "Filter-chain guardrails",
             "RAG agent behind injection guard, PII anonymiser and content policy filters", "plano"),
    Template("conversational_state_v1_responses", "Responses API with conversation state",
             "agent + model listener, state_storage: memory", "plano"),
    Template("offline_demo", "Offline demo",
             "four demo agents, a local demo model, filters; no API keys (make demo)", "plano-py"),
    Template("reliability_failover", "Reliability and failover",
             "retries, circuit breakers, model failover, aliases, rate limits", "plano-py"),
    Template("async_tasks", "Async tasks",
             "POST /v1/tasks: planned multi-step work over agents, durable store, webhooks", "plano-py"),
)


def find_template(template_id: str) -> Template | None:
    return next((t for t in TEMPLATES if t.id == template_id), None)


_PORT_LINE = re.compile(r"^(\s*)port:\s*(\d+)\s*$", re.MULTILINE)
_NAME_LINE = re.compile(r"^\s*(?:-\s+)?name:\s*(\S+)\s*$")


def listener_ports(text: str) -> list[tuple[str, int]]:
    """``(listener name, port)`` in the order of the template's ``port:`` lines (listeners only carry one)."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _PORT_LINE.match(line)
        if not m:
            continue
        name = "listener"
        for back in range(i - 1, max(-1, i - 6), -1):
            found = _NAME_LINE.match(lines[back])
            if found:
                name = found.group(1)
                break
        out.append((name, int(m.group(2))))
    return out


def with_ports(text: str, ports: list[int]) -> str:
    """The template with its ``port:`` lines set to ``ports`` in order (comments kept)."""
    it = iter(ports)

    def sub(m: re.Match) -> str:
        try:
            return f"{m.group(1)}port: {next(it)}"
        except StopIteration:
            return m.group(0)

    return _PORT_LINE.sub(sub, text)


def list_templates(out=None) -> None:
    out = out or sys.stdout
    width = max(len(t.id) for t in TEMPLATES)
    for t in TEMPLATES:
        print(f"{t.id:<{width}}  {t.title}: {t.summary}", file=out)


def write(path: Path, text: str, force: bool) -> int:
    if path.exists() and not force:
        print(f"plano init: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


def _next_steps(path: Path, template: Template | None) -> str:
    shown = path if path.is_absolute() else Path(path)
    steps = [f"wrote {shown}" + (f" (template {template.id})" if template else "")]
    steps.append(f"  check it:  plano validate {shown}")
    steps.append(f"  start it:  plano up {shown}")
    return "\n".join(steps)


def cmd_init(args) -> int:
    if args.list_templates:
        list_templates()
        return 0
    output = Path(args.output or DEFAULT_OUTPUT)
    if args.clean:
        code = write(output, "\n", args.force)
        if code == 0:
            print(f"wrote {output} (empty)")
        return code
    if args.template:
        template = find_template(args.template)
        if template is None:
            print(f"plano init: unknown template {args.template!r}; one of:", file=sys.stderr)
            list_templates(sys.stderr)
            return 2
        code = write(output, template.text(), args.force)
        if code == 0:
            print(_next_steps(output, template))
        return code
    if sys.stdin.isatty() and sys.stdout.isatty():
        return wizard(args.output, args.force)
    print("plano init: choose a template with --template <id> (or run it in a terminal for the wizard):",
          file=sys.stderr)
    list_templates(sys.stderr)
    return 2


# --------------------------------------------------------------------------- wizard


def _ask(prompt: str, default: str | None = None) -> str:
    suffix = f" [{default}]" if default is not None else ""
    try:
        answer = input(f"{prompt}{suffix}: ").strip()
    except EOFError:
        raise KeyboardInterrupt from None
    return answer or (default or "")


def _ask_yes(prompt: str, default: bool = False) -> bool:
    while True:
        answer = _ask(prompt + (" (Y/n)" if default else " (y/N)"), None).lower()
        if not answer:
            return default
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        print("  please answer y or n")


def wizard(output: str | None, force: bool) -> int:
    """Interactive: template, listener ports, output file; plain ``input()``."""
    try:
        return _wizard(output, force)
    except KeyboardInterrupt:
        print("\nplano init: cancelled, nothing written", file=sys.stderr)
        return 130


def _wizard(output: str | None, force: bool) -> int:
    print("plano init: create a plano.yaml from a template\n")
    for i, t in enumerate(TEMPLATES, 1):
        print(f"  {i}) {t.title} ({t.id})\n       {t.summary}")
    print()
    while True:
        choice = _ask("Template (number or id)", "1")
        template = find_template(choice)
        if template is None and choice.isdigit() and 1 <= int(choice) <= len(TEMPLATES):
            template = TEMPLATES[int(choice) - 1]
        if template is not None:
            break
        print(f"  no template {choice!r}; pick 1-{len(TEMPLATES)} or an id")
    text = template.text()
    ports = []
    for name, port in listener_ports(text):
        while True:
            answer = _ask(f"Port for listener '{name}'", str(port))
            if answer.isdigit() and 0 < int(answer) < 65536:
                ports.append(int(answer))
                break
            print("  a port is a number from 1 to 65535")
    text = with_ports(text, ports)
    path = Path(_ask("Write to", output or DEFAULT_OUTPUT))
    if path.exists() and not force:
        if not _ask_yes(f"{path} exists. Overwrite it?"):
            print("plano init: nothing written", file=sys.stderr)
            return 1
        force = True
    code = write(path, text, force)
    if code == 0:
        print(_next_steps(path, template))
    return code
