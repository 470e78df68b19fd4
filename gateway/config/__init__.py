"""plano configuration: loading, validation and normalisation of ``plano.yaml``.

Public surface::

    load_config(path, env=None) -> PlanoConfig
    load_config_text(text, source="plano.yaml", env=None, base_dir=None) -> PlanoConfig
    find_config_file(explicit, cwd) -> Path

Invalid configs raise :class:`ConfigError`, whose ``str()`` has one
``<file>:<line>: <path>: <message>`` line per error; ``.issues`` holds the errors and
``.warnings`` the warnings.  A loaded config keeps its warnings in ``config.warnings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .loader import ConfigError, ConfigIssue, load_yaml
from .schema import (
    Admin,
    Agent,
    Endpoint,
    Filter,
    Listener,
    ListenerAgent,
    ModelAlias,
    ModelProvider,
    PlanoConfig,
    RoutingPreference,
    parse_duration,
    parse_size,
)

__all__ = [
    "Admin",
    "Agent",
    "ConfigError",
    "ConfigIssue",
    "Endpoint",
    "Filter",
    "Listener",
    "ListenerAgent",
    "ModelAlias",
    "ModelProvider",
    "PlanoConfig",
    "RoutingPreference",
    "CONFIG_FILE_NAMES",
    "find_config_file",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
]

#: Names searched (in order) when no config file is given.
CONFIG_FILE_NAMES = ("plano.yaml", "config.yaml", "plano_config.yaml")


def load_config_text(
    text: str,
    source: str = "plano.yaml",
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> PlanoConfig:
    """Parse and validate config text.  ``base_dir`` is where a ``.env`` fallback is looked up."""
    from .validate import build_config

    bd = Path(base_dir) if base_dir is not None else None
    loaded = load_yaml(text, source=source, env=env, base_dir=bd)
    return build_config(loaded, source, bd)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> PlanoConfig:
    """Read, validate and normalise the config file at ``path``."""
    p = Path(path)
    source = os.fspath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigIssue("", None, f"cannot read config file: {reason}")], source=source) from None
    return load_config_text(text, source=source, env=env, base_dir=p.resolve().parent)


def find_config_file(explicit: str | os.PathLike[str] | None, cwd: str | os.PathLike[str] | None = None) -> Path:
    """The explicit file if given (a directory is searched), else the first of
    ``plano.yaml``, ``config.yaml``, ``plano_config.yaml`` in ``cwd``."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    if explicit is not None:
        p = Path(explicit)
        if not p.is_absolute():
            p = base / p
        if p.is_file():
            return p
        if not p.is_dir():
            raise ConfigError([ConfigIssue("", None, "config file not found")], source=os.fspath(explicit))
        base = p
    for name in CONFIG_FILE_NAMES:
        cand = base / name
        if cand.is_file():
            return cand
    raise ConfigError(
        [ConfigIssue("", None, f"no config file found (looked for {', '.join(CONFIG_FILE_NAMES)})")],
        source=os.fspath(base),
    )
