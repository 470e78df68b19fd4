"""AWS Signature Version 4 request signing, with hashlib/hmac only (no boto3/botocore).

Follows the AWS General Reference ("Create a signed AWS API request"): a canonical request
(method, canonical URI, canonical query string, canonical headers, signed header names,
SHA-256 of the payload) → the string to sign (``AWS4-HMAC-SHA256``, the timestamp, the
credential scope ``date/region/service/aws4_request``, the canonical request's hash) →
HMAC-SHA256 with a key derived from the secret (``AWS4`` + secret → date → region →
service → ``aws4_request``). The published example signature (IAM ListUsers,
2015-08-30) is a unit test (tests/test_bedrock_sigv4.py).

Decisions:

- The canonical URI is the path *as it goes on the wire* URI-encoded once more (non-S3
  services encode twice; botocore does the same, ``quote(path, safe="/~")``). The Bedrock
  translator sends the path exactly as signed (``yarl.URL(..., encoded=True)``), so a
  model id with ``:`` travels as ``%3A`` and is signed as ``%253A`` — what botocore does.
- Signed headers: ``host``, ``x-amz-date``, ``content-type`` and ``x-amz-security-token``
  when a session token is used; other forwarded headers ride along unsigned (allowed).
- Credentials are read once at start-up, in the order AWS SDKs use: the provider entry,
  else ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, else the
  profile ``AWS_PROFILE`` (default ``default``) of the shared credentials file
  (``~/.aws/credentials`` or ``AWS_SHARED_CREDENTIALS_FILE``) or config file
  (``~/.aws/config`` or ``AWS_CONFIG_FILE``, section ``[profile NAME]``). Static keys
  only: SSO, ``credential_process`` and role assumption need botocore, which plano does
  not depend on. The signing key is cached per day.
- Region (also the default host ``bedrock-runtime.{region}.amazonaws.com``): the entry's
  ``aws_region``, the base_url's host, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
  profile's ``region`` in the config file, else ``us-east-1``.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"

log = logging.getLogger("plano.model")

_UNRESERVED = "-_.~"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """``kSigning`` = HMAC chain over date (YYYYMMDD), region, service, ``aws4_request``."""
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_uri(path: str) -> str:
    """The wire path URI-encoded once more (``%`` → ``%25``), ``/`` kept; empty → ``/``."""
    return quote(path or "/", safe="/~")


def canonical_query(query: str) -> str:
    """Parameters sorted by name then value, each name and value URI-encoded (RFC 3986 unreserved kept)."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(_unquote(name), safe=_UNRESERVED), quote(_unquote(value), safe=_UNRESERVED)))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


_SPACES = re.compile(r"\s+")


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                      signed: list[str], payload_hash: str) -> str:
    lines = [method.upper(), canonical_uri(path), canonical_query(query)]
    lower = {k.lower(): v for k, v in headers.items()}
    lines.extend(f"{name}:{_SPACES.sub(' ', str(lower[name]).strip())}" for name in signed)
    lines.append("")
    lines.append(";".join(signed))
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, *, access_key: str, secret_key: str,
         region: str, service: str, amz_date: str, signed: list[str] | None = None) -> str:
    """The ``Authorization`` header value for a request whose headers already include
    ``host`` and ``x-amz-date`` (``amz_date``, ``YYYYMMDDTHHMMSSZ``). ``signed``: the
    header names to sign (default: every header given), lower-case."""
    parts = urlsplit(url)
    names = sorted(signed if signed is not None else (k.lower() for k in headers))
    canonical = canonical_request(method, parts.path, parts.query, headers, names, hashlib.sha256(body).hexdigest())
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    signature = hmac.new(signing_key(secret_key, amz_date[:8], region, service),
                         string_to_sign(amz_date, scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"


def wire_host(url: str) -> str:
    """The ``Host`` header an HTTP client sends for ``url`` (port only when not the scheme's default)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and not ((parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)):
        host = f"{host}:{port}"
    return host


class SigV4Signer:
    """Signs requests for one AWS service and region with one set of credentials."""

    __slots__ = ("access_key", "secret_key", "session_token", "region", "service", "_key_date", "_key")

    def __init__(self, access_key: str, secret_key: str, session_token: str | None, region: str,
                 service: str = "bedrock") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token or None
        self.region = region
        self.service = service
        self._key_date = ""
        self._key = b""

    def __repr__(self) -> str:  # never the secret
        return f"SigV4Signer(access_key={self.access_key[:4]}…, region={self.region!r}, service={self.service!r})"

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes,
             now: _dt.datetime | None = None) -> dict[str, str]:
        """``headers`` plus ``x-amz-date``, ``x-amz-security-token`` (with a session token) and
        ``Authorization`` for this request (a new dict; ``headers`` is left as it was)."""
        now = now or _dt.datetime.now(_dt.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        out = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date",
                                                                      "x-amz-security-token", "host")}
        host = next((v for k, v in headers.items() if k.lower() == "host"), None) or wire_host(url)
        out["x-amz-date"] = amz_date
        signing = {"host": host, "x-amz-date": amz_date}
        ctype = next((v for k, v in out.items() if k.lower() == "content-type"), None)
        if ctype is not None:
            signing["content-type"] = ctype
        if self.session_token:
            out["x-amz-security-token"] = self.session_token
            signing["x-amz-security-token"] = self.session_token
        if host != wire_host(url):
            out["Host"] = host  # an ``http_host`` override travels as signed
        parts = urlsplit(url)
        names = sorted(signing)
        canonical = canonical_request(method, parts.path, parts.query, signing, names,
                                      hashlib.sha256(body).hexdigest())
        date = amz_date[:8]
        if self._key_date != date:
            self._key = signing_key(self.secret_key, date, self.region, self.service)
            self._key_date = date
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        signature = hmac.new(self._key, string_to_sign(amz_date, scope, canonical).encode("utf-8"),
                             hashlib.sha256).hexdigest()
        out["Authorization"] = (f"{ALGORITHM} Credential={self.access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return out


_BEDROCK_HOST = re.compile(r"^bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def region_from_url(url: str | None) -> str | None:
    """``us-west-2`` from ``https://bedrock-runtime.us-west-2.amazonaws.com`` (None for other hosts)."""
    if not url:
        return None
    m = _BEDROCK_HOST.match(urlsplit(url).hostname or "")
    return m.group(1) if m else None


def _profile_name(env: Mapping[str, str]) -> str:
    return env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"


def _aws_file(env: Mapping[str, str], variable: str, name: str) -> Path:
    given = env.get(variable)
    if given:
        return Path(given).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".aws" / name


def _section(path: Path, name: str) -> dict[str, str]:
    """One section of an AWS ini file ({} when the file or the section is missing or unreadable)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except (OSError, configparser.Error, UnicodeDecodeError):
        return {}
    return dict(parser[name]) if parser.has_section(name) else {}


def shared_profile(env: Mapping[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, str]]:
    """(profile name, its credentials-file section, its config-file section)."""
    env = os.environ if env is None else env
    name = _profile_name(env)
    creds = _section(_aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"), name)
    config = _section(_aws_file(env, "AWS_CONFIG_FILE", "config"), name if name == "default" else f"profile {name}")
    return name, creds, config


def aws_region(entry, base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """The region of an ``amazon_bedrock`` entry (see the module docstring for the order)."""
    env = os.environ if env is None else env
    region = getattr(entry, "aws_region", None) or region_from_url(base_url) or env.get("AWS_REGION") \
        or env.get("AWS_DEFAULT_REGION")
    if region:
        return region
    _, creds, config = shared_profile(env)
    return config.get("region") or creds.get("region") or "us-east-1"


def aws_credentials(entry, env: Mapping[str, str] | None = None) -> tuple[str, str, str | None] | None:
    """(access key, secret, session token) for an entry, or None (see the module docstring for the order)."""
    env = os.environ if env is None else env
    access = getattr(entry, "aws_access_key_id", None)
    secret = getattr(entry, "aws_secret_access_key", None)
    if access and secret:
        return access, secret, getattr(entry, "aws_session_token", None) or None
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        return access, secret, env.get("AWS_SESSION_TOKEN") or None
    name, creds, config = shared_profile(env)
    for section in (creds, config):
        access, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        if access and secret:
            return access, secret, section.get("aws_session_token") or None
    if "AWS_PROFILE" in env:  # a profile asked for by name but not usable: say so (never its contents)
        log.warning("AWS profile '%s' has no aws_access_key_id/aws_secret_access_key in %s or %s", name,
                    _aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                    _aws_file(env, "AWS_CONFIG_FILE", "config"))
    return None


def bedrock_signer(entry, base_url: str | None, env: Mapping[str, str] | None = None) -> SigV4Signer | None:
    """The SigV4 signer for an ``amazon_bedrock`` entry without an API key (credentials and region as
    the module docstring says); None when no access key and secret are found."""
    found = aws_credentials(entry, env)
    if found is None:
        return None
    access, secret, token = found
    return SigV4Signer(access, secret, token, aws_region(entry, base_url, env), "bedrock")
