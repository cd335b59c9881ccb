"""Processes opening one new SQLite log at the same moment all get a perper log.

Each process reads the file's header (application id, format, tables) and, on an empty
file, creates the schema. A process that read the header in separate statements while
another created the file saw "application_id 0" beside tables and refused a new log as
"not a perper log".
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OPENER = """
import asyncio, os, sys, time
from perper.store.sqlite import SQLiteStore
go, path = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.0002)
async def main():
    async with SQLiteStore(path) as store:
        await store.info("s")
asyncio.run(main())
"""

PROCESSES = 6
ROUNDS = 8


def test_processes_creating_one_new_log_at_once_all_open_it(tmp_path: Path) -> None:
    failures = []
    for round_ in range(ROUNDS):
        go = tmp_path / f"go-{round_}"
        path = tmp_path / f"new-{round_}.db"
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(go), str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        time.sleep(1.0)  # every opener imported perper and waits for the signal
        go.touch()
        for opener in openers:
            _, err = opener.communicate(timeout=120)
            if opener.returncode != 0:
                failures.append(err.strip().splitlines()[-1])
    assert not failures, failures
