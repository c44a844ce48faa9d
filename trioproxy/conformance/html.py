"""A conformance report as one self-contained page: no script, no network.

The grade of each scenario, and its stop-to-close times drawn on one
logarithmic axis (0.1 ms to 10 s), one dot per stopped request, with the
bound as a line; requests whose upstream never closed are drawn past the
axis's end, in red, since they are the failure that costs money.
"""

import html
import math

from trioproxy.conformance.report import Report, ScenarioResult
from trioproxy.conformance.table import speed_cell, verdict_lines

__all__ = ["render_html"]

_W, _H = 520, 26
_LO_MS, _HI_MS = 0.1, 10_000.0
_TICKS = (0.1, 1, 10, 100, 1000, 10_000)
_NEVER_X = _W - 12


def _x(ms: float) -> float:
    clamped = min(max(ms, _LO_MS), _HI_MS)
    span = math.log10(_HI_MS) - math.log10(_LO_MS)
    return 8 + (math.log10(clamped) - math.log10(_LO_MS)) / span * (_NEVER_X - 24)


def _strip(r: ScenarioResult) -> str:
    if r.skipped or (not r.samples_ms and not r.never_closed):
        return ""
    parts = [f'<svg width="{_W}" height="{_H}" role="img" aria-label="{html.escape(r.name)}">']
    parts.append(f'<line x1="8" x2="{_NEVER_X - 16}" y1="13" y2="13" class="axis"/>')
    if r.bound_ms is not None:
        bx = _x(r.bound_ms)
        parts.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="3" y2="23" class="bound"/>')
    for ms in r.samples_ms:
        parts.append(f'<circle cx="{_x(ms):.1f}" cy="13" r="3" class="dot"/>')
    if r.never_closed:
        parts.append(
            f'<circle cx="{_NEVER_X}" cy="13" r="5" class="never"/>'
            f'<text x="{_NEVER_X - 9}" y="9" class="n">{r.never_closed}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _axis() -> str:
    labels = "".join(
        f'<text x="{_x(t):.1f}" y="12" text-anchor="middle">{_fmt_tick(t)}</text>' for t in _TICKS
    )
    never = f'<text x="{_NEVER_X}" y="12" text-anchor="middle" class="never-label">never</text>'
    return f'<svg width="{_W}" height="16">{labels}{never}</svg>'


def _fmt_tick(ms: float) -> str:
    return f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(r: ScenarioResult, strict: bool) -> str:
    if r.skipped:
        grade, cls = f"skipped: {html.escape(r.skipped)}", "skip"
    else:
        grade, cls = ("PASS", "pass") if r.passes(strict) else ("FAIL", "fail")
    n = len(r.samples_ms) or r.checked
    bound = "-" if r.bound_ms is None else f"{r.bound_ms:g}"
    failures = "".join(f"<div class='why'>{html.escape(f)}</div>" for f in r.failures[:3])
    return (
        f"<tr class='{cls}'><td>{html.escape(r.name)}{failures}</td>"
        f"<td class='grade'>{grade}</td><td>{html.escape(speed_cell(r))}</td>"
        f"<td class='num'>{n}</td>"
        f"<td class='num'>{_ms(r.percentile(0.5))}</td>"
        f"<td class='num'>{_ms(r.percentile(0.99))}</td>"
        f"<td class='num'>{_ms(max(r.samples_ms, default=None))}</td>"
        f"<td class='num'>{r.never_closed}</td><td class='num'>{bound}</td>"
        f"<td>{_strip(r)}</td></tr>"
    )


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; color: #1d232a; margin: 2em; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
.verdict { font-size: 1.1em; font-weight: 700; padding: .2em .6em; border-radius: 4px; }
.verdict.pass { background: #e2f3e8; color: #1e6b3a; }
.verdict.fail { background: #fbe4e2; color: #9c261d; }
table { border-collapse: collapse; margin-top: 1em; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e3e6ea; }
th { color: #67707a; font-weight: 600; }
td.num { text-align: right; }
tr.pass .grade { color: #1e6b3a; font-weight: 700; }
tr.fail .grade { color: #9c261d; font-weight: 700; }
tr.skip .grade { color: #67707a; }
.why { color: #9c261d; font-size: .85em; }
svg text { font-size: 10px; fill: #67707a; }
.axis { stroke: #c9ced4; }
.bound { stroke: #d08a1e; stroke-width: 2; }
.dot { fill: #2f6fdb; fill-opacity: .55; }
.never { fill: #c2362b; }
.never-label { fill: #c2362b; }
.n { fill: #c2362b; font-weight: 700; }
p.note { color: #67707a; max-width: 60em; }
"""


def render_html(report: Report) -> str:
    verdict = "pass" if report.passed else "fail"
    failed = sum(not r.passes(report.config.strict) for r in report.results)
    rows = "".join(_row(r, report.config.strict) for r in report.results)
    why = "".join(f"<div>{html.escape(line)}</div>" for line in verdict_lines(report))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Cancellation conformance: {html.escape(report.proxy)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Cancellation conformance</h1>
<div>{html.escape(report.proxy)}</div>
<p><span class="verdict {verdict}">{verdict.upper()}</span>
{len(report.results) - failed} of {len(report.results)} scenarios pass</p>
{why}
<p class="note">Each dot is one stopped request of the first look: the time from the
client's stop to the upstream's connection closed, as the upstream saw it. The orange
line is the speed bound (a scenario over it is looked at again, and graded on that);
red dots past the axis are requests whose upstream never closed (the model kept
generating for nobody).</p>
<table>
<thead><tr><th>scenario</th><th>grade</th><th>speed</th><th class="num">n</th>
<th class="num">p50 ms</th>
<th class="num">p99 ms</th><th class="num">max ms</th><th class="num">never closed</th>
<th class="num">bound ms</th><th>{_axis()}</th></tr></thead>
<tbody>{rows}</tbody>
</table>
</body></html>
"""
