"""Deterministic simulation of perper deployments.

One seed is one deployment: several workers running the real runtime, unmodified, in a
deterministic event loop (:mod:`simulator.loop`), on one shared in-memory store behind
per-worker fault views (:mod:`simulator.faults`), with crashes, pauses, partitions,
latency, clock skew and store errors, checked as it runs against a fault-free reference
(:mod:`simulator.checkers`). A failing seed replays identically; its fault schedule
shrinks (:mod:`simulator.shrink`); its store is saved as a SQLite log.

    python -m simulator run examples/basic.py --seeds 0..199

See ``docs/simulator.md``. This package depends on ``perper``, never the reverse.
"""

from simulator.campaign import CampaignResult, SeedOutcome, Simulation, save_sqlite
from simulator.checkers import Reference, Violation
from simulator.faults import (
    DEFAULT_FAULTS,
    FAULT_KINDS,
    Crash,
    Errors,
    Fault,
    Latency,
    Partition,
    Pause,
    Scenario,
    Skew,
    Timeouts,
    derive_scenario,
    format_schedule,
    parse_schedule,
)
from simulator.loop import (
    ROOT,
    Deadlock,
    Owner,
    SimulatedLoop,
    SimulationError,
    SimulationRefused,
    StepBudgetExceeded,
    run_simulated,
)
from simulator.shrink import ShrinkResult, ddmin, shrink
from simulator.world import SimulationFailed, SimulationResult, World, reference_run, simulate

__all__ = [
    "DEFAULT_FAULTS",
    "FAULT_KINDS",
    "ROOT",
    "CampaignResult",
    "Crash",
    "Deadlock",
    "Errors",
    "Fault",
    "Latency",
    "Owner",
    "Partition",
    "Pause",
    "Reference",
    "Scenario",
    "SeedOutcome",
    "ShrinkResult",
    "SimulatedLoop",
    "Simulation",
    "SimulationError",
    "SimulationFailed",
    "SimulationRefused",
    "SimulationResult",
    "Skew",
    "StepBudgetExceeded",
    "Timeouts",
    "Violation",
    "World",
    "ddmin",
    "derive_scenario",
    "format_schedule",
    "parse_schedule",
    "reference_run",
    "run_simulated",
    "save_sqlite",
    "shrink",
    "simulate",
]
