"""Launcher parameters given as ``key=value`` text (``perper run --param``, the simulator).

Every value is converted to the launcher's annotation for that parameter, or refused
with a :class:`ConfigError` naming the parameter, the value and an example, before
anything runs:

=====================  ============================================================
annotation             ``--param`` value
=====================  ============================================================
none, ``Any``          JSON if it parses as JSON (``10``, ``[1, 2]``), else the text
``str``                the text as it is
``int``                a JSON integer (``10``)
``float``              a JSON number (``0.5``, ``3``)
``bool``               ``true`` or ``false``
``perper.StreamRef``   a stream name (``shop/clicks``)
``list[T]``, ``tuple`` a JSON array (``[1, 2]``), each element converted to ``T``
``dict[K, V]``         a JSON object (``{"a": 1}``), each value converted to ``V``
``X | None``           ``null`` for None, else a value for ``X``
``A | B``              the first of ``A``, ``B`` the value converts to
``Literal[...]``       one of the literals
anything else          refused: perper cannot build it from the command line
=====================  ============================================================
"""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from perper.app import StreamFunction
from perper.errors import ConfigError
from perper.streamref import StreamRef

__all__ = ["convert_param", "parse_params"]

_MISSING = object()


def parse_params(launcher: StreamFunction, pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into launcher arguments, converted to their annotations.

    Raises:
        ConfigError: a pair has no ``=``, names no parameter, or does not convert.
    """
    pairs = list(pairs)
    hints = _type_hints(launcher) if pairs else {}
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
        params[key] = convert_param(key, raw, hints.get(key, Any))
    return params


def convert_param(key: str, raw: str, annotation: Any) -> Any:
    """Convert the text ``raw`` of parameter ``key`` to ``annotation`` (see the module doc).

    Raises:
        ConfigError: the text does not convert; the message names the value and an example.
    """
    try:
        return _from_text(raw, annotation)
    except _Mismatch as mismatch:
        raise ConfigError(
            f"--param {key}={raw}: {key} must be {mismatch.expected}"
            + (f" (at {key}{mismatch.path})" if mismatch.path else "")
            + (f", e.g. {key}={mismatch.example}" if mismatch.example and not mismatch.path else "")
        ) from None


class _Mismatch(Exception):
    def __init__(self, expected: str, example: str = "", path: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.example = example
        self.path = path


def _type_hints(fn: StreamFunction) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn.fn)
    except Exception as error:
        raise ConfigError(
            f"the launcher {fn.name}()'s annotations cannot be resolved ({error}); --param "
            "values are converted to them: fix the annotation or its import"
        ) from error


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return _MISSING


def _from_text(raw: str, annotation: Any) -> Any:
    """The top level: where the raw text itself (not JSON) may be the value."""
    if annotation is Any or annotation is object:
        value = _json(raw)
        return raw if value is _MISSING else value
    if annotation is str:
        return raw
    if annotation is StreamRef:
        if not raw or raw.strip() != raw:
            raise _Mismatch("a stream name", "run-1/generator-0")
        return StreamRef(raw)
    if _is_union(annotation):
        options = typing.get_args(annotation)
        if type(None) in options and raw == "null":
            return None
        return _first_fit(options, lambda option: _from_text(raw, option))
    if typing.get_origin(annotation) is typing.Literal and raw in typing.get_args(annotation):
        return raw
    value = _json(raw)
    if value is _MISSING:
        raise _Mismatch(*_describe(annotation))
    return _from_json(value, annotation, "")


def _first_fit(options: tuple[Any, ...], convert: Callable[[Any], Any]) -> Any:
    """The value for the first union member that fits; else a mismatch naming them all."""
    mismatches = []
    for option in options:
        if option is type(None):
            continue
        try:
            return convert(option)
        except _Mismatch as mismatch:
            mismatches.append(mismatch)
    none = " or null" if type(None) in options else ""
    if len(mismatches) == 1:  # X | None: keep X's detail
        (only,) = mismatches
        if only.path:  # the value was an X, with a bad part inside
            raise only
        raise _Mismatch(only.expected + none, only.example)
    raise _Mismatch(" or ".join(m.expected for m in mismatches) + none)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _describe(annotation: Any) -> tuple[str, str]:
    """What a value of ``annotation`` looks like, and an example."""
    origin = typing.get_origin(annotation) or annotation
    if origin is int:
        return "an integer", "10"
    if origin is float:
        return "a number", "0.5"
    if origin is bool:
        return "true or false", ""
    if origin is str:
        return "a string", ""
    if origin is StreamRef:
        return "a stream name", ""
    if origin in (list, tuple, collections.abc.Sequence, set, frozenset):
        return "a JSON list", "[1,2]"
    if origin in (dict, collections.abc.Mapping):
        return "a JSON object", '{"a":1}'
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(v) for v in typing.get_args(annotation)), ""
    name = getattr(annotation, "__name__", repr(annotation))
    return f"a {name}, which perper cannot build from the command line (pass it in JSON types)", ""


def _from_json(value: Any, annotation: Any, path: str) -> Any:
    """Check (and convert) a decoded JSON value against ``annotation``."""
    if annotation is Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(annotation):
        if value is None and type(None) in args:
            return None
        return _first_fit(args, lambda option: _from_json(value, option, path))
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch("an integer", "10", path)
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch("a number", "0.5", path)
        return float(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise _Mismatch("true or false", "", path)
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise _Mismatch("a string", "", path)
        return value
    if annotation is StreamRef:
        if not isinstance(value, str) or not value:
            raise _Mismatch("a stream name", "", path)
        return StreamRef(value)
    if origin is typing.Literal:
        if value not in args:
            raise _Mismatch(*_describe(annotation), path=path)
        return value
    container = origin or annotation
    if container in (list, collections.abc.Sequence, tuple, set, frozenset):
        if not isinstance(value, list):
            raise _Mismatch("a JSON list", "[1,2]", path)
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Mismatch(f"a JSON list of {len(args)} values", "", path)
            return tuple(
                _from_json(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        element = args[0] if args else Any
        items = [_from_json(v, element, f"{path}[{i}]") for i, v in enumerate(value)]
        if container is tuple:
            return tuple(items)
        if container in (set, frozenset):
            return container(items)
        return items
    if container in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise _Mismatch("a JSON object", '{"a":1}', path)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        if key_type not in (Any, str):
            raise _Mismatch(
                f"a dict with {getattr(key_type, '__name__', key_type)} keys, which JSON "
                "cannot give (its keys are strings)",
                path=path,
            )
        return {k: _from_json(v, value_type, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise _Mismatch(*_describe(annotation), path=path)
