"""Numbers from the environment: what template Parameters become in every function.

One reader for the whole layer, so a bad value fails the same way everywhere:
a ``ConfigurationError`` naming the variable, never a bare ``ValueError`` deep
inside a module. A missing or blank variable means the default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from resilience.errors import ConfigurationError

__all__ = ["env_int", "env_number"]


def env_number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    positive: bool = False,
    finite: bool = False,
) -> float:
    """``env[name]`` as a float; ``minimum`` is inclusive, and both bounds reject NaN."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if finite and not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and not value >= minimum:
        raise ConfigurationError(f"{name} must be >= {minimum:g}, got {raw!r}")
    if positive and not value > 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


def env_int(
    env: Mapping[str, str], name: str, default: int, *, minimum: float | None = None, positive: bool = False
) -> int:
    """``env[name]`` as a whole number (``"3.0"`` is 3, ``"2.5"`` is an error)."""
    value = env_number(env, name, default, minimum=minimum, positive=positive)
    if value != int(value):
        raise ConfigurationError(f"{name} must be a whole number, got {env.get(name)!r}")
    return int(value)
