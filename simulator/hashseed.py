"""The fault-free reference run in another process, under another ``PYTHONHASHSEED``.

In one process every run iterates a set of strings in the same order, so a function
whose output follows that order agrees with its own reference and the simulator cannot
see what production's next process will do differently. When a function's source
iterates a set (:mod:`simulator.causes`), the reference is computed in a child Python
with a different hash seed: outputs that follow hash order then differ from it, and the
violation names the set iteration as the likely cause.

The child is ``python -m simulator.hashseed APP.py``; parameters and preloaded streams go
in, the reference comes out, as msgpack over its stdin and stdout (no pickle).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from perper import codec
from perper.app import App, load_app
from perper.errors import ConfigError
from simulator.causes import likely_causes
from simulator.checkers import Reference


def depends_on_hash_order(app: App) -> bool:
    """Whether a function of ``app`` iterates a set (its order follows the hash seed)."""
    return any(
        "PYTHONHASHSEED" in cause
        for function in app.functions.values()
        for cause in likely_causes(function.fn)
    )


def app_file(app: App) -> str | None:
    """The file that defines ``app`` (the launcher's source file), if known."""
    try:
        return inspect.getsourcefile(app.launcher_function.fn)
    except (TypeError, ConfigError):
        return None


def reference_in_child(
    app: App,
    params: Mapping[str, Any],
    *,
    step_budget: int,
    preload: Mapping[str, Sequence[Any]] | None = None,
) -> Reference | None:
    """The fault-free reference computed in a child process whose hash seed differs from
    this one's (None when the app's file is unknown).

    Raises:
        ConfigError: the app fails without faults in the child (with its message).
    """
    path = app_file(app)
    if path is None:
        return None
    current = os.environ.get("PYTHONHASHSEED", "")
    seed = "1" if current != "1" else "2"
    request = codec.pack(
        {"params": dict(params), "preload": dict(preload or {}), "step_budget": step_budget}
    )
    done = subprocess.run(
        [sys.executable, "-m", "simulator.hashseed", path],
        input=request,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": seed},
        timeout=600,
        check=False,
    )
    if done.returncode == 2:
        raise ConfigError(done.stderr.decode(errors="replace").strip())
    if done.returncode != 0:
        raise RuntimeError(
            "the reference run under another PYTHONHASHSEED failed:\n"
            + done.stderr.decode(errors="replace")
        )
    fields = codec.unpack(done.stdout)
    items: dict[str, list[Any]] = fields["items"]
    return Reference(
        outputs={name: [codec.canonical(item) for item in got] for name, got in items.items()},
        items=items,
        sealed=set(fields["sealed"]),
        tainted=set(fields["tainted"]),
        heads=fields["heads"],
        run_status=fields["run_status"],
        steps=fields["steps"],
        virtual_time=fields["virtual_time"],
    )


def _child(path: str) -> int:
    import logging

    from simulator.world import reference_run

    logging.disable(logging.CRITICAL)
    request = codec.unpack(sys.stdin.buffer.read())
    try:
        ref = reference_run(
            load_app(path),
            request["params"],
            step_budget=request["step_budget"],
            preload=request["preload"],
        )
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    sys.stdout.buffer.write(
        codec.pack(
            {
                "items": ref.items,
                "sealed": sorted(ref.sealed),
                "tainted": sorted(ref.tainted),
                "heads": ref.heads,
                "run_status": ref.run_status,
                "steps": ref.steps,
                "virtual_time": ref.virtual_time,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
