"""The recorded logs in fixtures/: one replays cleanly, one must diverge, one uses effects."""

from __future__ import annotations

import pytest

from perper.replay import ReplayDivergedError
from perper.testing import assert_replays
from tests.replay.conftest import BASIC, EFFECTS, FIXTURES

OLD_PROCESSOR_APP = FIXTURES / "basic_old_processor.py"


def test_the_clean_fixture_replays_against_todays_basic_example() -> None:
    results = assert_replays(FIXTURES / "basic-clean.db", BASIC)
    assert sum(r.items_compared for r in results) == 1000 + 334


def test_the_old_processor_fixture_diverges_from_todays_basic_example() -> None:
    with pytest.raises(ReplayDivergedError) as caught:
        assert_replays(FIXTURES / "basic-old-processor.db", BASIC)
    message = str(caught.value)
    assert "old-processor/processor-1 (processor): diverged (item) at 0" in message
    assert "expected:  [0, 1]" in message
    assert "actual:    [0, 1, 2]" in message
    assert isinstance(caught.value, AssertionError)  # a failed test, not an error


def test_the_old_processor_fixture_replays_against_the_code_that_recorded_it() -> None:
    assert_replays(FIXTURES / "basic-old-processor.db", OLD_PROCESSOR_APP)


def test_the_effects_fixture_replays_with_its_recorded_effects() -> None:
    results = assert_replays(FIXTURES / "effects.db", EFFECTS)
    assert results["effects/orders-0"].effects_replayed == 150
    assert results["effects/sampler-1"].effects_replayed > 50  # a random draw per order + now


@pytest.mark.parametrize("name", ["basic-clean.db", "basic-old-processor.db", "effects.db"])
def test_fixtures_stay_small(name: str) -> None:
    assert (FIXTURES / name).stat().st_size < 1_000_000
