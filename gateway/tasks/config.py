"""The ``tasks:`` section of plano.yaml (plano extension; shape from the tasks API contract)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.config.scalars import Duration


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=False)


class TaskWebhook(_Model):
    url: str | None = Field(None, description="Where task events are POSTed (JSON envelope, signed).")
    secret: str | None = Field(None, description="HMAC-SHA256 key for X-Plano-Signature (usually $ENV).")
    allowed_urls: list[str] = Field(default_factory=list, description="Glob patterns a task's own "
                                    "webhook_url must match; empty: per-task URLs are refused.")
    schedule: list[Duration] | None = Field(None, description="Delays before attempts 2, 3, ... "
                                            "(default 1m, 5m, 30m, 2h: 5 attempts over ~2.6 h).")
    attempts: int | None = Field(None, ge=1, le=50, description="Attempts per delivery (default 5).")
    timeout: Duration = Field(30.0, description="An attempt without a 2xx answer within this fails.")
    progress: bool = Field(True, description="Send task.progress after each completed step.")


class TaskRetry(_Model):
    attempts: int = Field(2, ge=1, le=10, description="Calls of one step before it is adapted.")
    backoff: Duration = Field(0.2, description="Pause between a step's attempts.")


class TaskMemory(_Model):
    enabled: bool = True
    min_successes: int = Field(2, ge=1, description="Runs in which a recovery worked before plans use it first.")
    max_entries: int = Field(1000, ge=10, description="Memory entries kept per store (least recent dropped).")


class TasksConfig(_Model):
    """Async tasks on agent listeners (``/v1/tasks``)."""

    enabled: bool = True
    store: str | None = Field(None, description="sqlite:///path/tasks.db (default "
                              "$PLANO_HOME/tasks.db) or postgresql://... for several replicas.")
    max_steps: int = Field(50, ge=1, le=10000, description="Steps per workflow, recovery steps included.")
    task_timeout: Duration = Field(900.0, description="A task still running after this fails (task_timeout).")
    waiting_timeout: Duration = Field(86400.0, description="A waiting task without input fails after this.")
    step_timeout: Duration | None = Field(None, description="Bound on one agent call (default: the agent's "
                                          "own timeout, else the task's remaining time).")
    max_running: int = Field(200, ge=1, description="Tasks run at once per worker process.")
    lease: Duration = Field(15.0, description="A run's claim; renewed every lease/3. A replica that dies "
                            "has its tasks resumed by another after this.")
    poll_interval: Duration = Field(0.5, description="How often a worker looks for orphaned or queued tasks.")
    planner: str = Field("auto", pattern="^(auto|embedded|llm)$", description="llm needs "
                         "overrides.agent_orchestration_model; auto uses it when configured.")
    retry: TaskRetry = Field(default_factory=TaskRetry)
    memory: TaskMemory = Field(default_factory=TaskMemory)
    webhook: TaskWebhook = Field(default_factory=TaskWebhook)
