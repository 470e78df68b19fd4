"""The edge: one ASGI app per listener kind, answering clients in their own API shape."""
