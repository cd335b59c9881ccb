"""bench/pipeline.py's per-item line measures both sides by wall clock and by CPU time."""

from __future__ import annotations

from pathlib import Path

from bench import pipeline


async def test_the_per_item_pipeline_of_the_benchmark_reports_wall_and_cpu_seconds(
    tmp_path: Path,
) -> None:
    # durable() asserts the processor's head and the consumer's checkpointed count.
    wall, cpu = await pipeline.durable(tmp_path / "p.db", 3_000)
    assert wall > 0 and cpu > 0
    # A single-threaded run cannot use more CPU than wall time (the clocks' resolution
    # aside): the CPU figure is the process's, not the machine's.
    assert cpu <= wall * 1.5 + 0.01


async def test_the_in_memory_chain_of_the_benchmark_reports_wall_and_cpu_seconds() -> None:
    wall, cpu = await pipeline.in_memory(3_000)
    assert wall > 0 and cpu > 0
