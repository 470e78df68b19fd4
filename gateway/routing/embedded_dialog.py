"""Conversation helpers: extract user turns from OpenAI-shaped messages, spot follow-ups.

A short or anaphoric turn ("and for Munich?", "drop the tote", "can I tack on one more
day?") usually continues the previous user turn's topic, so the router blends that
turn's evidence in; a turn with its own strong evidence can still switch topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.routing.embedded_text import content_stems, normalize


@dataclass
class Turn:
    """One user turn and the assistant reply that preceded it (if any)."""

    text: str
    assistant_before: str = ""
    assistant_name: str = ""   # `name` of that assistant message (often the agent that answered)


def content_text(content) -> str:
    """Text of a message content: a string or a list of {type: text, text} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                txt = part.get("text")
                if isinstance(txt, str) and part.get("type", "text") in ("text", "input_text"):
                    out.append(txt)
        return " ".join(out)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def user_turns(messages) -> list[Turn]:
    """User turns in order; system/developer/tool messages are ignored."""
    turns: list[Turn] = []
    last_assistant = ""
    last_name = ""
    for m in messages or ():
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        text = content_text(m.get("content"))
        if role == "user":
            turns.append(Turn(text=text, assistant_before=last_assistant, assistant_name=last_name))
            last_assistant = last_name = ""
        elif role == "assistant":
            last_assistant = text
            name = m.get("name")
            last_name = name if isinstance(name, str) else ""
    return turns


_CONTINUATION = re.compile(
    r"^\s*(?:and|also|or|but|so|then|plus|what about|how about|same|ok(?:ay)?|ugh|well|"
    r"what if|and if|even|only|just|is there|are there|does that|do they|does it|can i|could i)\b")
_ANAPHOR = re.compile(r"\b(?:it|its|that|this|those|these|them|they|one|ones|there|same|other|another|"
                      r"else|instead|too|either|first|second|third|last|cheapest|latest)\b")


def is_anaphoric(text: str) -> bool:
    """True when a turn leans on the previous one (connective opener, pronoun, or very short)."""
    t = normalize(text)
    if _CONTINUATION.search(t):
        return True
    n = len(content_stems(text))
    return n <= 2 or (n <= 6 and bool(_ANAPHOR.search(t)))


# The turn's subject is the previous topic itself ("does that count in stores too?", "is it
# refundable?", "will they ship today?"): the rest of the turn is about that topic.
_SUBJECT_ANAPHOR = re.compile(
    r"^\s*(?:(?:and|but|so|ok(?:ay)?|also|then|hmm|wait)\b[,\s]*)*"
    r"(?:(?:does|did|is|was|will|would|can|could|should|do|has|have|are|were)\s+(?:that|this|it|they|those|these)"
    r"|(?:that|this|it|they|those|these)\s+(?:is|was|does|did|will|would|should|can|has|are))\b")


def has_anaphoric_subject(text: str) -> bool:
    """True when the turn's subject points back at the previous topic."""
    return bool(_SUBJECT_ANAPHOR.search(normalize(text)))


# An explicit change of subject as a discourse marker opening the turn or a clause
# ("thanks! unrelated, but ...", "on another note, ...", "different question: ..."): the turn
# starts a new topic and inherits nothing.
_TOPIC_SHIFT = re.compile(
    r"(?:^|[,.;:!?]\s*|\b(?:but|and|also|ok(?:ay)?|so)\s+)(?:(?:on\s+)?(?:a|an)\s+)?"
    r"(?:unrelated|separately(?=\s*[,:])|(?:different|separate|unrelated|new|another)\s+(?:note|question|topic|subject|matter)|"
    r"(?:different|separate|unrelated)\s+(?:thing|issue)|"
    r"on\s+another\s+(?:note|topic)|chang(?:e|ing)\s+(?:of\s+|the\s+)?(?:subject|topic))\b")


# Words that point back at something said before ("can you do the same for next week?", "send
# her another one", "move that to Thursday"): what lets a turn reach past a thanks for its topic.
# Narrower than _ANAPHOR: no "it" (a dummy subject: "what time is it in Tokyo?") and no length rule.
_BACK_REFERENCE = re.compile(r"\b(?:same|again|another|other|instead|that|those|these|them)\b")


def refers_back(text: str) -> bool:
    """True when the turn points back at something said earlier in the conversation."""
    return bool(_BACK_REFERENCE.search(normalize(text)))


def is_topic_shift(text: str) -> bool:
    """True when the turn says outright that it changes the subject."""
    return bool(_TOPIC_SHIFT.search(normalize(text)))
