"""What a seed does, pinned: a few seeds of ``examples/basic.py`` (count 100, crash faults)
keep their steps, virtual time, per-worker steps, trace hash and fired faults. The
simulator's own speed work must not move them (docs/simulator.md, "Speed"); a change to
the runtime's scheduling moves them on purpose, and then the failure message prints the
new fingerprint to paste here."""

from __future__ import annotations

from pathlib import Path

import pytest

from perper import codec
from perper.app import load_app
from perper.store.base import encode_segment
from simulator.campaign import Simulation
from simulator.checkers import ViolationKind
from simulator.faults import derive_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "basic.py"

#: seed -> (steps, virtual time, worker steps, trace hash prefix, fired faults)
PINNED = {
    3: (
        218,
        0.04,
        (209, 5, 2),
        "368a53b1152de916",
        ("t=0.0000s: crash worker 2 at its step 2, restart it 0.11s later",),
    ),
    30: (
        110,
        1.100001,
        (19, 88),
        "5b1992d3a8358555",
        (
            "t=0.0000s: crash worker 1 at its step 6, restart it 0s later",
            "t=0.0000s: restart worker 1",
        ),
    ),
    61: (
        165,
        1.1620000000000001,
        (136, 26),
        "6424158e9d6364fc",
        (
            "t=0.0000s: crash worker 1 at its step 10, restart it 0.562s later",
            "t=0.5620s: restart worker 1",
        ),
    ),
    150: (
        130,
        3.000001,
        (21, 70, 36),
        "5d8e116f18ef4f61",
        (
            "t=0.0000s: crash worker 2 at its step 10, restart it 0s later",
            "t=0.0000s: restart worker 2",
        ),
    ),
}


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return Simulation(load_app(str(EXAMPLE)), {"count": 100}, kinds=("crash",))


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_a_seed_keeps_its_steps_time_trace_and_faults(simulation: Simulation, seed: int) -> None:
    result = simulation.run_seed(seed, trace=True)
    found = (
        result.steps,
        result.virtual_time,
        result.worker_steps,
        result.trace_hash[:16],
        result.fired[:2],
    )
    assert result.ok, result.describe()
    assert found == PINNED[seed], f"seed {seed} now gives {found!r}"


def test_seeds_that_draw_the_same_settings_share_one_settings_value() -> None:
    by_draw: dict[tuple[float, int, float, int, float], object] = {}
    shared = 0
    for seed in range(200):
        settings = derive_scenario(seed, kinds=("crash",)).settings
        draw = (
            settings.lease_ttl,
            settings.batch_size,
            settings.flush_delay,
            settings.checkpoint_every,
            settings.poll_interval,
        )
        if draw in by_draw:
            assert by_draw[draw] is settings
            shared += 1
        by_draw[draw] = settings
    assert shared > 0


def test_a_segment_unlike_the_reference_is_caught_after_its_positions_passed_the_fast_path(
    simulation: Simulation,
) -> None:
    # The world compares a landed segment with the reference's encoding itself and calls
    # the output checker only when they differ: a seed that wrote the right items at
    # these positions leaves that encoding cached, and a wrong item there must still fail.
    from simulator.world import World

    reference = simulation.reference
    stream = "sim/generator-0"
    right = reference.items[stream][4:6]
    world = World(
        simulation.app,
        simulation.params,
        simulation.scenario(30),
        reference=reference,
        prepared=simulation.prepared,
    )

    class View:
        worker_id = "w0"

    world.outputs.on_segment(stream, 4, encode_segment(right), 2)  # type: ignore[union-attr]
    assert (stream, 4, 2) in reference.segments
    world.on_segment(View(), stream, 4, 2, encode_segment(right))  # type: ignore[arg-type]
    assert world.violation is None
    wrong = [right[0], {"value": -1}]
    world.on_segment(View(), stream, 4, 2, encode_segment(wrong))  # type: ignore[arg-type]
    assert world.violation is not None
    assert world.violation.kind == ViolationKind.OUTPUT_MISMATCH
    assert (world.violation.seq, world.violation.actual) == (5, {"value": -1})
    assert codec.canonical(world.violation.expected) == reference.outputs[stream][5]
    world.loop.close()


def test_the_fencing_checker_version_moves_with_a_new_claim_or_landing_not_a_renewal() -> None:
    from simulator.checkers import FencingChecker

    fencing = FencingChecker()
    fencing.on_lease("sim/g-0", {"owner": "w0", "epoch": 1})
    claimed = fencing.version
    fencing.on_lease("sim/g-0", {"owner": "w0", "epoch": 1})  # a renewal
    assert fencing.version == claimed
    assert fencing.on_write("sim/g-0", "stream sim/g-0", "w0") is None
    landed = fencing.version
    assert landed != claimed
    assert fencing.on_write("sim/g-0", "stream sim/g-0", "w0") is None
    assert fencing.version == landed
    fencing.on_lease("sim/g-0", {"owner": "w1", "epoch": 2})
    assert fencing.version != landed


def test_a_writer_the_world_passed_before_is_checked_again_once_its_lease_is_renewed_higher(
    simulation: Simulation,
) -> None:
    # The world skips the fencing checker for the writer it last passed on a stream while
    # the checker holds the same. w0 writes under epoch 1, w1 claims epoch 2 without
    # writing, w0 claims epoch 3 and writes again: that write must reach the checker
    # (it lands epoch 3), so w1's epoch-2 write after it is a stale one.
    from simulator.world import World

    stream = "sim/generator-0"
    items = simulation.reference.items[stream]
    world = World(
        simulation.app,
        simulation.params,
        simulation.scenario(30),
        reference=simulation.reference,
        prepared=simulation.prepared,
    )

    class W0:
        worker_id = "w0"

    class W1:
        worker_id = "w1"

    def write(view: object, seq: int) -> None:
        world.on_segment(view, stream, seq, 1, encode_segment(items[seq : seq + 1]))  # type: ignore[arg-type]

    def lease(view: object, owner: str, epoch: int) -> None:
        world.on_meta(view, "leases", stream, {"owner": owner, "epoch": epoch})  # type: ignore[arg-type]

    lease(W0(), "w0", 1)
    write(W0(), 0)
    write(W0(), 1)
    lease(W1(), "w1", 2)
    lease(W0(), "w0", 3)
    write(W0(), 2)
    assert world.violation is None
    write(W1(), 3)
    assert world.violation is not None and world.violation.kind == ViolationKind.FENCING
    assert world.violation.worker == "w1"
    world.loop.close()
