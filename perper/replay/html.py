"""Replay results as one self-contained HTML page (``perper replay ... --html FILE``).

The page needs nothing but itself (styles inline, no script, no network): it can be
attached to a CI run or mailed. For each divergence it shows the function, the seq,
the expected and actual values side by side with the structural differences
highlighted, the diff lines and the inputs consumed. Rendering needs Jinja2
(``pip install 'perper[ui]'``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from perper import codec
from perper.errors import ConfigError
from perper.replay.results import (
    EXTRA_STREAM,
    LONGER,
    MISSING_STREAM,
    SHORTER,
    Divergence,
    GraphReplayResults,
    ReplayResults,
)

# Which side of a pair a value is drawn on: what the other side lacks is marked
# removed on the expected side and added on the actual side.
_EXPECTED = "expected"
_ACTUAL = "actual"
_INDENT = "  "


def _scalar(value: Any) -> str:
    return html.escape(json.dumps(value, ensure_ascii=False))


def _whole(value: Any, depth: int, mark: str) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + _INDENT * depth)
    return f'<span class="{mark}">{html.escape(text)}</span>'


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def highlight(value: Any, other: Any, side: str, depth: int = 0) -> str:
    """``value`` (plain JSON types) as indented JSON in HTML, with what differs from
    ``other`` marked: ``changed`` where both have something else, ``removed`` (on the
    expected side) or ``added`` (on the actual side) where only this side has it."""
    lacking = "removed" if side == _EXPECTED else "added"
    pad, inner = _INDENT * depth, _INDENT * (depth + 1)
    if isinstance(value, dict) and isinstance(other, dict):
        if not value:
            return "{}"
        parts = []
        for key, item in value.items():
            name = _scalar(key) + ": "
            if key in other:
                parts.append(inner + name + highlight(item, other[key], side, depth + 1))
            else:
                parts.append(
                    f'{inner}<span class="{lacking}">{name}</span>'
                    + _whole(item, depth + 1, lacking)
                )
        return "{\n" + ",\n".join(parts) + "\n" + pad + "}"
    if isinstance(value, list) and isinstance(other, list):
        if not value:
            return "[]"
        parts = []
        for index, item in enumerate(value):
            if index < len(other):
                parts.append(inner + highlight(item, other[index], side, depth + 1))
            else:
                parts.append(inner + _whole(item, depth + 1, lacking))
        return "[\n" + ",\n".join(parts) + "\n" + pad + "]"
    if _same(value, other):
        return html.escape(json.dumps(value, indent=2, ensure_ascii=False)).replace(
            "\n", "\n" + pad
        )
    return _whole(value, depth, "changed")


def _pair(divergence: Divergence) -> tuple[str, str]:
    expected = codec.to_jsonable(divergence.expected)
    actual = codec.to_jsonable(divergence.actual)
    nothing = '<span class="nothing">(nothing)</span>'
    left = (
        nothing
        if divergence.kind in (LONGER, EXTRA_STREAM)
        else highlight(expected, actual, _EXPECTED)
    )
    right = (
        nothing
        if divergence.kind in (SHORTER, MISSING_STREAM)
        else highlight(actual, expected, _ACTUAL)
    )
    return left, right


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { margin: 0; padding: 1.2em 1.6em 3em; font: 14px/1.45 system-ui, sans-serif;
       color: #1d1f23; background: #f7f7f8; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.6em 0 .4em; }
.verdict { display: inline-block; padding: .1em .7em; border-radius: 1em; color: #fff; }
.ok { background: #2e9d55; } .bad { background: #d23c3c; } .unknown { background: #b7791f; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d9dbe0; }
th, td { text-align: left; padding: .3em .8em; border-bottom: 1px solid #d9dbe0; vertical-align: top; }
th { background: #eef0f3; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
section.divergence { background: #fff; border: 1px solid #e4b4b4; border-left: 5px solid #d23c3c;
                     padding: .6em 1em 1em; margin: 1em 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: .4em 0; }
dt { color: #6b7079; } dd { margin: 0; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.sides h3 { margin: .4em 0; font-size: 1em; }
pre { margin: 0; padding: .6em .8em; background: #fbfbfc; border: 1px solid #d9dbe0;
      overflow: auto; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
.changed { background: #fff1a8; outline: 1px solid #e0c200; font-weight: 700; }
.removed { background: #ffd7d5; text-decoration: line-through; text-decoration-color: #c33; }
.added { background: #b9f0c8; outline: 1px solid #3aa55d; font-weight: 700; }
.nothing { color: #6b7079; font-style: italic; }
ul.diff { font-family: ui-monospace, monospace; font-size: 12.5px; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>log <code>{{ log }}</code> · app <code>{{ app }}</code> ·
<span id="verdict" class="verdict {{ verdict_class }}">{{ verdict }}</span></p>
<h2>{{ rows_title }}</h2>
<table id="results">
<thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% for d in divergences %}
<section class="divergence" data-execution="{{ d.execution }}">
<h2>{{ d.where }}</h2>
<p class="message">{{ d.message }}</p>
<dl>
  <dt>function</dt><dd class="function">{{ d.function }}</dd>
  <dt>execution</dt><dd>{{ d.execution }}</dd>
  <dt>{{ d.label }}</dt><dd class="seq">{{ d.seq }}</dd>
  <dt>kind</dt><dd>{{ d.kind }}</dd>
  <dt>inputs consumed</dt><dd class="inputs">{% for s, p in d.inputs %}{{ s }} at {{ p }}{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}</dd>
</dl>
<div class="sides">
  <div><h3>expected (recorded)</h3><pre class="expected">{{ d.expected | safe }}</pre></div>
  <div><h3>actual (replayed)</h3><pre class="actual">{{ d.actual | safe }}</pre></div>
</div>
{% if d.diff %}<h3>differences</h3>
<ul class="diff">{% for line in d.diff %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if d.traceback %}<h3>traceback</h3><pre class="traceback">{{ d.traceback }}</pre>{% endif %}
</section>
{% endfor %}
{% for note in notes %}<p class="note">note: {{ note }}</p>{% endfor %}
</body>
</html>
"""


def _divergence(divergence: Divergence, where: str) -> dict[str, Any]:
    left, right = _pair(divergence)
    return {
        "where": where,
        "message": divergence.message,
        "function": divergence.function,
        "execution": divergence.execution,
        "label": {"start": "start", "effect": "effect"}.get(divergence.kind, "seq"),
        "seq": divergence.seq,
        "kind": divergence.kind,
        "inputs": sorted(divergence.input_positions.items()),
        "expected": left,
        "actual": right,
        "diff": list(divergence.diff),
        "traceback": divergence.traceback,
    }


def render_replay_html(results: ReplayResults | GraphReplayResults) -> str:
    """The results of ``perper replay`` (per execution or ``--graph``) as one HTML page.

    Raises:
        ConfigError: Jinja2 is not installed.
    """
    try:
        import jinja2
    except ImportError:
        raise ConfigError("writing an HTML report needs Jinja2: pip install 'perper[ui]'") from None
    code = results.exit_code
    values: dict[str, Any] = {
        "log": results.log,
        "app": results.app,
        "verdict": {0: "reproduced", 1: "diverged"}.get(code, "cannot replay"),
        "verdict_class": {0: "ok", 1: "bad"}.get(code, "unknown"),
        "notes": list(results.notes),
    }
    if isinstance(results, ReplayResults):
        values["title"] = f"Replay of {results.log}"
        values["rows_title"] = "Executions"
        values["headers"] = ["execution", "function", "outcome", "items compared", "recorded"]
        values["rows"] = [
            [r.execution, r.function, r.summary(), r.items_compared, r.recorded_items]
            for r in results
        ]
        values["divergences"] = [
            _divergence(r.divergence, f"{r.function} diverges at {r.divergence.seq}")
            for r in results
            if r.divergence is not None
        ]
    else:
        values["title"] = f"Whole-run replay of {results.log}"
        values["rows_title"] = "Streams"
        values["headers"] = ["run", "stream", "function", "outcome", "items compared"]
        values["rows"] = [
            [run.run, s.stream, s.function, s.outcome, s.items_compared]
            for run in results
            for s in run.streams
        ]
        values["divergences"] = [
            _divergence(s.divergence, f"{s.stream} diverges at {s.divergence.seq}")
            for run in results
            for s in run.streams
            if s.divergence is not None
        ]
        values["notes"] += [
            f"run {run.run}: {run.reason}" for run in results if run.reason is not None
        ]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(**values)


def write_replay_html(results: ReplayResults | GraphReplayResults, path: str | Path) -> Path:
    """Write :func:`render_replay_html` of ``results`` to ``path``; return the path.

    Raises:
        ConfigError: Jinja2 is missing, or ``path`` cannot be written.
    """
    target = Path(path)
    text = render_replay_html(results)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write the HTML report to {str(path)!r}: {error}") from None
    return target
