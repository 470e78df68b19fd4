"""Pydantic v2 models of the plano config file (Plano-compatible, plus our extensions).

Field names are exactly the YAML keys.  Every model forbids unknown keys (Plano's
``additionalProperties: false``).  Durations are stored as float seconds, sizes as
int bytes.  Models only check shapes and local defaults; cross-references and the
Plano semantic rules live in :mod:`gateway.config.validate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from .providers import PROVIDERS, ProviderSpec, canonical_interface, canonical_provider

VERSIONS: tuple[str, ...] = ("v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0")
LATEST_VERSION = "v0.4.0"

Version = Literal["v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0"]


def version_index(version: str) -> int:
    return VERSIONS.index(version)


# --------------------------------------------------------------------------- scalars

from .scalars import Duration, Size, parse_duration, parse_size  # noqa: E402,F401 (re-exported)
from .reliability import (  # noqa: E402
    CircuitBreakerConfig,
    ListenerRateLimit,
    RetryConfig,
    RetryPolicyProposal,
    SharedState,
    UpstreamPolicyFields,
)
from .access import Auth, ListenerAuth, ListenerTLS  # noqa: E402

from gateway.tasks.config import TasksConfig  # noqa: E402

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=False)


# --------------------------------------------------------------------------- agents / filters


class Agent(UpstreamPolicyFields):
    """An agent backend: an OpenAI chat-completions HTTP server (one ``url`` or several ``urls``),
    or an A2A agent (``type: a2a``)."""

    id: str
    type: Literal["openai", "a2a"] = Field(
        "openai", description="plano extension: 'openai' (Plano's agents: OpenAI chat completions at "
        "{url}/v1/chat/completions) or 'a2a' (an Agent2Agent agent: its card is read from "
        "{url}/.well-known/agent-card.json, falling back to /.well-known/agent.json, and it is called with "
        "SendMessage / SendStreamingMessage, or 0.3's message/send / message/stream).")
    url: str | None = None
    urls: list[str] | None = Field(None, min_length=1, description="plano extension: several endpoints, "
                                   "load-balanced; 'url' is the one-endpoint form.")
    timeout: Duration | None = Field(None, description="plano extension: the whole call, all attempts included.")
    connect_timeout: Duration | None = Field(None, description="plano extension: TCP/TLS connect timeout.")

    @model_validator(mode="after")
    def _one_url(self) -> "Agent":
        if self.url is None and not self.urls:
            raise ValueError("an agent needs 'url' (or 'urls')")
        if self.url is not None and self.urls:
            raise ValueError("give either 'url' or 'urls', not both")
        return self

    @property
    def endpoints(self) -> list[str]:
        return list(self.urls) if self.urls else [self.url]


class Filter(UpstreamPolicyFields):
    """A filter service (MCP tool or plain HTTP endpoint) usable in filter chains."""

    id: str
    url: str
    type: Literal["mcp", "http"] = "mcp"
    transport: Literal["streamable-http"] = "streamable-http"
    tool: str | None = Field(None, description="MCP tool name; defaults to the filter id.")
    timeout: Duration = Field(5.0, description="plano extension: per-call timeout (default 5s).")
    on_error: Literal["fail_closed", "fail_open"] | None = Field(
        None, description="plano extension: behaviour when the filter fails; default decided by position."
    )
    stream_mode: Literal["event", "window"] = Field(
        "event",
        description="plano extension, output filters on streams: 'event' calls the filter once per SSE event; "
        "'window' sends it the streamed text in a sliding window so a secret split across chunks is caught.",
    )
    window_chars: int = Field(
        256, ge=1, description="plano extension, stream_mode 'window': characters held back until filtered."
    )

    @model_validator(mode="after")
    def _default_tool(self) -> "Filter":
        if self.tool is None:
            self.tool = self.id
        return self


class McpServer(_Model):
    """plano extension: an upstream MCP server whose tools plano's MCP endpoint aggregates."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="Prefix of its tools on plano's MCP "
                      "endpoint ('<name>__<tool>').")
    url: str = Field(description="Streamable HTTP endpoint, e.g. http://host:8000/mcp (a url without a path "
                     "means /mcp).")
    allow: list[str] | None = Field(None, description="Tool names (fnmatch patterns) exposed; default all.")
    deny: list[str] | None = Field(None, description="Tool names (fnmatch patterns) never listed nor callable; "
                                   "deny wins over allow.")
    timeout: Duration = Field(30.0, description="A tools/call (and tools/list) may take this long.")
    headers: dict[str, str] | None = Field(None, description="Extra headers sent to the server (e.g. its key).")


# --------------------------------------------------------------------------- listeners


class ListenerAgent(_Model):
    """An agent served by an agent listener."""

    id: str
    description: str | None = Field(None, description="What the agent handles (the router reads it). Required, "
                                    "except for an A2A agent, whose card's description and skills are used "
                                    "when it is omitted.")
    default: bool = False
    examples: list[str] | None = Field(
        None, description="plano extension: example user requests this agent handles, written the way users "
                          "type them; the embedded router matches turns against them like the description's "
                          "own `Handles: '...'` examples, and the LLM orchestrator sees them with the description.")
    input_filters: list[str] | None = None
    output_filters: list[str] | None = Field(None, description="plano extension: response filter chain.")
    filter_chain: list[str] | None = Field(
        None, description="Alias of input_filters (as used in Plano docs); normalised into input_filters."
    )


ListenerType = Literal["agent", "model", "prompt"]

LISTENER_DEFAULTS: dict[str, dict[str, Any]] = {
    "agent": {"port": None, "address": "0.0.0.0", "timeout": 30.0},
    "model": {"port": 12000, "address": "0.0.0.0", "timeout": 300.0},
    "prompt": {"port": 10000, "address": "0.0.0.0", "timeout": 300.0},
}


class Listener(_Model):
    """A listener (list form).  Defaults depend on ``type`` and are filled after validation."""

    name: str
    type: ListenerType
    port: int | None = Field(None, description="agent: required; model: 12000; prompt: 10000.")
    address: str | None = Field(None, description="Bind address, default 0.0.0.0.")
    timeout: Duration | None = Field(None, description="Whole-response timeout: agent 30s, model/prompt 300s.")
    #: ``plano_orchestrator_v1`` (Plano's name: LLM orchestrator when an orchestration model is
    #: configured, else the embedded router), ``embedded`` (never call an LLM), ``llm`` or
    #: ``hybrid`` (plano extension: the embedded router answers confident turns, the LLM
    #: orchestrator only those below ``router_confidence``).
    router: Literal["plano_orchestrator_v1", "embedded", "llm", "hybrid"] | None = None
    router_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="plano extension (router: hybrid): an embedded routing decision whose "
        "confidence (0-1, from the evidence margin of the chosen agent) is below this goes to the LLM orchestrator "
        "(overrides.agent_orchestration_model); at or above it is answered locally. 0.6 was chosen on the "
        "routing_dev set: it escalates about half of its (hard) turns and catches 14 of the 15 the embedded "
        "router gets wrong.")
    max_retries: int | None = Field(None, ge=0)
    answers: Literal["last", "all"] = Field(
        "last", description="plano extension (agent listeners): 'last' (Plano's behaviour) chains the selected "
        "agents and replies with the last agent's answer; 'all' runs independent intents concurrently and replies "
        "with every agent's answer, in the routed order, as one response.")
    agents: list[ListenerAgent] | None = None
    a2a: bool = Field(True, description="plano extension (agent listeners): serve an A2A agent card at "
                      "/.well-known/agent-card.json and the A2A JSON-RPC endpoint at /a2a (the a2a extra).")
    mcp: bool = Field(True, description="plano extension (agent listeners): serve an MCP endpoint at /mcp with "
                      "each agent as a tool, an 'ask' tool and the tools of mcp_servers.")
    mcp_servers: list[str] | None = Field(None, description="plano extension (agent listeners): names of "
                                          "mcp_servers whose tools this listener's /mcp aggregates (default all).")
    input_filters: list[str] | None = None
    output_filters: list[str] | None = None
    filter_chain: list[str] | None = Field(None, description="Alias of input_filters; normalised into input_filters.")
    max_body_bytes: Size = Field(DEFAULT_MAX_BODY_BYTES, description="plano extension: request body limit (default 10 MiB).")
    # plano extensions: defaults for what this listener calls, overload protection, client limits.
    retry: RetryConfig | None = Field(None, description="plano extension: default retry policy of its upstreams.")
    circuit_breaker: CircuitBreakerConfig | None = Field(None, description="plano extension: default breaker.")
    max_concurrency: int | None = Field(None, ge=1, description="plano extension: requests in flight; beyond: 503.")
    requests_per_minute: int | None = Field(None, ge=1, description="plano extension: requests per minute, "
                                            "whole listener (shared across workers/replicas with state.redis_url).")
    rate_limits: list[ListenerRateLimit] | None = Field(None, description="plano extension: request limits per "
                                                         "listener, API key or header value.")
    read_timeout: Duration = Field(30.0, gt=0, description="plano extension: a client must send its headers "
                                   "and body within this (else 408).")
    keepalive_timeout: Duration = Field(75.0, gt=0, description="plano extension: idle keep-alive connections "
                                        "are closed after this.")
    max_connections: int | None = Field(None, ge=1, description="plano extension: open client connections per "
                                        "listener and worker; beyond it new connections are refused with 503.")
    auth: ListenerAuth | None = Field(None, description="plano extension: client API keys required on this "
                                      "listener (see the README's access control section).")
    max_header_bytes: Size = Field(256 * 1024, description="plano extension: request line plus headers; "
                                   "beyond it 431.")
    max_json_depth: int = Field(64, ge=1, le=1000, description="plano extension: JSON bodies nested deeper "
                                "are refused with 400.")
    tls: ListenerTLS | None = Field(None, description="plano extension: serve HTTPS on this listener with "
                                    "cert_file/key_file (PEM); ca_file also requires client certificates.")

    _implicit: bool = PrivateAttr(default=False)
    #: The config's ``state_storage`` (Responses API state), handed to a model listener with its own settings.
    _state_storage: Any = PrivateAttr(default=None)
    #: The whole config, for a model listener's preference routing, sessions and prompt caching.
    _config: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _type_defaults(self) -> "Listener":
        defaults = LISTENER_DEFAULTS[self.type]
        if self.port is None:
            self.port = defaults["port"]
        if self.address is None:
            self.address = defaults["address"]
        if self.timeout is None:
            self.timeout = defaults["timeout"]
        return self

    @property
    def implicit(self) -> bool:
        """True for the model listener plano adds when the config declares none."""
        return self._implicit


class LegacyListener(_Model):
    """One entry of the legacy object form (``ingress_traffic`` / ``egress_traffic``)."""

    address: str | None = None
    port: int | None = None
    message_format: Literal["openai"] | None = None
    timeout: Duration | None = None


class LegacyListeners(_Model):
    """Deprecated object form of ``listeners``; converted to a prompt + a model listener."""

    ingress_traffic: LegacyListener | None = None
    egress_traffic: LegacyListener | None = None


# --------------------------------------------------------------------------- endpoints


class Endpoint(_Model):
    endpoint: str = Field(description="host or host:port")
    connect_timeout: Duration | None = None
    protocol: Literal["http", "https"] = "http"
    http_host: str | None = None
    prefix_affinity: bool = False


# --------------------------------------------------------------------------- model providers


class InlineRoutingPreference(_Model):
    name: str
    description: str


class ModelProvider(_Model):
    """One ``model_providers`` entry; ``model`` is ``<provider>/<model_id>`` or ``<provider>/*``."""

    model: str
    name: str | None = None
    access_key: str | None = None
    default: bool = False
    base_url: str | None = None
    provider_interface: str | None = None
    passthrough_auth: bool = False
    http_host: str | None = None
    headers: dict[str, str] | None = None
    routing_preferences: list[InlineRoutingPreference] | None = Field(
        None, description="DEPRECATED: migrated to top-level routing_preferences."
    )
    timeout: Duration | None = Field(None, description="plano extension: upstream request timeout.")
    connect_timeout: Duration | None = Field(None, description="plano extension: upstream connect timeout.")
    base_urls: list[str] | None = Field(None, min_length=1, description="plano extension: several endpoints of "
                                        "the same API, load-balanced (instead of base_url).")
    fallback_models: list[str] | None = Field(None, description="plano extension: models tried in order when "
                                              "this one fails before its first byte (429/5xx/timeout/breaker).")
    retry_policy: RetryPolicyProposal | None = Field(None, description="Plano's proposed retry_policy shape.")
    retry: RetryConfig | None = Field(None, description="plano extension: retries of this provider's calls.")
    circuit_breaker: CircuitBreakerConfig | None = Field(None, description="plano extension: per-endpoint breaker.")
    max_concurrency: int | None = Field(None, ge=1, description="plano extension: in-flight calls; beyond: 503.")
    load_balancing: Literal["round_robin", "least_in_flight"] | None = None
    aws_access_key_id: str | None = Field(None, description="plano extension (amazon_bedrock): SigV4 access key; "
                                          "default AWS_ACCESS_KEY_ID. Unused when access_key (a Bedrock API key) is set.")
    aws_secret_access_key: str | None = Field(None, description="plano extension (amazon_bedrock): SigV4 secret; "
                                              "default AWS_SECRET_ACCESS_KEY.")
    aws_session_token: str | None = Field(None, description="plano extension (amazon_bedrock): session token of "
                                          "temporary credentials; default AWS_SESSION_TOKEN.")
    aws_region: str | None = Field(None, description="plano extension (amazon_bedrock): signing region; default the "
                                   "base_url's bedrock-runtime.<region> host, else AWS_REGION.")

    _access_key_env_missing: str | None = PrivateAttr(default=None)

    @property
    def access_key_env_missing(self) -> str | None:
        """Name of the unset env variable ``access_key`` referenced (value is then None)."""
        return self._access_key_env_missing

    @property
    def prefix(self) -> str:
        """Literal text before the first ``/`` of ``model``."""
        return self.model.split("/", 1)[0]

    @property
    def model_id(self) -> str:
        """Everything after the first ``/`` (ids may contain ``/``)."""
        return self.model.split("/", 1)[1] if "/" in self.model else self.model

    @property
    def provider(self) -> str:
        """Canonical built-in provider name, or the custom prefix."""
        return canonical_provider(self.prefix)

    @property
    def is_builtin(self) -> bool:
        return self.provider in PROVIDERS

    @property
    def interface(self) -> str | None:
        """Key of :data:`PROVIDERS` whose wire API/auth this entry speaks (None if unknown)."""
        if self.is_builtin:
            return self.provider
        if self.provider_interface:
            return canonical_interface(self.provider_interface)
        return None

    @property
    def spec(self) -> ProviderSpec | None:
        iface = self.interface
        return PROVIDERS.get(iface) if iface else None

    @property
    def is_wildcard(self) -> bool:
        return self.model_id == "*"

    @property
    def effective_name(self) -> str:
        return self.name or self.model


class ModelAlias(_Model):
    target: str | None = None
    targets: list[str] | None = Field(None, min_length=1, description="plano extension: several models (e.g. "
                                      "the same model at several providers) served round-robin behind one "
                                      "alias; a request that fails on one before its first byte moves on to "
                                      "the next. Instead of 'target'.")
    fallbacks: list[str] | None = Field(None, description="plano extension: models tried in order when the "
                                        "target fails before its first byte.")

    @model_validator(mode="after")
    def _one_target(self) -> "ModelAlias":
        if (self.target is None) == (not self.targets):
            raise ValueError("a model alias needs 'target' or 'targets' (not both)")
        return self

    @property
    def all_targets(self) -> list[str]:
        return list(self.targets) if self.targets else [self.target]


# --------------------------------------------------------------------------- routing


class SelectionPolicy(_Model):
    prefer: Literal["cheapest", "fastest", "none"]


class RoutingPreference(_Model):
    name: str
    description: str
    models: list[str] = Field(min_length=1)
    selection_policy: SelectionPolicy | None = None


class CostMetricsSource(_Model):
    type: Literal["cost"]
    provider: Literal["digitalocean", "models.dev"]
    url: str | None = None
    refresh_interval: int | None = Field(None, ge=1, description="seconds")
    model_aliases: dict[str, str] | None = None


class LatencyMetricsSource(_Model):
    type: Literal["latency"]
    provider: Literal["prometheus"]
    url: str
    query: str
    refresh_interval: int | None = Field(None, ge=1, description="seconds")


MetricsSource = Annotated[Union[CostMetricsSource, LatencyMetricsSource], Field(discriminator="type")]


class SessionCache(_Model):
    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    tenant_header: str | None = None


class RoutingBudget(_Model):
    max_switch_spend_pct: float
    replenish_on_rebind: bool = True
    cache_read_discount: float = 0.1
    record_counterfactual: bool = False


class Routing(_Model):
    llm_provider: str | None = None
    model: str | None = None
    session_ttl_seconds: int = Field(600, ge=1)
    session_max_entries: int = Field(10000, ge=1, le=10000)
    session_cache: SessionCache = Field(default_factory=SessionCache)
    routing_budget: RoutingBudget | None = None
    route_on_user_only: bool = False


class PromptCaching(_Model):
    enabled: bool = False
    session_affinity: bool | None = Field(None, description="default: true when enabled")
    inject_cache_control: bool | None = Field(None, description="default: true when enabled")
    min_prefix_tokens: int = Field(1024, ge=0)
    session_ttl_seconds: int | None = Field(None, ge=1, description="default: routing.session_ttl_seconds")

    @property
    def affinity_active(self) -> bool:
        return self.enabled and self.session_affinity is not False

    @property
    def inject_active(self) -> bool:
        return self.enabled and self.inject_cache_control is not False


class Overrides(_Model):
    prompt_target_intent_matching_threshold: float | None = None
    optimize_context_window: bool | None = None
    use_agent_orchestrator: bool | None = None
    disable_signals: bool = False
    upstream_connect_timeout: Duration = 5.0
    upstream_tls_ca_path: str | None = None
    llm_routing_model: str | None = None
    agent_orchestration_model: str | None = None
    orchestrator_model_context_length: int = Field(8192, ge=1)
    #: How long the LLM orchestrator may take before the embedded router decides instead.
    agent_orchestration_timeout: Duration = 10.0
    retry: RetryConfig | None = Field(None, description="plano extension: global default retry policy.")
    circuit_breaker: CircuitBreakerConfig | None = Field(None, description="plano extension: global default breaker.")


class StateStorage(_Model):
    type: Literal["memory", "postgres", "sqlite"] = Field(
        ..., description="Where Responses API conversation state lives (sqlite is plano's default when the "
        "section is omitted).")
    connection_string: str | None = None
    path: str | None = Field(None, description="plano extension (sqlite): the database file "
                             "(default $PLANO_HOME/state/responses.sqlite3).")
    ttl: Duration | None = Field(None, description="plano extension: stored turns expire after this (default 24h).")
    max_entries: int | None = Field(None, ge=1, description="plano extension (memory): most turns kept per "
                                    "worker, least recently used evicted first (default 10000).")
    pool_size: int | None = Field(None, ge=1, description="plano extension (postgres): pooled connections per "
                                  "worker (default 10).")


# --------------------------------------------------------------------------- tracing


class SpanAttributes(_Model):
    header_prefixes: list[str] | None = None
    static: dict[str, str] | None = None


class PosthogExporter(_Model):
    type: Literal["posthog"]
    url: str
    api_key: str | None
    distinct_id_header: str | None = None
    enabled: bool = True
    capture_messages: bool = False

    _api_key_env_missing: str | None = PrivateAttr(default=None)

    @property
    def api_key_env_missing(self) -> str | None:
        return self._api_key_env_missing


class Tracing(_Model):
    random_sampling: int | None = Field(None, description="0-100 percent")
    trace_arch_internal: bool | None = None
    opentracing_grpc_endpoint: str | None = None
    sampling_rate: float | None = None
    span_attributes: SpanAttributes | None = None
    exporters: list[PosthogExporter] | None = None
    otlp_http_endpoint: str | None = Field(None, description="plano extension: OTLP/HTTP traces endpoint.")
    capture_content: bool = Field(False, description="plano extension: record prompt/response content in spans.")


# --------------------------------------------------------------------------- rate limits


class RateLimitSelector(_Model):
    key: str
    value: str


class RateLimitLimit(_Model):
    tokens: int
    unit: Literal["second", "minute", "hour", "day"]


class RateLimit(_Model):
    model: str
    selector: RateLimitSelector
    limit: RateLimitLimit


# --------------------------------------------------------------------------- admin


class Admin(_Model):
    """plano extension: metrics / admin HTTP server."""

    address: str = "127.0.0.1"
    port: int = 9092


# --------------------------------------------------------------------------- root


class PlanoConfig(_Model):
    """The whole config, normalised (see :func:`gateway.config.load_config`)."""

    version: Version
    agents: list[Agent] = Field(default_factory=list)
    filters: list[Filter] = Field(default_factory=list)
    mcp_servers: list[McpServer] = Field(default_factory=list, description="plano extension: upstream MCP "
                                         "servers whose tools agent listeners' /mcp endpoints aggregate.")
    listeners: list[Listener]
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    model_providers: list[ModelProvider] = Field(default_factory=list)
    llm_providers: list[ModelProvider] | None = Field(None, description="DEPRECATED alias of model_providers.")
    model_aliases: dict[str, ModelAlias] = Field(default_factory=dict)
    routing_preferences: list[RoutingPreference] = Field(default_factory=list)
    model_metrics_sources: list[MetricsSource] = Field(default_factory=list)
    routing: Routing = Field(default_factory=Routing)
    prompt_caching: PromptCaching = Field(default_factory=PromptCaching)
    overrides: Overrides = Field(default_factory=Overrides)
    state_storage: StateStorage | None = None
    tracing: Tracing | None = None
    ratelimits: list[RateLimit] = Field(default_factory=list)
    mode: Literal["llm", "prompt"] | None = None
    admin: Admin | None = Field(None, description="plano extension: metrics/admin server (127.0.0.1:9092).")
    state: SharedState | None = Field(None, description="plano extension: Redis for breakers and limits shared "
                                      "across workers and replicas.")
    auth: Auth | None = Field(None, description="plano extension: virtual keys, budgets and the admin key.")
    tasks: TasksConfig | None = Field(None, description="plano extension: async tasks (/v1/tasks) on agent "
                                      "listeners: store, limits, webhooks.")
    # legacy prompt gateway (accepted, not supported)
    prompt_targets: list[dict[str, Any]] | None = Field(None, description="Legacy prompt gateway; not supported.")
    system_prompt: str | None = Field(None, description="Legacy prompt gateway; not supported.")
    prompt_guards: dict[str, Any] | None = Field(None, description="Legacy prompt gateway; not supported.")

    _warnings: list = PrivateAttr(default_factory=list)
    _source: str = PrivateAttr(default="plano.yaml")
    _base_dir: Any = PrivateAttr(default=None)

    # -- helpers -----------------------------------------------------------------------

    @property
    def warnings(self) -> list:
        """Non-fatal :class:`~gateway.config.ConfigIssue` s found while loading."""
        return self._warnings

    @property
    def source(self) -> str:
        return self._source

    @property
    def base_dir(self):
        """Directory of the config file (``pathlib.Path``) or None for text configs."""
        return self._base_dir

    @property
    def model_listener(self) -> Listener | None:
        return next((l for l in self.listeners if l.type == "model"), None)

    @property
    def agent_listeners(self) -> list[Listener]:
        return [l for l in self.listeners if l.type == "agent"]

    def agent_by_id(self, agent_id: str) -> Agent | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def filter_by_id(self, filter_id: str) -> Filter | None:
        return next((f for f in self.filters if f.id == filter_id), None)

    def provider_by_name(self, name: str) -> ModelProvider | None:
        """Provider whose ``effective_name`` or ``model`` equals ``name``."""
        for p in self.model_providers:
            if p.effective_name == name or p.model == name:
                return p
        return None

    @property
    def default_provider(self) -> ModelProvider | None:
        return next((p for p in self.model_providers if p.default), None)
