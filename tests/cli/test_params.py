"""--param values are converted to the launcher's annotations, or refused before a run starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

import perper
from perper.errors import ConfigError
from perper.params import parse_params

app = perper.App("params")


@app.launcher
async def launch(
    ctx: perper.Context,
    count: int = 1,
    rate: float = 0.5,
    on: bool = False,
    label: str = "",
    names: list[str] | None = None,
    weights: dict[str, float] | None = None,
    limit: int | None = None,
    source: perper.StreamRef | None = None,
    pair: tuple[int, str] = (0, ""),
    mode: Literal["fast", "slow"] = "fast",
    anything: Any = None,
    untyped=None,  # type: ignore[no-untyped-def]
) -> None:
    pass


def parse(*pairs: str) -> dict[str, Any]:
    return parse_params(app.launcher_function, pairs)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("count=10", 10),
        ("rate=3", 3.0),
        ("on=true", True),
        ("label=10", "10"),
        ('names=["a","b"]', ["a", "b"]),
        ("names=null", None),
        ('weights={"a":1,"b":0.5}', {"a": 1.0, "b": 0.5}),
        ("limit=null", None),
        ("limit=7", 7),
        ("source=shop/clicks", perper.StreamRef("shop/clicks")),
        ('pair=[1,"x"]', (1, "x")),
        ("mode=slow", "slow"),
        ("anything=[1,2]", [1, 2]),
        ("untyped=not json", "not json"),
    ],
)
def test_a_value_is_converted_to_the_parameters_annotation(pair: str, expected: Any) -> None:
    key = pair.partition("=")[0]
    value = parse(pair)[key]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("count=abc", "count must be an integer, e.g. count=10"),
        ("names=a,b", "names must be a JSON list or null, e.g. names=[1,2]"),
        ('names=["a",1]', "names must be a string (at names[1])"),
        ("weights=[1]", "weights must be a JSON object or null"),
        ('weights={"a":"x"}', "weights must be a number (at weights['a'])"),
        ("limit=soon", "limit must be an integer or null"),
        ("source=", "source must be a stream name or null"),
        ("pair=[1]", "pair must be a JSON list of 2 values"),
        ("mode=medium", 'mode must be one of "fast", "slow"'),
    ],
)
def test_a_value_that_does_not_fit_its_annotation_is_refused_naming_it(
    pair: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse(pair)
    assert message in str(error.value)
    assert f"--param {pair}" in str(error.value)


def test_a_bad_param_exits_2_before_the_run_is_recorded(tmp_path: Path) -> None:
    app_file = tmp_path / "app.py"
    app_file.write_text(
        "import perper\n"
        "app = perper.App('p')\n"
        "@app.launcher\n"
        "async def main(ctx: perper.Context, names: list[str]) -> None:\n"
        "    pass\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "perper.cli", "run", str(app_file), "--store", "sqlite:///p.db",
         "--param", "names=a,b"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert "names must be a JSON list" in ran.stderr
    assert not (tmp_path / "p.db").exists()


def test_a_streamref_parameter_reads_the_named_stream(tmp_path: Path) -> None:
    app_file = tmp_path / "app.py"
    app_file.write_text(
        "from collections.abc import AsyncIterator\n"
        "import perper\n"
        "app = perper.App('refs')\n"
        "@app.stream\n"
        "async def double(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:\n"
        "    async for x in ctx.read(source):\n"
        "        yield 2 * x\n"
        "@app.launcher\n"
        "async def main(ctx: perper.Context, source: perper.StreamRef) -> None:\n"
        "    await ctx.start(double, source)\n"
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"

    async def fill() -> None:
        async with perper.open_store(url) as store:
            await store.append("shop/clicks", 0, [1, 2, 3])
            await store.seal("shop/clicks")

    import asyncio

    asyncio.run(fill())
    command = [sys.executable, "-m", "perper.cli"]
    ran = subprocess.run(
        [*command, "run", str(app_file), "--store", url, "--run", "r", "--param",
         "source=shop/clicks", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    cat = subprocess.run(
        [*command, "streams", "cat", "r/double-0", "--store", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cat.stdout.splitlines() == ["2", "4", "6"]
