"""docs/benchmarks.md's A/B section, generated from benchmarks/results/ab.json.

ab.json is what ``python -m benchmarks.ab A_DIR B_DIR`` wrote: per row a
figure per round (``json_requests_per_s``, ``cpu_us_per_event``), and per
"row / scenario" of ``stops`` a [p50, p99, never closed] per round. The bars
are issue 19's (benchmarks/summary.py holds them); nothing here is restated
from a run.
"""

from typing import Any

from benchmarks.summary import BARS
from benchmarks.tables import fmt

__all__ = ["ab_section"]


def _per_round(
    title: str, rows: dict[str, list[float]], base: str, unit: str, digits: int
) -> list[str]:
    rounds = max(len(v) for v in rows.values())
    lines = [
        f"| {title} | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + f" | ÷ {base} |",
        "|---" * (rounds + 2) + "|",
    ]
    floor = rows.get(base, [])
    for name, values in rows.items():
        cells = [f"{fmt(v, digits)}{unit}" for v in values]
        ratios = [fmt(v / b) for v, b in zip(values, floor, strict=False) if b]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(ratios) or '-'} |")
    return [*lines, ""]


def _stops_by_run(stops: dict[str, list[list[Any]]]) -> dict[tuple[str, int], dict[str, Any]]:
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for key, per_round in stops.items():
        row, _, scenario = key.partition(" / ")
        for i, figures in enumerate(per_round):
            runs.setdefault((row, i), {})[scenario] = figures
    return runs


def _p50_p99(figures: list[Any] | None) -> str:
    return "-" if figures is None else f"{fmt(figures[0])} / {fmt(figures[1])}"


def _stops_table(stops: dict[str, list[list[Any]]]) -> list[str]:
    runs = _stops_by_run(stops)
    if not runs:
        return []
    order = sorted(runs)
    scenarios = list(dict.fromkeys(s for run in runs.values() for s in run))
    singles = [s for s in scenarios if s.endswith((" FIN", " RST"))]
    others = [s for s in scenarios if s not in singles]
    lines = [
        "| | " + " | ".join(f"{row} round {i + 1}" for row, i in order) + " |",
        "|---" * (len(order) + 1) + "|",
    ]

    def span(run: dict[str, Any]) -> str:
        p99s = [run[s][1] for s in singles if s in run and run[s][1] is not None]
        return f"{fmt(min(p99s))}\N{EN DASH}{fmt(max(p99s))}" if p99s else "-"

    lines.append(
        "| phases by FIN and RST, p99 | " + " | ".join(span(runs[k]) for k in order) + " |"
    )
    for s in others:
        cells = [_p50_p99(runs[k].get(s)) for k in order]
        lines.append(f"| {s}, p50 / p99 | " + " | ".join(cells) + " |")
    left = [str(sum(f[2] or 0 for f in runs[k].values())) for k in order]
    lines.append("| never closed | " + " | ".join(left) + " |")
    return [*lines, ""]


def _rounds_verdict(values: list[float], ok: Any) -> str:
    met = sum(1 for v in values if ok(v))
    if met == len(values):
        return "met"
    return "**not met**" if met == 0 else f"met in {met} of {len(values)} rounds"


def _bar_row(label: str, rows: dict[str, list[float]], base: str, ok: Any) -> list[str]:
    floor = rows.get(base)
    if not floor:
        return []
    cells = []
    for name in ("trioproxy A", "trioproxy B"):
        if values := [v / b for v, b in zip(rows.get(name, []), floor, strict=False) if b]:
            ratios = ", ".join(fmt(v) for v in values)
            cells.append(f"{name}: {ratios} ({_rounds_verdict(values, ok)})")
    return [f"| {label} | " + "; ".join(cells) + " |"] if cells else []


def _bars(data: dict[str, Any]) -> list[str]:
    json_bar, cpu_bar = BARS["json_of_bare_hypercorn"], BARS["cpu_of_bare_trio_relay"]
    rows = _bar_row(
        f"JSON requests/s ≥ {json_bar:g} of bare hypercorn",
        data.get("json_requests_per_s", {}),
        "bare hypercorn",
        lambda v: v >= json_bar,
    )
    rows += _bar_row(
        f"CPU per relayed event ≤ {cpu_bar:g}\N{MULTIPLICATION SIGN} the bare trio relay",
        data.get("cpu_us_per_event", {}),
        "bare trio relay",
        lambda v: v <= cpu_bar,
    )
    if stops := data.get("stops"):
        left = sum(f[2] or 0 for per_round in stops.values() for f in per_round)
        verdict = "met" if not left else "**not met**"
        rows.append(f"| no upstream left running, any round | {left} never closed ({verdict}) |")
    if not rows:
        return []
    return [
        "Against issue 19's bars, round by round:",
        "",
        "| bar | measured |",
        "|---|---|",
        *rows,
        "",
    ]


def ab_section(data: dict[str, Any]) -> list[str]:
    if not data:
        return []
    lines = [
        "## A/B: two checkouts, interleaved",
        "",
        f"`python -m benchmarks.ab A B --rounds {data['rounds']} --seconds {data['seconds']}` "
        f"(`benchmarks/results/ab.json`): A is `{data['a']}`, B is `{data['b']}`, each run "
        "from its own checkout. Each round measures every row once, every other round in "
        'the reverse order. "server A" and "server B" are bare hypercorn\'s canned app on '
        "that checkout's server instead of stock hypercorn.",
        "",
    ]
    if rows := data.get("json_requests_per_s"):
        lines += ["JSON requests/s:", ""]
        lines += _per_round("row", rows, "bare hypercorn", "", 0)
    if rows := data.get("cpu_us_per_event"):
        lines += ["CPU per relayed event at paced streams:", ""]
        lines += _per_round("row", rows, "bare trio relay", " µs", 1)
    if stops := data.get("stops"):
        lines += ["Stops, ms (client stop to upstream close):", ""]
        lines += _stops_table(stops)
    return lines + _bars(data)
