"""A failed simulation as one self-contained HTML page (``python -m simulator run ...
--html FILE``): the seed, the derived parameters, the first violation, the command that
reproduces it, and the fault schedule drawn on a timeline of virtual time, one lane per
simulated worker (crashes down to their restarts, pauses, partitions, store errors; the
moment faults stop and the moment the violation was seen). Inline SVG and CSS, no script.
Rendering needs Jinja2 (``pip install 'perper[ui]'``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perper.errors import ConfigError
from simulator.world import SimulationResult

_FIRED = re.compile(r"^t=(?P<time>[0-9.]+)s: (?P<what>.*)$")
_WORKER = re.compile(r"worker (?P<worker>\d+)")
_DURATION = re.compile(r"for (?P<duration>[0-9.e+-]+)s")

LANE_HEIGHT = 34
LEFT = 90
WIDTH = 900


@dataclass(frozen=True)
class TimelineEvent:
    """One fired fault on a worker's lane: a span (``end`` set) or a moment."""

    worker: int
    kind: str
    start: float
    end: float | None
    text: str


def timeline_events(result: SimulationResult) -> list[TimelineEvent]:
    """The faults that happened (``result.fired``) as events per worker; a crash spans
    until that worker's restart (or the end), a pause or partition its duration."""
    heal = result.scenario.heal_at
    events: list[TimelineEvent] = []
    down: dict[int, tuple[float, str]] = {}
    end_of_run = _extent(result)
    # A span can outlast the simulation (it stopped at the violation): cut it there.
    stop = result.virtual_time if result.virtual_time > 0 else end_of_run
    for line in result.fired:
        fired = _FIRED.match(line)
        worker = _WORKER.search(line)
        if fired is None or worker is None:
            continue
        time, what, index = float(fired["time"]), fired["what"], int(worker["worker"])
        duration = _DURATION.search(what)
        if what.startswith("crash"):
            down[index] = (time, what)
        elif what.startswith("restart"):
            start, text = down.pop(index, (time, "crash"))
            events.append(TimelineEvent(index, "crash", start, time, text))
            events.append(TimelineEvent(index, "restart", time, None, what))
        elif what.startswith(("pause", "partition")) and duration is not None:
            end = min(time + float(duration["duration"]), max(heal, time), stop)
            events.append(TimelineEvent(index, what.split()[0], time, end, what))
        else:
            events.append(TimelineEvent(index, "store-error", time, None, what))
    for index, (start, text) in down.items():
        events.append(TimelineEvent(index, "crash", start, stop, text + " (not restarted)"))
    return sorted(events, key=lambda e: (e.worker, e.start))


def _extent(result: SimulationResult) -> float:
    times = [result.scenario.heal_at]
    if result.violation is not None:
        times.append(result.violation.time)
    for line in result.fired:
        fired = _FIRED.match(line)
        if fired is not None:
            times.append(float(fired["time"]))
    return max(times) * 1.08 or 1.0


def _svg(result: SimulationResult) -> dict[str, Any]:
    extent = _extent(result)
    workers = max([result.scenario.workers, *(e.worker + 1 for e in timeline_events(result))])

    def x(time: float) -> float:
        return round(LEFT + (WIDTH - LEFT - 30) * time / extent, 1)

    shapes = []
    for event in timeline_events(result):
        y = 20 + event.worker * LANE_HEIGHT
        if event.end is not None:
            shapes.append(
                {
                    "kind": event.kind,
                    "x": x(event.start),
                    "y": y + 6,
                    "width": max(2.0, x(event.end) - x(event.start)),
                    "height": LANE_HEIGHT - 14,
                    "title": f"t={event.start:.4f}s to {event.end:.4f}s: {event.text}",
                }
            )
        else:
            shapes.append(
                {
                    "kind": event.kind,
                    "x": x(event.start) - 2,
                    "y": y + 3,
                    "width": 4.0,
                    "height": LANE_HEIGHT - 8,
                    "title": f"t={event.start:.4f}s: {event.text}",
                }
            )
    ticks = [round(extent * i / 8, 3) for i in range(9)]
    violation = result.violation
    return {
        "width": WIDTH,
        "height": 40 + workers * LANE_HEIGHT,
        "lanes": [{"label": f"worker {i}", "y": 20 + i * LANE_HEIGHT} for i in range(workers)],
        "shapes": shapes,
        "ticks": [{"x": x(t), "label": f"{t:g}s"} for t in ticks],
        "axis_y": 24 + workers * LANE_HEIGHT,
        "heal_x": x(result.scenario.heal_at),
        "violation_x": x(violation.time) if violation is not None else None,
        "left": LEFT,
    }


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>simulator: seed {{ result.seed }} {{ "ok" if result.ok else "FAILED" }}</title>
<style>
body { margin: 0; padding: 1.2em 1.6em 3em; font: 14px/1.45 system-ui, sans-serif;
       color: #1d1f23; background: #f7f7f8; }
h1 { font-size: 1.4em; margin: 0 0 .4em; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
.verdict { display: inline-block; padding: .1em .7em; border-radius: 1em; color: #fff; }
.ok { background: #2e9d55; } .bad { background: #d23c3c; }
pre { margin: 0; padding: .6em .8em; background: #fff; border: 1px solid #d9dbe0;
      overflow: auto; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
pre.violation { border-color: #d23c3c; background: #fff6f6; white-space: pre-wrap; }
code.command { display: block; padding: .5em .8em; background: #1d1f23; color: #eee; }
ul { margin: .2em 0; }
svg { background: #fff; border: 1px solid #d9dbe0; }
.lane { stroke: #e3e5e9; } .lane-label { font-size: 12px; fill: #444; }
.tick { stroke: #eef0f3; } .tick-label { font-size: 11px; fill: #6b7079; text-anchor: middle; }
.crash { fill: #d23c3c; opacity: .75; } .restart { fill: #2e9d55; }
.pause { fill: #e0a100; opacity: .8; } .partition { fill: #7b4fd6; opacity: .7; }
.store-error { fill: #444; }
.heal { stroke: #2e9d55; stroke-dasharray: 5 4; stroke-width: 1.5; }
.violation-line { stroke: #d23c3c; stroke-width: 2; }
.marker-label { font-size: 11px; }
.legend span { display: inline-block; width: .9em; height: .9em; vertical-align: -1px; margin: 0 .3em 0 1em; }
</style>
</head>
<body>
<h1>Simulation of {{ app_file }}, seed {{ result.seed }}
<span id="verdict" class="verdict {{ "ok" if result.ok else "bad" }}">{{ "ok" if result.ok else "failed" }}</span></h1>
<p>{{ "{:,}".format(result.steps) }} steps, {{ "%.3f" | format(result.virtual_time) }} s of virtual time</p>
{% if command %}<h2>Reproduce</h2><code id="command" class="command">{{ command }}</code>{% endif %}
{% if saved %}<p>store saved: <code>{{ saved }}</code> (open it with <code>perper ui --store sqlite:///{{ saved }}</code>)</p>{% endif %}
{% if result.violation %}
<h2>First violation</h2>
<pre id="violation" class="violation">{{ result.violation.describe() }}</pre>
{% endif %}
<h2>Faults on a timeline of virtual time</h2>
<p class="legend"><span class="crash" style="background:#d23c3c"></span>crashed (down until restart)
<span style="background:#2e9d55"></span>restart <span style="background:#e0a100"></span>paused
<span style="background:#7b4fd6"></span>partitioned <span style="background:#444"></span>store error
· dashed: faults stop · red line: violation seen</p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{{ svg.width }}" height="{{ svg.height }}" viewBox="0 0 {{ svg.width }} {{ svg.height }}">
{% for t in svg.ticks %}<line class="tick" x1="{{ t.x }}" x2="{{ t.x }}" y1="14" y2="{{ svg.axis_y }}"/>
<text class="tick-label" x="{{ t.x }}" y="{{ svg.axis_y + 12 }}">{{ t.label }}</text>{% endfor %}
{% for lane in svg.lanes %}<line class="lane" x1="{{ svg.left }}" x2="{{ svg.width - 10 }}" y1="{{ lane.y + 17 }}" y2="{{ lane.y + 17 }}"/>
<text class="lane-label" x="8" y="{{ lane.y + 21 }}">{{ lane.label }}</text>{% endfor %}
{% for s in svg.shapes %}<rect class="event {{ s.kind }}" data-kind="{{ s.kind }}" x="{{ s.x }}" y="{{ s.y }}" width="{{ s.width }}" height="{{ s.height }}" rx="2"><title>{{ s.title }}</title></rect>{% endfor %}
<line class="heal" x1="{{ svg.heal_x }}" x2="{{ svg.heal_x }}" y1="10" y2="{{ svg.axis_y }}"><title>faults stop at {{ result.scenario.heal_at }}s</title></line>
{% if svg.violation_x is not none %}<line id="violation-line" class="violation-line" x1="{{ svg.violation_x }}" x2="{{ svg.violation_x }}" y1="10" y2="{{ svg.axis_y }}"><title>violation at t={{ result.violation.time }}s</title></line>{% endif %}
</svg>
<h2>Derived parameters</h2>
<ul>{% for line in result.scenario.describe() %}<li>{{ line }}</li>{% endfor %}</ul>
<h2>Fault schedule</h2>
<ul id="schedule">{% for fault in result.scenario.schedule %}<li>{{ fault.describe() }}</li>{% else %}<li>(none)</li>{% endfor %}</ul>
<h2>Faults that happened</h2>
<ul id="fired">{% for line in result.fired %}<li>{{ line }}</li>{% else %}<li>(none)</li>{% endfor %}</ul>
{% for note in result.notes %}<p>note: {{ note }}</p>{% endfor %}
</body>
</html>
"""


def render_failure_html(
    result: SimulationResult,
    *,
    app_file: str,
    command: str = "",
    saved: str | Path | None = None,
) -> str:
    """``result`` (usually a failed seed) as one HTML page.

    Raises:
        ConfigError: Jinja2 is not installed.
    """
    try:
        import jinja2
    except ImportError:
        raise ConfigError("writing an HTML report needs Jinja2: pip install 'perper[ui]'") from None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        result=result,
        app_file=app_file,
        command=command,
        saved=str(saved) if saved else "",
        svg=_svg(result),
    )


def write_failure_html(
    result: SimulationResult,
    path: str | Path,
    *,
    app_file: str,
    command: str = "",
    saved: str | Path | None = None,
) -> Path:
    """Write :func:`render_failure_html` to ``path``; return the path.

    Raises:
        ConfigError: Jinja2 is missing, or ``path`` cannot be written.
    """
    target = Path(path)
    text = render_failure_html(result, app_file=app_file, command=command, saved=saved)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write the HTML report to {str(path)!r}: {error}") from None
    return target
