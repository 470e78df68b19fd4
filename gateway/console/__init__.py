"""The web console: plano's live traffic, traces, routing, tasks and keys in a browser, on the admin port.

Served by the admin server (:mod:`gateway.telemetry.admin`) under ``/console/`` — server-rendered
HTML plus one small static script for live refresh, all inside this package, so nothing beyond
plano runs for it (no Node service, no build step). It sits behind the admin key
(:mod:`gateway.console.session`) and reads only what plano already records
(:mod:`gateway.console.sources`): the model-proxy hot path has no hook for it and pays nothing
per request; a page costs work only in the admin server's thread when someone loads it.
"""

from __future__ import annotations


def serve_console(handler, method: str, path: str) -> None:
    """Answer one ``/console`` request on the admin server's handler (imported lazily: the console
    costs nothing until someone opens it)."""
    from gateway.console.app import handle

    handle(handler, method, path)


__all__ = ["serve_console"]
