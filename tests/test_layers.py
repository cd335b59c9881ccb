"""Dependencies point downward: perper never imports the simulator (docs/architecture.md).

`make lint` checks every import statically (import-linter, contracts in pyproject.toml);
these tests check what a user's process really loads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules",
    [
        "perper, perper.testing",
        "perper.testing.plugin, perper.testing.fixtures, perper.testing.recovery",
        "perper.cli",
    ],
)
def test_importing_perper_never_imports_the_simulator(modules: str) -> None:
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulator'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_pytest_plugin_imports_no_replay_or_runtime_module_until_it_is_used() -> None:
    code = (
        "import sys, perper.testing.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('perper.replay', 'hypothesis'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_simulator_errors_belong_to_perpers_error_tree() -> None:
    import perper
    import simulator
    from perper import fabric, testing

    for error in (
        simulator.SimulationError,
        simulator.SimulationRefused,
        simulator.Deadlock,
        simulator.StepBudgetExceeded,
        simulator.SimulationFailed,
        fabric.FabricError,
        testing.RecoveryError,
        testing.ReplayDivergedError,
    ):
        assert issubclass(error, perper.PerperError), error
        assert error.__module__ == "perper.errors", error
