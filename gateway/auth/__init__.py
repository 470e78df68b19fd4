"""Access control and edge hardening: client keys, virtual keys, budgets, the admin API's key store.

Public surface::

    AuthRuntime.from_config(config, redis, limits_backend)  # one per worker, built once
    runtime.wrap(listener, app, kind)   # the listener's app behind the edge middleware (every listener)
    await runtime.start() / await runtime.aclose()          # the background key/budget sync
    hash_key(key) -> "sha256:<hex>"                         # for configs and keys files
    check_url(url, allow_loopback=False)                    # SSRF guard for webhook / per-task URLs

See :mod:`.middleware` for what happens per request, :mod:`.store` for how keys reach
every worker and replica, :mod:`.budget` for budgets, :mod:`.allow` for URL allow-lists.
"""

from __future__ import annotations

import ipaddress
import logging

from gateway.auth.allow import UrlNotAllowed, check_url
from gateway.auth.hardening import DEFAULT_MAX_JSON_DEPTH
from gateway.auth.keys import KeyRecord, KeyTable, hash_key
from gateway.auth.middleware import Edge, Guard, ModelNames
from gateway.auth.store import FileSource, KeyStore, Syncer, keys_file_of

log = logging.getLogger("plano.auth")

__all__ = ["AuthRuntime", "Edge", "KeyRecord", "UrlNotAllowed", "check_url", "exposed_without_auth", "hash_key"]


class ListenerKeys:
    """A listener's own keys (``auth.api_keys`` + ``auth.keys_file``): :attr:`table`, re-read when the file changes."""

    def __init__(self, listener, base_dir=None) -> None:
        auth = listener.auth
        self.fixed = [KeyRecord.from_entry(k, "listener", [listener.name]) for k in auth.api_keys]
        for i, r in enumerate(self.fixed):
            r.id = f"{listener.name}-key-{i}"
        path = auth.keys_file
        if path and base_dir is not None:
            import os

            if not os.path.isabs(path):
                path = os.path.join(str(base_dir), path)
        self.file = FileSource(path, "keys_file", [listener.name]) if path else None
        self.table = KeyTable(self.fixed)
        if self.file is not None:
            found = self.file.poll()
            if found is not None:
                self.table = KeyTable(self.fixed + found[0])

    async def sync(self) -> None:
        if self.file is not None:
            found = self.file.poll()
            if found is not None:
                self.table = KeyTable(self.fixed + found[0])


class KeyLookup:
    """The key record behind a request's ``scope["plano.key_id"]`` (set by the edge once it authenticated
    the request), for endpoints whose per-key rules the edge cannot apply itself: an agent listener's MCP
    endpoint filters ``tools/list`` by the key's ``mcp_tools``. Looks in the listener's own keys first,
    then the virtual keys, as authentication does."""

    __slots__ = ("guard",)

    def __init__(self, guard) -> None:
        self.guard = guard

    def __call__(self, key_id: str | None) -> KeyRecord | None:
        if key_id is None:
            return None
        record = self.guard.own.table.by_id.get(key_id)
        store = self.guard.store
        if record is None and store is not None:
            record = store.table.by_id.get(key_id)
        return record


class AuthRuntime:
    """Everything access control needs in one worker: key tables, budget ledger, the sync task."""

    def __init__(self, config, redis=None, limits_backend=None) -> None:
        from gateway.auth.budget import Ledger

        self.config = config
        auth = getattr(config, "auth", None)
        self.listeners_with_auth = [l for l in config.listeners if getattr(l, "auth", None) is not None]
        self.store = None
        self.ledger = None
        self.own: dict[str, ListenerKeys] = {}
        self.limits_backend = limits_backend
        self.prices = dict(auth.prices) if auth is not None else {}
        interval = auth.sync_interval if auth is not None else 0.25
        if self.listeners_with_auth:
            from gateway.telemetry.redact import register_secret

            records = [KeyRecord.from_model(vk, "config") for vk in (auth.keys if auth is not None else ())]
            self.store = KeyStore(records, redis=redis, keys_file=keys_file_of(config), interval=interval)
            self.ledger = Ledger(redis)
            for listener in self.listeners_with_auth:
                self.own[listener.name] = ListenerKeys(listener, getattr(config, "base_dir", None))
                for key in listener.auth.api_keys:
                    register_secret(key)  # scrubbed from every log line and span
            for vk in (auth.keys if auth is not None else ()):
                register_secret(vk.key)
        if auth is not None and auth.admin_key:
            from gateway.telemetry.redact import register_secret

            register_secret(auth.admin_key)
        _note_exposed(config)
        parts = [self.store, self.ledger, *self.own.values()] if self.listeners_with_auth else []
        self.syncer = Syncer(interval, parts)
        self._models = ModelNames(config) if self.listeners_with_auth else None

    def wrap(self, listener, app, kind: str):
        """``app`` behind the edge middleware of ``listener`` (auth when configured, request-shape limits always)."""
        guard = None
        if getattr(listener, "auth", None) is not None:
            agent_ids = [a.id for a in listener.agents or ()] if kind == "agent" else ()
            guard = Guard(listener, kind, self.own[listener.name], self.store, limits_backend=self.limits_backend,
                          ledger=self.ledger, models=self._models, prices=self.prices, agent_ids=agent_ids)
            if kind == "agent":
                from gateway.auth.middleware import guard_agents

                guard.agents_guarded = guard_agents(app, listener.name)
                protocols = getattr(app, "protocols", None)
                if protocols is not None:  # its MCP endpoint filters tools by the caller's key
                    protocols.key_lookup = KeyLookup(guard)
        if guard is None and kind == "model":
            # Nothing to authenticate: the model listener checks JSON depth as it reads the body and
            # scrubs secrets from error answers where it sends them (``send_body``), so its hot path
            # pays for no middleware frame, body replay or wrapped ``send``.
            return app
        depth = getattr(listener, "max_json_depth", None) or DEFAULT_MAX_JSON_DEPTH
        return Edge(app, listener, kind, guard, max_json_depth=depth)

    def wrap_all(self, config, by_port: dict) -> dict:
        """Every served listener's app of ``by_port`` (port -> app) behind its edge middleware."""
        out = dict(by_port)
        for listener in config.listeners:
            app = out.get(listener.port)
            if app is not None and listener.type in ("model", "agent"):
                out[listener.port] = self.wrap(listener, app, listener.type)
        return out

    async def start(self) -> None:
        await self.syncer.start()

    async def aclose(self) -> None:
        await self.syncer.aclose()


def exposed_without_auth(config) -> list:
    """Listeners bound to a non-loopback address with no ``auth``: anyone who reaches the port may use them."""
    out = []
    for listener in config.listeners:
        if listener.type not in ("model", "agent") or getattr(listener, "auth", None) is not None:
            continue
        address = (listener.address or "0.0.0.0").strip("[]")
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = address == "localhost"
        if not loopback:
            out.append(listener)
    return out



_noted: set = set()


def _note_exposed(config) -> None:
    """The start-up note: a listener anyone on the network can use (once per listener and process)."""
    for listener in exposed_without_auth(config):
        key = (listener.name, listener.address, listener.port)
        if key in _noted:
            continue
        _noted.add(key)
        log.warning("listener '%s' binds %s:%s without auth: anyone who can reach this port can use it (and the "
                    "provider keys behind it); add 'auth: {api_keys: [...]}' to the listener or bind 127.0.0.1",
                    listener.name, listener.address or "0.0.0.0", listener.port)
