"""Agent routing: decide which agent(s) of an agent listener handle the latest user turn."""

from gateway.routing.types import AgentSpec, RoutingDecision

__all__ = ["AgentSpec", "RoutingDecision"]
