"""The UI's pages in a real headless Chromium, served by a real ``perper ui`` process."""

from __future__ import annotations

import json
import urllib.request

from playwright.sync_api import Page, expect

from tests.ui.conftest import UIServer, screenshot
from tests.ui.stores import KNOWN_RUNS


def test_the_runs_page_lists_every_run_with_its_status_and_counts(ui: UIServer, page: Page):
    page.goto(ui.url("/"))
    rows = page.locator("tr.run")
    expect(rows).to_have_count(len(KNOWN_RUNS))
    names = rows.locator("td:first-child").all_inner_texts()
    assert sorted(names) == sorted(run for run, _, _ in KNOWN_RUNS)
    broken = page.locator("tr.run", has_text="broken")
    expect(broken.locator(".status")).to_have_text("failed")
    basic = page.locator("tr.run", has_text="basic-small")
    # generator 20 items + processor 7 batches of 3 (the last one short)
    expect(basic.locator("td").nth(4)).to_have_text("27")
    screenshot(page, "runs")


def test_the_filter_box_hides_the_runs_that_do_not_match(ui: UIServer, page: Page):
    page.goto(ui.url("/"))
    page.fill("#filter", "cycle")
    expect(page.locator("tr.run:visible")).to_have_count(1)
    expect(page.locator("tr.run:visible td").first).to_have_text("cycle-10")
    page.fill("#filter", "failed")
    expect(page.locator("tr.run:visible td").first).to_have_text("broken")


def test_a_run_graph_draws_one_node_per_execution_with_its_status_and_items(
    ui: UIServer, page: Page
):
    page.goto(ui.url("/run?name=basic-small"))
    nodes = page.locator("#graph g.node")
    expect(nodes).to_have_count(4)  # main, generator, processor, consumer
    ids = sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.id)"))
    assert ids == [
        "basic-small/consumer-2",
        "basic-small/generator-0",
        "basic-small/main",
        "basic-small/processor-1",
    ]
    generator = page.locator('#graph g.node[data-id="basic-small/generator-0"]')
    expect(generator).to_have_attribute("data-status", "done")
    expect(generator).to_have_attribute("data-items", "20")
    expect(generator).to_have_class("node stream done")
    edges = page.locator("#graph g.edge")
    expect(edges).to_have_count(2)
    expect(edges.locator("text")).to_have_text(["20 items", "7 items"])
    screenshot(page, "graph")


def test_the_cyclic_example_is_drawn_as_a_cycle(ui: UIServer, page: Page):
    page.goto(ui.url("/run?name=cycle-10"))
    expect(page.locator("#graph g.node")).to_have_count(4)
    pairs = page.locator("#graph g.edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target])"
    )
    assert ["cycle-10/ping-0", "cycle-10/pong-1"] in pairs
    assert ["cycle-10/pong-1", "cycle-10/ping-0"] in pairs
    screenshot(page, "cycle")


def test_clicking_a_failed_node_shows_its_traceback(ui: UIServer, page: Page):
    page.goto(ui.url("/run?name=broken"))
    checker = page.locator('#graph g.node[data-id="broken/checker-1"]')
    expect(checker).to_have_attribute("data-status", "failed")
    checker.click()
    expect(page.locator("#execution-id")).to_have_text("broken/checker-1")
    expect(page.locator("#status")).to_have_text("failed")
    error = page.locator("#error")
    expect(error).to_contain_text("Traceback (most recent call last)")
    expect(error).to_contain_text("ValueError: checker cannot take n=3")
    expect(page.locator("#params")).to_contain_text('"__stream__": "broken/numbers-0"')
    expect(page.locator("#lease")).to_contain_text("epoch 1")
    screenshot(page, "failed-execution")


def test_an_execution_page_shows_its_checkpoint(ui: UIServer, page: Page):
    page.goto(ui.url("/execution?id=basic-small/processor-1"))
    checkpoint = json.loads(page.locator("#checkpoint").inner_text())
    assert [entry[:2] for entry in checkpoint["positions"]] == [["basic-small/generator-0", 20]]
    assert checkpoint["out"] == 7


def test_a_stream_page_shows_items_as_json_and_jumps_to_a_seq(ui: UIServer, page: Page):
    page.goto(ui.url("/stream?name=basic-small/processor-1"))
    items = page.locator("li.item")
    expect(items).to_have_count(7)
    assert json.loads(items.nth(0).locator("pre").inner_text()) == [0, 1, 2]
    assert json.loads(items.nth(6).locator("pre").inner_text()) == [18, 19]
    screenshot(page, "stream")
    page.fill("#seq", "5")
    page.click("form.jump button")
    expect(page.locator("li.item").first).to_have_attribute("data-seq", "5")
    assert json.loads(page.locator("li.item pre").first.inner_text()) == [15, 16, 17]


def test_a_stream_is_paged(ui: UIServer, page: Page):
    page.goto(ui.url("/stream?name=basic-small/generator-0&limit=8"))
    expect(page.locator("li.item")).to_have_count(8)
    page.click("#next")
    expect(page.locator("li.item").first).to_have_attribute("data-seq", "8")
    page.click("#next")
    expect(page.locator("li.item")).to_have_count(4)  # seqs 16-19
    expect(page.locator("#next")).to_have_count(0)


def test_an_unknown_run_is_a_404_page_that_says_so(ui: UIServer, page: Page):
    response = page.goto(ui.url("/run?name=no-such-run"))
    assert response is not None
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("no run 'no-such-run'")


def test_the_graph_api_serves_the_graph_as_json(ui: UIServer):
    with urllib.request.urlopen(ui.url("/api/graph?run=cycle-10"), timeout=10) as response:
        graph = json.load(response)
    assert graph["status"] == "done"
    assert {node["function"] for node in graph["nodes"]} == {"main", "ping", "pong", "report"}


def test_every_request_a_page_makes_goes_to_the_ui_itself(ui: UIServer, page: Page):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ("/", "/run?name=cycle-10", "/execution?id=cycle-10/ping-0"):
        page.goto(ui.url(path))
    page.goto(ui.url("/stream?name=cycle-10/ping-0"))
    assert any(url.endswith("/static/dagre.min.js") for url in requested)
    outside = [url for url in requested if not url.startswith(ui.address)]
    assert outside == []
