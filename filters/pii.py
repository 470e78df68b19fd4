"""PII anonymiser / de-anonymiser filter.

Requests (input filter): emails, phone numbers (international ``+CC ...`` and US formats),
credit-card numbers (Luhn-valid only), US SSNs (valid area/group/serial ranges) and
IPv4/IPv6 addresses in any conversational text are replaced by stable placeholders
(``<EMAIL_1>``, ``<PHONE_1>``, ``<CARD_1>``, ``<SSN_1>``, ``<IP_1>``; the same value gets
the same placeholder) and the mapping is stored under the request's ``x-request-id``.

Responses (output filter, same service): placeholders are replaced by the original values
of that request id, in whole JSON responses and in streaming events. A placeholder split
across events (``... <EMA`` then ``IL_1> ...``) is restored: a trailing fragment that is a
proper prefix of one of the request's placeholders is held back and prepended to the next
event of the same stream channel (and flushed into the chunk that carries ``finish_reason``).

Run: ``python -m filters.pii --port 10501 [--mcp] [--redis redis://host:6379/0]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
from typing import Any

from filters.common import (
    RedisStore,
    Spec,
    TTLStore,
    channel_key,
    finished_choices,
    is_delta_event,
    is_request,
    map_text,
    request_id,
    response_kind,
    set_at,
    split_list,
    stream_finished,
    windowed,
)
from filters.common import (
    main as run_main,
)

log = logging.getLogger("plano.filters.pii")

KINDS = ("email", "phone", "card", "ssn", "ip")
LABELS = {"email": "EMAIL", "phone": "PHONE", "card": "CARD", "ssn": "SSN", "ip": "IP"}

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(  # contiguous, 4-4-4-4(-3) groups, or Amex/Diners 4-6-5 / 4-6-4, one separator kind
    r"(?<![\d.,-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})"
    r"(?![\d-]|[.,]\d)"
)
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?!\d|[.-]\d)")
_PHONE_US = re.compile(
    r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\d]|[.-]\d)"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?:%[\w.]+)?(?![\w:])")
_PLACEHOLDER = re.compile(r"<([A-Za-z]+)_(\d+)>")
_DIGITS = re.compile(r"\d")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(m: re.Match) -> bool:
    digits = "".join(_DIGITS.findall(m.group(0)))
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1


def _ssn_ok(m: re.Match) -> bool:
    area, group, serial = int(m.group(1)), int(m.group(3)), int(m.group(4))
    return 0 < area < 900 and area != 666 and group != 0 and serial != 0


def _phone_intl_ok(m: re.Match) -> bool:
    n = len(_DIGITS.findall(m.group(0)))
    return 8 <= n <= 15


def _ipv6_ok(m: re.Match) -> bool:
    text = m.group(0).split("%", 1)[0]
    if "::" not in text and text.count(":") != 7:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return any(c not in ":0" for c in text)  # not "::" / "::0"


# (kind, pattern, validator); on overlap the earliest, then longest, then first-listed wins
DETECTORS: list[tuple[str, re.Pattern, Any]] = [
    ("email", _EMAIL, None),
    ("card", _CARD, _card_ok),
    ("ssn", _SSN, _ssn_ok),
    ("phone", _PHONE_INTL, _phone_intl_ok),
    ("phone", _PHONE_US, None),
    ("ip", _IPV4, None),
    ("ip", _IPV6, _ipv6_ok),
]


def detect(text: str, kinds: tuple[str, ...] | frozenset = KINDS) -> list[tuple[int, int, str, str]]:
    """Non-overlapping PII spans ``(start, end, kind, value)`` in ``text``, in order."""
    found: list[tuple[int, int, int, str]] = []
    for rank, (kind, pattern, ok) in enumerate(DETECTORS):
        if kind not in kinds:
            continue
        for m in pattern.finditer(text):
            if ok is None or ok(m):
                found.append((m.start(), -(m.end() - m.start()), rank, kind))
    found.sort()
    out: list[tuple[int, int, str, str]] = []
    end = -1
    for start, neg_len, _rank, kind in found:
        if start >= end:
            stop = start - neg_len
            out.append((start, stop, kind, text[start:stop]))
            end = stop
    return out


def new_state() -> dict:
    return {"map": {}, "rev": {}, "n": {}, "carry": {}}


class PIIFilter:
    """``(payload, path, headers) -> payload``: anonymise requests, restore responses.

    ``store`` maps ``x-request-id`` to the request's state (placeholder mapping and the
    per-stream-channel carry). The default :class:`TTLStore` is in-process; with a
    :class:`RedisStore` calls return awaitables (the transports await them).
    """

    def __init__(self, store: Any = None, kinds: Any = KINDS, *, stateless_stream: bool = False) -> None:
        self.store = store if store is not None else TTLStore()
        self.stateless_stream = stateless_stream
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)} (known: {', '.join(KINDS)})")
        self.is_async = isinstance(self.store, RedisStore)

    # -- entry points ------------------------------------------------------------
    def __call__(self, payload: Any, path: str, headers: dict) -> Any:
        if self.is_async:
            return self.acall(payload, path, headers)
        rid = request_id(headers)
        if is_request(payload):
            state = (self.store.get(rid) if rid else None) or new_state()
            self.anonymize(payload, state)
            if rid:
                self.store.put(rid, state)
            else:
                log.warning("request without x-request-id: anonymised, but its responses cannot be restored")
            return payload
        state = self.store.get(rid) if rid else None
        if state and state["map"]:
            self.restore(payload, state, carry=not (self.stateless_stream or windowed(headers)))
            self.store.put(rid, state)
        return payload

    async def acall(self, payload: Any, path: str, headers: dict) -> Any:
        rid = request_id(headers)
        if is_request(payload):
            state = (await self.store.aget(rid) if rid else None) or new_state()
            self.anonymize(payload, state)
            if rid:
                await self.store.aput(rid, state)
            return payload
        state = await self.store.aget(rid) if rid else None
        if state and state["map"]:
            carry_before = dict(state["carry"])
            self.restore(payload, state, carry=not (self.stateless_stream or windowed(headers)))
            if state["carry"] != carry_before:
                await self.store.aput(rid, state)
        return payload

    async def aclose(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            await close()

    # -- input direction ---------------------------------------------------------
    def anonymize(self, payload: Any, state: dict) -> Any:
        """Replace PII in every text of ``payload`` by placeholders, extending ``state``'s mapping."""
        taken = set()
        for_text: list[str] = []
        map_text(payload, lambda t, _c: for_text.append(t) or t)
        for t in for_text:  # placeholders the client itself wrote must not be reused
            if "<" in t:
                taken.update(m.group(0).upper() for m in _PLACEHOLDER.finditer(t))

        def replace(text: str, _channel) -> str:
            spans = detect(text, self.kinds)
            if not spans:
                return text
            parts: list[str] = []
            pos = 0
            for start, end, kind, value in spans:
                parts.append(text[pos:start])
                parts.append(self._placeholder(state, kind, value, taken))
                pos = end
            parts.append(text[pos:])
            return "".join(parts)

        return map_text(payload, replace)

    @staticmethod
    def _placeholder(state: dict, kind: str, value: str, taken: set) -> str:
        label = LABELS[kind]
        key = f"{label}\x00{value}"
        existing = state["rev"].get(key)
        if existing:
            return existing
        n = state["n"].get(label, 0)
        while True:
            n += 1
            placeholder = f"<{label}_{n}>"
            if placeholder not in taken and placeholder not in state["map"]:
                break
        state["n"][label] = n
        state["map"][placeholder] = value
        state["rev"][key] = placeholder
        return placeholder

    # -- output direction --------------------------------------------------------
    @staticmethod
    def restore_text(text: str, mapping: dict) -> str:
        if "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: mapping.get(f"<{m.group(1).upper()}_{m.group(2)}>", m.group(0)), text)

    @staticmethod
    def held_back(text: str, mapping: dict) -> int:
        """Where a trailing fragment that could still become a placeholder starts (``len(text)`` if none)."""
        i = text.rfind("<", max(0, len(text) - 24))
        if i < 0:
            return len(text)
        tail = text[i:].upper()
        if ">" in tail:
            return len(text)
        for placeholder in mapping:
            if len(tail) < len(placeholder) and placeholder.startswith(tail):
                return i
        return len(text)

    def restore(self, payload: Any, state: dict, *, carry: bool = True) -> Any:
        """Put original values back into a response or one streaming event (edits in place).

        With ``carry`` (one call per event), a trailing placeholder fragment is held for the
        next event of the same channel; without it (a gateway sending windows of accumulated
        text re-sends an unfinished fragment itself), each text is restored alone.
        """
        mapping = state["map"]
        pending: dict = state.setdefault("carry", {})
        if not carry or response_kind(payload) != "chunk" or not is_delta_event(payload):
            if pending and stream_finished(payload):
                pending.clear()  # an Anthropic/Responses stream ended on a fragment: nowhere left to emit it
            return map_text(payload, lambda t, _c: self.restore_text(t, mapping))

        def fn(text: str, channel) -> str:
            key = channel_key(channel)
            held = pending.pop(key, None)
            full = held[1] + text if held else text
            cut = self.held_back(full, mapping)
            if cut < len(full):
                pending[key] = [list(channel), full[cut:]]
                full = full[:cut]
            return self.restore_text(full, mapping)

        map_text(payload, fn)
        for idx in finished_choices(payload):
            prefix = f"choices/#{idx}/"
            for key in [k for k in pending if k.startswith(prefix)]:
                channel, text = pending.pop(key)
                if not set_at(payload, tuple(channel), text):
                    log.debug("could not flush held text for %s", key)
        return payload


# --------------------------------------------------------------------------- CLI


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"PII kinds to detect ({','.join(KINDS)})")
    parser.add_argument("--ttl", type=float, default=600.0, help="seconds a request's mapping is kept (600)")
    parser.add_argument("--max-requests", type=int, default=10_000,
                        help="in-memory store bound: mappings kept at most (10000, least recently used dropped)")
    parser.add_argument("--stateless-stream", action="store_true",
                        help="restore each stream event alone, no carry buffer (for a gateway sending windows "
                             "of accumulated text; implied per call by the header x-plano-stream-mode: window)")
    parser.add_argument("--redis", metavar="URL", default=None,
                        help="share mappings through Redis (redis://[:password@]host:port/db) instead of in memory")


def _build(args: argparse.Namespace) -> PIIFilter:
    store = RedisStore(args.redis, ttl=args.ttl, prefix="plano:pii:") if args.redis else TTLStore(args.ttl, args.max_requests)
    return PIIFilter(store, split_list(args.kinds), stateless_stream=args.stateless_stream)


SPEC = Spec("pii", "PII anonymiser (requests) and de-anonymiser (responses), keyed by x-request-id.",
            10501, _build, _add_arguments)

if __name__ == "__main__":
    run_main(SPEC)
