"""``perper ui``: a read-only web app over a store (runs, graphs, executions, streams).

The server is aiohttp, the pages Jinja2 templates, the graph laid out in the browser by
dagre (shipped in ``static/``, no CDN). See ``docs/ui.md``.
"""

from perper.ui.server import is_loopback, make_app, open_store_for_ui, run_ui, serve

__all__ = ["is_loopback", "make_app", "open_store_for_ui", "run_ui", "serve"]
