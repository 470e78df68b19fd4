"""Conversation-quality signals (Plano §5.4): model-free heuristics over a request's message history.

Why heuristics: they cost microseconds, need no model and no network, and flag
the conversations worth a human look (a user correcting the assistant, asking
for a person, an agent retrying the same failing tool call). No maintained
Python package implements katanemo's taxonomy (PyPI ``signals`` is an unrelated
pub/sub library), so this is our own implementation of the documented rules.

Taxonomy (layer.category.leaf):

* ``interaction.misalignment.{correction,rephrase,clarification}``
* ``interaction.stagnation.{dragging,repetition}``
* ``interaction.disengagement.{escalation,quit,negative_stance}``
* ``interaction.satisfaction.{gratitude,confirmation,success}``
* ``execution.failure.{invalid_args,bad_query,tool_not_found,auth_misuse,state_error}``
* ``execution.loops.{retry,parameter_drift,oscillation}`` (three or more repetitions)
* ``environment.exhaustion.{api_error,timeout,rate_limit,network,malformed_response,context_overflow}``

Execution and environment signals need tool traffic: an assistant message's
``tool_calls`` is a function call, a ``tool`` message its observation.

Scoring: severity per category is 0 (none), 1 (1–2), 2 (3–4), 3 (5+). The score
starts at 50; an escalation or quit, or disengagement/stagnation severity 3, makes
the conversation ``severe`` (score 0). Otherwise +20×{0.6, 0.8, 0.95} for 1/2/3+
satisfaction signals, −10×disengagement severity, −15 when more than 30% of user
turns are misaligned, −8×stagnation severity when stagnation count > 2, −8 per
execution failure, −5 per loop, −3 per exhaustion; clamped to 0–100 and bucketed
excellent ≥75, good ≥60, neutral ≥40, poor ≥25, else severe. Efficiency is 1 up to
the baseline number of user turns (5), then 1/(1+0.3×excess).

Where it runs: never on the request's critical path. Under ``plano up`` the span
ships with its conversation to the telemetry sidecar process
(:mod:`gateway.telemetry.sidecar`), which analyses it there. Without a sidecar
(``Telemetry`` used in-process) ``RequestContext.finish`` queues the analysis; inside
an event loop it runs with the loop's telemetry batch after the response went out (a
time budget per batch), elsewhere on a helper thread. Either way the results are
attached to the model-proxy LLM span before it is exported, and its end time is the
request's. Per-message findings are cached, so a conversation
re-sent with one more turn only analyses the new messages.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import orjson

BASELINE_TURNS = 5
CHAR_SIMILARITY = 0.65
TOKEN_SIMILARITY = 0.60
REPEAT_SIMILARITY = 0.90
MAX_MESSAGE_CHARS = 2000
MAX_MESSAGES = 100
MAX_EVENTS = 32

QUALITY_BUCKETS = ((75, "excellent"), (60, "good"), (40, "neutral"), (25, "poor"))


@dataclass(slots=True)
class Signal:
    type: str  # full leaf name, e.g. "interaction.misalignment.correction"
    message_index: int
    confidence: float
    snippet: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def category(self) -> str:
        return self.type.rsplit(".", 1)[0]


@dataclass(slots=True)
class Report:
    signals: list[Signal]
    counts: dict[str, int]  # category -> count
    turn_count: int
    efficiency: float
    score: float
    quality: str
    flagged: bool

    def severity(self, category: str) -> int:
        return severity(self.counts.get(category, 0))

    def attributes(self) -> dict:
        attrs = {
            "signals.quality": self.quality,
            "signals.quality_score": round(self.score, 1),
            "signals.turn_count": self.turn_count,
            "signals.efficiency_score": round(self.efficiency, 3),
        }
        for category, count in sorted(self.counts.items()):
            if count:
                attrs[f"signals.{category}.count"] = count
                attrs[f"signals.{category}.severity"] = severity(count)
        if self.flagged:
            attrs["signals.flagged"] = True
        return attrs

    def _event_signals(self) -> list[Signal]:
        """The instances worth an event: the most recent ones, at most 8 per leaf and :data:`MAX_EVENTS` in all."""
        if len(self.signals) <= MAX_EVENTS:
            return self.signals
        kept: list[Signal] = []
        per_leaf: dict[str, int] = {}
        for signal in reversed(self.signals):
            if per_leaf.get(signal.type, 0) < 8:
                per_leaf[signal.type] = per_leaf.get(signal.type, 0) + 1
                kept.append(signal)
                if len(kept) == MAX_EVENTS:
                    break
        kept.reverse()
        return kept

    def events(self, *, with_snippets: bool) -> list[tuple[str, dict]]:
        """``(name, attributes)`` per signal instance (see :meth:`_event_signals`)."""
        from gateway.telemetry.redact import redact_content

        out = []
        for signal in self._event_signals():
            attrs = {
                "signal.type": signal.type,
                "signal.message_index": signal.message_index,
                "signal.confidence": round(signal.confidence, 2),
            }
            if with_snippets and signal.snippet:
                attrs["signal.snippet"] = redact_content(signal.snippet, 120)
            if signal.metadata:
                attrs["signal.metadata"] = orjson.dumps(signal.metadata).decode()
            out.append((f"signal.{signal.type}", attrs))
        return out


def severity(count: int) -> int:
    if count <= 0:
        return 0
    if count <= 2:
        return 1
    if count <= 4:
        return 2
    return 3


# --------------------------------------------------------------------------- phrase lexicons
#
# Phrases are matched on lower-cased word tokens, not with regular expressions: one
# tokenisation per message and a dictionary lookup per word keep a 2000-character
# message at tens of microseconds. Spec syntax: words separated by spaces, ``a|b`` for
# alternatives, a trailing ``?`` for an optional word.

_USER_SPECS = {
    "interaction.disengagement.escalation": [
        ("speak|talk|chat to|with a|an|the|your|some? human|person|agent|representative|someone|somebody|manager|"
         "supervisor|operator|people"),
        "real|live|actual human|person|agent|operator|people", "human agent|being|support|operator", "escalate",
        "escalation", "customer service|support|care", "get me a|an human|person|agent|manager",
    ],
    "interaction.disengagement.quit": [
        "forget it|about|this", "never mind", "nevermind", "i give up", "giving up", "i'm|im done",
        "i'll|ill|i will do it myself", "i'll|ill|i will figure it out myself", "this|it is|was pointless",
        "waste of my|your? time", "i quit", "stop trying", "i'm|im out",
    ],
    "interaction.disengagement.negative_stance": [
        "useless", "terrible", "awful", "horrible", "stupid", "dumb", "ridiculous", "pathetic", "annoying",
        "worst", "hopeless", "incompetent", "frustrated", "frustrating", "frustration", "wtf", "garbage", "rubbish",
        "not|isn't|isnt|wasn't|wasnt helpful|helping|working", "this sucks", "this is|was bad",
        "still? doesn't|doesnt|didn't|didnt work|help", "does|did not work|help",
    ],
    "interaction.misalignment.correction": [
        "that's|thats|it's|its wrong|incorrect", "that's|thats|it's|its not right|correct|true|accurate|it|what",
        "that|this|it is|was not right|correct|true|accurate|what",
        "that|this|it isn't|isnt|wasn't|wasnt right|correct|true|accurate|what",
        "not what i asked|meant|wanted|said|need|needed|requested", "i said|meant", "i asked for|about",
        "i was asking|talking about|for", "you misunderstood|misunderstand|misread",
        "you've|you have misunderstood|misread", "you got it wrong", "you're|youre|you are wrong|mistaken|incorrect",
        "wrong|incorrect answer|result|information|info|response|one", "i didn't|didnt ask|say|mean|want",
        "i did not ask|say|mean|want", "no i want|need|said|meant|asked",
    ],
    "interaction.misalignment.clarification": [
        "what do|did you mean", "i don't|dont understand|follow|get", "i do not understand|follow|get",
        "i'm|im confused", "confusing", "confused", "could|can you clarify", "doesn't|doesnt make any? sense",
        "does not make any? sense", "what does that|this mean", "unclear",
    ],
    "interaction.misalignment.rephrase": [
        "in other words", "let me rephrase|clarify|try again", "let me put it", "to rephrase",
        "what i mean|meant is|was", "what i'm|im asking|saying is", "i'll|ill|i will rephrase|try again",
        "to be clear|clearer", "put another way",
    ],
    "interaction.satisfaction.gratitude": [
        "thanks", "thank", "thx", "thankyou", "appreciate", "appreciated", "cheers", "grateful", "much obliged",
    ],
    "interaction.satisfaction.success": [
        "it|that|this works|worked", "it|that|this did it", "it|that|this fixed|solved it",
        "works|working now|perfectly|great", "problem|issue|bug is? solved|fixed|resolved|gone", "all set",
        "that solved|fixed",
    ],
    "interaction.satisfaction.confirmation": [
        "perfect", "exactly", "that's|thats right|correct|it|great", "that is right|correct|it",
        "sounds|looks good|great", "got it", "makes sense", "great", "awesome", "excellent",
    ],
}

# Tool observations: environment problems first (nobody's fault), then execution failures.
_ENVIRONMENT_SPECS = {
    "environment.exhaustion.rate_limit": ["rate limit|limited|limiting|limits", "ratelimit", "ratelimited", "429",
                                          "too many requests", "quota exceeded|exhausted"],
    "environment.exhaustion.context_overflow": ["context length|window", "maximum context", "too many tokens",
                                                "token limit", "prompt is too long"],
    "environment.exhaustion.timeout": ["timed out", "timeout", "timedout", "deadline exceeded", "504"],
    "environment.exhaustion.network": ["connection refused|reset|error|aborted|closed", "network error|unreachable",
                                       "host unreachable", "name resolution", "dns", "econnrefused", "econnreset"],
    "environment.exhaustion.malformed_response": ["invalid json", "malformed", "jsondecodeerror", "unexpected token",
                                                  "unexpected end of", "could not parse|decode"],
    "environment.exhaustion.api_error": ["internal server error", "service unavailable", "bad gateway", "500", "502",
                                         "503", "upstream error"],
}
_FAILURE_SPECS = {
    "execution.failure.tool_not_found": ["tool|function not found", "tool|function does not exist",
                                         "unknown tool|function", "no such tool|function",
                                         "not a valid tool|function", "tool|function is not available"],
    "execution.failure.auth_misuse": ["unauthorized", "unauthorised", "forbidden", "permission denied",
                                      "access denied", "invalid api? key|token|credentials",
                                      "authentication failed|required", "401", "403"],
    "execution.failure.invalid_args": ["invalid argument|arguments|parameter|parameters|input|value|values",
                                       "missing required? argument|arguments|parameter|parameters|field|fields",
                                       "validation error|failed", "unexpected keyword",
                                       "required argument|parameter|field", "typeerror", "must be a|an|of"],
    "execution.failure.bad_query": ["syntax error", "invalid query", "no such column|table", "query failed|error",
                                    "parse error", "no results|matches found"],
    "execution.failure.state_error": ["already exists", "not initialized|initialised|ready|started",
                                      "invalid state", "conflict", "precondition", "not found", "404"],
}

_CONFIDENCE = {
    "interaction.disengagement.escalation": 0.9, "interaction.disengagement.quit": 0.85,
    "interaction.disengagement.negative_stance": 0.7, "interaction.misalignment.correction": 0.75,
    "interaction.misalignment.clarification": 0.7, "interaction.misalignment.rephrase": 0.8,
    "interaction.satisfaction.gratitude": 0.9, "interaction.satisfaction.success": 0.85,
    "interaction.satisfaction.confirmation": 0.7,
}
_NEGATORS = frozenset({"not", "no", "never", "hardly"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def _expand(spec: str) -> list[tuple[str, ...]]:
    phrases: list[tuple[str, ...]] = [()]
    for token in spec.split():
        optional = token.endswith("?")
        choices = token.rstrip("?").split("|")
        grown = [p + (c,) for p in phrases for c in choices]
        phrases = grown + phrases if optional else grown
    return [p for p in phrases if p]


class _Lexicon:
    """Phrases indexed by first word; ``find`` returns the first match per leaf."""

    def __init__(self, specs: dict[str, list[str]]) -> None:
        self.order = list(specs)
        self.index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for leaf, items in specs.items():
            for spec in items:
                for phrase in _expand(spec):
                    self.index.setdefault(phrase[0], []).append((phrase, leaf))
        for candidates in self.index.values():
            candidates.sort(key=lambda c: -len(c[0]))

    def find(self, words: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        index = self.index
        n = len(words)
        for i in range(n):
            candidates = index.get(words[i])
            if candidates is None:
                continue
            for phrase, leaf in candidates:
                if leaf in found:
                    continue
                size = len(phrase)
                if size == 1 or (i + size <= n and tuple(words[i:i + size]) == phrase):
                    found[leaf] = (i, " ".join(phrase))
        return found


_USER = _Lexicon(_USER_SPECS)
_OBSERVATION = _Lexicon({**_ENVIRONMENT_SPECS, **_FAILURE_SPECS})


# --------------------------------------------------------------------------- per-message facts (cached)

_SIMILARITY_CHARS = 400  # similarity looks at the start of a message: enough to see a rephrase
_CACHE_MAX = 16384
_cache: dict = {}
_pair_cache: dict = {}


@dataclass(slots=True)
class _UserFacts:
    phrases: dict  # leaf -> (word position, matched phrase)
    start: str  # "no" | "yes" | "huh" | "bye" | ""
    shouting: bool
    grams: frozenset
    tokens: Counter
    norm: str


def _remember(cache: dict, key, value) -> None:
    if len(cache) >= _CACHE_MAX:
        for old in list(cache)[: _CACHE_MAX // 8]:  # drop the oldest eighth
            cache.pop(old, None)
    cache[key] = value


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _user_facts(text: str) -> _UserFacts:
    key = ("u", len(text), hash(text))
    found = _cache.get(key)
    if found is not None:
        return found
    words = _words(text)
    phrases = _USER.find(words)
    for leaf in ("interaction.satisfaction.gratitude", "interaction.satisfaction.success",
                 "interaction.satisfaction.confirmation"):
        hit = phrases.get(leaf)
        if hit is not None and _negated(words, hit[0]):
            del phrases[leaf]
    start = ""
    if words:
        first = words[0]
        if first in ("no", "nope", "actually") and len(words) > 2:
            start = "no"
        elif first in ("yes", "yep", "yeah", "yup") and len(words) <= 6:
            start = "yes"
        elif len(words) == 1 and first in ("huh", "what") and "?" in text:
            start = "huh"
        elif len(words) <= 2 and first in ("bye", "goodbye"):
            start = "bye"
    shouting = "!!!" in text or "???" in text or "?!?" in text or "!?!" in text
    head = text[:_SIMILARITY_CHARS]
    norm = " ".join(_words(head))
    grams = frozenset(norm[i:i + 3] for i in range(max(1, len(norm) - 2))) if len(norm) >= 8 else frozenset()
    facts = _UserFacts(phrases, start, shouting, grams, Counter(_words(head)), norm)
    _remember(_cache, key, facts)
    return facts


def _negated(words: list[str], position: int) -> bool:
    for j in range(max(0, position - 2), position):
        if words[j] in _NEGATORS or words[j].endswith("n't"):
            return True
    return False


def _assistant_grams(text: str) -> frozenset:
    key = ("a", len(text), hash(text))
    found = _cache.get(key)
    if found is None:
        norm = " ".join(_words(text[:_SIMILARITY_CHARS]))
        found = frozenset(norm[i:i + 3] for i in range(max(1, len(norm) - 2)))
        _remember(_cache, key, found)
    return found


def _observation(text: str) -> tuple[str, str] | None:
    key = ("t", len(text), hash(text))
    if key in _cache:
        return _cache[key]
    found = _OBSERVATION.find(_words(text))
    result = None
    for leaf in _OBSERVATION.order:  # environment leaves first, then failures
        if leaf in found:
            result = (leaf, found[leaf][1])
            break
    _remember(_cache, key, result)
    return result


def _similarity(a: _UserFacts, b: _UserFacts) -> tuple[float, float]:
    key = (id(a), id(b))
    found = _pair_cache.get(key)
    if found is None or found[0] is not a or found[1] is not b:
        found = (a, b, _jaccard(a.grams, b.grams), _cosine(a.tokens, b.tokens))
        _remember(_pair_cache, key, found)
    return found[2], found[3]


def _set_similarity(a: frozenset, b: frozenset) -> float:
    key = (id(a), id(b))
    found = _pair_cache.get(key)
    if found is None or found[0] is not a or found[1] is not b:
        found = (a, b, _jaccard(a, b))
        _remember(_pair_cache, key, found)
    return found[2]


# --------------------------------------------------------------------------- analysis


def analyze(messages, *, baseline_turns: int = BASELINE_TURNS) -> Report:
    """Signals and quality for a request's messages (OpenAI chat format; anything else is ignored)."""
    msgs = _normalise(messages)
    signals: list[Signal] = []
    user_turns = 0
    misaligned_turns = 0
    previous_users: list[tuple[int, _UserFacts]] = []
    previous_assistant: tuple[int, frozenset] | None = None
    calls: list[tuple[int, str, str]] = []

    for index, role, text, tool_calls in msgs:
        if role == "user":
            user_turns += 1
            facts = _user_facts(text)
            found = _user_signals(index, text, facts, previous_users)
            if any(s.category == "interaction.misalignment" for s in found):
                misaligned_turns += 1
            signals.extend(found)
            if facts.grams:
                previous_users.append((index, facts))
                del previous_users[:-3]
        elif role == "assistant":
            for name, args in tool_calls:
                calls.append((index, name, args))
            if len(text) >= 20:
                grams = _assistant_grams(text)
                if previous_assistant is not None and _set_similarity(grams, previous_assistant[1]) >= 0.85:
                    signals.append(Signal("interaction.stagnation.repetition", index, 0.8, text,
                                          {"repeats_message": previous_assistant[0], "speaker": "assistant"}))
                previous_assistant = (index, grams)
        elif role == "tool" and text:
            hit = _observation(text)
            if hit is not None:
                signals.append(Signal(hit[0], index, 0.8 if hit[0].startswith("environment") else 0.75, text,
                                      {"match": hit[1]}))

    if calls:
        signals.extend(_loop_signals(calls))
    if user_turns > baseline_turns:
        excess = user_turns - baseline_turns
        signals.append(Signal("interaction.stagnation.dragging", msgs[-1][0] if msgs else 0,
                              min(1.0, 0.5 + 0.1 * excess), "", {"user_turns": user_turns, "baseline": baseline_turns}))
    if not signals:  # the usual case: nothing to score, the neutral baseline (what _score gives for no signals)
        return Report(signals, {}, user_turns, 1.0, 50.0, "neutral", False)
    signals.sort(key=lambda s: s.message_index)

    counts: dict[str, int] = {}
    for signal in signals:
        counts[signal.category] = counts.get(signal.category, 0) + 1
    efficiency = 1.0 if user_turns <= baseline_turns else 1.0 / (1.0 + 0.3 * (user_turns - baseline_turns))
    score, quality = _score(signals, counts, user_turns, misaligned_turns)
    flagged = bool(
        counts.get("interaction.disengagement")
        or counts.get("interaction.stagnation", 0) > 2
        or counts.get("execution.failure")
        or counts.get("execution.loops")
        or quality in ("poor", "severe")
    )
    return Report(signals, counts, user_turns, efficiency, score, quality, flagged)


def attach(span, messages, *, capture_content: bool = False) -> str:
    """Analyse ``messages`` and put the result on ``span`` (attributes, events, a 🚩 in the name
    when flagged); returns the quality bucket. ``span`` needs ``update``, ``event``, ``rename``, ``name``."""
    report = analyze(messages)
    span.update(report.attributes())
    if not report.signals:
        return report.quality
    for name, attrs in report.events(with_snippets=capture_content):
        span.event(name, attrs)
    if report.flagged and not span.name.endswith(" 🚩"):
        span.rename(f"{span.name} 🚩")
    return report.quality


def _score(signals: list[Signal], counts: dict[str, int], user_turns: int, misaligned_turns: int) -> tuple[float, str]:
    leaves = {s.type for s in signals}
    if ("interaction.disengagement.escalation" in leaves or "interaction.disengagement.quit" in leaves
            or severity(counts.get("interaction.disengagement", 0)) == 3
            or severity(counts.get("interaction.stagnation", 0)) == 3):
        return 0.0, "severe"
    score = 50.0
    satisfaction = counts.get("interaction.satisfaction", 0)
    if satisfaction:
        score += 20 * (0.6 if satisfaction == 1 else 0.8 if satisfaction == 2 else 0.95)
    score -= 10 * severity(counts.get("interaction.disengagement", 0))
    if user_turns and misaligned_turns / user_turns > 0.30:
        score -= 15
    stagnation = counts.get("interaction.stagnation", 0)
    if stagnation > 2:
        score -= 8 * severity(stagnation)
    score -= 8 * counts.get("execution.failure", 0)
    score -= 5 * counts.get("execution.loops", 0)
    score -= 3 * counts.get("environment.exhaustion", 0)
    score = max(0.0, min(100.0, score))
    for threshold, name in QUALITY_BUCKETS:
        if score >= threshold:
            return score, name
    return score, "severe"


def _user_signals(index: int, text: str, facts: _UserFacts, previous: list) -> list[Signal]:
    out: list[Signal] = []
    phrases = facts.phrases
    for leaf in ("interaction.disengagement.escalation", "interaction.disengagement.quit",
                 "interaction.disengagement.negative_stance"):
        hit = phrases.get(leaf)
        if hit is not None:
            out.append(Signal(leaf, index, _CONFIDENCE[leaf], text, {"match": hit[1]}))
    if facts.start == "bye" and "interaction.disengagement.quit" not in phrases and previous:
        out.append(Signal("interaction.disengagement.quit", index, 0.5, text, {"match": facts.norm}))
    if facts.shouting and "interaction.disengagement.negative_stance" not in phrases:
        out.append(Signal("interaction.disengagement.negative_stance", index, 0.5, text, {"match": "!!!"}))
    negative = bool(out)
    if previous:  # misalignment needs something to be misaligned with
        for leaf in ("interaction.misalignment.correction", "interaction.misalignment.clarification",
                     "interaction.misalignment.rephrase"):
            hit = phrases.get(leaf)
            if hit is not None:
                out.append(Signal(leaf, index, _CONFIDENCE[leaf], text, {"match": hit[1]}))
        if facts.start == "no" and "interaction.misalignment.correction" not in phrases:
            out.append(Signal("interaction.misalignment.correction", index, 0.6, text, {"match": "no"}))
        if facts.start == "huh" and "interaction.misalignment.clarification" not in phrases:
            out.append(Signal("interaction.misalignment.clarification", index, 0.6, text, {"match": facts.norm}))
        if facts.grams and "interaction.misalignment.rephrase" not in phrases:
            for prev_index, prev in reversed(previous):
                char_sim, token_sim = _similarity(facts, prev)
                if char_sim >= REPEAT_SIMILARITY or facts.norm == prev.norm:
                    out.append(Signal("interaction.stagnation.repetition", index, round(char_sim, 2), text,
                                      {"repeats_message": prev_index, "speaker": "user"}))
                    break
                if (char_sim >= CHAR_SIMILARITY or token_sim >= TOKEN_SIMILARITY) and len(facts.tokens) >= 3:
                    out.append(Signal("interaction.misalignment.rephrase", index,
                                      round(max(char_sim, token_sim), 2), text,
                                      {"similar_to": prev_index, "char_similarity": round(char_sim, 2),
                                       "token_similarity": round(token_sim, 2)}))
                    break
    if not negative and not any(s.category == "interaction.misalignment" for s in out):
        for leaf in ("interaction.satisfaction.gratitude", "interaction.satisfaction.success",
                     "interaction.satisfaction.confirmation"):
            hit = phrases.get(leaf)
            if hit is not None:
                out.append(Signal(leaf, index, _CONFIDENCE[leaf], text, {"match": hit[1]}))
                if leaf == "interaction.satisfaction.success":
                    break  # "it works, perfect" is one success, not also a confirmation
        if facts.start == "yes" and previous and not any(s.category == "interaction.satisfaction" for s in out):
            out.append(Signal("interaction.satisfaction.confirmation", index, 0.6, text, {"match": "yes"}))
    return out


def _loop_signals(calls: list[tuple[int, str, str]]) -> list[Signal]:
    """Retries (same call 3+ times in a row), parameter drift (same tool, changing arguments, 3+ times),
    oscillation (two tools alternating, six calls or more)."""
    out: list[Signal] = []
    i = 0
    while i < len(calls):
        j = i
        while j + 1 < len(calls) and calls[j + 1][1] == calls[i][1]:
            j += 1
        run = calls[i:j + 1]
        if len(run) >= 3:
            distinct = len({args for _, _, args in run})
            if distinct == 1:
                out.append(Signal("execution.loops.retry", run[-1][0], 0.9, "",
                                  {"tool": run[0][1], "repetitions": len(run)}))
            else:
                out.append(Signal("execution.loops.parameter_drift", run[-1][0], 0.75, "",
                                  {"tool": run[0][1], "repetitions": len(run), "distinct_arguments": distinct}))
        i = j + 1
    names = [name for _, name, _ in calls]
    i = 0
    while i + 1 < len(names):
        a, b = names[i], names[i + 1]
        if a == b:
            i += 1
            continue
        j = i + 2
        while j < len(names) and names[j] == (a if (j - i) % 2 == 0 else b):
            j += 1
        if j - i >= 6:
            out.append(Signal("execution.loops.oscillation", calls[j - 1][0], 0.8, "",
                              {"tools": [a, b], "length": j - i}))
            i = j
        else:
            i += 1
    return out


# --------------------------------------------------------------------------- text helpers


def _normalise(messages) -> list[tuple[int, str, str, list[tuple[str, str]]]]:
    """``(index, role, text, tool_calls)`` for the last :data:`MAX_MESSAGES` messages, text capped."""
    if not isinstance(messages, list):
        return []
    start = max(0, len(messages) - MAX_MESSAGES)
    out = []
    for index in range(start, len(messages)):
        message = messages[index]
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "function":
            role = "tool"
        if role not in ("user", "assistant", "tool"):
            continue
        text = _text(message.get("content"))[:MAX_MESSAGE_CHARS]
        calls: list[tuple[str, str]] = []
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    calls.append((fn["name"], _canonical_args(fn.get("arguments"))))
            fc = message.get("function_call")
            if isinstance(fc, dict) and isinstance(fc.get("name"), str):
                calls.append((fc["name"], _canonical_args(fc.get("arguments"))))
        out.append((index, role, text, calls))
    return out


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(content, dict):
        return orjson.dumps(content).decode()
    return ""


def _canonical_args(arguments) -> str:
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments.strip()
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return str(arguments)


def _jaccard(a, b) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    if not dot:
        return 0.0
    return dot / (math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values())))
