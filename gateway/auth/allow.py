"""URL allow-lists for URLs a client hands plano (webhooks, per-task callback URLs): no SSRF.

``check_url(url, allow=..., allow_loopback=False)`` returns the URL or raises
:class:`UrlNotAllowed` (a 400 with a message safe to show the client). Rules, in order:

* scheme ``http`` or ``https`` only, a host, no user-info (``http://user:pw@host``);
* when ``allow`` (host patterns: ``hooks.example.com``, ``*.example.com``, ``10.0.0.0/8``)
  is given, the host must match one of them;
* the host's addresses — the literal, or every address DNS gives for the name
  (``resolve=True``) — must not be link-local (``169.254.0.0/16``, ``fe80::/10``, where the
  cloud metadata services live: ``169.254.169.254``, ``fd00:ec2::254``), unspecified
  (``0.0.0.0``), multicast or reserved; loopback (``127.0.0.0/8``, ``::1``, ``localhost``)
  only with ``allow_loopback=True`` (tests, local development); private ranges only when an
  ``allow`` pattern names them explicitly or ``allow_private=True``.

Resolution happens at check time: a caller that connects later should connect to the
address it checked (``check_url(...)`` returns it in :attr:`Checked.addresses`) to close
the DNS-rebinding window.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.listeners.errors import GatewayError

_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})


class UrlNotAllowed(GatewayError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message, code="url_not_allowed")


@dataclass(frozen=True)
class Checked:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _address_problem(ip, allow_loopback: bool, allow_private: bool) -> str | None:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip in _EC2_V6_METADATA:
        return "a cloud metadata address"
    if ip.is_private and not allow_private:
        return "a private address"
    return None


_EC2_V6_METADATA = ipaddress.ip_network("fd00:ec2::/32")


def _host_allowed(host: str, ips, patterns) -> bool:
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if "/" in pattern:
            try:
                net = ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                continue
            if ips and all(ip in net for ip in ips):
                return True
        elif fnmatch.fnmatchcase(host, pattern):
            return True
    return False


def check_url(url: str, allow=None, *, allow_loopback: bool = False, allow_private: bool = False,
              resolve: bool = True) -> Checked:
    """``url`` checked against the rules above; raises :class:`UrlNotAllowed`."""
    if not isinstance(url, str) or len(url) > 2048:
        raise UrlNotAllowed("The URL must be a string of at most 2048 characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UrlNotAllowed("The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed("Only http and https URLs are allowed.")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("URLs with user credentials are not allowed.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlNotAllowed("The URL has no host.")
    port = port or (443 if parts.scheme == "https" else 80)
    if host in _METADATA_NAMES:
        raise UrlNotAllowed(f"The host '{host}' is a cloud metadata service.")
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        ips = None
    if ips is None:
        if host == "localhost" or host.endswith(".localhost"):
            ips = [ipaddress.ip_address("127.0.0.1")]
        elif resolve:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                raise UrlNotAllowed(f"The host '{host}' cannot be resolved.") from None
            ips = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        else:
            ips = []
    explicit = False
    if allow:
        if not _host_allowed(host, ips, allow):
            raise UrlNotAllowed(f"The host '{host}' is not on this gateway's allow-list.")
        explicit = True
    for ip in ips:
        problem = _address_problem(ip, allow_loopback, allow_private or explicit)
        if problem:
            raise UrlNotAllowed(f"The URL's host '{host}' resolves to {problem}, which is not allowed.")
    return Checked(url, host, port, tuple(str(ip) for ip in ips))
