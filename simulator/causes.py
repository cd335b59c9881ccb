"""Likely causes of nondeterminism, read from a stream function's source.

A function that reads the wall clock or global randomness directly, or iterates a set
(whose order of strings depends on ``PYTHONHASHSEED``), writes different outputs from
run to run: the simulator then reports a difference at some seq. These checks name the
line that most likely causes it, so the report says *why*, not only *where*.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

#: module -> calls that read the wall clock or entropy instead of ctx.now()/random()/uuid().
_DIRECT_READS: dict[str, tuple[str, str]] = {
    "time.time": ("the wall clock", "ctx.now()"),
    "time.time_ns": ("the wall clock", "ctx.now()"),
    "time.monotonic": ("the wall clock", "ctx.now()"),
    "time.perf_counter": ("the wall clock", "ctx.now()"),
    "datetime.now": ("the wall clock", "ctx.now()"),
    "datetime.utcnow": ("the wall clock", "ctx.now()"),
    "datetime.today": ("the wall clock", "ctx.now()"),
    "date.today": ("the wall clock", "ctx.now()"),
    "uuid.uuid1": ("entropy", "ctx.uuid()"),
    "uuid.uuid4": ("entropy", "ctx.uuid()"),
    "os.urandom": ("entropy", "ctx.random()"),
}
_ENTROPY_MODULES = ("random", "secrets", "numpy.random", "np.random")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_set(node: ast.expr, set_names: set[str]) -> bool:
    if isinstance(node, ast.Set | ast.SetComp):
        return True
    if isinstance(node, ast.Call) and _dotted(node.func) in ("set", "frozenset"):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.BitAnd | ast.Sub):
        return _is_set(node.left, set_names) or _is_set(node.right, set_names)
    return isinstance(node, ast.Name) and node.id in set_names


def likely_causes(fn: Callable[..., Any]) -> list[str]:
    """What in ``fn``'s source can make its output differ between runs, one line each
    (``[]`` when nothing is found or the source cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
        first = inspect.getsourcelines(fn)[1]
        where = inspect.getsourcefile(fn) or "?"
    except (OSError, TypeError, SyntaxError):
        return []
    causes: list[str] = []
    set_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_set(node.value, set()):
            set_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        line = f"{where}:{first + getattr(node, 'lineno', 1) - 1}"
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            short = ".".join(name.split(".")[-2:])
            if short in _DIRECT_READS:
                what, instead = _DIRECT_READS[short]
                causes.append(
                    f"{line}: {name}() reads {what} directly (direct clock/entropy read): "
                    f"use {instead}, which is recorded and replayed"
                )
            elif any(name.startswith(module + ".") for module in _ENTROPY_MODULES):
                causes.append(
                    f"{line}: {name}() draws from global randomness (direct entropy read): "
                    "use ctx.random(), which is seeded, recorded and replayed"
                )
            elif name in ("list", "tuple", "next", "iter") and any(
                _is_set(arg, set_names) for arg in node.args
            ):
                causes.append(
                    f"{line}: {name}() of a set: its order depends on PYTHONHASHSEED "
                    "(hash order); use sorted(...)"
                )
        iterated: list[ast.expr] = []
        if isinstance(node, ast.For | ast.AsyncFor):
            iterated.append(node.iter)
        elif isinstance(node, ast.ListComp | ast.GeneratorExp | ast.DictComp):
            iterated.extend(generator.iter for generator in node.generators)
        for target in iterated:
            if _is_set(target, set_names):
                causes.append(
                    f"{line}: iterates a set: its order depends on PYTHONHASHSEED "
                    "(hash order); iterate sorted(...) instead"
                )
    return sorted(set(causes), key=lambda text: (int(text.split(":")[1]), text))
