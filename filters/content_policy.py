"""Content / keyword policy filter with configurable lists.

Requests whose latest user turn (``--scan all``: every message) contains a blocked term
are refused with 400 and Plano's demo contract::

    {"detail": {"error": "content_blocked",
                "message": "Request blocked by content safety filter (matched: 'hack')."}}

Terms come from ``--block a,b`` and ``--block-file FILE`` (one per line, ``#`` comments).
Plain terms match whole words, case-insensitively (``hack`` matches "Hack" and "hack!",
not "hackathon"; multi-word terms match across any whitespace); ``re:<regex>`` entries are
case-insensitive regular expressions. ``--allow`` terms and phrases exempt what they cover
(``--block hack --allow "life hack"``). Text is NFKC-normalised and stripped of zero-width
characters first, so full-width letters or ``h\\u200back`` do not slip through.

With ``--responses`` the filter also works as an output filter: in responses and stream
events, matched terms are replaced by ``[BLOCKED]`` instead of blocking.

Run: ``python -m filters.content_policy --port 10503 --block hack,exploit [--mcp] [--responses]``.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.common import (
    Block,
    Spec,
    is_request,
    map_text,
    split_list,
    texts,
    user_texts,
)
from filters.common import main as run_main

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"), None)


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


@dataclass(frozen=True)
class Rule:
    term: str           # as configured (reported in the block message)
    pattern: re.Pattern
    is_regex: bool


def compile_term(term: str) -> Rule:
    term = term.strip()
    if term.startswith("re:"):
        return Rule(term, re.compile(term[3:], re.IGNORECASE), True)
    words = [re.escape(w) for w in term.split()]
    body = r"\s+".join(words)
    left = r"(?<!\w)" if re.match(r"\w", term) else ""
    right = r"(?!\w)" if re.search(r"\w$", term) else ""
    return Rule(term, re.compile(left + body + right, re.IGNORECASE), False)


def split_terms(values: list[str]) -> list[str]:
    """Comma-separated terms; a value starting with ``re:`` is one regex (commas and all)."""
    out: list[str] = []
    for value in values:
        out.extend([value.strip()] if value.strip().startswith("re:") else split_list(value))
    return out


def load_terms(values: list[str], files: list[str]) -> list[str]:
    terms = [v for v in values if v.strip()]
    for name in files:
        for line in Path(name).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                terms.append(line)
    return terms


class ContentPolicy:
    """``(payload, path, headers) -> payload | Block`` enforcing a block list (and an allow list)."""

    def __init__(self, block: list[str] | tuple = (), allow: list[str] | tuple = (), *, scope: str = "latest",
                 responses: bool = False, replacement: str = "[BLOCKED]") -> None:
        self.block = [compile_term(t) for t in block]
        self.allow = [compile_term(t) for t in allow]
        self.scope = scope
        self.responses = responses
        self.replacement = replacement

    def matches(self, text: str) -> list[tuple[int, int, Rule]]:
        """Blocked spans of ``text`` (already normalised) not covered by an allowed span."""
        allowed = [m.span() for rule in self.allow for m in rule.pattern.finditer(text)]
        out = []
        for rule in self.block:
            for m in rule.pattern.finditer(text):
                if m.end() == m.start():
                    continue
                if any(a <= m.start() and m.end() <= b for a, b in allowed):
                    continue
                out.append((m.start(), m.end(), rule))
        out.sort(key=lambda x: (x[0], -x[1]))
        return out

    def first_match(self, text: str) -> str | None:
        found = self.matches(normalize(text))
        if not found:
            return None
        start, end, rule = found[0]
        return normalize(text)[start:end] if rule.is_regex else rule.term

    def __call__(self, payload: Any, path: str, headers: dict) -> Any:
        if not self.block:
            return payload
        if is_request(payload):
            candidates = user_texts(payload, scope=self.scope) if self.scope != "everything" else texts(payload)
            for text in candidates:
                term = self.first_match(text)
                if term is not None:
                    message = f"Request blocked by content safety filter (matched: '{term}')."
                    return Block(message, 400, "content_blocked",
                                 {"detail": {"error": "content_blocked", "message": message}})
            return payload
        if self.responses:
            return map_text(payload, lambda t, _c: self.censor(t))
        return payload

    def censor(self, text: str) -> str:
        norm = normalize(text)
        found = self.matches(norm)
        if not found:
            return text
        if norm != text:  # offsets refer to the normalised text
            text = norm
        parts, pos = [], 0
        for start, end, _rule in found:
            if start < pos:
                continue
            parts.append(text[pos:start])
            parts.append(self.replacement)
            pos = end
        parts.append(text[pos:])
        return "".join(parts)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", action="append", default=[], metavar="TERM,...",
                        help="blocked terms, comma-separated (repeatable); 're:<regex>' for a regex (one per --block)")
    parser.add_argument("--block-file", action="append", default=[], metavar="FILE",
                        help="file of blocked terms, one per line, '#' comments (repeatable)")
    parser.add_argument("--allow", action="append", default=[], metavar="TERM,...",
                        help="allowed terms/phrases that exempt the blocked terms they contain")
    parser.add_argument("--allow-file", action="append", default=[], metavar="FILE")
    parser.add_argument("--scan", choices=["latest", "all", "everything"], default="latest",
                        help="request text checked: the latest user turn (default), all user messages, "
                             "or every message incl. system/assistant")
    parser.add_argument("--responses", action="store_true",
                        help="also filter responses: replace matched terms by [BLOCKED]")


def _build(args: argparse.Namespace) -> ContentPolicy:
    block = load_terms(split_terms(args.block), args.block_file)
    allow = load_terms(split_terms(args.allow), args.allow_file)
    if not block:
        import logging
        logging.getLogger("plano.filters.content_policy").warning("no blocked terms configured: everything passes")
    return ContentPolicy(block, allow, scope=args.scan, responses=args.responses)


SPEC = Spec("content_policy", "Keyword / regex content policy: blocks requests, optionally censors responses.",
            10503, _build, _add_arguments)

if __name__ == "__main__":
    run_main(SPEC)
