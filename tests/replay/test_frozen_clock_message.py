"""A replay message showing a value read from the frozen clock names it as such."""

from __future__ import annotations

from pathlib import Path

from tests.replay.test_cli_replay import perper

WALLCLOCK = Path(__file__).parents[1] / "simulator" / "apps" / "wallclock.py"


def test_a_divergence_showing_the_frozen_clock_says_it_is_the_frozen_clock(
    tmp_path: Path,
) -> None:
    log = tmp_path / "wallclock.db"
    ran = perper("run", WALLCLOCK, "--store", f"sqlite:///{log}", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    done = perper("replay", log, WALLCLOCK, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "946684800.0 in it is a reading of the replay's frozen clock" in done.stdout
    assert "use ctx.now()" in done.stdout
