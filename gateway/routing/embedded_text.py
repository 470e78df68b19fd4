"""Text normalisation for the embedded router: tokens, function words, a light stemmer.

Everything here is generic English; nothing is tuned to one agent domain. Stems only
need to be consistent between descriptions and requests, not linguistically exact, so
the stemmer strips common inflections and derivations and drops a final "e"
("leave"/"leaving" -> "leav", "cancelled"/"cancel" -> "cancel").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": " - ",
                         "\u2013": " - ", "\u00a0": " "})

_CONTRACTIONS = [
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'s\b"), ""),  # possessive or "is": either way a function word
]

_WORD = re.compile(r"[a-z0-9]+")

# English function words plus a few near-universal request verbs ("tell me", "can you
# show", "I want"); these carry no information about which agent should answer.
STOPWORDS = frozenset("""
a about above after again against all am an and any anyone anything are around as at be
because been before being below between both but by can could did do does doing done
down during each either else ever every few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me might mine
more most much must my myself no nor not now of on once one only or other our ours
ourselves over own per same she should so some someone something still such than
that the their theirs them themselves then there these they this those through to too
under until up upon us very was we were what whats when where which while who whom whose
why will with within without would yes yet you your yours yourself yourselves
also already really actually just maybe perhaps quite rather pretty ok okay oh um uh hey
please pls plz kindly thanks thank thx
get gets got getting gotten want wants wanted need needs needed like would let lets
tell show give know think see look make go going gone went come came say says said
help able way thing things stuff lot lots bit
im ive id youre dont doesnt cant wont isnt
today tomorrow yesterday tonight now soon later next last ago many few several
use used uses using try tried trying
two three four five six seven eight nine ten week weeks month months year years weekend
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december
""".split())

# Phrasal-verb particles: meaningful only inside their phrase ("time off", "send it back").
PARTICLES = frozenset("off out back up down away in on over around".split())

# Words that make a turn purely social (greeting, thanks, acknowledgement, farewell).
SOCIAL = frozenset("""
hi hello hey hiya howdy yo greetings morning afternoon evening good great thanks thank
thx ty cheers appreciate appreciated perfect awesome cool nice lovely wonderful fantastic
excellent brilliant ok okay alright fine sure bye goodbye later cya see ya much lot so
very really you guys all the it that this is was a for your help helpful best sweet
amazing legend wow haha lol yay gotcha understood noted got
""".split())

_SUFFIXES = (
    # (suffix, replacement, minimum stem length left)
    ("ational", "ate", 3), ("ization", "ize", 3), ("fulness", "ful", 3), ("iveness", "ive", 3),
    ("ability", "", 3), ("ibility", "", 3), ("ements", "", 4), ("ations", "", 4),
    ("ation", "", 4), ("ments", "", 4), ("ment", "", 4), ("ness", "", 3), ("ingly", "", 3),
    ("ings", "", 3), ("ing", "", 3), ("edly", "", 3), ("ies", "y", 2), ("ied", "y", 2),
    ("able", "", 4), ("ible", "", 4), ("ally", "al", 3), ("ly", "", 4), ("ed", "", 3),
    ("es", "", 3), ("s", "", 3),
)
_KEEP_S = ("ss", "us", "is", "ous")
_VOWELS = set("aeiouy")


def normalize(text: str) -> str:
    """Lower-case, ASCII-fold quotes and dashes, expand contractions."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    for pat, rep in _CONTRACTIONS:
        text = pat.sub(rep, text)
    return text


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light suffix-stripping stemmer (consistent, not exact)."""
    w = word
    if len(w) <= 3 or w.isdigit():
        return w
    for suf, rep, minlen in _SUFFIXES:
        if w.endswith(suf):
            if suf == "s" and w.endswith(_KEEP_S):
                break
            if suf == "es" and not w.endswith(("xes", "ches", "shes", "sses")):
                continue  # "miles" -> "mile" (by the "s" rule), "boxes" -> "box"
            base = w[: -len(suf)]
            if len(base) < minlen or not (_VOWELS & set(base)):
                continue
            w = base + rep
            if suf in ("ing", "ings", "ed", "ingly", "edly") and len(w) > 3 and w[-1] == w[-2] \
                    and w[-1] not in "lsz" + "aeiou":
                w = w[:-1]  # shipping -> shipp -> ship
            elif suf in ("ing", "ed", "ation", "ations") and len(w) > 4 and w[-1] == w[-2] == "l":
                w = w[:-1]  # cancelled -> cancell -> cancel
            break
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    if w.endswith("y") and len(w) > 3 and w[-2] not in _VOWELS:
        w = w[:-1]  # delivery / deliveries / delivered -> deliver
    return w


def words(text: str) -> list[str]:
    """Normalised word tokens (hyphenated compounds are split into their parts)."""
    return _WORD.findall(normalize(text))


def content_words(text: str) -> list[str]:
    """Content words of `text` (no function words, no long numbers), in order."""
    return [w for w in words(text) if w not in STOPWORDS and not (w.isdigit() and len(w) > 4)]


def content_stems(text: str) -> list[str]:
    """Stems of the content words of `text`, in order."""
    return [stem(w) for w in content_words(text)]


def is_social(text: str) -> bool:
    """True when every word is a greeting / thanks / acknowledgement word."""
    ws = words(text)
    return bool(ws) and all(w in SOCIAL or w in STOPWORDS and w not in ("what", "how", "why", "where",
                                                                        "when", "which", "who")
                            for w in ws) and any(w in SOCIAL for w in ws)
