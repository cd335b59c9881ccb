"""Hypothesis strategies for perper items and input streams (needs ``hypothesis``).

Use them with :func:`simulator.testing.run_function` or any test of your own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

__all__ = ["input_logs", "items"]


def items(*, max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any msgpack item perper stores: None, bools, 64-bit ints, floats, strings, bytes,
    and lists and string-keyed dicts of them (nested)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.binary(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=8), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def input_logs(
    names: Sequence[str] = ("source",),
    *,
    elements: st.SearchStrategy[Any] | None = None,
    min_size: int = 0,
    max_size: int = 30,
) -> st.SearchStrategy[dict[str, list[Any]]]:
    """The items of each named input stream, as ``{name: [item, ...]}``, ready for
    :func:`run_function`."""
    element = elements if elements is not None else items()
    return st.fixed_dictionaries(
        {name: st.lists(element, min_size=min_size, max_size=max_size) for name in names}
    )
