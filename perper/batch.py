"""Batches: many items read or yielded in one step.

``async for batch in ctx.read_batches(ref)`` hands a function the items of a stream one
stored segment at a time (a list per segment), and ``yield perper.Batch(items)`` appends
many items at once. The runtime counts a batch as its items everywhere: output seqs,
checkpoint cursors, read positions, replay comparisons. See docs/architecture.md,
"Batches".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from perper.errors import ConfigError


class Batch:
    """Items a stream function yields together: ``yield perper.Batch(items)`` appends
    each of ``items`` in order, exactly as ``for item in items: yield item`` would, in
    one step instead of one per item.

    A list is taken as it is (not copied): the runtime moves its items into the output
    buffer before the function resumes, so reusing or changing the list afterwards is
    safe. Any other iterable is turned into a list.

    Raises:
        ConfigError: ``items`` is not an iterable of items (a str, bytes or dict would
            be yielded one character, byte or key at a time: wrap it in a list).
    """

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Any]) -> None:
        if type(items) is list:
            self.items: list[Any] = items
            return
        if isinstance(items, (str, bytes, bytearray, dict)) or not isinstance(items, Iterable):
            raise ConfigError(
                f"perper.Batch({items!r:.80}): pass a list (or other iterable) of the items "
                f"to yield; to yield one {type(items).__name__} use yield item or "
                "perper.Batch([item])"
            )
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Batch({len(self.items)} items)"
