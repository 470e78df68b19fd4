"""Async tasks: ``POST /v1/tasks`` on every agent listener (contract: ``shared/reference/tasks-api.md``).

An agent hands plano a unit of work in plain language; plano plans a workflow over the
listener's agents at run time (:mod:`.planner`), runs it (:mod:`.executor`) through the same
agent-invocation unit as the agent listener (:mod:`gateway.orchestration.invoke`), adapts when
a step fails (retry, another capable agent, a recovery learnt from earlier runs: :mod:`.memory`),
and reports back by a signed webhook from a durable outbox (:mod:`.webhooks`), by polling and
by a trace (:mod:`.api`).

Durability (:mod:`.store`, :mod:`.runtime`): every task, step, memory entry and webhook lives in
one SQL store — SQLite by default (WAL, group commit on one writer thread per process, safe under
several workers), PostgreSQL for replicas. Runs are claimed with leases (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL; SQLite serialises writers), renewed by a heartbeat, and fenced: every
write names the owner, so a replica that lost its lease stops. Why not DBOS / procrastinate /
pgqueuer: see the README's tasks section (measured).

This package is imported lazily (by the server when a config has agent listeners); importing
it does not import the store drivers.
"""
