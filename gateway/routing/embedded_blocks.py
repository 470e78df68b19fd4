"""Quarantine pasted material (code, stack traces, logs, forwarded e-mails, long quotes).

Users paste things into a request: a stack trace, a CI log, an e-mail they received, a
message quoted in full. Such material is full of incidental words ("billing/invoice.py",
"com.acme.flights.BookingService", "Dear customer ... remit payment") that say nothing
about who should handle the *ask* around it. So a turn is split into

* `ask`    - the user's own words, which are scored and segmented as usual;
* `code`   - code-like lines (tracebacks, stack frames, compiler / package-manager output,
             fenced blocks): only their *kind* counts, as if the user had written "error
             message / stack trace / code";
* `quotes` - quoted prose (">"-quoted or header-led e-mails, long quoted passages): context
             at reduced weight, never split into separate intents.

Everything here is generic text shape; nothing depends on an agent domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.routing.embedded_segment import Piece, plain_ask
from gateway.routing.embedded_text import normalize, stem

_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
# A quoted passage of at least MIN_QUOTE_WORDS words: opening quote after start / space /
# colon, closing quote before space / punctuation / end.
MIN_QUOTE_WORDS = 8
_INLINE_QUOTE = re.compile(r"""(?:(?<=^)|(?<=[\s:(]))(["'\u201c\u2018])(?P<q>[^\n]+?)(?:["'\u201d\u2019])(?=[\s,.;:!?)]|$)""")
_EMAIL_HEADER = re.compile(r"^\s*(?:from|to|cc|bcc|subject|sent|date|reply-to)\s*:\s*\S", re.IGNORECASE)
_SALUTATION = re.compile(r"^\s*(?:dear|hi|hello)\b[^.!?]{0,40},\s*$", re.IGNORECASE)
_SIGN_OFF = re.compile(r"^\s*(?:regards|best regards|kind regards|best|sincerely|thanks|thank you|cheers)"
                       r"\s*,?\s*$", re.IGNORECASE)
_CODE_LINE = re.compile(
    r"^\s*(?:Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|at [\w$.<>]+\(.*\)|"
    r"[\w.]*(?:Error|Exception|Warning)\b[\w.]*:|npm (?:ERR|WARN)!|error(?:\[\w+\])?:|"
    r"(?:ERROR|WARN|FATAL|DEBUG|INFO)\b|\$ |>>> |#\d+ |\d+\s*\|)")
_IDENT = re.compile(r"\b[a-z]+[A-Z]\w*\b|\b\w+_\w+\b|\b\w+(?:\.\w+){2,}\b|\w+\(\)?|[{};]|==|!=|=>|->|::")
# In an ask around pasted material, "this email" / "the error below" names the paste, not a topic.
_DEICTIC = re.compile(r"\b(?:this|that|these|those|the\s+(?:following|above|attached))\s+"
                      r"(?:e-?mails?|mails?|messages?|letters?|notes?|notices?|texts?|errors?|"
                      r"outputs?|logs?|traces?|stack\s*traces?|tracebacks?)\b"
                      r"|\b(?:e-?mails?|messages?|errors?|logs?|output)\s+(?:below|above)\b", re.IGNORECASE)


@dataclass
class Blocks:
    """A turn split into the user's own ask and the material pasted into it."""

    ask: str
    code: list[str] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)

    @property
    def pasted(self) -> bool:
        return bool(self.code or self.quotes)


def _code_like(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if _CODE_LINE.match(line):
        return True
    toks = s.split()
    idents = len(_IDENT.findall(s))
    symbols = sum(s.count(c) for c in "{}[]()<>=;/\\|$#@")
    letters = sum(ch.isalpha() for ch in s)
    # Identifier-dense or symbol-dense lines are code, prose is not.
    return (idents >= 2 and idents >= 0.4 * len(toks)) or (len(toks) == 1 and idents == 1) or (letters and symbols >= 0.15 * letters and
                                                           symbols >= 3)


# A line that introduces what follows ("Turn these bullets into a brief:", "Receipt:", "check it
# against what we agreed:") or a separator line ("---") before pasted text.
_SEPARATOR = re.compile(r"\s*[-=_*~]{3,}\s*$")
_LEAD_IN = re.compile(r".*:\s*$|" + _SEPARATOR.pattern)


def _pasted_after_lead_in(lines: list[str], quotes: list[str]) -> list[str]:
    """The user's lines, less what they pasted after a lead-in: the lines after the first line that
    ends with a colon (or a separator line) are material the ask works on (bullets to turn into a
    brief, receipt lines, a transcript), context like a quoted e-mail rather than asks of their own;
    a last line that plainly asks ("please put these on my claim") is the user's again. Lines that
    plainly ask before it make a list of asks, not material, and stay."""
    filled = [k for k, line in enumerate(lines) if line.strip()]
    lead = next((k for k in filled[:-1] if _LEAD_IN.match(lines[k])), None)
    if lead is None:
        return lines  # most turns: one line, or no lead-in
    after = [k for k in filled if k > lead]

    def ask(k: int) -> bool:
        return plain_ask(Piece(normalize(lines[k]), "", False, question="?" in lines[k]))
    if any(ask(k) for k in after[:-1]):
        return lines  # a list of questions or requests ("Quick status pls:\n- has ... come back?\n- ..."): asks
    last = lines[after[-1]]
    keep = after[-1] if len(after) > 1 and ask(after[-1]) else None
    material = [lines[k].strip() for k in after if k != keep]
    quotes.extend(material)
    head = [line for line in lines[:lead + 1] if not _SEPARATOR.match(line)]
    return head + ([last] if keep is not None else [])


def split_blocks(text: str) -> Blocks:
    """Separate the user's own words from pasted code and quoted prose."""
    if not text:
        return Blocks(ask="")
    code: list[str] = []
    quotes: list[str] = []

    def fence(m: re.Match) -> str:
        code.append(m.group(0).strip("`"))
        return "\n"
    text = _FENCE.sub(fence, text)

    lines = text.split("\n")
    ask_lines: list[str] = []
    in_email = False
    prev_code = False
    for line in lines:
        s = line.strip()
        if in_email:
            quotes.append(s)
            if _SIGN_OFF.match(s):
                in_email = False  # the signature's name line follows; harmless either way
            continue
        if s.startswith(">"):
            quotes.append(s.lstrip("> "))
            prev_code = False
            continue
        if _EMAIL_HEADER.match(s) or (ask_lines and _SALUTATION.match(s)):
            quotes.append(s.split(":", 1)[1] if _EMAIL_HEADER.match(s) else s)
            in_email = True  # the rest of a pasted e-mail is the e-mail, up to its sign-off
            continue
        # Indented continuation of a code block, or a code-like line in a multi-line turn.
        if len(lines) > 1 and (_code_like(line) or (prev_code and line[:1] in (" ", "\t") and s)):
            code.append(s)
            prev_code = True
            continue
        prev_code = False
        ask_lines.append(line)
    ask_lines = _pasted_after_lead_in(ask_lines, quotes)
    ask = "\n".join(ask_lines)

    def inline(m: re.Match) -> str:
        q = m.group("q")
        if len(q.split()) >= MIN_QUOTE_WORDS:
            quotes.append(q)
            return " this "
        return m.group(0)
    ask = _INLINE_QUOTE.sub(inline, ask)
    if code or quotes:
        ask = _DEICTIC.sub(" this ", ask)
    return Blocks(ask=ask.strip(), code=code, quotes=quotes)


_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def code_names(code: list[str]) -> frozenset:
    """Stems of the identifier parts of pasted code (com.acme.clinic.AppointmentService ->
    clinic, appoint...): the same words in the ask name the software, not the topic."""
    out = set()
    for block in code:
        for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", block):
            if not re.search(r"[._]|[a-z][A-Z]", tok):
                continue  # plain words of an error message are not identifiers
            for part in re.split(r"[._]+", tok):
                for w in _CAMEL.findall(part):
                    if len(w) > 2:
                        out.add(stem(w.lower()))
    return frozenset(out)
