"""Clause segmentation of one user turn, for multi-intent detection and ordering.

The turn is cut at sentence ends and at coordinating / sequencing markers ("and",
"also", "then", "plus", "but first"). Each piece records how it was joined, which the
router needs: a piece introduced by "but first" / "before that" runs before the one it
follows, and a bare declarative sentence after a request ("My manager cancelled my
leave") is background to that request, not a second ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.routing.embedded_dialog import is_topic_shift
from gateway.routing.embedded_text import SOCIAL_CUES, normalize

# Markers are matched on normalised text; the longest alternatives come first.
_MARKERS = re.compile(
    r"(?P<sent>[.!?;]+\s+|\s+-\s+)"
    r"|(?P<plus>\s+[+&]\s+)"  # "rota for next week + chase the credit note": a terse "and"
    r"|(?P<conj>,?\s*\b(?:but\s+before\s+(?:that|you\s+do\s+that|doing\s+that)|but\s+first|"
    r"before\s+(?:that|you\s+do\s+that|doing\s+that)|and\s+then|and\s+also|and\s+after\s+that|"
    r"after\s+that|afterwards|and\s+finally|and\s+additionally|additionally|as\s+well\s+as|also|"
    r"then|plus|and)\b,?\s*)"
    # "..., anyway, can you ...", "... but anyway - the ...": what came before was an aside
    r"|(?P<dismiss>(?:[,;]\s*|\s+)(?:but\s+)?anyways?(?:\s*[,:;-]+\s*|\s+)(?=\w))"
)
# A joiner that is only a sentence break (". ", "? ", " - "), not "and" / "then".
SENTENCE_BREAK = re.compile(r"[.!?;\-]+")
_FIRST = re.compile(r"\b(?:first|before\s+(?:that|you\s+do\s+that|doing\s+that)|beforehand)\b")
_ADDITIVE = re.compile(r"\b(?:also|and|then|plus|additionally|as well|finally|after that|afterwards)\b")
_SUBJECT_START = re.compile(r"^\s*(?:my|our|i|we|the|it|this|that|his|her|their|they|he|she|there)\b")
# Forms that make a clause an ask. A progressive "I'm / we're ...ing" says what the user is
# doing ("we're migrating off AWS next month", "I'm paying too much every month"): context, unless
# its verb is one of seeking ("I'm looking for", "hoping", "wondering").
_REQUEST = re.compile(
    r"\?|\b(?:want|wanna|needs?|would like|like to|please|can(?! not)|could(?! not)|will you|would you|let me|"
    r"help|how|what|when|where|which|who|why|(?:am|are) (?:looking|hoping|wondering)|going to|gonna|trying to)\b")


@dataclass
class Piece:
    """A clause of the turn and how it attaches to the previous one."""

    text: str
    joiner: str = ""        # marker text before this piece ("" for the first piece)
    goes_first: bool = False  # "but first ...", "before that ..."
    background: bool = False  # declarative statement after a sentence break: context only
    question: bool = False    # ended with "?" (the mark goes with the break, so the text lacks it)


# Abbreviations whose period does not end a sentence ("Dr. Kim", "St. Louis", "e.g. this").
_ABBREV = re.compile(r"\b(dr|mr|mrs|ms|prof|st|ave|rd|jr|sr|inc|ltd|co|corp|no|vs|approx|dept|"
                     r"etc|e\.g|i\.e|u\.s|a\.m|p\.m)\.(?=\s)")


# A clause cut so far to its bare subject ("i", "and we", "my wife") - an "also" after it sits
# inside that clause ("I also need ...", "we also want ...") rather than joining a new one.
_LONE_SUBJECT = re.compile(r"(?:^|[.!?;,]\s*|\b(?:and|but|so)\s+)(?:i|we|you|he|she|they|my \w+|our \w+)$")


# "between A and B" names the two sides of one comparison or choice, not two asks.
_BETWEEN = re.compile(r"\bbetween\s+(?:(?!and\b)\S+\s+){0,3}(?!and\b)\S+$")


# A short quoted phrase ("for 'wear and tear'", "run the 'movie night' scene", "reply 'thanks, see
# you monday'") names one thing, whatever words it holds: no clause boundary inside it. Quotes are
# ASCII after `normalize`; an opening quote follows no letter (so "kids' room" is no quote).
_SHORT_QUOTE = re.compile(r"(?<!\w)(['\"])(?=\S)([^'\"\n]{1,80}?)(?<=\S)\1(?!\w)")
# A thousands separator ("$2,100", "3,200 miles") is part of the number, not a list comma.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Masks are letters (Yi syllables, which no turn in practice holds) so that no
# word boundary or separator pattern matches inside the quote.
_MASK = {c: chr(0xA000 + i) for i, c in enumerate(" ,.;!?-+&:")}
_MASKED = str.maketrans(_MASK)
_UNMASKED = str.maketrans({v: k for k, v in _MASK.items()})


def _protect(t: str) -> str:
    """The turn with its numbers' thousands separators dropped and the separators inside short
    quoted phrases masked (`_unmask` restores them in each piece)."""
    t = _THOUSANDS.sub("", t)
    return _SHORT_QUOTE.sub(lambda m: m.group(0).translate(_MASKED), t)


def _unmask(text: str) -> str:
    return text.translate(_UNMASKED)


def split_pieces(text: str) -> list[Piece]:
    """Cut a turn into clauses at sentence ends and coordinating/sequencing markers."""
    t = _protect(_ABBREV.sub(lambda m: m.group(1).replace(".", ""), normalize(text)))
    pieces: list[Piece] = []
    pos = 0
    joiner = ""
    for m in _MARKERS.finditer(t):
        chunk = t[pos:m.start()].strip(" ,")
        if m.group("dismiss") and not re.search(r"[,;:-]", m.group(0)):
            continue  # "can I reserve anyway just in case": no aside closed off
        marker = "and" if m.group("plus") else "anyway" if m.group("dismiss") else m.group(0).strip()
        if marker == "also" and _LONE_SUBJECT.search(chunk):
            continue  # "... and I also need ...": "also" inside a clause, after its subject
        if marker == "and" and _BETWEEN.search(chunk):
            continue  # "the difference between median and mode": one thing compared with another
        if chunk:
            pieces.append(_piece(chunk, joiner, bool(pieces)))
            joiner = marker
        else:
            joiner = (joiner + " " + marker).strip()
        pos = m.end()
    chunk = t[pos:].strip(" ,.!?")
    if chunk:
        pieces.append(_piece(chunk, joiner, bool(pieces)))
        end = t[pos:]
    else:
        end = joiner + t[pos:]  # the turn ended on a marker ("... the airport? ")
    # Each piece ends where the next one's joiner starts; the last one at the end of the turn.
    for i, p in enumerate(pieces):
        p.question = "?" in (pieces[i + 1].joiner if i + 1 < len(pieces) else end)
    pieces = _split_serial_list(pieces)
    pieces = [q for p in pieces for q in _split_comma_statement(p)]
    pieces = [q for p in pieces for q in _split_subordinate(p)]
    # A leading statement followed by a request ("My printer is broken - can I get a QR
    # code instead?") sets the scene for that request; it is not an ask of its own.
    for p in pieces[:_scene_setting(pieces)]:
        p.background = True
    _dismissed(pieces)
    for p in pieces:
        p.text = _unmask(p.text)
    return pieces


# "forget that - I just need ...", "ignore that one, ..." open a clause that sets aside what came
# before; "..., ignore that for now" closes one that sets itself aside.
_DISMISS_START = re.compile(r"(?:forget|ignore|never\s*mind|scratch)\s+(?:that|this|it)\b")
_DISMISS_END = re.compile(r",?\s*(?:but\s+)?(?:ignore|forget)\s+(?:that|this|it)(?:\s+(?:for\s+now|one|bit))?$")


def _dismissed(pieces: list[Piece]) -> None:
    """Mark what the user sets aside as background: everything before "anyway, ..." or "forget
    that, ..." ("My shop got a 1-star review, but anyway - bill the Lindqvist job"), and a clause
    that ends "ignore that for now"."""
    for i, p in enumerate(pieces):
        if i and (p.joiner == "anyway" or _DISMISS_START.match(p.text)):
            for q in pieces[:i]:
                q.background = True
        if _DISMISS_END.search(p.text) and len(pieces) > 1:
            p.background = True


_ALSO = re.compile(r"\balso\b")
# A joiner that ends a statement ("." "!" ";" " - "). Not "?": a sentence that asks is no scene.
_STATEMENT_END = re.compile(r"[.!;\-]+")
_SENTENCE_END = re.compile(r"[.!?;\-]")
# A clause that plainly asks: a question, "can you / would you ...", "please", "help me", "I need ...".
_PLAIN_ASK = re.compile(r"\?|\b(?:can|could|would|will) you\b|\bplease\b|\bhelp me\b|\bi (?:need|want|would like)\b")


_FIRST_ASK = re.compile(r"\s*first\b")  # a sentence that opens the turn's list of steps


def _scene_setting(pieces: list[Piece]) -> int:
    """How many leading clauses of the turn only set the scene for the ask that follows them.

    A statement about the user's things before a request ("My printer is broken - can I get a QR
    code instead?"); or a first sentence whose clauses have no request form, before a sentence
    that plainly asks ("The landlord still hasn't returned my deposit. Can you draft a letter
    about it?", "The new cards came and they look great! Could you post about the rebrand?").
    Not when a clause adds itself to what came before ("... and also ...", "Also ...", "can you
    also ..."): that is a second report or ask. A first sentence with no request form before a
    sentence that opens a list of steps ("Got rear-ended yesterday. First report it to my insurer,
    then ...") sets the scene for those steps, whatever their form.
    """
    if len(pieces) < 2:
        return 0
    first, second = pieces[0], pieces[1]
    if is_statement(first.text) and not _ADDITIVE.search(second.joiner) and not _ADDITIVE.match(second.text) \
            and second.joiner not in ("once", "after") and (_REQUEST.search(second.text) or second.question):
        return 1
    # The first sentence: the clauses before the first sentence break.
    k = next((i for i, p in enumerate(pieces) if i and _SENTENCE_END.match(p.joiner)), None)
    if k is None or not _STATEMENT_END.fullmatch(pieces[k].joiner):
        return 0
    lead, ask = pieces[:k], pieces[k]
    if _FIRST_ASK.match(ask.text) and not any(_REQUEST.search(p.text) for p in lead) \
            and any(_SEQUENCE.search(p.joiner) for p in pieces[k + 1:]):
        # "Got rear-ended yesterday. First report it ..., then ...": the steps start at "first". (Not
        # "Cancel my hotel. First move my flight.": without a list of steps after it, "first"
        # puts its ask before the one already made.)
        return k
    rest = " ".join(f"{p.joiner} {p.text}" for p in pieces[1:])
    if any(_REQUEST.search(p.text) for p in lead) or _ADDITIVE.match(lead[0].text) or _ADDITIVE.match(ask.text) \
            or not _PLAIN_ASK.search(ask.text) or _ALSO.search(rest) or is_topic_shift(ask.text):
        return 0  # (an ask that changes the subject, "Separately, ...": what came before is a matter of its own)
    return k


# "Before you book the hotel, check my pay" / "book the hotel after you check my pay": a
# temporal subordinate clause is a separate step whose order the conjunction states - when
# the main clause is a request and the subordinate is something the assistant is to do (its
# subject is "you", or it is an -ing form addressed to the assistant). One whose subject is the
# user tells what the user does or did ("snapshot the disk before I upgrade it", "still the old
# site 2 days after I changed it", "My bill went up after I switched plans"): context of one
# request, not a second ask.
_LEAD_SUB = re.compile(r"^(before|after|once)\s+(you\s.+?|\w+ing\s.+?),\s*(.+)$")
_TRAIL_SUB = re.compile(r"^(.+?),?\s+(before|after|once)\s+(you\s.+)$")


# "Once the invoice is paid, order more fish" / "after the hotel is cancelled, ...": a thing's
# state the request waits on, reached by an action ("is paid", "has been cancelled") - a step to
# take first, when an agent takes it (the clause must still pick an agent of its own).
_LEAD_DONE = re.compile(r"^(once|after)\s+((?:the|my|our|his|her|their|its|this|that)\s.{1,60}?\s"
                        r"(?:is|are|has\s+been|have\s+been|gets|get)\s+\w+(?:ed|en|id|ne|t)),\s*(.+)$")


def _split_subordinate(p: Piece) -> list[Piece]:
    m = _LEAD_SUB.match(p.text) or _LEAD_DONE.match(p.text)
    if m and not is_statement(m.group(3)):
        sub, main = m.group(2), m.group(3)
        return [Piece(sub, p.joiner, p.goes_first, p.background),
                Piece(main, m.group(1), m.group(1) == "before", False, p.question)]
    m = _TRAIL_SUB.match(p.text)
    if m and not is_statement(m.group(1)):
        main, sub = m.group(1), m.group(3)
        return [Piece(main, p.joiner, p.goes_first, p.background),
                Piece(sub, m.group(2), m.group(2) != "before", False, p.question)]
    return [p]


# The coordinators that close a serial list ("A, B, and C", "A, B, then C").
_LIST_CLOSE = frozenset({"and", "then", "and then", "and also", "and finally"})


def _split_serial_list(pieces: list[Piece]) -> list[Piece]:
    """"Flights to Tokyo on Friday, the weather there, and 500 GBP in yen": a serial list closed
    by ", and ..." - the commas before the closing "and" separate items of the same list, so
    each item is a clause of its own (each still has to claim an agent to count as an intent)."""
    out: list[Piece] = []
    for i, p in enumerate(pieces):
        nxt = pieces[i + 1] if i + 1 < len(pieces) else None
        closes = nxt is not None and nxt.joiner in _LIST_CLOSE and "," in p.text  # joiners are stripped of ","
        if not closes:
            out.append(p)
            continue
        items = [x.strip() for x in p.text.split(",")]
        if len(items) < 2 or any(len(x.split()) < 2 for x in items):
            out.append(p)
            continue
        out.append(Piece(items[0], p.joiner, p.goes_first, p.background))
        out.extend(Piece(x, ",", False, False) for x in items[1:])
        out[-1].question = p.question
    return out


# Discourse openers: a closed class of words that introduce a clause without being one.
_OPENERS = frozenset("separately anyway anyways also btw besides otherwise oh ok okay plus and so now "
                     "unrelated lastly finally additionally meanwhile secondly".split())
_COMMA_CLAUSE = re.compile(r",\s+(?=(?:i|we|my|our|it|its|this|that|they|he|she|his|her|their)\b)")


def _split_comma_statement(p: Piece) -> list[Piece]:
    """"Book a checkup for my son, we're on the family plan": the comma clause is background."""
    m = _COMMA_CLAUSE.search(p.text)
    if not m or p.background:
        return [p]
    head, tail = p.text[:m.start()].strip(), p.text[m.end():].strip()
    # A lone opener before the comma ("separately, my bill has ...", "anyway, ...") is no ask
    # that the statement could be background to: the statement is the clause itself.
    if not head or head in _OPENERS or not is_statement(tail) or is_statement(head):
        return [p]
    return [Piece(head, p.joiner, p.goes_first, p.background), Piece(tail, ",", False, True, p.question)]


def is_statement(chunk: str) -> bool:
    """A declarative clause with the user or a thing as subject and no request form ("my
    landlord is a nightmare", "the 7:42 has been turning up packed"): it tells, it does not ask."""
    return has_subject(chunk) and not _REQUEST.search(chunk) and \
        not _ADDITIVE.match(chunk)


def has_subject(chunk: str) -> bool:
    """The clause opens with a subject ("my ...", "we ...", "the ...", "it ..."): it may tell
    rather than ask; an imperative or a bare request ("fix the tap", "flights to Oslo") does not."""
    return bool(_SUBJECT_START.match(chunk))


# A clause that opens as a question, with or without its question mark ("what's the weather in
# Paris and ...", "is the 7:42 running").
_QUESTION_START = re.compile(r"\s*(?:what|whats|how|when|where|which|who|whose|why|is|are|was|were|do|does|did|"
                             r"can|could|will|would|should|shall|may|have|has)\b")


def plain_ask(p: Piece) -> bool:
    """The clause plainly asks: a question, "can / would you ...", "please", "help me", "I need ..."."""
    return p.question or bool(_PLAIN_ASK.search(p.text)) or bool(_QUESTION_START.match(p.text))


# A remark rather than an instruction, once the acknowledgements are gone ("you're a star", "you
# have been great", "such a help"): "you" or an intensifier opens it (has_subject covers "that",
# "it", "i", ...).
_REMARK = re.compile(r"(?:you|youre|you are|so|such|very|really|what a)\b")


def asks(text: str) -> bool:
    """The turn asks or instructs: a plain ask ("so is 1 prime or not?", "can you ..."), or, past
    its opening acknowledgements ("ok", "great", "so"), a clause without a subject - an
    imperative ("ok book aisha", "fine, put that through the books"). Not a remark about the
    assistant or the world ("awesome, you're a lifesaver", "great, it arrived")."""
    t = normalize(text)
    if plain_ask(Piece(t, "", False, question="?" in t)):
        return True
    ws = t.replace(",", " ").split()
    while ws and (ws[0] in SOCIAL_CUES or ws[0] in _OPENERS):
        ws = ws[1:]
    return bool(ws) and not has_subject(" ".join(ws)) and not _REMARK.match(" ".join(ws))


def _piece(chunk: str, joiner: str, has_prev: bool) -> Piece:
    j = joiner.strip(" ,").lower()
    goes_first = bool(_FIRST.search(j)) or (has_prev and bool(re.match(r"\s*first\b", chunk)))
    sentence_break = has_prev and (j == "" or SENTENCE_BREAK.fullmatch(j) is not None)
    background = sentence_break and not _ADDITIVE.match(chunk) and \
        bool(_SUBJECT_START.match(chunk)) and not _REQUEST.search(chunk)
    return Piece(text=chunk, joiner=j, goes_first=goes_first, background=background)


# Words of a joiner that state an order between two asks ("first ..., then ...", "after that",
# "before you do that", "once ...") rather than merely listing them ("and", "also", "plus").
_SEQUENCE = re.compile(r"\b(?:then|after|afterwards|before|first|once|next)\b")
# A later clause that depends on the outcome of the one before ("check whether it arrived; if it
# did, book the pickup", "... - if not, cancel it", "otherwise refund me"): a data dependency.
_CONDITIONAL = re.compile(r"\s*(?:if\s+(?:so|not|yes|it|that|they|there|this|he|she)\b|otherwise\b|in\s+that\s+case\b)")
# A later clause that opens on the earlier one being done ("..., and once that's done tell me how to
# get there", "... and after that email Sam", "... and when it's booked add it to my calendar"): the
# marker sits in the clause, after a plain "and" joiner.
_AFTER_THAT = re.compile(r"\s*(?:then\b|afterwards\b|(?:once|after|when)\s+(?:that|this|it|those|these|they)\b)")


def explicit_order(text: str) -> bool:
    """True when the turn states an order between its asks ("first ... then ...", "... and after
    that ...", "before you ..., ..."): the later ask may build on the earlier one's answer, so
    they run one after the other rather than side by side."""
    from gateway.routing.embedded_blocks import split_blocks

    return stated_order(split_pieces(split_blocks(text).ask))


# A numbered step of a list ("step 1: ...", "1) ...", "2. ..."): the list states the order.
_STEP = re.compile(r"\s*(?:step\s*\d+\b|\d+\s*[).:])")


def stated_order(pieces: list[Piece]) -> bool:
    """`explicit_order` of a turn already cut into pieces (background pieces are ignored)."""
    pieces = [p for p in pieces if not p.background]
    if len(pieces) < 2:
        return False
    if re.match(r"\s*first\b", pieces[0].text):
        return True
    if sum(bool(_STEP.match(p.text)) for p in pieces) >= 2:
        return True  # "step 1: ... step 2: ...", "1) ... 2) ..."
    return any(p.goes_first or _SEQUENCE.search(p.joiner) or _CONDITIONAL.match(p.text) or _AFTER_THAT.match(p.text)
               for p in pieces[1:])
