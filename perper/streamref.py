"""StreamRef: a handle on a stream, passed between stream functions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A reference to a stream by its name.

    Stream functions receive StreamRefs as parameters and read them with
    ``ctx.read(ref)``. They encode as themselves, so they may be stored in parameters,
    items and ``ctx.state``.

    Raises:
        TypeError: ``stream`` is not a non-empty str.
    """

    stream: str

    def __post_init__(self) -> None:
        if not isinstance(self.stream, str) or not self.stream:
            raise TypeError(
                f"StreamRef takes a stream's name, a non-empty str such as 'shop/clicks'; "
                f"got {self.stream!r}"
            )

    def __str__(self) -> str:
        return self.stream
