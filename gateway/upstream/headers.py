"""Header hygiene between the client, plano and an upstream.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
forwarded; Host, Content-Length and encodings are set anew by the outbound client;
credentials are replaced by the caller (provider keys) and never copied blindly.
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


def response_headers(upstream_headers, *, keep_type: bool = True) -> list[tuple[bytes, bytes]]:
    """Upstream response headers worth relaying (rate-limit info, request ids, content type)."""
    out = []
    for key, value in upstream_headers.items():
        k = key.lower().encode("latin-1")
        if k in _RESPONSE_DROP or (not keep_type and k == b"content-type"):
            continue
        out.append((k, value.encode("latin-1")))
    return out
