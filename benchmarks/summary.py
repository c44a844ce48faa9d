"""The prose of docs/benchmarks.md's "What these results show", generated from the results' JSON.

Every figure here is read from benchmarks/results/*.json when the doc is
written, so the words cannot drift from the tables beside them; a missing
result file, or a peer missing from one, leaves its paragraph or row out.
The stop bounds are the run's own (its ``config`` and each scenario's
``bound_ms`` and ``passed``, decided by trioproxy.conformance under
``strict``, against the p99 of a second look where the first missed); the only
figures held here are issue 19's bars, which no run records.
"""

from typing import Any

from benchmarks.tables import fmt, graded_p99

__all__ = ["BARS", "summary_section"]

BARS = {"json_of_bare_hypercorn": 0.9, "cpu_of_bare_trio_relay": 1.5}
"""Issue 19's bars: trioproxy's JSON requests/s at least this share of bare
hypercorn-trio's; its CPU per relayed event at most this multiple of the bare
trio relay's."""

_FAMILIES = ("FIN", "RST")


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _phase(name: str) -> str:
    """A scenario's phase: "waiting_headers FIN" -> "waiting_headers", storms by size."""
    if name.startswith("storm "):
        return f"storm of {name.split()[1]}"
    head, _, tail = name.rpartition(" ")
    return head if tail in _FAMILIES else name


def _is_phase(s: dict[str, Any]) -> bool:
    return s["name"].rpartition(" ")[2] in _FAMILIES and not s["name"].startswith("storm ")


def _is_h2(s: dict[str, Any]) -> bool:
    return bool(s["name"].startswith("streaming h2-reset"))


def _storms(peer: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in peer["scenarios"] if s["name"].startswith("storm ")]


def _span(scenarios: list[dict[str, Any]]) -> str:
    p99s = [p for s in scenarios if (p := graded_p99(s)) is not None and not s["skipped"]]
    if not p99s:
        return "-"
    low, high = min(p99s), max(p99s)
    return fmt(low) if low == high else f"{fmt(low)}\N{EN DASH}{fmt(high)}"


def _closing(peers: dict[str, Any]) -> list[str]:
    closed = [n for n, p in peers.items() if not any(s["never_closed"] for s in p["scenarios"])]
    lines = [
        "Every stopped upstream closed, in every scenario run, for: "
        + (", ".join(closed) or "no peer")
        + ".",
    ]
    left = []
    for name, peer in peers.items():
        phases = [_phase(s["name"]) for s in peer["scenarios"] if s["never_closed"]]
        storms = [f"{_phase(s['name'])}: {s['never_closed']}" for s in _storms(peer)]
        where = [p for p in dict.fromkeys(phases) if not p.startswith("storm ")]
        counts = [c for c in storms if not c.endswith(": 0")]
        if where or counts:
            left.append(f"- {name}: " + "; ".join(filter(None, [", ".join(where), *counts])))
    if left:
        lines += ["", "Upstreams never closed (phases; storms with the count never closed):", ""]
        lines += left
    h2c = [
        n
        for n, p in peers.items()
        if any(s["name"] == "streaming h2-reset" and not s["skipped"] for s in p["scenarios"])
    ]
    lines += ["", "HTTP/2 stream reset over h2c run for: " + (", ".join(h2c) or "no peer") + "."]
    return lines


def _h2_resets(scenarios: list[dict[str, Any]]) -> str:
    run = [s for s in scenarios if _is_h2(s) and not s["skipped"] and graded_p99(s) is not None]
    over = ["TLS" if s["name"].endswith(" TLS") else "h2c" for s in run]
    return ", ".join(f"{fmt(graded_p99(s))} ms ({o})" for s, o in zip(run, over, strict=True))


def _stop_figures(peers: dict[str, Any], repeats: int) -> list[str]:
    lines = []
    for name in ("trioproxy", "nginx"):
        if not (peer := peers.get(name)):
            continue
        scenarios = peer["scenarios"]
        storms = ", ".join(f"{fmt(graded_p99(s))} ms ({_phase(s['name'])})" for s in _storms(peer))
        role = " (the floor)" if name == "nginx" else ""
        lines.append(
            f"- {name}{role}: {_span([s for s in scenarios if _is_phase(s)])} ms over the "
            f"phases by FIN and RST; by an HTTP/2 stream reset {_h2_resets(scenarios) or '-'}; "
            f"storms {storms or '-'}."
        )
    if not lines:
        return []
    return [f"p99 of {repeats} stops a cell, client stop to upstream close:", "", *lines, ""]


def _goals(peer: dict[str, Any], config: dict[str, Any]) -> list[str]:
    singles = [s for s in peer["scenarios"] if _is_phase(s) or _is_h2(s)]
    failed = [s["name"] for s in singles if not s["passed"]]
    rows = [
        (
            f"p99 ≤ {config['bound_ms']:g} ms in every phase (FIN, RST, HTTP/2 reset)",
            f"{_span(singles)} ms" + (f"; over the bound: {', '.join(failed)}" if failed else ""),
            not failed,
        )
    ]
    for s in _storms(peer):
        rows.append(
            (
                f"p99 ≤ {s['bound_ms']:g} ms in the {_phase(s['name'])}",
                f"{fmt(graded_p99(s))} ms",
                s["passed"],
            )
        )
    left = sum(s["never_closed"] for s in peer["scenarios"])
    rows.append(("no upstream left running", f"{left} never closed", left == 0))
    lines = ["Goals, evaluated from trioproxy's results in the stop table:", ""]
    lines += ["| goal | measured | |", "|---|---|---|"]
    lines += [f"| {goal} | {measured} | {_verdict(met)} |" for goal, measured, met in rows]
    return [*lines, ""]


def _ratio(peers: dict[str, Any], a: str, b: str, value: Any) -> float | None:
    if a not in peers or b not in peers:
        return None
    x, y = value(peers[a]), value(peers[b])
    return x / y if x == x and y == y and y else None


def _ratios(overhead: dict[str, Any], scale: dict[str, Any]) -> list[str]:
    def json_rate(p: dict[str, Any]) -> float:
        return float(p["json"]["requests_per_s"])

    def cpu(p: dict[str, Any]) -> float:
        return float(p["cpu_s_per_1000_events"])

    o, s = overhead.get("peers", {}), scale.get("peers", {})
    wanted: list[tuple[str, float | None, str]] = [
        (
            "JSON requests/s, trioproxy ÷ bare hypercorn",
            _ratio(o, "trioproxy", "bare hypercorn", json_rate),
            "json_of_bare_hypercorn",
        ),
        (
            "JSON requests/s, trioproxy x2 ÷ trioproxy",
            _ratio(o, "trioproxy x2", "trioproxy", json_rate),
            "",
        ),
        (
            "JSON requests/s, trioproxy ÷ starlette fast",
            _ratio(o, "trioproxy", "starlette fast", json_rate),
            "",
        ),
        ("CPU per relayed event, trioproxy ÷ nginx", _ratio(s, "trioproxy", "nginx", cpu), ""),
        (
            "CPU per relayed event, trioproxy ÷ bare trio relay",
            _ratio(s, "trioproxy", "bare trio relay", cpu),
            "cpu_of_bare_trio_relay",
        ),
    ]
    rows = []
    for label, value, bar in wanted:
        if value is None:
            continue
        if not bar:
            rows.append(f"| {label} | {fmt(value)} | | |")
            continue
        limit = BARS[bar]
        met = value >= limit if bar.startswith("json") else value <= limit
        sign = "≥" if bar.startswith("json") else "≤"
        rows.append(f"| {label} | {fmt(value)} | {sign} {limit:g} | {_verdict(met)} |")
    if not rows:
        return []
    head = ["Ratios within each run, from the overhead and scale tables below:", ""]
    return [*head, "| ratio | measured | issue 19's bar | |", "|---|---|---|---|", *rows, ""]


def summary_section(results: dict[str, dict[str, Any]]) -> list[str]:
    """The "What these results show" section: what the tables below show, in words and ratios."""
    cancellation = results["cancellation"]
    peers = cancellation.get("peers", {})
    lines: list[str] = []
    if peers:
        config = cancellation["config"]
        lines += [*_closing(peers), ""]
        lines += _stop_figures(peers, config["repeats"])
        if "trioproxy" in peers:
            lines += _goals(peers["trioproxy"], config)
    lines += _ratios(results["overhead"], results["scale"])
    if not lines:
        return []
    return ["## What these results show", "", *lines]
