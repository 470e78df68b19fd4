"""Header hygiene between the client, plano and an upstream.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
forwarded; Host, Content-Length and encodings are set anew by the outbound client;
credentials are replaced by the caller (provider keys) and never copied blindly.
Model providers get an allow-list of the client's headers (:func:`provider_headers`);
agents and filters, the user's own services, get everything but the above
(:func:`forward_headers`).
"""

from __future__ import annotations

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Set by the outbound client itself.
_REWRITTEN = frozenset({b"host", b"content-length", b"accept-encoding", b"expect"})

#: Client credentials: forwarded only where the config says so (passthrough_auth).
CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})

_ALWAYS_DROP = HOP_BY_HOP | _REWRITTEN

#: Response headers not relayed to the client (the server recomputes them).
_RESPONSE_DROP = HOP_BY_HOP | frozenset({b"content-length", b"content-encoding", b"date", b"server", b"x-request-id"})


def forward_headers(raw: list[tuple[bytes, bytes]], drop: frozenset[bytes] = CREDENTIALS) -> dict[str, str]:
    """Client request headers that may travel upstream, as a str dict for aiohttp.

    Header names listed in the client's own ``Connection`` header are hop-by-hop too.
    """
    out: dict[str, str] = {}
    extra_drop: set[bytes] | None = None
    for key, value in raw:
        if key == b"connection":
            extra_drop = {t.strip().lower() for t in value.split(b",")}
    for key, value in raw:
        if key in _ALWAYS_DROP or key in drop or (extra_drop and key in extra_drop):
            continue
        out[key.decode("latin-1")] = value.decode("latin-1")
    return out


#: Client request headers a model provider gets (everything else stays with plano: cookies, the
#: client's own credentials, proxies' and browsers' headers, custom headers of any size).
PROVIDER_HEADERS = frozenset(
    {
        b"accept",
        b"accept-language",
        b"traceparent",
        b"tracestate",
        b"x-request-id",
        b"x-client-request-id",
        b"idempotency-key",
    }
)

#: ... and headers with these prefixes: OpenAI (``openai-organization``, ``openai-project``, ``openai-beta``),
#: Anthropic (``anthropic-version``, ``anthropic-beta``) and the official SDKs' ``x-stainless-*`` headers.
PROVIDER_HEADER_PREFIXES = (b"openai-", b"anthropic-", b"x-stainless-")

#: A header value longer than this is not forwarded to a provider (some answer 400 to a large header).
MAX_PROVIDER_HEADER_VALUE = 8 * 1024

_SECRET_WORDS = (b"key", b"auth", b"token", b"secret", b"cookie", b"credential", b"password")


def provider_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The client request headers that may travel to a model provider (an allow-list), as a str dict.

    Only :data:`PROVIDER_HEADERS` and the :data:`PROVIDER_HEADER_PREFIXES` families are kept; a
    prefixed name that looks like a credential (``openai-api-key``) is not; a value over
    :data:`MAX_PROVIDER_HEADER_VALUE` bytes is dropped. Provider credentials are set by the caller.
    """
    out: dict[str, str] = {}
    hop: set[bytes] | None = None
    for key, value in raw:
        if key in PROVIDER_HEADERS:
            pass
        elif key == b"connection":
            hop = {t.strip().lower() for t in value.split(b",")}
            continue
        elif not key.startswith(PROVIDER_HEADER_PREFIXES) or any(w in key for w in _SECRET_WORDS):
            continue
        if len(value) > MAX_PROVIDER_HEADER_VALUE:
            continue
        out[key.decode("latin-1")] = value.decode("latin-1")
    if hop:
        for name in hop:
            out.pop(name.decode("latin-1"), None)
    return out


def response_headers(upstream_headers, *, keep_type: bool = True) -> list[tuple[bytes, bytes]]:
    """Upstream response headers worth relaying (rate-limit info, request ids, content type)."""
    out = []
    for key, value in upstream_headers.items():
        k = key.lower().encode("latin-1")
        if k in _RESPONSE_DROP or (not keep_type and k == b"content-type"):
            continue
        out.append((k, value.encode("latin-1")))
    return out
