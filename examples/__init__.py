"""Examples that ship with plano."""
