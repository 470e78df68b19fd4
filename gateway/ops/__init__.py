"""Operator commands of the ``plano`` CLI: init, zero-config up, logs, obs, cli_agent."""
