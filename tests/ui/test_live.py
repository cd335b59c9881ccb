"""The graph page follows a run that is being written, without a reload."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.ui.conftest import PERPER, UIServer, screenshot, start_ui, stop_ui
from tests.ui.stores import EXAMPLES


@pytest.fixture
def running_basic(tmp_path: Path) -> Iterator[Path]:
    """``perper run examples/basic.py --run live --param count=400000`` going on."""
    log = tmp_path / "live.db"
    process = subprocess.Popen(
        [
            *(PERPER, "run", str(EXAMPLES / "basic.py"), "--store", f"sqlite:///{log}"),
            *("--run", "live", "--param", "count=400000"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not log.exists():
            assert process.poll() is None, "perper run exited before writing its log"
            assert time.monotonic() < deadline, "perper run wrote no log within 30 s"
            time.sleep(0.05)  # polling a file another process creates: no event to wait on
        yield log
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def live_ui(running_basic: Path) -> Iterator[UIServer]:
    server = start_ui(f"sqlite:///{running_basic}")
    yield server
    stop_ui(server)


def _generator_items(page: Page) -> int:
    node = page.locator('#graph g.node[data-id="live/generator-0"]')
    return int(node.get_attribute("data-items") or 0)


def test_the_graph_shows_counts_growing_then_every_node_done(live_ui: UIServer, page: Page):
    deadline = time.monotonic() + 30
    while True:  # the run record appears once the launcher starts
        response = page.goto(live_ui.url("/run?name=live"))
        if response is not None and response.status == 200:
            break
        assert time.monotonic() < deadline, "run 'live' did not appear within 30 s"
        page.wait_for_timeout(100)
    expect(page.locator("#graph g.node")).to_have_count(4, timeout=30_000)
    first = _generator_items(page)
    page.wait_for_function(
        f"""() => {{
            const n = document.querySelector('#graph g.node[data-id="live/generator-0"]');
            return n && Number(n.dataset.items) > {first};
        }}""",
        timeout=60_000,
    )
    assert _generator_items(page) > first
    assert int(page.locator("#graph").get_attribute("data-updates") or 0) >= 2
    screenshot(page, "graph-live")
    expect(page.locator("#run-status")).to_have_text("done", timeout=240_000)
    statuses = page.locator("#graph g.node").evaluate_all("ns => ns.map(n => n.dataset.status)")
    assert statuses == ["done"] * 4
    assert _generator_items(page) == 400_000
    expect(page.locator('#graph g.edge[data-stream="live/generator-0"] text')).to_have_text(
        "400,000 items"
    )
    expect(page.locator('#executions-body tr[data-id="live/generator-0"] .items')).to_have_text(
        "400,000"
    )
    screenshot(page, "graph-done")


def test_the_runs_page_follows_a_run_to_done_without_a_reload(live_ui: UIServer, page: Page):
    deadline = time.monotonic() + 30
    page.goto(live_ui.url("/"))
    while page.locator("tr.run", has_text="live").count() == 0:  # the run record appears
        assert time.monotonic() < deadline, "run 'live' did not appear within 30 s"
        page.reload()
    row = page.locator("tr.run", has_text="live")
    expect(row.locator(".status")).to_have_text("running")
    page.evaluate("document.title = 'not reloaded'")
    expect(row.locator(".status")).to_have_text("done", timeout=240_000)
    expect(row.locator("td").nth(4)).to_have_text("533,334")  # 400,000 + 133,334 batches
    assert page.title() == "not reloaded"
