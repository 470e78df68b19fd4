"""Runnable demo agents for plano (see README.md)."""
