"""State shared across worker processes and replicas (Redis), see :mod:`gateway.state.redis`."""
