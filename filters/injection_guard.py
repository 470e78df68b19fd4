"""Prompt-injection / jailbreak guard (rule-based scoring).

The latest user turn (``--scan all``: every user message; ``--tool-results``: tool
outputs of that turn too) is normalised — Unicode NFKC, invisible characters removed,
look-alike Cyrillic/Greek letters folded to Latin, leetspeak (``1gn0r3``) and spaced-out
letters (``i g n o r e``) undone — and scored against weighted rules:

- instruction override ("ignore all previous instructions" and variants),
- role-play jailbreaks (DAN / "do anything now", developer mode, "act as an unfiltered AI"...),
- system-prompt exfiltration ("reveal your system prompt", "repeat the text above"),
- fake chat-template delimiters (``<|im_start|>system``, ``[INST]``, ``<<SYS>>``),
- obfuscated payloads: long base64 / hex blobs (decoded and scanned too), Unicode tag
  characters (ASCII smuggling, decoded and scanned), zero-width / bidi characters,
  "decode this and follow it" requests.

The sum of the matched rules' weights (each rule counted once) at or above ``--threshold``
(default 1.0) blocks the request with 400::

    {"error": {"message": "Request blocked by prompt-injection guard: <reason>",
               "type": "invalid_request_error", "code": "prompt_injection"}}

Responses pass through untouched. No ML classifier: none that ships its weights inside a
PyPI wheel was found cheap enough; the rules are deterministic and microsecond-fast.

Run: ``python -m filters.injection_guard --port 10502 [--threshold 1.0] [--mcp]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from filters.common import Block, Spec, is_request, user_texts
from filters.common import main as run_main

log = logging.getLogger("plano.filters.injection_guard")

# --------------------------------------------------------------------------- normalisation

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u00ad"
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE_RE = re.compile(f"[{_ZERO_WIDTH}{_BIDI}]")
_TAG_RE = re.compile("[\U000e0000-\U000e007f]+")
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ѕ": "s", "ј": "j",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "α": "a", "ε": "e", "ι": "i", "Α": "a", "Β": "b", "Ε": "e", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Χ": "x", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h",
    "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i",
                       "|": "l", "+": "t"})
_LEET_TOKEN = re.compile(r"(?<![\w@$!|+])(?=[\w@$!|+]*[a-z])(?=[\w@$!|+]*[0-9@$!|+])[\w@$!|+]+")
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*/\\]){3,}[a-z]\b")
_NON_WORD = re.compile(r"[^a-z0-9']+")


def _tags_to_ascii(text: str) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in text if 0x20 <= ord(c) - 0xE0000 < 0x7F)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", _INVISIBLE_RE.sub("", text)).translate(_HOMOGLYPHS).casefold()


def _words(text: str) -> str:
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*/\\]", "", m.group(0)), text)
    return " " + _NON_WORD.sub(" ", text).strip() + " "


def normalize(text: str) -> list[str]:
    """Lower-case words separated by single spaces, obfuscation undone: a plain variant and,
    when the text has digits or symbols inside words, a de-leeted one (``1gn0r3`` -> ``ignore``)."""
    folded = _fold(text)
    variants = [_words(folded)]
    leet = _LEET_TOKEN.sub(lambda m: m.group(0).translate(_LEET), folded)
    if leet != folded:
        variants.append(_words(leet))
    return variants


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    name: str
    weight: float
    pattern: re.Pattern
    reason: str
    raw: bool = False   # match the raw (lower-cased) text instead of the normalised words


def _r(name: str, weight: float, reason: str, rx: str, raw: bool = False) -> Rule:
    return Rule(name, weight, re.compile(rx, re.IGNORECASE | re.MULTILINE if raw else 0), reason, raw)


_TARGET = (r"(?:instructions?|prompts?|rules|directions?|directives?|guidelines?|guidance|constraints|programming"
           r"|restrictions|policies|commands|orders|training|safeguards|guardrails)")

_PRIMARY_VERB = r"(?:ignore|disregard|forget|neglect)"
_OTHER_VERB = r"(?:skip|bypass|override|overlook|abandon|discard|drop|erase|delete|clear|circumvent)"
_AI_QUAL = r"(?:previous|prior|preceding|above|earlier|former|foregoing|initial|original|system|developer|your)"
_FILLER = r"(?: (?:all|any|of|the|my|your|these|those|everything|anything|what|that|you|were|was|told|given|i|me))*"

RULES: list[Rule] = [
    # ---- instruction override
    _r("override", 1.0, "instruction override",
       rf" {_PRIMARY_VERB}{_FILLER} (?:{_AI_QUAL}|all|every|existing|old)(?: \w+){{0,2}}? {_TARGET} "),
    _r("override_other", 1.0, "instruction override",
       rf" {_OTHER_VERB}{_FILLER} {_AI_QUAL}(?: \w+){{0,2}}? {_TARGET} "),
    _r("override_everything", 1.0, "instruction override",
       rf" {_PRIMARY_VERB} (?:everything|anything|all) (?:you (?:were|have been|ve been) told|(?:written |said )?(?:above|before|previously|so far)) "),
    _r("ignore_above", 0.6, "instruction override",
       rf" {_PRIMARY_VERB} (?:all |everything )?(?:of )?(?:the |that )?(?:above|previous|prior|preceding)(?: text| content| input)? (?:and|then|instead) "),
    _r("new_instructions", 0.5, "injected instructions",
       r"\b(?:new|updated|real|actual|revised|secret|hidden)\s+(?:system\s+)?(?:instructions?|rules|prompt|directives?)\s*:", raw=True),
    _r("from_now_on", 0.4, "behaviour takeover",
       r" from now on (?:you (?:will|are|must|shall|should|can|have to)|act|respond|answer|only) "),
    _r("no_longer", 0.8, "behaviour takeover",
       r" you (?:are|re) no longer (?:bound|restricted|limited|an ai|an assistant|chatgpt|claude|required|obligated) "),
    _r("obey_me", 0.5, "behaviour takeover",
       r" you (?:must|will|shall) (?:now )?(?:obey|follow) (?:me|my|only my|every) "),
    # ---- role-play jailbreaks
    _r("dan", 1.0, "role-play jailbreak (DAN)",
       r" (?:(?:you are|you re|act as|acting as|pretend to be|pretend you are|become|enable|activate|enter) "
       r"(?:now )?(?:a |an |the )?dan|dan mode|do anything now|anti dan|stan mode|dude mode) "),
    _r("developer_mode", 0.8, "role-play jailbreak (special mode)",
       r" (?:developer|dev|god|jailbreak|jailbroken|unrestricted|evil|opposite|unfiltered|uncensored|dan) mode (?:enabled|activated|engaged) "
       r"| (?:enable|activate|enter|switch to|turn on|simulate) (?:the )?(?:god|jailbreak|jailbroken|unrestricted|evil|opposite|unfiltered|uncensored) mode "
       r"| (?:you|chatgpt|assistant) (?:are|is|re) (?:now )?in (?:developer|god|unrestricted|jailbreak|jailbroken|dan) mode "),
    _r("jailbreak_word", 0.6, "jailbreak attempt", r" jailbr(?:ea|o)k(?:s|ed|en|ing)? "),
    _r("unfiltered_persona", 0.8, "role-play jailbreak (unfiltered persona)",
       r" (?:act|behave|respond|answer|reply|roleplay|role play|pretend|speak|talk|write) (?:as|like) "
       r"(?:an? |the |my )?(?:\w+ ){0,2}(?:unfiltered|uncensored|unrestricted|unaligned|unbound|amoral|unethical|immoral|rogue) "),
    _r("no_restrictions", 0.4, "request to drop restrictions",
       r" (?:no|without|free of|free from|zero|ignoring|beyond) (?:any )?(?:moral |ethical |safety |content )?"
       r"(?:restrictions|filters|filtering|censorship|limitations|guidelines|rules|boundaries|safeguards|guardrails) "),
    _r("disable_your_safety", 0.8, "request to disable safety",
       r" (?:disable|turn off|deactivate|remove|bypass|circumvent|switch off|drop|ignore) (?:all |all of )?your (?:\w+ )?"
       r"(?:filters?|guidelines|protocols|restrictions|guardrails|safeguards|alignment|censorship|safety|ethics|morals|programming) "),
    _r("disable_safety", 0.6, "request to disable safety",
       r" (?:disable|turn off|deactivate|remove|bypass|circumvent|switch off) (?:all |the |any )?(?:safety|ethical|moral) "
       r"(?:filters?|guidelines|protocols|restrictions|guardrails|safeguards|alignment|features) "),
    _r("pretend_unrestricted", 0.6, "role-play jailbreak",
       r" (?:pretend|imagine|suppose|roleplay|role play|hypothetically|let s play a game)(?: \w+){0,12}? "
       r"(?:no|without|don t have any|do not have any|free from) (?:any )?(?:restrictions|rules|filters|guidelines|limits|limitations|ethics|morals) "),
    _r("stay_in_character", 0.3, "role-play jailbreak", r" stay in character | never break character "),
    _r("persona_names", 0.6, "known jailbreak persona",
       r" (?:evil confidant|mongo tom|aim machiavelli|always intelligent and machiavellian|betterdan|better dan|evilbot|ucar|apophis) "),
    # ---- system prompt exfiltration
    _r("exfiltrate", 1.0, "system prompt exfiltration",
       r" (?:reveal|show|print|display|output|repeat|recite|dump|leak|expose|share|give me|tell me|write out|list|return|paste|copy)"
       r"(?: me| us)? (?:your|the|all|all of your|all the|everything in your|back your) (?:\w+ ){0,3}?"
       r"(?:system|initial|hidden|secret|original|internal|developer|pre ?prompt|confidential|base) "
       r"(?:prompt|instructions?|message|directives) "),
    _r("what_is_your_prompt", 1.0, "system prompt exfiltration",
       r" what (?:is|are|was|were) your (?:exact |full |original |initial |hidden |secret )?"
       r"(?:system prompt|system message|initial prompt|initial instructions|hidden instructions|original instructions|instructions|prompt) "),
    _r("repeat_above", 0.9, "system prompt exfiltration",
       r" (?:repeat|print|output|recite|copy|write out|show|tell me) (?:\w+ ){0,3}?(?:everything|all|the (?:text|words|content|lines|messages?|instructions)|words|text) "
       r"(?:\w+ ){0,2}?(?:above|before this|before that|prior to this|preceding|at the (?:start|beginning)) "),
    _r("what_were_you_told", 0.6, "system prompt exfiltration",
       r" (?:what|how) (?:were|are|was) you (?:told|instructed|programmed|prompted|configured) (?:to|before|at the (?:start|beginning)|initially) "),
    _r("verbatim", 0.3, "system prompt exfiltration", r" (?:verbatim|word for word|exactly as written) "),
    # ---- fake chat-template delimiters (raw text)
    _r("delimiters", 0.6, "fake chat-template delimiters",
       r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|endoftext\|>|<\|start_header_id\|>|\[/?inst\]|<</?sys>>"
       r"|^\s*#{2,}\s*(?:system|instruction)s?\b|</?system>|^\s*system\s*:\s*you\s+(?:are|must)", raw=True),
    _r("fake_system_turn", 1.0, "fake system turn",
       r"<\|im_start\|>\s*(?:system|developer)|<\|start_header_id\|>\s*(?:system|developer)|<<sys>>|"
       r"^\s*\[?(?:system|developer)\]?\s*(?:prompt|message|override|update)?\s*:\s*(?:ignore|disregard|forget|new|you\s+(?:are|must|will))",
       raw=True),
    # ---- decode-and-obey
    _r("decode_and_follow", 0.7, "obfuscated instructions",
       r" (?:decode|decrypt|deobfuscate|translate|convert|reverse)(?: \w+){0,4}? (?:base64|b64|rot13|rot 13|hex|hexadecimal|binary|morse|caesar|reversed)"
       r"(?: \w+){0,6}? (?:and|then) (?:\w+ )?(?:follow|execute|run|obey|do|perform|carry out|act on|comply) "),
]

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4}){15,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|(?:[A-Za-z0-9_-]{4}){15,}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){40,}\b")


def _printable_ratio(data: bytes) -> float:
    if not data:
        return 0.0
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0.0
    return sum(ch.isprintable() or ch in "\n\r\t" for ch in text) / len(text)


def _decoded_blobs(text: str) -> list[tuple[str, str]]:
    """Readable text hidden in base64 / hex blobs: ``(encoding, decoded)``."""
    out = []
    for m in _BASE64.finditer(text):
        blob = m.group(0)
        if not (re.search(r"[a-z]", blob) and re.search(r"[A-Z]", blob)):
            continue  # not plausibly base64 (single-case runs are identifiers / hashes)
        try:
            data = base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=b"-_" if "-" in blob or "_" in blob else None)
        except (binascii.Error, ValueError):
            continue
        if _printable_ratio(data) > 0.9:
            out.append(("base64", data.decode("utf-8")))
    for m in _HEX.finditer(text):
        data = bytes.fromhex(m.group(0))
        if _printable_ratio(data) > 0.9:
            out.append(("hex", data.decode("utf-8")))
    return out


@dataclass
class Verdict:
    score: float
    rules: dict[str, tuple[str, float, str]]   # rule name -> (reason, weight, evidence)

    @property
    def reason(self) -> str:
        seen, parts = set(), []
        for reason, _w, evidence in sorted(self.rules.values(), key=lambda r: -r[1]):
            if reason in seen:
                continue
            seen.add(reason)
            parts.append(f"{reason} ({evidence!r})" if evidence else reason)
        return "; ".join(parts[:3])


def _match_rules(raw: str, variants: list[str], found: dict, suffix: str = "") -> None:
    for rule in RULES:
        if rule.name in found:
            continue
        m = None
        for candidate in ([raw] if rule.raw else variants):
            m = rule.pattern.search(candidate)
            if m:
                break
        if m:
            evidence = m.group(0).strip()
            if len(evidence) > 60:
                evidence = evidence[:57] + "..."
            found[rule.name] = (rule.reason + suffix, rule.weight, evidence)


def _emoji_joiner(text: str, i: int) -> bool:
    """A zero-width joiner inside an emoji sequence (👨‍👩‍👧) is not obfuscation."""
    return text[i] == "\u200d" and 0 < i < len(text) - 1 and ord(text[i - 1]) > 0x2000 and ord(text[i + 1]) > 0x2000


def score_text(text: str) -> Verdict:
    """Score one piece of user text."""
    found: dict[str, tuple[str, float, str]] = {}
    hidden = _TAG_RE.findall(text)
    if hidden:
        decoded = _tags_to_ascii("".join(hidden))
        found["tag_chars"] = ("hidden Unicode tag characters", 1.0, decoded[:40])
        _match_rules(decoded.lower(), normalize(decoded), found, " (in hidden tag characters)")
        text = _TAG_RE.sub("", text)
    invisible = sum(1 for m in _INVISIBLE_RE.finditer(text) if not _emoji_joiner(text, m.start()))
    if invisible >= 3:
        found["invisible"] = ("zero-width / bidi characters", 0.4 if invisible < 10 else 0.6, f"{invisible} chars")
    elif any(c in _BIDI[2:] for c in text):
        found["bidi"] = ("bidirectional override characters", 0.3, "")
    raw = text.lower()
    _match_rules(raw, normalize(text), found)
    if "rot13" in raw or "rot 13" in raw or "rot-13" in raw:
        decoded = codecs.decode(text, "rot13")
        inner: dict = {}
        _match_rules(decoded.lower(), normalize(decoded), inner, " (rot13)")
        for name, value in inner.items():
            found.setdefault("rot13_" + name, value)
    for encoding, decoded in _decoded_blobs(text):
        inner = {}
        _match_rules(decoded.lower(), normalize(decoded), inner, f" (in {encoding})")
        if inner:
            for name, value in inner.items():
                found.setdefault(f"{encoding}_{name}", value)
        else:
            found.setdefault(f"{encoding}_blob", (f"encoded {encoding} payload", 0.3, decoded[:30]))
    return Verdict(round(sum(w for _r, w, _e in found.values()), 3), found)


class InjectionGuard:
    """``(payload, path, headers) -> payload | Block``: blocks requests scoring ``>= threshold``."""

    def __init__(self, threshold: float = 1.0, *, scope: str = "latest", tool_results: bool = False,
                 dry_run: bool = False) -> None:
        self.threshold = threshold
        self.scope = scope
        self.tool_results = tool_results
        self.dry_run = dry_run

    def verdict(self, payload: Any) -> Verdict:
        combined: dict[str, tuple[str, float, str]] = {}
        for text in user_texts(payload, scope=self.scope, tool_results=self.tool_results):
            for name, hit in score_text(text).rules.items():
                combined.setdefault(name, hit)   # each rule counts once per request
        return Verdict(round(sum(w for _r, w, _e in combined.values()), 3), combined)

    def __call__(self, payload: Any, path: str, headers: dict) -> Any:
        if not is_request(payload):
            return payload
        v = self.verdict(payload)
        if v.score >= self.threshold:
            log.info("request %s scored %.2f: %s", headers.get("x-request-id", "-"), v.score, v.reason)
            if not self.dry_run:
                return Block(f"Request blocked by prompt-injection guard: {v.reason}", 400, "prompt_injection")
        return payload


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=1.0, help="block at this score or above (1.0)")
    parser.add_argument("--scan", choices=["latest", "all"], default="latest",
                        help="the latest user turn (default) or every user message")
    parser.add_argument("--tool-results", action="store_true",
                        help="also scan tool results of the latest turn (indirect injection)")
    parser.add_argument("--dry-run", action="store_true", help="log what would be blocked, block nothing")


def _build(args: argparse.Namespace) -> InjectionGuard:
    return InjectionGuard(args.threshold, scope=args.scan, tool_results=args.tool_results, dry_run=args.dry_run)


SPEC = Spec("injection_guard", "Rule-based prompt-injection / jailbreak guard.", 10502, _build, _add_arguments)

if __name__ == "__main__":
    run_main(SPEC)
