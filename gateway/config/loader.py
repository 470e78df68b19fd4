"""YAML loading with line numbers, per-field environment substitution, issue types.

The config is parsed with ``yaml.compose`` (SafeLoader) so every mapping key and
sequence item keeps the line it came from.  The node tree is converted into plain
Python data plus a ``{path: line}`` map, where a *path* is a tuple of mapping keys
(str) and sequence indexes (int), e.g. ``("model_providers", 2, "default")``.

Environment substitution happens per scalar string value (never textually over the
file): ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (default when unset *or empty*) and
``$$`` (a literal ``$``).  Values come from the given mapping (default ``os.environ``),
falling back to a ``.env`` file next to the config file.  An unset variable is an
error naming the variable, the YAML path and the line - except in credential fields
(:data:`CREDENTIAL_FIELDS`) where it is a warning and the value becomes ``None``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

try:  # libyaml is much faster; fall back to the pure-Python loader.
    _Loader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - depends on the pyyaml build
    _Loader = yaml.SafeLoader

PathT = tuple[str | int, ...]

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: PathT) -> str:
    """Render ``("listeners", 0, "agents", 1, "id")`` as ``listeners[0].agents[1].id``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _SIMPLE_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f'["{part}"]')
    return "".join(out)


# --------------------------------------------------------------------------- issues


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a config file (an error, or a warning that does not block)."""

    path: str
    line: int | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def format(self, source: str = "plano.yaml") -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.format()


class ConfigError(Exception):
    """Invalid configuration; ``str()`` gives one ``<file>:<line>: <path>: <message>`` line per error."""

    def __init__(
        self,
        issues: list[ConfigIssue] | tuple[ConfigIssue, ...],
        warnings: list[ConfigIssue] | tuple[ConfigIssue, ...] = (),
        source: str = "plano.yaml",
    ) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.warnings: list[ConfigIssue] = list(warnings)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(i.format(self.source) for i in self.issues)


# --------------------------------------------------------------------------- env


#: Fields where an unset variable is a warning (value -> None) rather than an error.
#: Patterns: tuples where ``int`` matches any sequence index.
CREDENTIAL_FIELDS: tuple[tuple[Any, ...], ...] = (
    ("model_providers", int, "access_key"),
    ("llm_providers", int, "access_key"),
    ("tracing", "exporters", int, "api_key"),
)


def is_credential_path(path: PathT) -> bool:
    for pat in CREDENTIAL_FIELDS:
        if len(pat) == len(path) and all(
            isinstance(p, int) if q is int else p == q for p, q in zip(path, pat)
        ):
            return True
    return False


_ENV_REF = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\{))")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse simple ``KEY=VALUE`` lines (``#`` comments, optional ``export``, optional quotes)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.match(key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            # unquoted: strip an inline comment introduced by whitespace + '#'
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        out[key] = value
    return out


class EnvResolver:
    """Looks variables up in the process env, then in a lazily read ``.env`` file."""

    def __init__(self, env: Mapping[str, str] | None, dotenv_path: Path | None) -> None:
        self.env = os.environ if env is None else env
        self.dotenv_path = dotenv_path
        self._dotenv: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is not None:
            return value
        if self._dotenv is None:
            self._dotenv = {}
            if self.dotenv_path is not None:
                try:
                    self._dotenv = parse_dotenv(self.dotenv_path.read_text(encoding="utf-8"))
                except OSError:
                    pass
        return self._dotenv.get(name)


class SubstitutionError(ValueError):
    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


def substitute(value: str, lookup: Callable[[str], str | None]) -> tuple[str, list[str], list[str]]:
    """Expand references in ``value``; returns ``(result, missing_names, empty_names)``.

    Raises :class:`SubstitutionError` for malformed references (``${}``, ``${1X}``,
    unterminated ``${``).  ``$`` not followed by a name, ``{`` or ``$`` is kept as is.
    """
    if "$" not in value:
        return value, [], []
    missing: list[str] = []
    empty: list[str] = []

    def repl(m: re.Match[str]) -> str:
        dollar, braced, bare, open_brace = m.groups()
        if dollar:
            return "$"
        if open_brace:
            raise SubstitutionError("unterminated '${' in value (use '$$' for a literal '$')", [])
        if bare is not None:
            name, default = bare, None
        else:
            name, sep, default = braced.partition(":-")
            if not sep:
                default = None
            if not _ENV_NAME.match(name):
                raise SubstitutionError(
                    f"invalid environment variable reference '${{{braced}}}'", []
                )
        got = lookup(name)
        if default is not None and not got:
            return default
        if got is None:
            missing.append(name)
            return ""
        if got == "":
            empty.append(name)
        return got

    return _ENV_REF.sub(repl, value), missing, empty


# --------------------------------------------------------------------------- YAML


@dataclass(slots=True)
class LoadedYaml:
    """Plain data plus where it came from."""

    data: Any
    lines: dict[PathT, int]
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)
    #: credential path -> names of the unset variables it referenced
    missing_credentials: dict[PathT, list[str]] = field(default_factory=dict)
    #: paths whose value could not be substituted (later issues there are suppressed)
    env_error_paths: set[PathT] = field(default_factory=set)


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Converter:
    def __init__(self, env: EnvResolver, out: LoadedYaml) -> None:
        self.env = env
        self.out = out
        self.constructor = yaml.constructor.SafeConstructor()

    def line_of(self, node: yaml.Node) -> int:
        return node.start_mark.line + 1

    def convert(self, node: yaml.Node, path: PathT) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return self.scalar_str(node.value, path, node)
            return self.constructor.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.out.lines.setdefault(path + (i,), self.line_of(child))
                items.append(self.convert(child, path + (i,)))
            return items
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def mapping(self, node: yaml.MappingNode, path: PathT) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # YAML merge key: values from the merged mapping(s) are defaults.
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        for k, v in self.mapping(src, path).items():
                            merged.setdefault(k, v)
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = self.constructor.construct_object(key_node, deep=True)
            else:
                key = str(self.constructor.construct_object(key_node, deep=True))
            if not isinstance(key, str):
                key = str(key) if not isinstance(key, bool) else str(key).lower()
            sub = path + (key,)
            if key in result:
                self.out.warnings.append(
                    ConfigIssue(
                        format_path(sub),
                        self.line_of(key_node),
                        f"duplicate key '{key}'; the last value wins",
                        "warning",
                    )
                )
            self.out.lines[sub] = self.line_of(key_node)
            result[key] = self.convert(value_node, sub)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def scalar_str(self, value: str, path: PathT, node: yaml.Node) -> str | None:
        if "$" not in value:
            return value
        line = self.line_of(node)
        line = self.out.lines.get(path, line)
        try:
            result, missing, empty = substitute(value, self.env.get)
        except SubstitutionError as exc:
            self.out.errors.append(ConfigIssue(format_path(path), line, str(exc)))
            self.out.env_error_paths.add(path)
            return value
        credential = is_credential_path(path)
        if credential and (missing or empty):
            names = missing + empty
            what = "is not set" if missing else "is empty"
            plural = ", ".join(f"'{n}'" for n in names)
            self.out.warnings.append(
                ConfigIssue(
                    format_path(path),
                    line,
                    f"environment variable {plural} {what}; requests that need this credential will fail",
                    "warning",
                )
            )
            self.out.missing_credentials[path] = names
            return None
        for name in missing:
            self.out.errors.append(
                ConfigIssue(format_path(path), line, f"environment variable '{name}' is not set")
            )
        if missing:
            # keep the raw text so later checks see "a value"; issues at this path are suppressed
            self.out.env_error_paths.add(path)
            return value
        return result


def load_yaml(
    text: str,
    source: str = "plano.yaml",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> LoadedYaml:
    """Parse ``text``; syntax errors are reported as issues (``data`` is then ``None``)."""
    out = LoadedYaml(data=None, lines={(): 1})
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        out.errors.append(ConfigIssue("", line, f"invalid YAML: {problem}"))
        return out
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        out.errors.append(ConfigIssue("", None, f"invalid YAML: {exc}"))
        return out
    if node is None:
        out.data = {}
        return out
    dotenv = base_dir / ".env" if base_dir is not None else None
    conv = _Converter(EnvResolver(env, dotenv), out)
    try:
        out.data = conv.convert(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        out.errors.append(
            ConfigIssue("", mark.line + 1 if mark else None, f"invalid YAML: {exc.problem}")
        )
    return out
