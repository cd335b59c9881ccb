"""The output checker builds each reference segment's expected bytes once per Simulation
(the seeds share its reference), and a segment that differs is still caught."""

from __future__ import annotations

from perper import codec
from perper.store.base import encode_segment
from simulator.checkers import OutputChecker, Reference, ViolationKind


def reference() -> Reference:
    items = [{"value": i} for i in range(6)]
    return Reference(
        outputs={"sim/s-0": [codec.canonical(item) for item in items]},
        items={"sim/s-0": items},
        heads={"sim/s-0": 6},
    )


def test_a_reference_segment_is_built_once_and_shared_by_every_checker_of_it() -> None:
    ref = reference()
    good = encode_segment([{"value": 2}, {"value": 3}])
    assert OutputChecker(ref).on_segment("sim/s-0", 2, good, 2) is None
    built = ref.segments[("sim/s-0", 2, 2)]
    assert good.endswith(built)
    assert OutputChecker(ref).on_segment("sim/s-0", 2, good, 2) is None  # another seed's
    assert ref.segments[("sim/s-0", 2, 2)] is built


def test_a_segment_that_differs_is_caught_after_the_same_positions_matched() -> None:
    ref = reference()
    checker = OutputChecker(ref)
    assert checker.on_segment("sim/s-0", 2, encode_segment([{"value": 2}, {"value": 3}]), 2) is None
    found = checker.on_segment("sim/s-0", 2, encode_segment([{"value": 2}, {"value": 9}]), 2)
    assert found is not None and found.kind == ViolationKind.OUTPUT_MISMATCH
    assert (found.seq, found.expected, found.actual) == (3, {"value": 3}, {"value": 9})
    shifted = checker.on_segment("sim/s-0", 3, encode_segment([{"value": 2}, {"value": 3}]), 2)
    assert shifted is not None and shifted.seq == 3
