"""What a runtime (gateway.server.runtime) does for its agent listeners' protocol sides when it starts
and when it is closed — at process start, and on every reload for the new and the retired runtime.

**Start: the A2A agents' cards, eagerly.** Routing needs them (an agent without a ``description``
is routed by its card's description and skills), so they are read while the runtime starts — before
the worker takes requests, and on reload before the new runtime is swapped in — rather than on the
listener's first request. A card that cannot be read is a warning naming the agent, never a failed
start (:meth:`gateway.a2a.upstream.A2AAgent.load_card`). Start-up waits at most
:data:`START_WAIT` seconds for them (an agent host that swallows packets must not hold the gateway
back); reads still going on then finish in the background, and the listener's requests wait for
them as before.

**Close: the protocol endpoints.** A retired runtime's MCP session manager is stopped (its stateful
sessions and their tasks end; a client re-initializes against the new runtime), its A2A request
handler is drained, and a card read still in flight is cancelled, so nothing of an old
configuration keeps running after a reload.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.a2a.upstream import CARD_TIMEOUT

log = logging.getLogger("plano.a2a")

#: The longest a runtime's start waits for its A2A agents' cards (one card URL's timeout, plus slack).
START_WAIT = CARD_TIMEOUT + 1.0


def _card_readers(apps) -> list:
    """Agent listener apps with ``type: a2a`` agents whose cards are not read yet."""
    return [app for app in apps if getattr(app, "_cards_pending", False) and hasattr(app, "_await_cards")]


async def start_listeners(apps) -> None:
    """Read the A2A agents' cards of ``apps`` (agent listener apps), waiting at most :data:`START_WAIT`."""
    readers = _card_readers(apps)
    if not readers:
        return
    for app in readers:
        await app._await_cards(False)  # starts the listener's one card read (requests wait on the same task)
    reads = [app._cards for app in readers if app._cards is not None]
    done, pending = await asyncio.wait(reads, timeout=START_WAIT)
    if pending:
        log.warning("a2a: %d listener(s) still reading agent cards after %.0fs; serving meanwhile (their "
                    "requests wait for the cards)", len(pending), START_WAIT)


async def close_listeners(apps) -> None:
    """Close the protocol endpoints of ``apps`` and cancel card reads still running (never raises)."""
    for app in apps:
        cards = getattr(app, "_cards", None)
        if cards is not None and not cards.done():
            cards.cancel()
            await asyncio.gather(cards, return_exceptions=True)
        protocols = getattr(app, "protocols", None)
        if protocols is None:
            continue
        try:
            await protocols.aclose()
        except Exception:  # noqa: BLE001 - a retired runtime closes the rest anyway
            log.exception("listener '%s': closing its A2A/MCP endpoints failed", getattr(app, "name", "?"))
