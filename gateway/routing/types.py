"""Types shared by every routing strategy (embedded router, LLM orchestrator)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentSpec:
    """One agent of a listener, as the config describes it."""

    id: str
    description: str
    default: bool = False
    #: example user requests (plano.yaml `examples:`, a plano extension): matched like the
    #: description's quoted `Handles:` examples - concrete phrasings bridge the gap between an
    #: abstract description and the way users actually ask
    examples: tuple[str, ...] = ()


@dataclass
class RoutingDecision:
    """Ordered agent ids that must handle the latest user turn, plus why (for tracing)."""

    agents: list[str]
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    #: the agents must run one after the other, each seeing the earlier answers (a router that
    #: knows of a data dependency between the intents sets it; explicit order in the turn is
    #: detected by the selector for every router)
    sequenced: bool = False
    #: how sure the router is, in [0, 1] (None: the router does not say, e.g. the LLM orchestrator).
    #: The embedded router derives it from its evidence margin (gateway/routing/embedded.py, CONF_TAU).
    confidence: float | None = None
    #: the best-scoring agents, best first, as (agent id, score) - what the decision chose between
    candidates: list[tuple[str, float]] = field(default_factory=list)
    #: the embedded router's trained matcher re-ranked this (unsure) pick
    reranked: bool = False
