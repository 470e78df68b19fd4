"""Parse a free-text agent description into positive scope, example requests and exclusions.

Descriptions usually say what an agent covers, give quoted example requests
("Handles: 'x', 'y'") and say what it does NOT cover ("Does not track parcels ...").
Words under a negation are evidence *against* the agent (they usually name a sibling
agent's job), so they must not be counted as its scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.routing.embedded_text import content_stems, content_words, normalize, spell_out_negations
from gateway.routing.types import AgentSpec

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


# What a description says of another agent of the same listener when it hands a topic over
# ("Flights are handled by air_travel.", "...; that is inbox.", "for email or chat use messaging",
# "Bugs in application code go to the code agent instead."). The sentence names that topic, so
# read as scope it would be evidence *for* the agent that refuses it.
_REFERRAL = r"(?:use|is|by|ask|see|try|via)"
_ROLE = r"(?:agent|service|desk|team|assistant|bot|helper)"


def handoff_pattern(agent: AgentSpec, agents: list[AgentSpec]) -> re.Pattern | None:
    """A pattern that finds a mention of another agent of the listener in ``agent``'s description,
    or None when there is none to find. A mention is the other agent's id as written
    ("air_travel", "lodging_agent"); its words before a role noun ("the code agent", "the handyman
    service"); or a one-word id after a referral ("use helpdesk", "that is inbox", "handled by
    messaging"). A bare common word ("calendar" in "adds events to my calendar" for a sibling
    called calendar) is not a mention unless a referral introduces it. A `default: true` agent
    hands nothing over: it names the others to take what they leave ("anything the flight and
    hotel agents don't cover: greetings, ...")."""
    if agent.default:
        return None
    agent_id, others = agent.id, [a.id for a in agents]
    alts = []
    for other in others:
        if not other or other == agent_id:
            continue
        words = _id_words(other).lower().split()
        if not words:
            continue
        name = r"\s+".join(map(re.escape, words))
        if re.search(r"[_\-.]", other):
            alts.append(re.escape(other.lower()))
        alts.append(rf"{name}(?:'s)?\s+{_ROLE}s?")
        alts.append(rf"{_REFERRAL}\s+(?:the\s+)?{name}")
    if not alts:
        return None
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


def parse_description(agent_id: str, description: str, default: bool = False,
                      extra_examples: tuple[str, ...] | list[str] = (),
                      handoff: re.Pattern | None = None) -> AgentProfile:
    """Split a description into scope / examples / exclusions (stemmed content words).
    ``extra_examples``: the agent's configured `examples:` requests, counted like quoted ones.
    ``handoff``: `handoff_pattern` of the agent in its listener; a clause that hands its topic to
    another agent is an exclusion, like a "Does not ..." clause."""
    prof = AgentProfile(id=agent_id, default=default)
    text = normalize(description or "")
    examples = [m.group(2) for m in _QUOTED.finditer(text)] + [normalize(e) for e in extra_examples]
    text = spell_out_negations(_QUOTED.sub(" . ", text))  # "It cannot book appointments." negates too
    for ex in examples:
        stems = content_stems(ex)
        if stems:
            prof.examples.append(stems)
            prof.example_words.extend(content_words(ex))
    for clause in _CLAUSE_END.split(text):
        if handoff is not None and handoff.search(clause):
            _add(prof.exclusions, clause, prof.excluded_words)
            continue
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
