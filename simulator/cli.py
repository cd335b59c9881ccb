"""``python -m simulator``: run an app through hundreds of seeded, faulty deployments.

python -m simulator run examples/basic.py --seeds 0..199
python -m simulator run examples/running_total.py --seed 17 --shrink
python -m simulator bench
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from perper.app import load_app
from perper.errors import ConfigError, PerperError
from simulator.campaign import (
    CampaignResult,
    Simulation,
    parse_seeds,
    reproduce_command,
    save_sqlite,
)
from simulator.faults import (
    DEFAULT_FAULTS,
    FAULT_KINDS,
    format_schedule,
    parse_fault_kinds,
    parse_schedule,
)
from simulator.shrink import shrink as shrink_schedule
from simulator.world import SimulationResult

#: Where failing runs' stores are saved unless ``--save`` says otherwise.
DEFAULT_SAVE_DIR = Path(".perper") / "simulator"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Deterministic simulation of perper deployments: seeds, faults, checks."""


@main.command()
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@click.option(
    "--seeds",
    "seed_range",
    metavar="A..B",
    default=None,
    help="Seeds to run, both ends included [default: 0..99].",
)
@click.option("--seed", type=int, default=None, help="Run this one seed (reproduce a failure).")
@click.option(
    "--faults",
    "faults",
    metavar="KINDS",
    default=",".join(DEFAULT_FAULTS),
    show_default=True,
    help=f"Fault kinds a seed may enable, comma-separated, from: {', '.join(FAULT_KINDS)} "
    "(or all, none).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Workers per deployment [default: drawn per seed, 1-4].",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes to spread seeds over.",
)
@click.option(
    "--trace", is_flag=True, help="Hash every scheduling step; print each seed's trace hash."
)
@click.option(
    "--shrink", is_flag=True, help="Shrink the first failure's fault schedule to a minimal one."
)
@click.option(
    "--sweep",
    is_flag=True,
    help="Crash the deployment at every scheduling step of a short run, one run each.",
)
@click.option(
    "--param",
    "params",
    metavar="KEY=VALUE",
    multiple=True,
    help="A launcher parameter (repeatable), as for 'perper run'.",
)
@click.option(
    "--schedule",
    "schedule_spec",
    metavar="SPEC",
    default=None,
    help="Use this fault schedule instead of the seed's (as printed by a failure).",
)
@click.option(
    "--save",
    "save_path",
    metavar="PATH.db",
    default=None,
    help=f"Where to save a failing run's store [default: {DEFAULT_SAVE_DIR}/APP-seedN.db].",
)
@click.option(
    "--html",
    "html_path",
    metavar="REPORT.html",
    default=None,
    help="Also write a failure as a self-contained page (fault timeline per worker).",
)
@click.option(
    "--log",
    "log_path",
    metavar="REC.sqlite",
    default=None,
    help="Take a recorded run as the workload (its parameters and effects) and compare "
    "with its recorded outputs instead of a fresh fault-free run.",
)
@click.option(
    "--run",
    "run_name",
    metavar="NAME",
    default=None,
    help="The recorded run to take from --log [default: the log's only run of the app].",
)
@click.option("--verbose", "-v", is_flag=True, help="Show the runtime's log messages.")
def run(
    app_file: str,
    seed_range: str | None,
    seed: int | None,
    faults: str,
    workers: int | None,
    jobs: int,
    trace: bool,
    shrink: bool,
    sweep: bool,
    params: tuple[str, ...],
    schedule_spec: str | None,
    save_path: str | None,
    html_path: str | None,
    log_path: str | None,
    run_name: str | None,
    verbose: bool,
) -> None:
    """Simulate APP.py under faults, seed after seed, and check every output against a
    fault-free run. Exit status 1 if a seed fails."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        # Lost leases and stopped executions are routine under faults.
        logging.disable(logging.CRITICAL)
    try:
        code = _run(
            app_file,
            seed_range,
            seed,
            faults,
            workers,
            jobs,
            trace,
            shrink,
            sweep,
            params,
            schedule_spec,
            save_path,
            html_path,
            log_path,
            run_name,
        )
    except (ConfigError, PerperError) as error:
        click.echo(f"error: {error}", err=True)
        code = 2
    finally:
        if not verbose:
            logging.disable(logging.NOTSET)
    sys.exit(code)


def _run(
    app_file: str,
    seed_range: str | None,
    seed: int | None,
    faults: str,
    workers: int | None,
    jobs: int,
    trace: bool,
    shrink: bool,
    sweep: bool,
    params: tuple[str, ...],
    schedule_spec: str | None,
    save_path: str | None,
    html_path: str | None = None,
    log_path: str | None = None,
    run_name: str | None = None,
) -> int:
    from perper.params import parse_params
    from simulator.recorded import load_recorded

    if seed is not None and seed_range is not None:
        raise ConfigError("give --seed N or --seeds A..B, not both")
    if run_name is not None and log_path is None:
        raise ConfigError(f"--run {run_name!r} names a recorded run: give --log REC.sqlite too")
    app = load_app(app_file)
    launcher_params = parse_params(app.launcher_function, params)
    kinds = parse_fault_kinds(faults)
    schedule = parse_schedule(schedule_spec) if schedule_spec is not None else None
    recorded = load_recorded(log_path, app, run=run_name) if log_path is not None else None
    simulation = Simulation(app, launcher_params, kinds=kinds, workers=workers, recorded=recorded)
    seeds = range(seed, seed + 1) if seed is not None else parse_seeds(seed_range or "0..99")
    reference = simulation.reference
    if recorded is not None:
        click.echo(
            f"{app_file}: recorded run {recorded.run!r} from {log_path}: "
            f"{len(reference.heads)} streams, {sum(reference.heads.values())} items, "
            f"{recorded.effect_count} recorded effects; "
            + "".join(
                f"input {name!r} from outside the run: {head} items; "
                for name, head in recorded.inputs.items()
            )
            + f"fault-free run: {reference.steps} steps"
        )
    else:
        click.echo(
            f"{app_file}: fault-free reference run: {len(reference.heads)} streams, "
            f"{sum(reference.heads.values())} items, {reference.steps} steps"
        )
    if recorded is not None:
        run_name = recorded.run

    from simulator.causes import likely_causes

    for function in app.functions.values():
        for cause in likely_causes(function.fn):
            click.echo(f"warning: {function.name} may not be deterministic: {cause}")

    def command(s: int, sched: Any = None) -> str:
        return reproduce_command(
            app_file,
            s,
            kinds=kinds,
            workers=workers,
            params=params,
            schedule=sched,
            log=log_path,
            run=run_name,
        )

    if sweep:
        result = simulation.sweep(seed=seed or 0, workers=workers or 1)
        click.echo(
            f"sweep: crashed the run at each of its {len(result.outcomes) - 1} scheduling steps"
        )
        click.echo(result.summary())
        if result.first_failure is not None:
            _report_failure(
                result.first_failure,
                app_file,
                save_path,
                command(seed or 0, result.first_failure.scenario.schedule),
                html_path,
            )
            return 1
        click.echo("ok: every crash point recovered to the fault-free output")
        return 0

    if schedule is not None:
        started = time.perf_counter()
        one = simulation.run_seed(seeds[0], trace=trace, schedule=schedule)
        campaign = CampaignResult(
            (_light(one),), time.perf_counter() - started, None if one.ok else one
        )
    else:
        campaign = simulation.run_seeds(seeds, jobs=jobs, trace=trace)
    if trace:
        for outcome in campaign.outcomes:
            click.echo(f"seed {outcome.seed} trace hash: {outcome.trace_hash}")
    click.echo(campaign.summary())
    failure = campaign.first_failure
    if failure is None:
        click.echo(
            "ok: every output equals the recorded run's"
            if recorded is not None
            else "ok: every output equals the fault-free run"
        )
        return 0
    others = [o.seed for o in campaign.failures if o.seed != failure.seed]
    _report_failure(failure, app_file, save_path, command(failure.seed, schedule), html_path)
    if others:
        click.echo(
            f"other failing seeds: {', '.join(map(str, others[:30]))}"
            + (" ..." if len(others) > 30 else "")
        )
    if shrink:
        assert failure.violation is not None
        shrunk = shrink_schedule(
            failure.scenario.schedule,
            lambda sched: simulation.run_seed(failure.seed, schedule=sched),
            failure.violation.kind,
        )
        click.echo(shrunk.describe())
        if shrunk.result.violation is not None:
            click.echo("  fails with: " + shrunk.result.violation.describe().splitlines()[0])
        click.echo(f"reproduce the shrunk failure: {command(failure.seed, shrunk.schedule)}")
    return 1


def _light(result: SimulationResult) -> Any:
    from simulator.campaign import _outcome

    return _outcome(result)


def _report_failure(
    result: SimulationResult,
    app_file: str,
    save_path: str | None,
    command: str,
    html_path: str | None = None,
) -> None:
    click.echo("")
    click.echo(result.describe())
    click.echo(f"  schedule spec: {format_schedule(result.scenario.schedule)}")
    if result.store is not None:
        path = (
            Path(save_path)
            if save_path
            else DEFAULT_SAVE_DIR / f"{Path(app_file).stem}-seed{result.seed}.db"
        )
        saved = save_sqlite(result.store, path)
        click.echo(f"  store saved: {saved}  (perper streams ls --store sqlite:///{saved})")
    click.echo(f"reproduce: {command}")
    if html_path:
        from simulator.report_html import write_failure_html

        written = write_failure_html(
            result,
            html_path,
            app_file=app_file,
            command=command,
            saved=saved if result.store is not None else None,
        )
        click.echo(f"html report: {written}")


@main.command()
@click.option("--seconds", type=float, default=2.0, show_default=True, help="Time per measurement.")
@click.option(
    "--log-items", type=int, default=10_000, show_default=True, help="Clicks in the recorded run."
)
def bench(seconds: float, log_items: int) -> None:
    """Measure scheduling steps per second and seeds per second (examples/basic.py, and a
    recorded run of examples/clicks.py with --log)."""
    from simulator.bench import run_bench

    logging.disable(logging.CRITICAL)
    try:
        for line in run_bench(seconds, log_items=log_items):
            click.echo(line)
    finally:
        logging.disable(logging.NOTSET)
