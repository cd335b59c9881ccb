"""``perper replay --html``: the divergence report as a self-contained page."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from perper.errors import ConfigError
from perper.replay import replay
from perper.replay.html import highlight, render_replay_html, write_replay_html
from tests.ui.conftest import PERPER, off_loop, screenshot

ROOT = Path(__file__).resolve().parents[2]
DIVERGING = ROOT / "fixtures" / "basic-old-processor.db"
CLEAN = ROOT / "fixtures" / "basic-clean.db"
BASIC = ROOT / "examples" / "basic.py"


def replay_html(tmp: Path, *options: str) -> Path:
    """``perper replay fixtures/basic-old-processor.db examples/basic.py --html ...``."""
    report = tmp / "report.html"
    done = subprocess.run(
        [PERPER, "replay", str(DIVERGING), str(BASIC), *options, "--html", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # 1: diverged
    assert f"html report: {report}" in done.stderr
    return report


@pytest.fixture(scope="module")
def diverging_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_html(tmp_path_factory.mktemp("report"))


def test_the_divergence_report_shows_expected_and_actual_side_by_side(
    diverging_report: Path, page: Page
):
    page.goto(diverging_report.as_uri())
    expect(page.locator("#verdict")).to_have_text("diverged")
    section = page.locator("section.divergence")
    expect(section).to_have_count(1)
    expect(section.locator(".function")).to_have_text("processor")
    expect(section.locator(".seq")).to_have_text("0")
    expected = section.locator("pre.expected").inner_text()
    actual = section.locator("pre.actual").inner_text()
    assert expected.split() == ["[", "0,", "1", "]"]
    assert actual.split() == ["[", "0,", "1,", "2", "]"]
    # the structural diff: the extra element is highlighted on the actual side only
    expect(section.locator("pre.actual .added")).to_have_text("2")
    expect(section.locator("pre.expected .added, pre.expected .removed")).to_have_count(0)
    expect(section.locator("ul.diff")).to_contain_text("1 more elements (extra [2])")
    expect(section.locator(".inputs")).to_have_text("old-processor/generator-0 at 3")
    screenshot(page, "divergence")


def test_a_whole_run_replay_report_shows_the_diverging_stream(tmp_path: Path, page: Page):
    page.goto(replay_html(tmp_path, "--graph").as_uri())
    expect(page.locator("#verdict")).to_have_text("diverged")
    section = page.locator('section.divergence[data-execution="old-processor/processor-1"]')
    expect(section.locator("pre.expected")).to_contain_text("0")
    expect(section.locator("pre.actual .added").first).to_be_visible()


def test_write_replay_html_names_a_path_it_cannot_write(tmp_path: Path):
    results = off_loop(replay, str(CLEAN), str(BASIC))
    with pytest.raises(ConfigError, match="cannot write the HTML report to"):
        write_replay_html(results, tmp_path / "no" / "such" / "dir" / "r.html")


def test_the_report_is_self_contained(diverging_report: Path):
    text = diverging_report.read_text()
    assert "<script" not in text
    assert "http://" not in text
    assert "https://" not in text
    assert "<link" not in text


def test_a_clean_replay_reports_reproduced_and_no_divergence():
    text = render_replay_html(off_loop(replay, str(CLEAN), str(BASIC)))
    assert 'class="verdict ok">reproduced<' in text
    assert 'section class="divergence"' not in text


def test_highlight_marks_changed_removed_and_added_parts_of_a_dict():
    expected = {"a": 1, "b": [1, 2], "gone": True}
    actual = {"a": 2, "b": [1, 2], "new": "x"}
    left = highlight(expected, actual, "expected")
    right = highlight(actual, expected, "actual")
    assert '<span class="changed">1</span>' in left
    assert '<span class="changed">2</span>' in right
    assert '<span class="removed">true</span>' in left
    assert '<span class="added">&quot;x&quot;</span>' in right
    assert "changed" not in highlight([1, 2], [1, 2], "expected")


def test_highlight_escapes_html_inside_values():
    text = highlight({"k": "<b>"}, {"k": "<i>"}, "expected")
    assert "<b>" not in text
    assert "&lt;b&gt;" in text
