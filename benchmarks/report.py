"""Write docs/benchmarks.md, its PNG charts and docs/conformance.md's grades from the results.

``python -m benchmarks.report`` reads benchmarks/results/*.json. The doc's
text is :func:`render` (no matplotlib: tests/test_benchmarks_doc.py checks
the committed doc against it); the charts are drawn only when writing. The
hand-written docs/benchmarks-notes.md, which holds no run's figures, is
appended verbatim; the earlier runs' prose lives in docs/benchmarks-history.md.
"""

import json
import pathlib
from typing import Any

from benchmarks.ab_doc import ab_section
from benchmarks.peers import PEERS
from benchmarks.summary import summary_section
from benchmarks.tables import (
    cancellation_section,
    graded_p99,
    overhead_section,
    scale_section,
    soak_section,
)

__all__ = ["grades_section", "load_results", "main", "render"]

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
_NAMES = ("cancellation", "overhead", "scale", "soak", "ab")


def load_results(results: pathlib.Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Each result file by name; a missing one is empty, and its sections are left out."""
    out = {}
    for name in _NAMES:
        path = results / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.exists() else {}
    return out


def _head(results: dict[str, dict[str, Any]]) -> list[str]:
    machine = results["cancellation"].get("machine", {})
    versions = {
        name: p.get("version")
        for part in ("cancellation", "overhead", "scale")
        for name, p in results[part].get("peers", {}).items()
    }
    return [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.report` from `benchmarks/results/*.json`; "
        "`python -m benchmarks.run_all` reruns everything (after "
        "`bash benchmarks/install_peers.sh`). Every figure on this page, the prose's "
        "included, comes from those files, as the tables do; the earlier runs' notes are in "
        "[benchmarks-history.md](benchmarks-history.md), with their own figures.",
        "",
        f"Machine: {machine.get('cores', '?')} cores, Python {machine.get('python', '?')}, "
        f"{machine.get('platform', '?')}. Everything runs on this one machine "
        "on loopback, the load generator and upstream included: compare peers within one run "
        "(ratios), not absolute figures across machines.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]


def render(results: dict[str, dict[str, Any]], notes: str) -> str:
    """docs/benchmarks.md's whole text for these results and notes."""
    lines = _head(results) + summary_section(results)
    lines += cancellation_section(results["cancellation"])
    lines += overhead_section(results["overhead"]) + scale_section(results["scale"])
    lines += soak_section(results["soak"]) + ab_section(results["ab"])
    if notes:
        lines += [notes]
    return "\n".join(lines) + "\n"


_PHASES = (
    "upload",
    "upload_trickle",
    "waiting_headers",
    "waiting_first_byte",
    "streaming",
    "streaming_spare_idle",
    "non_streaming",
)


def _grade_cell(scenarios: list[dict[str, Any]]) -> str:
    """One cell for several scenarios (a phase's FIN and RST): the worst of them."""
    if not scenarios:
        return "-"
    if all(s["skipped"] for s in scenarios):
        return "n/a"
    if any(s["never_closed"] for s in scenarios):
        kinds = [s["name"].rsplit(" ", 1)[-1] for s in scenarios if s["never_closed"]]
        return "✗ never" + (f" ({', '.join(kinds)})" if len(scenarios) > 1 else "")
    if failed := sum(len(s["failures"]) for s in scenarios):
        return f"✗ {failed} not run (timed out or refused)"
    p99s = [p for s in scenarios if (p := graded_p99(s)) is not None]
    if not p99s:
        return "✓ not opened" if all(s["passed"] for s in scenarios) else "✗"
    mark = "✓" if all(s["passed"] for s in scenarios) else "✗"
    again = " (2nd look)" if any(s.get("second_look") for s in scenarios) else ""
    return f"{mark} {max(p99s):.1f}{again}"


def grades_section(data: dict[str, Any], fixes: dict[str, str]) -> list[str]:
    """docs/conformance.md's grade table: one row per peer and settings."""
    lines = [
        "| proxy, settings | version | upload | slow upload | waiting headers "
        "| waiting first byte | streaming | streaming, spare idle connection | non-streaming "
        "| h2c reset | h2 reset over TLS | storm 200 | storm 1000 | whole answers | grade "
        "| what fixes it |",
        "|---" * 16 + "|",
    ]
    for name, peer in data.get("peers", {}).items():
        by_name = {s["name"]: s for s in peer["scenarios"]}

        def cell(*names: str, by: dict[str, Any] = by_name) -> str:
            return _grade_cell([by[n] for n in names if n in by])

        def pick(prefix: str, by: dict[str, Any] = by_name) -> list[dict[str, Any]]:
            return [s for n, s in by.items() if n.startswith(prefix)]

        cells = [cell(f"{phase} FIN", f"{phase} RST") for phase in _PHASES]
        cells += [cell("streaming h2-reset"), cell("streaming h2-reset TLS")]
        cells += [_grade_cell(pick(f"storm {n} ")) for n in (200, 1000)]
        integrity = pick("integrity")
        cells += ["✓" if integrity and integrity[0]["passed"] else "✗"]
        grade = "**pass**" if peer["passed"] else "fail"
        row = [name, str(peer.get("version", "?")), *cells, grade, fixes.get(name, "")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_grades(data: dict[str, Any], fixes: dict[str, str]) -> None:
    """Replace the table between the markers in docs/conformance.md."""
    doc = DOCS / "conformance.md"
    text = doc.read_text()
    start, end = "<!-- grades -->", "<!-- /grades -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    table = "\n".join(grades_section(data, fixes))
    doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main() -> None:
    from benchmarks.charts import draw_charts  # matplotlib: only when writing

    results = load_results()
    notes = DOCS / "benchmarks-notes.md"
    text = render(results, notes.read_text() if notes.exists() else "")
    (DOCS / "benchmarks.md").write_text(text)
    draw_charts(DOCS / "charts", results)
    if results["cancellation"]:
        write_grades(results["cancellation"], {p.name: p.fix for p in PEERS if p.fix})


if __name__ == "__main__":
    main()
