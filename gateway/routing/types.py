"""Types shared by every routing strategy (embedded router, LLM orchestrator)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentSpec:
    """One agent of a listener, as the config describes it."""

    id: str
    description: str
    default: bool = False


@dataclass
class RoutingDecision:
    """Ordered agent ids that must handle the latest user turn, plus why (for tracing)."""

    agents: list[str]
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
