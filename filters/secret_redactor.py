"""Secret redactor filter: API keys, tokens and private keys replaced by ``[REDACTED]``.

Detects OpenAI (``sk-``, ``sk-proj-``), Anthropic (``sk-ant-``), AWS access key ids
(``AKIA``/``ASIA``...), GitHub (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``,
``github_pat_``), Slack (``xoxa-``/``xoxb-``/``xoxp-``/``xoxr-``/``xoxs-``), Google
(``AIza``), Stripe (``sk_live_``...) keys, JWTs, ``Bearer <token>`` (the token), PEM
private-key blocks, and generic ``password=...`` / ``secret: ...`` / ``"api_key": "..."``
assignments (the value).

Works on requests (input filter: secrets users paste never reach the model) and on
responses (output filter): whole JSON responses and each streaming event's text. In a
stream, a private-key block that starts in one event is redacted until its ``END`` line,
however many events it spans (state per ``x-request-id`` and stream channel). With
``--holdback``, a trailing fragment that could be the start of a secret (``sk-pr``,
``Bearer``, ``password:``) is held back and joined to the next event, so a key split
across events is still redacted; leave it off when the gateway already sends windows of
accumulated text.

Run: ``python -m filters.secret_redactor --port 10504 [--mcp] [--holdback]``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from filters.common import (
    Spec,
    TTLStore,
    channel_key,
    finished_choices,
    is_delta_event,
    is_request,
    map_text,
    request_id,
    response_kind,
    set_at,
    split_list,
    stream_finished,
    windowed,
)
from filters.common import (
    main as run_main,
)

REDACTED = "[REDACTED]"

_KEYWORDS = (
    r"password|passwd|passphrase|pwd|secret|client[_-]?secret|secret[_-]?access[_-]?key|api[_-]?key|apikey"
    r"|access[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|session[_-]?token|bearer[_-]?token"
    r"|private[_-]?key|token|credentials?"
)
# (name, pattern, group to replace: 0 = the whole match)
PATTERNS: list[tuple[str, re.Pattern, int]] = [
    ("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    ), 0),
    ("anthropic_key", re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}"), 0),
    ("openai_key", re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"), 0),
    ("stripe_key", re.compile(r"(?<![\w-])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), 0),
    ("aws_access_key_id", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|APKA)[0-9A-Z]{16}(?![A-Za-z0-9])"), 0),
    ("github_token", re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})(?![\w-])"), 0),
    ("slack_token", re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}"), 0),
    ("google_api_key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), 0),
    ("jwt", re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), 0),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)"), 1),
    ("assignment", re.compile(
        r"(?i)[\"']?(?<![A-Za-z])[A-Za-z0-9_.-]*?(?:" + _KEYWORDS + r")[\"']?\s*(:=|=>|=|:)\s*"
        r"(\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"',;{}()\[\]<>]{4,})"
    ), 2),
]

_NOT_SECRET = {"null", "none", "true", "false", "undefined", "nil", "required", "optional", "string", "redacted",
               "<redacted>", "[redacted]", "changeme", "example", "yourpassword", "your_password", "xxxx", "****"}

PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")

# For --holdback: a trailing fragment that may still become a secret.
_SECRET_PREFIXES = ("sk-", "sk_live_", "sk_test_", "rk_live_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                    "github_pat_", "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "AIza", "eyJ", "-----BEGIN")
_HOLD_TAIL = re.compile(
    r"(?i)(?:\bbearer(?:\s+[A-Za-z0-9._~+/=-]*)?|[\"']?[A-Za-z0-9_.-]*?(?:" + _KEYWORDS + r")[\"']?"
    r"(?:\s*(?::=|=>|=|:)\s*[\"']?[^\s\"',;]*)?|-----BEGIN[ A-Z0-9]*-{0,5})$"
)
_MAX_HOLD = 512


def _value_is_secret(value: str, separator: str) -> bool:
    bare = value.strip("\"'")
    if len(bare) < 4 or bare.lower() in _NOT_SECRET or set(bare) <= {"*", "x", "X", "."}:
        return False
    if bare.startswith(("${", "{{", "$(", "os.environ", "process.env", "<")):
        return False  # a reference to a secret, not the secret
    # "the secret: always smile" is prose, "password: hunter2" is not
    return not (separator == ":" and bare == value and bare.isalpha() and len(bare) < 12)


class SecretRedactor:
    """``(payload, path, headers) -> payload`` with every detected secret replaced by ``[REDACTED]``."""

    def __init__(self, *, holdback: bool = False, extra: list[str] | tuple = (), disable: list[str] | tuple = (),
                 store: TTLStore | None = None, replacement: str = REDACTED, stateless_stream: bool = False) -> None:
        self.patterns = [p for p in PATTERNS if p[0] not in set(disable)]
        self.patterns += [(f"custom_{i}", re.compile(rx), 0) for i, rx in enumerate(extra)]
        self.holdback = holdback
        self.store = store if store is not None else TTLStore(600.0, 10_000)
        self.replacement = replacement
        self.stateless_stream = stateless_stream

    # -- whole texts -------------------------------------------------------------
    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping ``(start, end, kind)`` spans to redact, in order."""
        spans: list[tuple[int, int, str]] = []
        for name, pattern, group in self.patterns:
            for m in pattern.finditer(text):
                if name == "assignment" and not _value_is_secret(m.group(2), m.group(1)):
                    continue
                if group:
                    start, end = m.span(group)
                    value = m.group(group)
                    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
                        start, end = start + 1, end - 1  # keep the quotes
                else:
                    start, end = m.span()
                spans.append((start, end, name))
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out: list[tuple[int, int, str]] = []
        stop = -1
        for s in spans:
            if s[0] >= stop:
                out.append(s)
                stop = s[1]
            elif s[1] > stop and out:  # overlapping: merge
                out[-1] = (out[-1][0], s[1], out[-1][2])
                stop = s[1]
        return out

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced; a private key whose END line is missing (a
        truncated answer, a window of a stream) is redacted to the end of the text."""
        spans = self.find(text)
        parts, pos = [], 0
        for start, end, _name in spans:
            parts.append(text[pos:start])
            parts.append(self.replacement)
            pos = end
        rest = text[pos:]
        begin = PEM_BEGIN.search(rest) if "-----BEGIN" in rest else None
        if begin is not None:
            parts.append(rest[:begin.start()])
            parts.append(self.replacement)
        elif not spans:
            return text
        else:
            parts.append(rest)
        return "".join(parts)

    # -- filter ------------------------------------------------------------------
    def __call__(self, payload: Any, path: str, headers: dict) -> Any:
        if (is_request(payload) or response_kind(payload) != "chunk" or not is_delta_event(payload)
                or self.stateless_stream or windowed(headers)):
            if isinstance(payload, dict) and stream_finished(payload):
                rid = request_id(headers)
                if rid:
                    self.store.delete(rid)
            return map_text(payload, lambda t, _c: self.redact(t))
        rid = request_id(headers)
        state = (self.store.get(rid) if rid else None) or {}
        map_text(payload, lambda t, c: self._stream_text(t, c, state))
        for idx in finished_choices(payload):
            prefix = f"choices/#{idx}/"
            for key in [k for k in state if k.startswith(prefix)]:
                channel_state = state.pop(key)
                held = channel_state.get("hold")
                if held and not channel_state.get("pem"):
                    set_at(payload, tuple(channel_state["channel"]), self.redact(held))
        if rid and state:
            self.store.put(rid, state)
        elif rid:
            self.store.delete(rid)
        return payload

    def _stream_text(self, text: str, channel, state: dict) -> str:
        key = channel_key(channel)
        st = state.get(key)
        if st is None:
            st = state[key] = {"channel": list(channel), "pem": False, "tail": "", "hold": ""}
        if st["hold"]:
            text, st["hold"] = st["hold"] + text, ""
        prev = st["tail"]
        if st["pem"]:  # inside a private key block: drop everything up to its END line
            buf = prev + text
            m = PEM_END.search(buf)
            if not m:
                st["tail"] = buf[-80:]
                return ""
            st["pem"], prev = False, ""
            text = buf[max(m.end(), len(st["tail"])):]
        if self.holdback:
            cut = _hold_cut(text)
            if cut < len(text):
                st["hold"] = text[cut:]
                text = text[:cut]
        combined = prev + text
        st["tail"] = combined[-80:]
        begin = None
        for m in PEM_BEGIN.finditer(combined):
            if m.end() > len(prev):
                begin = m
        if begin is not None and not PEM_END.search(combined, begin.end()):
            # a private key starts here (its header possibly split with the previous event) and
            # does not end yet: redact from the header on, and keep redacting until its END line
            st["pem"] = True
            return self.redact(text[:max(begin.start() - len(prev), 0)]) + self.replacement
        return self.redact(text)


def _hold_cut(text: str) -> int:
    """Start of a trailing fragment that could still grow into a secret (``len(text)`` if none)."""
    window_start = max(0, len(text) - _MAX_HOLD)
    m = _HOLD_TAIL.search(text, window_start)
    if m and m.start() < len(text):
        return m.start()
    i = len(text)
    while i > window_start and not text[i - 1].isspace():
        i -= 1
    token = text[i:]
    if not token:
        return len(text)
    for prefix in _SECRET_PREFIXES:
        if token.startswith(prefix) or prefix.startswith(token):
            return i
    return len(text)



def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holdback", action="store_true",
                        help="hold back a trailing possible-secret fragment of a stream event until the next event")
    parser.add_argument("--stateless-stream", action="store_true",
                        help="redact each stream event alone, no per-stream state (for a gateway sending windows of "
                             "accumulated text; implied per call by the header x-plano-stream-mode: window)")
    parser.add_argument("--pattern", action="append", default=[], metavar="REGEX",
                        help="an extra secret pattern (repeatable)")
    parser.add_argument("--disable", default="", metavar="NAME,...",
                        help="built-in patterns to turn off: " + ",".join(p[0] for p in PATTERNS))


def _build(args: argparse.Namespace) -> SecretRedactor:
    return SecretRedactor(holdback=args.holdback, extra=args.pattern, disable=split_list(args.disable),
                          stateless_stream=args.stateless_stream)


SPEC = Spec("secret_redactor", "Redacts API keys, tokens and private keys in requests and responses.",
            10504, _build, _add_arguments)

if __name__ == "__main__":
    run_main(SPEC)
