"""The issue's end-to-end check, small: producers SIGKILLed mid-way and restarted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import store_url
from tests.ingest.crash_feed import feed_with_crashes


@pytest.mark.slow
def test_producers_killed_and_restarted_store_every_event_once_and_change_no_output(
    tmp_path: Path,
) -> None:
    report = feed_with_crashes(f"sqlite:///{tmp_path / 'feed.db'}", count=6000, timeout=300)
    assert not report.problems, str(report)
    assert report.items == report.distinct_events == 12000
    assert all(len(sent) == 2 for sent in report.kills.values())


@pytest.mark.slow
@pytest.mark.ignite
@pytest.mark.skipif(not os.environ.get("PERPER_TEST_IGNITE"), reason="needs PERPER_TEST_IGNITE")
def test_the_same_holds_on_ignite(tmp_path: Path) -> None:
    report = feed_with_crashes(store_url("ignite", tmp_path, "feed"), count=6000, timeout=300)
    assert not report.problems, str(report)
    assert report.items == report.distinct_events == 12000
