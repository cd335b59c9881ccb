"""Fixtures for the UI tests: a log with known runs, ``perper ui`` serving it as a
subprocess, and a headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.ui.stores import make_known_runs

T = TypeVar("T")

#: The ``perper`` console script of this environment: the tests run it as a user would.
PERPER = str(Path(sys.executable).with_name("perper"))
CHROMIUM = os.environ.get("PERPER_TEST_CHROMIUM", "/usr/bin/chromium")
#: Where the tests leave their screenshots (docs/ui/*.png are copies of these).
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".pytest_cache" / "ui-screenshots"

_ADDRESS = re.compile(r"at (http://\S+/)")


class UIServer:
    """A ``perper ui`` process and the address it serves."""

    def __init__(self, process: subprocess.Popen[str], address: str) -> None:
        self.process = process
        self.address = address

    def url(self, path: str) -> str:
        return self.address.rstrip("/") + path


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` in a thread of its own: Playwright's sync API keeps an event loop
    running in the test's thread, so asyncio.run and perper.replay.replay refuse there."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def start_ui(store_url: str, *, timeout: float = 30.0) -> UIServer:
    """Start ``perper ui --port 0`` on ``store_url``; return once it says where it listens."""
    process = subprocess.Popen(
        [PERPER, "ui", "--store", store_url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=deadline - time.monotonic()):
            break
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = _ADDRESS.search(line)
        if found:
            selector.close()
            return UIServer(process, found.group(1))
    selector.close()
    process.kill()
    process.wait()
    process.stdout.close()
    raise AssertionError(f"perper ui did not start within {timeout} s: {''.join(seen)!r}")


def stop_ui(server: UIServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(scope="session")
def known_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite log with runs basic-small, cycle-10 and broken (see stores.py)."""
    path = tmp_path_factory.mktemp("ui") / "known.db"
    off_loop(asyncio.run, make_known_runs(path))
    return path


@pytest.fixture(scope="session")
def ui(known_log: Path) -> Iterator[UIServer]:
    server = start_ui(f"sqlite:///{known_log}")
    yield server
    stop_ui(server)


# Module scope, not session: Playwright's sync API keeps an event loop running in the
# test's thread while it is open, which would break every async test that xdist happens
# to run after a UI test in the same worker process.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make chromium' (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as .pytest_cache/ui-screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
