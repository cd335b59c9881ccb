"""plan_keyed, the planning step of every keyed append, against a plain model."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from perper.store.base import KeyIndex, plan_keyed

keys_strategy = st.lists(st.one_of(st.none(), st.sampled_from("abcdefgh")), max_size=12)


def model(
    head: int, keys: list[str | None], known: dict[str, int]
) -> tuple[list[int], list[int], list[str | None]]:
    seqs, fresh, fresh_keys, placed = [], [], [], dict(known)
    for index, key in enumerate(keys):
        if key is not None and key in placed:
            seqs.append(placed[key])
            continue
        seq = head + len(fresh)
        if key is not None:
            placed[key] = seq
        seqs.append(seq)
        fresh.append(index)
        fresh_keys.append(key)
    return seqs, fresh, fresh_keys


@given(
    head=st.integers(0, 100),
    keys=keys_strategy,
    known=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 99), max_size=4),
)
def test_planning_a_keyed_append_matches_the_model(
    head: int, keys: list[str | None], known: dict[str, int]
) -> None:
    items: list[Any] = list(range(len(keys)))
    assert plan_keyed(head, items, keys, known) == model(head, keys, known)


def test_a_key_index_keeps_the_first_seq_of_a_key() -> None:
    index = KeyIndex()
    index.absorb(0, ["a", None, "b"])
    index.absorb(3, ["a", "c"])
    assert index.seqs == {"a": 0, "b": 2, "c": 4}


@given(
    head=st.integers(0, 100),
    keys=keys_strategy,
    known=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 99), max_size=4),
)
def test_placing_keys_in_a_key_index_takes_them_all_or_leaves_it_unchanged(
    head: int, keys: list[str | None], known: dict[str, int]
) -> None:
    index = KeyIndex()
    index.seqs = {key: seq % max(head, 1) for key, seq in known.items()} if head else {}
    before = dict(index.seqs)
    seqs = list(range(head, head + len(keys)))
    fresh = None not in keys and len(set(keys)) == len(keys) and before.keys().isdisjoint(keys)
    assert index.place(keys, seqs) == fresh
    if fresh:
        assert index.seqs == {**before, **dict(zip(keys, seqs, strict=True))}
        index.unplace(keys, head)
    assert index.seqs == before
