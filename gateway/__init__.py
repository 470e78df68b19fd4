"""plano: a pure-Python multi-agent orchestration gateway and model proxy.

A request's path through the package:
``config`` (plano.yaml) -> ``server`` (sockets, workers) -> ``listeners`` (the edge:
parse, validate, answer errors) -> ``llm`` / ``routing`` (what to call) ->
``upstream`` (the one outbound HTTP layer) -> ``telemetry``.
"""

__version__ = "0.1.0"
