"""Structural differences between two decoded values, for readable error messages."""

from __future__ import annotations

from typing import Any

_MAX_LINES = 20


def structural_diff(expected: Any, actual: Any, *, path: str = "item") -> list[str]:
    """Return one line per difference between ``expected`` and ``actual``.

    Dicts are compared key by key, lists and tuples index by index (a tuple equals the
    list it encodes to); anything else by equality. At most 20 lines are returned.
    """
    lines: list[str] = []
    _diff(expected, actual, path, lines)
    if len(lines) > _MAX_LINES:
        more = len(lines) - _MAX_LINES
        lines = [*lines[:_MAX_LINES], f"... and {more} more differences"]
    return lines


def _diff(expected: Any, actual: Any, path: str, lines: list[str]) -> None:
    if len(lines) > _MAX_LINES:
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                lines.append(f"{path}[{key!r}]: missing (expected {expected[key]!r})")
            else:
                _diff(expected[key], actual[key], f"{path}[{key!r}]", lines)
        for key in actual:
            if key not in expected:
                lines.append(f"{path}[{key!r}]: unexpected {actual[key]!r}")
        return
    sequences = (list, tuple)
    if isinstance(expected, sequences) and isinstance(actual, sequences):
        for index, (old, new) in enumerate(zip(expected, actual, strict=False)):
            _diff(old, new, f"{path}[{index}]", lines)
        if len(expected) > len(actual):
            lines.append(
                f"{path}: {len(expected) - len(actual)} fewer elements "
                f"(missing {list(expected[len(actual) :])!r})"
            )
        elif len(actual) > len(expected):
            lines.append(
                f"{path}: {len(actual) - len(expected)} more elements "
                f"(extra {list(actual[len(expected) :])!r})"
            )
        return
    if type(expected) is not type(actual) and not (
        isinstance(expected, (int, float))
        and isinstance(actual, (int, float))
        and not isinstance(expected, bool)
        and not isinstance(actual, bool)
    ):
        lines.append(
            f"{path}: expected {expected!r} ({type(expected).__name__}), "
            f"got {actual!r} ({type(actual).__name__})"
        )
    elif expected != actual:
        lines.append(f"{path}: expected {expected!r}, got {actual!r}")
