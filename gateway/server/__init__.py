"""The process: sockets for every listener, worker processes, lifespan and shutdown."""
