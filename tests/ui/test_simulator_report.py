"""``python -m simulator run ... --html``: a failure as a page with a fault timeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.ui.conftest import screenshot

ROOT = Path(__file__).resolve().parents[2]
RUNNING_TOTAL = ROOT / "examples" / "running_total.py"


@pytest.fixture(scope="module")
def failure_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sim")
    report = folder / "failure.html"
    # seed 7 of running_total.py fails (nondeterminism after a crash, with a partition
    # among the faults that fired; see tests/simulator)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            str(RUNNING_TOTAL),
            "--seed",
            "7",
            "--save",
            str(folder / "failure.db"),
            "--html",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"html report: {report}" in done.stdout
    return report


def test_the_failure_page_shows_the_violation_and_the_command(failure_report: Path, page: Page):
    page.goto(failure_report.as_uri())
    expect(page.locator("#verdict")).to_have_text("failed")
    expect(page.locator("#violation")).to_contain_text("nondeterminism")
    expect(page.locator("#command")).to_have_text(
        f"python -m simulator run {RUNNING_TOTAL} --seed 7"
    )
    screenshot(page, "simulator-failure")


def test_the_timeline_has_a_lane_per_worker_and_the_faults_that_fired(
    failure_report: Path, page: Page
):
    page.goto(failure_report.as_uri())
    fired = page.locator("#fired li").all_inner_texts()
    workers_line = page.locator("li", has_text="workers:").first.inner_text()
    workers = int(workers_line.split(":")[1])
    expect(page.locator("#timeline .lane-label")).to_have_count(workers)
    partitions = sum(1 for line in fired if ": partition worker" in line)
    assert partitions >= 1
    expect(page.locator('#timeline rect[data-kind="partition"]')).to_have_count(partitions)
    restarts = sum(1 for line in fired if ": restart worker" in line)
    expect(page.locator('#timeline rect[data-kind="restart"]')).to_have_count(restarts)
    # the violation line sits inside the drawing, left of its right edge
    line = page.locator("#violation-line")
    x = float(line.get_attribute("x1") or 0)
    assert 90 <= x <= 900
