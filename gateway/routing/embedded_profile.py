"""Parse a free-text agent description into positive scope, example requests and exclusions.

Descriptions usually say what an agent covers, give quoted example requests
("Handles: 'x', 'y'") and say what it does NOT cover ("Does not track parcels ...").
Words under a negation are evidence *against* the agent (they usually name a sibling
agent's job), so they must not be counted as its scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.routing.embedded_text import content_stems, content_words, normalize

# A quoted example: opening quote at a word boundary, closing quote not followed by a letter.
_QUOTED = re.compile(r"""(?:(?<=^)|(?<=[\s:(,;]))(['"])(.+?)\1(?=[\s,.;:)!?]|$)""")
_CLAUSE_END = re.compile(r"[.;:!?]+(?:\s|$)|\(|\)")
# Negation opens a scope that runs to the end of the clause or to a contrastive "but".
_NEGATION = re.compile(r"\b(?:not|never|except|excluding|nor)\b")
_SCOPE_END = re.compile(r"\b(?:but|however|instead)\b")
# A negation inside a positive clause ("cancels orders that have not shipped, and ...")
# only covers its own list item.
_LOCAL_END = re.compile(r"\b(?:but|however|instead)\b|,\s*and\b|,\s*(?=\w+ing\b)")
# Clause-initial negation ("Does not ...", "Not for ...") covers the whole clause.
_CLAUSE_NEG = re.compile(r"^\s*(?:(?:it|this agent|the agent|agent)\s+)?(?:(?:does|do|will|can|should)\s+)?(?:not|never)\b")


@dataclass
class AgentProfile:
    """Stem sequences of one agent's description, split by role."""

    id: str
    default: bool
    scope: list[list[str]] = field(default_factory=list)
    examples: list[list[str]] = field(default_factory=list)
    exclusions: list[list[str]] = field(default_factory=list)
    # Unstemmed content words of the scope / examples (for the semantic layer).
    scope_words: list[str] = field(default_factory=list)
    example_words: list[str] = field(default_factory=list)
    excluded_words: list[str] = field(default_factory=list)


def _id_words(agent_id: str) -> str:
    return re.sub(r"[_\-.]+", " ", agent_id)


def parse_description(agent_id: str, description: str, default: bool = False,
                      extra_examples: tuple[str, ...] | list[str] = ()) -> AgentProfile:
    """Split a description into scope / examples / exclusions (stemmed content words).
    ``extra_examples``: the agent's configured `examples:` requests, counted like quoted ones."""
    prof = AgentProfile(id=agent_id, default=default)
    text = normalize(description or "")
    examples = [m.group(2) for m in _QUOTED.finditer(text)] + [normalize(e) for e in extra_examples]
    text = _QUOTED.sub(" . ", text)
    for ex in examples:
        stems = content_stems(ex)
        if stems:
            prof.examples.append(stems)
            prof.example_words.extend(content_words(ex))
    for clause in _CLAUSE_END.split(text):
        neg = _NEGATION.search(clause)
        if not neg:
            _add(prof.scope, clause, prof.scope_words)
            continue
        _add(prof.scope, clause[: neg.start()], prof.scope_words)
        rest = clause[neg.end():]
        end = (_SCOPE_END if _CLAUSE_NEG.match(clause) else _LOCAL_END).search(rest)
        if end:
            _add(prof.exclusions, rest[: end.start()], prof.excluded_words)
            _add(prof.scope, rest[end.end():], prof.scope_words)
        else:
            _add(prof.exclusions, rest, prof.excluded_words)
    _add(prof.scope, _id_words(agent_id), prof.scope_words)
    return prof


def _add(bucket: list[list[str]], text: str, words_bucket: list[str]) -> None:
    stems = content_stems(text)
    if stems:
        bucket.append(stems)
        words_bucket.extend(content_words(text))
