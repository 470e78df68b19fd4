"""Run one of the demo agents (``python -m examples.agents.<module>``) as a real process on a chosen port.

Used by end-to-end tracing tests: with ``PLANO_AGENT_USE_LLM=1`` and ``PLANO_LLM_URL``
pointing at plano's model listener, the agent calls plano back and forwards the
``traceparent`` / ``x-request-id`` it received, exactly as a user's own agent would.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.service import ServiceProcess


class ExampleAgentProcess(ServiceProcess):
    """``python -m examples.agents.<module> --port N`` in its own process group."""

    def __init__(self, module: str, workdir: Path, *, port: int | None = None, env: dict | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PLANO_", "OTEL_"))}
        super().__init__(f"examples.agents.{module}", [], workdir, label=f"agent {module}", port=port,
                         env={**base, "PYTHONUNBUFFERED": "1", **(env or {})})

    def spawn(self) -> ExampleAgentProcess:
        return self.launch()
