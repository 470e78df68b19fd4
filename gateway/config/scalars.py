"""Scalar config types shared by every config module: durations and sizes.

Kept apart from :mod:`gateway.config.schema` so that section modules (e.g.
:mod:`gateway.config.reliability`) can use them without an import cycle.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|us|µs|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^(?:\s*(?:\d+(?:\.\d+)?|\.\d+)\s*(?:ms|us|µs|s|m|h))+\s*$")
_NUMBER_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*$")


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"100ms"``, ``"1h"``, ``"1m30s"`` or a number of seconds -> float seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must be a non-negative number of seconds")
        return float(value)
    if isinstance(value, str):
        m = _NUMBER_RE.match(value)
        if m:
            return float(m.group(1))
        if _DURATION_RE.match(value):
            return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))
        raise ValueError(
            f"invalid duration '{value}' (expected e.g. '30s', '5m', '100ms', '1h' or a number of seconds)"
        )
    raise ValueError(f"invalid duration: expected a string like '30s' or a number, got {type(value).__name__}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}


def parse_size(value: Any) -> int:
    """Bytes from an int or ``"10MB"`` (SI), ``"512KiB"`` (IEC), ``"10M"`` (IEC)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: must not be negative")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"invalid size {value!r} (expected bytes or e.g. '10MB', '512KiB')")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*((\d+(\.\d+)?|\.\d+)\s*(ms|us|s|m|h)?\s*)+$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "Duration: '30s', '5m', '100ms', '1h' or a number of seconds.",
        }
    ),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "Size in bytes, or e.g. '10MB' (SI) / '512KiB' (IEC).",
        }
    ),
]
