"""A2A (Agent2Agent) in plano: A2A agents upstream, agent listeners as A2A servers.

- :mod:`~gateway.a2a.wire`: the JSON shapes of A2A 1.0 and 0.3 that plano reads and writes
  (messages from a chat conversation, answer text from messages, tasks and stream events);
- :mod:`~gateway.a2a.upstream`: ``agents: - {id, type: a2a, url}``: the agent card read at
  start-up, ``SendMessage`` / ``SendStreamingMessage`` (or 0.3's ``message/send`` /
  ``message/stream``) through :class:`gateway.upstream.Upstream`, long tasks polled;
- :mod:`~gateway.a2a.server`: an agent listener's agent card and A2A JSON-RPC endpoint (the
  ``a2a-sdk`` server in front of the listener's own routing and agent chain).
- :mod:`~gateway.a2a.lifecycle`: what a runtime does at start (cards read eagerly) and close (A2A and
  MCP endpoints stopped, so a reload leaves nothing of the old configuration running).

Nothing here is imported on the model-proxy path; ``a2a-sdk`` (the ``a2a`` extra) is imported
only when a config has an A2A agent or an agent listener serves A2A, at start-up.
"""
