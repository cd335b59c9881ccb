"""App: the registry of an application's stream functions, actions and launcher."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, overload

from perper.errors import ConfigError
from perper.store.index import IndexSpec, normalize_index

RECOVERY_MODES = ("replay", "checkpoint")
#: ``@app.stream(retention=...)``: keep every item, or delete what every reader passed.
RETENTION_MODES = ("keep", "ephemeral")


class Kind(StrEnum):
    """What a registered function is."""

    STREAM = "stream"
    ACTION = "action"
    LAUNCHER = "launcher"
    CALL = "call"
    STOP = "stop"


@dataclass(frozen=True, eq=False)
class StreamFunction:
    """A function registered with an :class:`App`.

    Pass it to ``ctx.start`` to run it; calling it directly calls the plain function.

    Attributes:
        name: the registered name (the Python name unless given).
        kind: stream, action, launcher, call or stop.
        fn: the decorated function.
        recovery: ``"replay"`` (re-run from the start of the inputs, the default) or
            ``"checkpoint"`` (resume from the last checkpoint; all memory in ctx.state).
        checkpoint_every: checkpoint after consuming this many input items (None: the
            run's default, ``RuntimeSettings.checkpoint_every``).
        checkpoint_interval: checkpoint after this many seconds of loop time (None: default).
        retention: ``"keep"`` (every item stays, the default) or ``"ephemeral"`` (segments
            every registered reader has durably passed are deleted; docs/retention.md).
        index: the output stream's indexed fields, ``((field, type name), ...)``, or None
            (see :mod:`perper.store.index`; ``@app.stream(index={"user": int})``).
    """

    app: App
    name: str
    kind: Kind
    fn: Callable[..., Any]
    recovery: str = "replay"
    checkpoint_every: int | None = None
    checkpoint_interval: float | None = None
    retention: str = "keep"
    signature: inspect.Signature = field(init=False, repr=False)
    _plain: tuple[tuple[str, ...], dict[str, Any]] | None = field(init=False, repr=False)
    index: IndexSpec | None = None

    def __repr__(self) -> str:
        # Short, for error messages such as "started <@app.stream g of app 'other'>".
        return f"<@app.{self.kind} {self.name} of app {self.app.name!r}>"

    def __post_init__(self) -> None:
        signature = inspect.signature(self.fn)
        parameters = list(signature.parameters.values())
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise ConfigError(
                f"{self.kind} {self.name!r} must take the context as its first parameter: "
                f"async def {self.name}(ctx, ...)"
            )
        for parameter in parameters[1:]:
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise ConfigError(
                    f"{self.kind} {self.name!r} takes *{parameter.name}; stream functions need "
                    "named parameters so runs can be recorded and replayed"
                )
        object.__setattr__(self, "signature", signature.replace(parameters=parameters[1:]))
        # What bind() needs to bind plain named parameters without inspect (calls bind
        # their arguments twice each): names in order and defaults; None if any is
        # positional-only or keyword-only (then inspect binds).
        plain = all(p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters[1:])
        object.__setattr__(
            self,
            "_plain",
            (
                tuple(p.name for p in parameters[1:]),
                {p.name: p.default for p in parameters[1:] if p.default is not p.empty},
            )
            if plain
            else None,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind call arguments to the function's parameters (defaults applied).

        Raises:
            ConfigError: the arguments do not fit the signature.
        """
        plain = self._plain
        if plain is not None:
            names, defaults = plain
            if not kwargs and len(args) == len(names):
                return dict(zip(names, args, strict=True))
            if len(args) <= len(names):
                fast = dict(zip(names, args, strict=False))
                if all(name in names and name not in fast for name in kwargs):
                    fast.update(kwargs)
                    if len(fast) < len(names):
                        for name in names:
                            if name not in fast and name in defaults:
                                fast[name] = defaults[name]
                    if len(fast) == len(names):
                        return {name: fast[name] for name in names}
            # Else an error: inspect words it.
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            verb = "call" if self.kind in (Kind.CALL, Kind.STOP) else "start"
            raise ConfigError(f"cannot {verb} {self.name}{self.signature}: {error}") from error
        bound.apply_defaults()
        return dict(bound.arguments)


def check_retention(retention: str) -> None:
    """Refuse a ``retention=`` that is not one of :data:`RETENTION_MODES`."""
    if retention not in RETENTION_MODES:
        raise ConfigError(
            f"retention={retention!r} is not a retention mode; use one of {RETENTION_MODES} "
            '("ephemeral" deletes what every reader has passed)'
        )


class App:
    """A named set of stream functions, actions, calls, one launcher and an optional stop:
    an agent type, whose runs are its instances (docs/agents.md).

    Example::

        app = perper.App("basic")

        @app.stream
        async def generator(ctx, count: int):
            for i in range(count):
                yield {"value": i}
    """

    def __init__(self, name: str) -> None:
        if not name or "/" in name:
            raise ConfigError(f"app name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self.functions: dict[str, StreamFunction] = {}
        self.launcher_name: str | None = None
        self.stop_name: str | None = None

    def __repr__(self) -> str:
        return f"App({self.name!r}, functions={sorted(self.functions)})"

    def _register(
        self,
        fn: Callable[..., Any] | None,
        kind: Kind,
        name: str | None,
        recovery: str,
        checkpoint_every: int | None,
        checkpoint_interval: float | None,
        index: Mapping[str, type] | None = None,
        retention: str = "keep",
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        spec = None if index is None else normalize_index(index, where="@app.stream index")
        if recovery not in RECOVERY_MODES:
            raise ConfigError(
                f"recovery={recovery!r} is not a recovery mode; use one of {RECOVERY_MODES}"
            )
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={checkpoint_every!r} must be a positive count")

        def apply(function: Callable[..., Any]) -> StreamFunction:
            key = name or function.__name__
            if key in self.functions:
                raise ConfigError(
                    f"app {self.name!r} already has a function named {key!r}; give one of them "
                    "another name with name=..."
                )
            is_agen = inspect.isasyncgenfunction(function)
            is_coro = inspect.iscoroutinefunction(function)
            if kind is Kind.STREAM and not is_agen:
                raise ConfigError(
                    f"@app.stream {key!r} must be an async generator (async def with yield)"
                )
            if kind is Kind.ACTION and not (is_agen or is_coro):
                raise ConfigError(f"@app.action {key!r} must be an async function")
            if kind in (Kind.CALL, Kind.STOP) and not is_coro:
                raise ConfigError(
                    f"@app.{kind} {key!r} must be an async function (async def, no yield) "
                    "returning a msgpack value"
                )
            if kind is Kind.STOP and self.stop_name is not None:
                raise ConfigError(
                    f"app {self.name!r} already has the stop function {self.stop_name!r}; "
                    "an app has one"
                )
            if kind is Kind.LAUNCHER:
                if not is_coro:
                    raise ConfigError(
                        f"@app.launcher {key!r} must be an async function (async def, no yield)"
                    )
                if self.launcher_name is not None:
                    raise ConfigError(
                        f"app {self.name!r} already has the launcher {self.launcher_name!r}; "
                        "an app has one launcher"
                    )
            registered = StreamFunction(
                self,
                key,
                kind,
                function,
                recovery,
                checkpoint_every,
                checkpoint_interval,
                retention=retention,
                index=spec,
            )
            self.functions[key] = registered
            if kind is Kind.LAUNCHER:
                self.launcher_name = key
            if kind is Kind.STOP:
                self.stop_name = key
            return registered

        if fn is None:
            return apply
        return apply(fn)

    @overload
    def stream(self, fn: Callable[..., Any], /) -> StreamFunction: ...

    @overload
    def stream(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        recovery: str = "replay",
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
        retention: str = "keep",
        index: Mapping[str, type] | None = None,
    ) -> Callable[[Callable[..., Any]], StreamFunction]: ...

    def stream(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        recovery: str = "replay",
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
        retention: str = "keep",
        index: Mapping[str, type] | None = None,
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        """Register an async generator; each ``yield`` appends one item to its stream.

        Use bare (``@app.stream``) or with options (``@app.stream(recovery="checkpoint")``);
        either way the result is a :class:`StreamFunction`, so an app passes
        ``mypy --strict``. ``retention="ephemeral"`` deletes what every reader has passed
        (docs/retention.md). ``index={"user": int, "amount": float}`` indexes those fields
        of every item (int, float, str, bool or bytes; a missing field is NULL) so
        ``ctx.query`` and ``perper query`` can select items with SQL.

        Raises:
            ConfigError: a bad option, such as an index field of another type.
        """
        check_retention(retention)
        return self._register(
            fn, Kind.STREAM, name, recovery, checkpoint_every, checkpoint_interval, index, retention
        )

    @overload
    def action(self, fn: Callable[..., Any], /) -> StreamFunction: ...

    @overload
    def action(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        recovery: str = "replay",
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
    ) -> Callable[[Callable[..., Any]], StreamFunction]: ...

    def action(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        recovery: str = "replay",
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        """Register a sink: an async function (or generator) whose output nobody reads."""
        return self._register(
            fn, Kind.ACTION, name, recovery, checkpoint_every, checkpoint_interval
        )

    @overload
    def launcher(self, fn: Callable[..., Any], /) -> StreamFunction: ...

    @overload
    def launcher(
        self, fn: None = None, /, *, name: str | None = None
    ) -> Callable[[Callable[..., Any]], StreamFunction]: ...

    def launcher(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        """Register the async function that builds the graph with ``ctx.start``."""
        return self._register(fn, Kind.LAUNCHER, name, "replay", None, None)

    @overload
    def call(self, fn: Callable[..., Any], /) -> StreamFunction: ...

    @overload
    def call(
        self, fn: None = None, /, *, name: str | None = None
    ) -> Callable[[Callable[..., Any]], StreamFunction]: ...

    def call(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        """Register an async function others call with ``ctx.call`` or ``agent.call``; it
        returns a msgpack value (or None). Each call runs exactly once, durably."""
        return self._register(fn, Kind.CALL, name, "replay", None, None)

    @overload
    def stop(self, fn: Callable[..., Any], /) -> StreamFunction: ...

    @overload
    def stop(
        self, fn: None = None, /, *, name: str | None = None
    ) -> Callable[[Callable[..., Any]], StreamFunction]: ...

    def stop(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None
    ) -> StreamFunction | Callable[[Callable[..., Any]], StreamFunction]:
        """Register the async function run when an instance of this app is destroyed
        (``await agent.destroy()``); optional."""
        return self._register(fn, Kind.STOP, name, "replay", None, None)

    def function(self, name: str) -> StreamFunction:
        """Return the registered function ``name``.

        Raises:
            ConfigError: there is none.
        """
        try:
            return self.functions[name]
        except KeyError:
            raise ConfigError(
                f"app {self.name!r} has no function {name!r}; it has "
                f"{', '.join(sorted(self.functions)) or 'none'}"
            ) from None

    @property
    def launcher_function(self) -> StreamFunction:
        """The launcher.

        Raises:
            ConfigError: the app has none.
        """
        if self.launcher_name is None:
            raise ConfigError(
                f"app {self.name!r} has no launcher: decorate the function that starts the "
                "graph with @app.launcher"
            )
        return self.functions[self.launcher_name]


def _import_app_file(path: str | Path) -> Any:
    """Import ``path`` as a module, its directory first on ``sys.path`` (as ``python
    APP.py`` would have it), so apps import each other as modules."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"app file {str(path)!r} does not exist")
    directory = str(file.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = "perper_app_" + "".join(c if c.isalnum() else "_" for c in file.stem)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"app file {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except PerperErrorTypes:
        raise
    except Exception as error:
        raise ConfigError(
            f"importing {str(path)!r} failed: {type(error).__name__}: {error}"
        ) from error
    return module


def _apps_in(module: Any) -> tuple[list[App], list[App]]:
    """The Apps in ``module``'s namespace: (defined there, imported from other modules)."""
    found = [value for value in vars(module).values() if isinstance(value, App)]
    elsewhere = {
        id(value)
        for other in list(sys.modules.values())
        if other is not module and other is not None and hasattr(other, "__dict__")
        for value in list(vars(other).values())
        if isinstance(value, App)
    }
    unique: list[App] = []
    for app in found:
        if all(app is not seen for seen in unique):
            unique.append(app)
    defined = [app for app in unique if id(app) not in elsewhere]
    imported = [app for app in unique if id(app) in elsewhere]
    return defined, imported


def load_app(path: str | Path, *, name: str | None = None) -> App:
    """Import the Python file ``path`` and return the :class:`App` it defines.

    Apps it imports from other modules (agent types it starts) do not count.

    Args:
        path: the app's file.
        name: which App, when the file defines several (by ``App.name``).

    Raises:
        ConfigError: the file is missing, fails to import, or defines no (or several) apps.
    """
    defined, _ = _apps_in(_import_app_file(path))
    apps = defined
    if name is not None:
        apps = [a for a in apps if a.name == name]
    if len(apps) != 1:
        found = ", ".join(repr(a.name) for a in apps) or "none"
        raise ConfigError(
            f"{str(path)!r} must define exactly one perper.App"
            + (f" named {name!r}" if name else "")
            + f"; found {found}"
        )
    return apps[0]


def imported_apps(app: App) -> list[App]:
    """The other Apps (agent types) in the namespaces of the modules that define
    ``app``'s functions: what its instances may start. A worker of ``app`` serves them."""
    found: list[App] = []
    seen: set[int] = set()
    for fn in app.functions.values():
        namespace = getattr(fn.fn, "__globals__", None)
        if not isinstance(namespace, dict) or id(namespace) in seen:
            continue
        seen.add(id(namespace))
        for value in list(namespace.values()):
            if (
                isinstance(value, App)
                and value.name != app.name
                and all(value is not other for other in found)
            ):
                found.append(value)
    return found


def load_apps(path: str | Path) -> list[App]:
    """Import ``path`` and return the App it defines, then every App it imports (the
    agent types it starts), each once: what ``perper worker APP.py`` serves.

    Raises:
        ConfigError: as :func:`load_app`.
    """
    module = _import_app_file(path)
    defined, imported = _apps_in(module)
    if len(defined) != 1:
        found = ", ".join(repr(a.name) for a in defined) or "none"
        raise ConfigError(f"{str(path)!r} must define exactly one perper.App; found {found}")
    apps = [defined[0]]
    for app in imported:
        if all(app.name != other.name for other in apps):
            apps.append(app)
    return apps


PerperErrorTypes = (ConfigError,)
