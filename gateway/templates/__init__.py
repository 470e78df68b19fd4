"""Starter configs for ``plano init`` (one YAML file per template)."""
