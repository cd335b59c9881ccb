"""The ``perper ui`` web app: aiohttp routes over a store, Jinja2 pages, shipped assets.

Pages: ``/`` (runs), ``/run?name=R`` (the graph), ``/execution?id=E``,
``/stream?name=S&start=N``. JSON: ``/api/runs``, ``/api/graph?run=R``; server-sent
events: ``/api/graph/events?run=R`` pushes the graph each time it changes. Ids go in
query strings because execution ids and stream names contain slashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import webbrowser
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from perper.errors import ConfigError, FormatError
from perper.store import LogStore, open_store
from perper.store.readonly import ReadOnlyStore
from perper.store.urls import mask_url, sqlite_path
from perper.ui import model

log = logging.getLogger("perper.ui")

#: How often (loop seconds) the live graph re-reads the store for changes.
POLL_INTERVAL = 0.5

_STORE: web.AppKey[LogStore] = web.AppKey("store", LogStore)
_TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
_POLL: web.AppKey[float] = web.AppKey("poll", float)


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("perper.ui").joinpath(name)))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_package_dir("templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    return env


def _render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    env = request.app[_TEMPLATES]
    text = env.get_template(template).render(store=mask_url(request.app[_STORE].url), **values)
    return web.Response(text=text, content_type="text/html", status=status)


def _not_found(request: web.Request, what: str) -> web.Response:
    return _render(request, "missing.html", status=404, what=what)


def _int(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"{name}={value!r} is not a whole number: give e.g. {name}={default}"
        ) from None


async def _runs_page(request: web.Request) -> web.Response:
    runs = await model.list_runs(request.app[_STORE])
    return _render(request, "runs.html", runs=runs, query=request.query.get("q", ""))


async def _run_page(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    graph = await model.run_graph(request.app[_STORE], name)
    if graph is None:
        return _not_found(request, f"run {name!r}")
    return _render(
        request, "run.html", graph=graph, graph_json=json.dumps(graph.to_json()), run=name
    )


async def _execution_page(request: web.Request) -> web.Response:
    execution = request.query.get("id", "")
    view = await model.execution_view(request.app[_STORE], execution)
    if view is None:
        return _not_found(request, f"execution {execution!r}")
    return _render(request, "execution.html", view=view)


async def _stream_page(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    store = request.app[_STORE]
    start = _int(request, "start", 0)
    limit = _int(request, "limit", model.PAGE_SIZE)
    if "seq" in request.query and request.query["seq"].strip():
        # Jump to a seq: the page that starts there.
        start = _int(request, "seq", 0)
    page = await model.stream_page(store, name, start=start, limit=limit)
    if page.head == 0 and page.writer is None and not page.sealed:
        return _not_found(request, f"stream {name!r}")
    return _render(request, "stream.html", page=page)


async def _api_runs(request: web.Request) -> web.Response:
    runs = await model.list_runs(request.app[_STORE])
    return web.json_response([dataclasses.asdict(run) for run in runs])


async def _api_graph(request: web.Request) -> web.Response:
    name = request.query.get("run", "")
    graph = await model.run_graph(request.app[_STORE], name)
    if graph is None:
        raise web.HTTPNotFound(text=f"no run {name!r} in {mask_url(request.app[_STORE].url)}")
    return web.json_response(graph.to_json())


async def _graph_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the run's graph as JSON whenever it changes."""
    name = request.query.get("run", "")
    store = request.app[_STORE]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    last = ""
    try:
        while True:
            graph = await model.run_graph(store, name)
            text = json.dumps(graph.to_json() if graph else None)
            if text != last:
                await response.write(f"data: {text}\n\n".encode())
                last = text
            else:
                await response.write(b": idle\n\n")  # notices a closed connection
            await asyncio.sleep(request.app[_POLL])
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


@web.middleware
async def _corrupt_log(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """A page or an API call that meets a corrupt log answers 500 with the FormatError's
    message (the store, the stream or entry, the seqs), not "Server got itself in trouble"
    and a traceback in the server's output."""
    try:
        response: web.StreamResponse = await handler(request)
    except FormatError as error:
        log.warning("%s: %s", request.path_qs, error)
        return web.Response(status=500, text=f"error: {error}")
    return response


def make_app(store: LogStore, *, poll_interval: float = POLL_INTERVAL) -> web.Application:
    """The aiohttp application serving ``store`` (read only: it never writes)."""
    app = web.Application(middlewares=[_corrupt_log])
    app[_STORE] = store
    app[_TEMPLATES] = _environment()
    app[_POLL] = poll_interval
    app.add_routes(
        [
            web.get("/", _runs_page),
            web.get("/run", _run_page),
            web.get("/execution", _execution_page),
            web.get("/stream", _stream_page),
            web.get("/api/runs", _api_runs),
            web.get("/api/graph", _api_graph),
            web.get("/api/graph/events", _graph_events),
            web.static("/static", _package_dir("static")),
        ]
    )
    return app


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_store_for_ui(url: str) -> LogStore:
    """Open the store at ``url`` behind a :class:`ReadOnlyStore`, so the UI cannot write
    to it; a SQLite file must exist already (opening a missing one would create a log).

    Raises:
        ConfigError: a ``sqlite://`` URL names a file that does not exist.
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"store {mask_url(url)!r}: {path} does not exist; run something first "
            "(perper run APP.py) or point --store at an existing log"
        )
    return ReadOnlyStore(open_store(url), reason="for perper ui")


async def serve(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    ready: asyncio.Future[str] | None = None,
    poll_interval: float = POLL_INTERVAL,
) -> None:
    """Serve the UI over the store at ``store_url`` until cancelled.

    ``ready``, if given, is resolved with the UI's address once it listens.

    Raises:
        ConfigError: the store cannot be opened as one to read, or the port is taken.
    """
    store = open_store_for_ui(store_url)
    runner = web.AppRunner(make_app(store, poll_interval=poll_interval), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({error.strerror}): pick another --port"
            ) from None
        address = _address(host, port, runner)
        if ready is not None and not ready.done():
            ready.set_result(address)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


def _address(host: str, port: int, runner: web.AppRunner) -> str:
    if port == 0 and runner.addresses:
        port = int(runner.addresses[0][1])
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run_ui(
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = False,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> None:
    """What ``perper ui`` does: serve ``store_url`` until interrupted (Ctrl-C).

    A host other than loopback is served only because it was asked for explicitly (the
    default is 127.0.0.1); ``warn`` is told that the UI has no authentication.

    Raises:
        ConfigError: the store cannot be opened or the port is taken.
    """
    if not is_loopback(host):
        warn(
            f"warning: serving on {host}, which is not loopback: the UI has no "
            "authentication, so anyone who can reach this address can read every stream "
            "of the store"
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str] = loop.create_future()
        task = asyncio.ensure_future(serve(store_url, host=host, port=port, ready=ready))
        waiting: set[asyncio.Future[Any]] = {task, ready}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            address = ready.result()
            echo(f"perper ui: serving {mask_url(store_url)} at {address} (Ctrl-C stops)")
            if open_browser:
                webbrowser.open(address)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
