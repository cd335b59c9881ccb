"""Launcher parameters given as ``key=value`` text (``perper run --param``, the simulator)."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from typing import Any

from perper.app import StreamFunction
from perper.errors import ConfigError

__all__ = ["parse_params"]


def parse_params(launcher: StreamFunction, pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into launcher arguments.

    Values are JSON when they parse as JSON (``count=10``, ``names=["a","b"]``), else
    strings; a parameter annotated ``int``, ``float``, ``bool`` or ``str`` is converted to
    that type.

    Raises:
        ConfigError: a pair has no ``=``, names no parameter, or does not convert.
    """
    hints = _type_hints(launcher)
    parameters = launcher.signature.parameters
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} must look like key=value")
        if key not in parameters:
            accepted = ", ".join(parameters) or "none"
            raise ConfigError(
                f"--param {key}: the launcher {launcher.name}() has no parameter {key!r} "
                f"(it takes: {accepted})"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        expected = hints.get(key)
        params[key] = _convert(key, raw, value, expected)
    return params


def _type_hints(fn: StreamFunction) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn.fn)
    except Exception:  # unresolvable annotations: no conversion
        return {}


def _convert(key: str, raw: str, value: Any, expected: Any) -> Any:
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"--param {key}={raw}: {key} must be an integer, e.g. {key}=10")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"--param {key}={raw}: {key} must be a number, e.g. {key}=0.5")
        value = float(value)
    elif expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"--param {key}={raw}: {key} must be true or false")
    elif expected is str:
        value = raw
    return value
