"""Scrubbing secrets (and, for captured content, PII) out of text before it leaves the process.

Logs, span attributes and signal snippets are read by people and stored by
third-party backends, so nothing that looks like a credential may reach them:
provider keys, ``Bearer`` tokens, ``Authorization`` values, JWTs, and any literal
secret the config told us about (``register_secret``; resolved ``access_key``
values, webhook secrets). Captured message content is additionally stripped of
e-mail addresses and payment-card numbers.

Patterns are deliberately specific (known key prefixes, ``key=value`` shapes)
rather than "any long random string", so trace ids and request ids stay readable.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[REDACTED]"

# Known credential shapes. Each must be specific enough not to match ids we log.
_KEY_SHAPES = [
    r"\bsk-(?:ant-|proj-|or-|svcacct-)?[A-Za-z0-9_\-]{16,}",  # OpenAI, Anthropic, OpenRouter
    r"\bAIza[0-9A-Za-z_\-]{30,}",  # Google API keys
    r"\bgsk_[A-Za-z0-9]{20,}",  # Groq
    r"\bxai-[A-Za-z0-9]{20,}",  # xAI
    r"\bhf_[A-Za-z0-9]{20,}",  # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bpk-lf-[A-Za-z0-9\-]{16,}|\bsk-lf-[A-Za-z0-9\-]{16,}",  # Langfuse
    r"\bphc_[A-Za-z0-9]{20,}",  # PostHog
    r"\bwhsec_[A-Za-z0-9+/=_\-]{16,}",  # webhook signing secrets
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWTs
]

# ``Bearer xyz`` / ``Basic xyz`` anywhere.
_AUTH_SCHEME = r"\b(?:Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=\-]{6,}"

# ``authorization: xyz``, ``"api_key": "xyz"``, ``x-api-key=xyz``, ``password='xyz'`` ...
_SECRET_NAMES = (
    r"authorization|proxy-authorization|x-api-key|api[-_]?key|apikey|access[-_]?key|access[-_]?token|"
    r"refresh[-_]?token|auth[-_]?token|client[-_]?secret|secret[-_]?key|secret|password|passwd|token|"
    r"webhook[-_]?secret|signing[-_]?secret|private[-_]?key|cookie|set-cookie|x-goog-api-key"
)
_KEY_VALUE = (
    r"(?i)(?P<name>[\"']?\b(?:" + _SECRET_NAMES + r")\b[\"']?\s*[:=]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|(?:Bearer\s+|Basic\s+)?[^\s,;&\"'}\]]+)"
)

_SECRETS_RE = re.compile("|".join(_KEY_SHAPES) + "|" + _AUTH_SCHEME)
_KEY_VALUE_RE = re.compile(_KEY_VALUE)
# Query-string credentials: ``?key=...`` (Gemini), ``&sig=...`` (SAS URLs), ``?token=...``.
_QUERY_RE = re.compile(r"(?i)(?P<name>[?&](?:key|code|sig|signature|token|access_token|api-key)=)(?P<value>[^&#\s]+)")

_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")
_CARD_RE = re.compile(r"\b(?:\d[ \-]?){12,18}\d\b")
_SSN_RE = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")

_literals: tuple[str, ...] = ()
_literals_lock = threading.Lock()

#: Header names whose values never go anywhere (logs, spans, metrics).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie", "x-goog-api-key",
    "anthropic-api-key", "openai-api-key",
})


def register_secret(value: str | None) -> None:
    """Remember a literal secret (e.g. a resolved provider key) so it is scrubbed wherever it appears."""
    global _literals
    if not value or not isinstance(value, str) or len(value) < 6:
        return
    with _literals_lock:
        if value not in _literals:
            # Longest first, so a key that contains another is replaced whole.
            _literals = tuple(sorted((*_literals, value), key=len, reverse=True))


def registered_secrets() -> tuple[str, ...]:
    """The literal secrets registered so far (handed to the telemetry sidecar over its private channel)."""
    return _literals


def register_config_secrets(config) -> None:
    """Every credential value a loaded config holds: provider ``access_key`` s, exporter keys."""
    for provider in getattr(config, "model_providers", None) or []:
        register_secret(getattr(provider, "access_key", None))
    tracing = getattr(config, "tracing", None)
    for exporter in (getattr(tracing, "exporters", None) or []) if tracing else []:
        register_secret(getattr(exporter, "api_key", None))


def is_secret_name(name: str) -> bool:
    """True for header / attribute names that carry credentials (their values must never be recorded)."""
    low = name.lower()
    if low in SECRET_HEADERS:
        return True
    return any(word in low for word in ("key", "token", "secret", "password", "auth", "cookie", "credential"))


def redact_secrets(text: str) -> str:
    """``text`` with every credential-looking substring replaced by ``[REDACTED]``."""
    if not text:
        return text
    for literal in _literals:
        if literal in text:
            text = text.replace(literal, REDACTED)
    text = _KEY_VALUE_RE.sub(_scrub_value, text)
    if "=" in text:
        text = _QUERY_RE.sub(_keep_name, text)
    return _SECRETS_RE.sub(REDACTED, text)


def redact_content(text: str, limit: int | None = 200) -> str:
    """Captured user/assistant content: secrets and PII removed, then truncated to ``limit`` chars."""
    if not text:
        return text
    if limit is not None and len(text) > limit * 4:
        text = text[: limit * 4]  # bound the regex work; we only keep ``limit`` chars anyway
    text = redact_secrets(text)
    text = _EMAIL_RE.sub("[EMAIL]", text)
    text = _CARD_RE.sub(_card, text)
    text = _SSN_RE.sub("[SSN]", text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text


def _keep_name(match: re.Match) -> str:
    return match.group("name") + REDACTED


#: An ordinary word (``environment``, ``Missing``): letters only, capitalised at most.
_WORD_RE = re.compile(r"[A-Za-z][a-z]*")
_PROSE_NEXT_RE = re.compile(r"[ \t]+[A-Za-z'\"(]")


def _scrub_value(match: re.Match) -> str:
    """``name: value`` / ``name=value``: the value is replaced, unless the "value" is prose.

    In ``access_key: environment variable 'X' is not set`` the colon introduces a sentence,
    not a credential: an ordinary word after ``name:`` that the sentence carries on from is
    left alone (``name=value`` is always an assignment and always scrubbed).
    """
    name = match.group("name")
    value = match.group("value")
    if (name.rstrip().endswith(":") and _WORD_RE.fullmatch(value)
            and _PROSE_NEXT_RE.match(match.string, match.end())):
        return match.group(0)
    return name + REDACTED


def _card(match: re.Match) -> str:
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _luhn(digits: list[int]) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
