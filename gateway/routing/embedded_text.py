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

# Negations written short in a description ("Doesn't book hotels.", "Won\u2019t handle refunds.", "It
# cannot book appointments."), spelt out in the text's own case so that the description parsers'
# negation patterns read them (`spell_out_negations`). normalize() below spells out the first
# three for every text; "cannot" only here: in a request it excludes nothing.
_NEGATIONS = (
    (re.compile(r"\bwon['\u2019]t\b", re.IGNORECASE), "will not"),
    (re.compile(r"\b(?:can['\u2019]t|cannot)\b", re.IGNORECASE), "can not"),
    (re.compile(r"\b(\w+)n['\u2019]t\b", re.IGNORECASE), r"\1 not"),
)


def spell_out_negations(text: str) -> str:
    """"doesn't" -> "does not", "won't" -> "will not", "cannot" / "can't" -> "can not"."""
    for pat, rep in _NEGATIONS:
        text = pat.sub(rep, text)
    return text


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


# The words that actually make a turn social; SOCIAL also lists the fillers around them
# ("thanks so much", "you guys are the best"), which alone ("did that, still the same") are not.
SOCIAL_CUES = frozenset("""
hi hello hey hiya howdy yo greetings morning afternoon evening thanks thank thx ty cheers
appreciate appreciated perfect awesome cool nice lovely wonderful fantastic excellent brilliant
ok okay alright fine sure bye goodbye cya gotcha understood noted great sweet amazing legend
wow haha lol yay best helpful
""".split())


# Function words that make a turn a question or an instruction however social its other words are:
# "ok, what now?", "ok do it" (a go-ahead for what the assistant offered).
_NOT_SOCIAL = frozenset("what how why where when which who do".split())
# A go-ahead for what the assistant offered, in social words: "fine, go for it", "ok get that one",
# "sure, make it two", "ok let's do it" - an instruction, not small talk ("bye, have to go now",
# "ok let me think" stay social). Matched on normalised text ("let's" -> "let").
_GO_AHEAD = re.compile(r"\b(?:go\s+(?:for\s+it|ahead)|let\s+(?:do\s+it|go\b)|"
                       r"(?:get|take)\s+(?:that|this|it|them|those|these)\b|make\s+it\b)")


# A report that the help worked ("perfect, that worked, thank you", "all sorted now, cheers"): with
# a thanks and no negation, an acknowledgement too ("it still isn't working, thanks" is not).
_WORKED = frozenset("worked works working fixed sorted solved resolved now".split())
_NEGATION = frozenset("not no never still yet but".split())


# A sign-off ("that's everything for today", "that is all for now", "that's it"): a goodbye.
_CLOSING = re.compile(r"\bthat(?:'s|s|\s+is|\s+was)\s+(?:all|everything|it)\b"
                      r"(?:\s+for\s+(?:now|today|tonight|the\s+day))?", re.IGNORECASE)


# Thanks with praise for the assistant and nothing asked ("cheers for sorting the diesel earlier,
# you're a star", "thanks so much, you've been super helpful with the garden stuff"): after the
# acknowledgement (and what it thanks for), only remarks about "you".
_THANKS_LEAD = r"(?:(?:thanks|thank\s+you|thx|ty|cheers|awesome|great|perfect|brilliant|amazing|wonderful)\b[\s,!.]*)+"
_PRAISE = re.compile(_THANKS_LEAD + r"(?:(?:so|very)\s+much\b[\s,!.]*)?(?:for\s+[^,.!?;]+[,.!;]\s*)?"
                     r"you\s+(?:are|have\s+been|were|rock|made\s+my\s+day)\b[^,.;!?]*[.!\s]*[^\w\s]*$")
_ASKING = re.compile(r"\b(?:can|could|would|will|please|pls|need|want|now|also|next|then)\b")


def _praise(text: str) -> bool:
    t = normalize(text).strip()
    return bool(_PRAISE.match(t)) and not _ASKING.search(t) and not _GO_AHEAD.search(t) \
        and not any(w in _NEGATION or w == "wrong" for w in words(text))


def is_social(text: str) -> bool:
    """True when every word is a greeting / thanks / acknowledgement word, or the turn thanks and
    praises the assistant without asking anything."""
    if _praise(text):
        return True
    ws = words(_CLOSING.sub(" bye ", text))
    worked = not any(w in _NEGATION for w in ws)
    return bool(ws) and all(w in SOCIAL or w in STOPWORDS and w not in _NOT_SOCIAL or worked and w in _WORKED
                            for w in ws) \
        and any(w in SOCIAL_CUES for w in ws) and not _GO_AHEAD.search(normalize(text))


# General-knowledge and entertainment question forms. They mention a specialist's topic
# ("how does a VPN work", "who invented the jet engine", "a joke about printers") without
# asking anything about the user's own account, order or data.
_CREATIVE = re.compile(
    r"\b(?:tell|write|give|know|share|make up)\b.{0,20}\b(?:jokes?|riddles?|poems?|haikus?|limericks?|"
    r"puns?|fun facts?|trivia|story|stories)\b")
_GENERAL = re.compile(
    r"\bwhat\s+(?:does|do|did)\s+(?!(?:that|this|it|those|these)\b)\S+(?:\s+\S+){0,2}?\s+(?:mean|stand for)\b"
    r"|\bwhat\s+(?:is|are|was|were)\s+(?:the\s+)?(?:meaning|definition|origin|etymology|history)\s+of\b"
    r"|\b(?:who|what)\s+(?:invented|discovered|wrote|painted|composed|founded|built|created|won|"
    r"directed|sang)\b"
    r"|\bwho\s+(?:is|was|were)\s+the\s+(?:first|inventor|founder|author|president|king|queen)\b"
    r"|\bwhen\s+(?:was|were|did)\s+.{1,40}\b(?:invented|founded|discovered|born|built|first)\b"
    r"|\b(?:history|origins?|etymology)\s+of\b"
    r"|\bin\s+general(?:\s+terms)?\b"
    # "why are plane tickets so expensive", "how does a VPN work": a generic subject (no
    # determiner pointing at a particular thing) asks about the world, not an account.
    r"|^\s*why\s+(?:are|do|is|does)\s+(?!(?:the|this|that|these|those|it|there)\b)[a-z]+\s+[a-z]+"
    r"|^\s*how\s+(?:does|do)\s+(?:an?\s+)?(?!(?:the|this|that|these|those|it|i|you|we)\b)[a-z-]+"
    r"(?:\s+[a-z-]+)?\s+work\b")
_PERSONAL = re.compile(r"\b(?:my|mine|our|ours|i|me|we|us|your|yours)\b")


def is_general_question(text: str) -> bool:
    """True for a general-knowledge / entertainment request that asks nothing personal."""
    t = normalize(text)
    if _CREATIVE.search(t):
        return True
    return bool(_GENERAL.search(t)) and not _PERSONAL.search(t)


# Shopping / search request forms, whatever is being searched for: superlatives and
# comparatives ("the cheapest one", "a quieter one"), price caps ("under $50"), "looking
# for", availability ("do you sell", "is it in stock"), "difference between", attribute
# questions ("come in white", "compatible with"). They point at whichever agent
# *searches, compares or recommends*.
_NOT_SUPERLATIVE = frozenset("""interest request rest test guest west honest forest suggest
invest harvest chest contest protest digest modest manifest arrest quest nest vest pest crest
attest detest infest ingest conquest latest earliest lest midwest priest""".split())
_SEARCH = re.compile(
    r"\b(?:best|worst|top|highest|best-rated|top-rated|better|cheaper|similar|alternatives?|"
    r"versus|vs|compare|comparison|looking for|look for|"
    r"in the market for|difference between|compatible with|come in|comes in|made of|"
    r"do you (?:sell|carry|stock|have|offer)|(?:in|out of) stock|"
    r"(?:under|below|less than|cheaper than|no more than|max|budget of)\s*\$?\s*\d+)\b")
_SUPERLATIVE = re.compile(r"\b([a-z]{3,})est\b")
_COMPARATIVE = re.compile(r"\b([a-z]{3,})(?:er|ier)\s+(?:one|ones|model|option|than)\b")


def is_search_request(text: str) -> bool:
    """True when the request has the form of a search / comparison / recommendation."""
    t = normalize(text)
    if _SEARCH.search(t) or _COMPARATIVE.search(t):
        return True
    return any(m.group(0) not in _NOT_SUPERLATIVE for m in _SUPERLATIVE.finditer(t))


# Prepositional phrases usually carry side details of the ask ("for my dad", "to the
# Fresno warehouse", "for a specialist visit", "with noise cancelling"): the head of the
# request comes before them ("about" introduces the topic itself, so it is not one of them).
# A phrase runs from its preposition to the next clause break.
_PREP = frozenset("for with at in on from near under over by during without into via "
                  "across behind beside inside outside toward towards".split())
_PP_BREAK = frozenset("and or but so then because while when if whether since although "
                      "which who that can could will would should please".split())
_DETERMINER = re.compile(r"^(?:the|a|an|my|your|our|his|her|their|this|that|these|those|\d+)$")
_TOKEN = re.compile(r"[a-z0-9]+|[.,;:!?]")


def weighted_content_words(text: str, pp_weight: float) -> tuple[list[str], list[float]]:
    """Content words of `text` with a weight each: `pp_weight` inside prepositional phrases."""
    toks = _TOKEN.findall(normalize(text))
    out, ws = [], []
    in_pp = False
    for k, w in enumerate(toks):
        if not w[0].isalnum() or w in _PP_BREAK:
            in_pp = False
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else ""
        if w in _PREP or (w == "to" and _DETERMINER.match(nxt)):
            in_pp = True
            continue
        if w in STOPWORDS or (w.isdigit() and len(w) > 4):
            continue
        out.append(w)
        ws.append(pp_weight if in_pp else 1.0)
    return out, ws
