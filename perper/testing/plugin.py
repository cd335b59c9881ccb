"""pytest plugin: recorded logs become regression tests by dropping them in a folder.

Every SQLite log (``*.db``, ``*.sqlite``, ``*.sqlite3``) in the replay folders is
collected as tests, one per recorded execution; each replays that execution with
today's code and fails with the divergence (function, seq, expected, actual, diff,
input positions) if the code no longer reproduces it::

    pytest -p perper.testing.plugin --perper-replay-dir fixtures/prod \\
        --perper-replay-app app.py

or, once configured (``pyproject.toml``)::

    [tool.pytest.ini_options]
    perper_replay_dirs = ["fixtures/prod"]
    perper_replay_apps = ["app.py"]

The app that replays a log is the one whose ``App.name`` recorded the run; with a
single app given, logs without a run record use it. Items are marked ``perper_replay``
(``-m perper_replay`` selects them) and named ``LOG::EXECUTION``.

The plugin is registered by perper's ``pytest11`` entry point. It also registers the
``ignite`` marker (tests that need a local Ignite node) and offers the ``perper_store``
fixture (:mod:`perper.testing.fixtures`). perper's replay machinery is imported only when
a replay folder is configured, so the plugin costs a pytest run that does not use it
nothing beyond ``import perper``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from perper.errors import PerperError, ReplayError
from perper.testing.fixtures import perper_store as perper_store  # the fixture

if TYPE_CHECKING:
    from perper.app import App

#: Files in a replay folder collected as logs.
LOG_SUFFIXES = (".db", ".sqlite", ".sqlite3")

_DIRS = pytest.StashKey[list[Path]]()
_APPS = pytest.StashKey[dict[str, "App"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perper", "perper: recorded logs as tests")
    group.addoption(
        "--perper-replay-dir",
        action="append",
        default=[],
        dest="perper_replay_dirs",
        metavar="DIR",
        help="Collect every log in DIR as tests, one per recorded execution (repeatable).",
    )
    group.addoption(
        "--perper-replay-app",
        action="append",
        default=[],
        dest="perper_replay_apps",
        metavar="APP.py",
        help="An app file whose code replays the logs of its app (repeatable).",
    )
    parser.addini(
        "perper_replay_dirs",
        type="paths",
        default=[],
        help="Folders of logs collected as replay tests.",
    )
    parser.addini(
        "perper_replay_apps",
        type="paths",
        default=[],
        help="App files whose code replays the logs.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "perper_replay: a recorded execution replayed with today's code"
    )
    config.addinivalue_line(
        "markers", "ignite: needs a running local Ignite node (perper fabric start)"
    )
    invoked = config.invocation_params.dir
    dirs = [invoked / d for d in config.getoption("perper_replay_dirs")]
    dirs += [Path(p) for p in config.getini("perper_replay_dirs")]
    if not dirs:
        return
    for folder in dirs:
        if not folder.is_dir():
            raise pytest.UsageError(f"perper replay folder {folder} does not exist")
    resolved = [folder.resolve() for folder in dirs]
    config.stash[_DIRS] = resolved
    # Collected like any path given on the command line (pytest drops duplicates).
    config.args.extend(str(folder) for folder in resolved)


def _apps(config: pytest.Config) -> dict[str, App]:
    apps = config.stash.get(_APPS, None)
    if apps is None:
        from perper.app import load_app

        invoked = config.invocation_params.dir
        files = [invoked / f for f in config.getoption("perper_replay_apps")]
        files += [Path(p) for p in config.getini("perper_replay_apps")]
        apps = {}
        for file in files:
            app = load_app(file)
            apps[app.name] = app
        config.stash[_APPS] = apps
    return apps


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    dirs = parent.config.stash.get(_DIRS, None)
    if not dirs or file_path.suffix not in LOG_SUFFIXES:
        return None
    resolved = file_path.resolve()
    if not any(resolved.is_relative_to(folder) for folder in dirs):
        return None
    log: ReplayLog = ReplayLog.from_parent(parent, path=file_path)
    return log


async def _list(path: Path) -> tuple[list[tuple[str, str]], dict[str, str]]:
    from perper.replay.engine import recorded_executions, recorded_runs
    from perper.replay.log import open_log
    from perper.runtime.listing import start_order

    store, _ = open_log(path)
    try:
        executions = sorted(
            ((r.id, r.run) for r in (await recorded_executions(store)).values()),
            key=lambda pair: (pair[1], start_order(pair[0])),
        )
        runs = {run.name: run.app for run in await recorded_runs(store)}
        return executions, runs
    finally:
        await store.close()


class ReplayLog(pytest.File):
    """A recorded log: one :class:`ReplayExecution` per execution in it."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            apps = _apps(self.config)
        except PerperError as error:
            yield ReplayExecution.from_parent(self, name="(apps)", problem=str(error))
            return
        try:
            executions, runs = asyncio.run(_list(self.path))
        except PerperError as error:
            yield ReplayExecution.from_parent(self, name="(log)", problem=str(error))
            return
        if not executions:
            yield ReplayExecution.from_parent(
                self, name="(log)", problem=f"{self.path} holds no recorded executions"
            )
            return
        for execution, run in executions:
            app, problem = _pick(apps, runs.get(run), run)
            yield ReplayExecution.from_parent(
                self, name=execution, execution=execution, app=app, problem=problem
            )


def _pick(apps: dict[str, App], name: str | None, run: str) -> tuple[App | None, str | None]:
    if name is not None and name in apps:
        return apps[name], None
    if name is None and len(apps) == 1:
        return next(iter(apps.values())), None
    given = ", ".join(repr(n) for n in sorted(apps)) or "none"
    wanted = f"app {name!r}" if name else "an app (the log has no record of the run)"
    return None, (
        f"run {run!r} was recorded by {wanted}; the apps given are {given}: pass its file "
        "with --perper-replay-app APP.py or list it in perper_replay_apps"
    )


class ReplayExecution(pytest.Item):
    """Replays one recorded execution; fails with the divergence, or why it cannot."""

    def __init__(
        self,
        *,
        execution: str | None = None,
        app: App | None = None,
        problem: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.execution = execution
        self.app = app
        self.problem = problem
        self.add_marker("perper_replay")

    def runtest(self) -> None:
        if self.problem is not None:
            raise ReplayError(self.problem)
        assert self.app is not None
        assert self.execution is not None
        from perper.replay import replay

        replay(self.path, self.app, execution=self.execution).raise_on_failure()

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, PerperError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"replay {self.execution or self.name} of {self.path.name}"
