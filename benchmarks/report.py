"""Write docs/benchmarks.md and its PNG charts from benchmarks/results/*.json."""

import json
import pathlib
import platform
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.peers import PEERS

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
CHARTS = DOCS / "charts"


def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def bar_chart(
    path: pathlib.Path,
    title: str,
    labels: list[str],
    series: dict[str, list[float]],
    ylabel: str,
    log: bool = False,
) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.6))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    ax.set_xticks(
        [x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, fontsize=8
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cancellation_section(data: dict[str, Any]) -> list[str]:
    peers = data.get("peers", {})
    if not peers:
        return []
    names = [s["name"] for s in next(iter(peers.values()))["scenarios"]]
    lines = [
        "## Cancellation: client stop to upstream close",
        "",
        "p99 in ms (never closed / tried where any never closed); `-` = no sample.",
        "",
        "| scenario | " + " | ".join(peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for name in names:
        row = []
        for peer in peers.values():
            s = next(x for x in peer["scenarios"] if x["name"] == name)
            cell = "skipped" if s["skipped"] else fmt(s["p99_ms"])
            if s["never_closed"]:
                cell += f" ({s['never_closed']} never closed)"
            if s["failures"]:
                cell += f" ({len(s['failures'])} failed)"
            row.append(cell + (" ✓" if s["passed"] and not s["skipped"] else ""))
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [
        "",
        "✓ = within the bound (5 ms per phase, 50 ms for storms) with every upstream closed.",
        "",
    ]
    labels = [n for n in names if not n.startswith("integrity")]
    series = {}
    for peer_name, peer in peers.items():
        values = []
        for name in labels:
            s = next(x for x in peer["scenarios"] if x["name"] == name)
            values.append(s["p99_ms"] if s["p99_ms"] is not None and not s["never_closed"] else 0.0)
        series[peer_name] = values
    bar_chart(
        CHARTS / "cancellation.png",
        "p99 client stop -> upstream close (0 = never closed)",
        [label.replace(" ", "\n", 1) for label in labels],
        series,
        "ms (log)",
        log=True,
    )
    lines += ["![cancellation](charts/cancellation.png)", ""]
    return lines


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
    p99s = [s["p99_ms"] for s in scenarios if s["p99_ms"] is not None]
    if not p99s:
        return "✓ not opened" if all(s["passed"] for s in scenarios) else "✗"
    mark = "✓" if all(s["passed"] for s in scenarios) else "✗"
    return f"{mark} {max(p99s):.1f}"


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


def overhead_section(data: dict[str, Any]) -> list[str]:
    peers = data.get("peers", {})
    if not peers:
        return []
    base = peers.get("trioproxy", {})
    bare = peers.get("bare hypercorn", {})
    lines = [
        f"## Overhead: {data['connections']} connections, {data['seconds']} s per run, "
        "nginx upstream, wrk",
        "",
        "Ratios are within this one run: JSON requests/s of the row over bare hypercorn-trio "
        "(the ceiling of this stack), and trioproxy's over the row's.",
        "",
        "| proxy | JSON req/s | p50 ms | p99 ms | SSE (200 events) req/s | p50 ms | p99 ms "
        "| JSON ÷ bare hypercorn | trioproxy JSON ÷ this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, peer in peers.items():
        j, s = peer["json"], peer["sse"]
        ratio = base["json"]["requests_per_s"] / j["requests_per_s"] if base else None
        of_bare = j["requests_per_s"] / bare["json"]["requests_per_s"] if bare else None
        lines.append(
            f"| {name} {peer['version']} | {fmt(j['requests_per_s'], 0)} | "
            f"{fmt(j['p50_ms'])} | {fmt(j['p99_ms'])} | {fmt(s['requests_per_s'], 0)} | "
            f"{fmt(s['p50_ms'])} | {fmt(s['p99_ms'])} | {fmt(of_bare)} | {fmt(ratio)} |"
        )
    bar_chart(
        CHARTS / "overhead.png",
        "requests/s at 32 connections",
        list(peers),
        {
            "JSON": [p["json"]["requests_per_s"] for p in peers.values()],
            "SSE, 200 events": [p["sse"]["requests_per_s"] for p in peers.values()],
        },
        "requests/s (log)",
        log=True,
    )
    return [*lines, "", "![overhead](charts/overhead.png)", ""]


def scale_section(data: dict[str, Any]) -> list[str]:
    peers = data.get("peers", {})
    if not peers or "tokens" not in data:
        return []
    lines = [
        f"## Scale: {data['streams']} streams, a token every {data['interval_s'] * 1000:g} ms, "
        f"{data['tokens']} tokens a stream, {data['seconds']:g} s of wrk",
        "",
        f'The paced upstream runs in {data["upstream_procs"]} processes; "no proxy" is wrk '
        "straight against it, the most this harness shows. CPU per event includes the "
        f"proxy's request set-up, once per {data['tokens']} events. Late: how much after its "
        "paced length a stream's last token arrived (wrk's latency less that length).",
        "",
        "| proxy | events/s at the client (of paced) | CPU s per 1000 events | "
        "÷ nginx | memory KiB per stream | late p50 ms | late p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    nginx = peers.get("nginx", {}).get("cpu_s_per_1000_events")
    for name, p in peers.items():
        cpu = p["cpu_s_per_1000_events"]
        ratio = cpu / nginx if nginx and cpu == cpu else None
        lines.append(
            f"| {name} | {fmt(p['events_per_s'], 0)} of {fmt(p['expected_events_per_s'], 0)} | "
            f"{fmt(cpu, 3)} | {fmt(ratio)} | {fmt(p['memory_kib_per_stream'], 1)} | "
            f"{fmt(p['late_p50_ms'], 0)} | {fmt(p['late_p99_ms'], 0)} |"
        )
    measured = {
        n: p for n, p in peers.items() if p["cpu_s_per_1000_events"] == p["cpu_s_per_1000_events"]
    }
    bar_chart(
        CHARTS / "scale.png",
        "CPU per 1000 relayed events",
        list(measured),
        {"CPU s / 1000 events": [p["cpu_s_per_1000_events"] for p in measured.values()]},
        "CPU seconds",
    )
    return [*lines, "", "![scale](charts/scale.png)", ""]


def soak_section(data: dict[str, Any]) -> list[str]:
    if not data:
        return []
    outcomes = ", ".join(f"{k} {v}" for k, v in data["outcomes"].items())
    return [
        "## Soak",
        "",
        f"`python -m benchmarks.soak`: {data['requests']} requests, {data['concurrency']} at a "
        f"time, in {data['seconds']} s, against trioproxy as its own process. Most are stopped "
        "in a random phase by FIN or RST, some are HTTP/2 streams reset mid-stream, the rest "
        "whole answers whose content is checked.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| outcomes | {outcomes} |",
        f"| RSS start, end | {data['rss_kib']['start'] / 1024:.1f} MiB, "
        f"{data['rss_kib']['end'] / 1024:.1f} MiB |",
        f"| RSS slope after warm-up | {data['rss_kib_per_1000']} KiB per 1,000 requests |",
        f"| open fds start, end | {data['fds']['start']}, {data['fds']['end']} |",
        f"| fd slope after warm-up | {data['fds_per_1000']} per 1,000 requests |",
        f"| upstreams left running | {data['upstreams_left_running']} |",
        f"| requests the proxy lists in flight at the end | {data['in_flight_at_end']} |",
        "",
    ]


def main() -> None:
    CHARTS.mkdir(parents=True, exist_ok=True)
    cancellation, overhead, scale = load("cancellation"), load("overhead"), load("scale")
    machine = cancellation.get("machine", {})
    versions = {
        name: p.get("version")
        for part in (cancellation, overhead, scale)
        for name, p in part.get("peers", {}).items()
    }
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.report` from `benchmarks/results/*.json`; "
        "`python -m benchmarks.run_all` reruns everything (after "
        "`bash benchmarks/install_peers.sh`).",
        "",
        f"Machine: {machine.get('cores', '?')} cores, Python {machine.get('python', '?')}, "
        f"{machine.get('platform', platform.platform())}. Everything runs on this one machine "
        "on loopback, the load generator and upstream included: compare peers within one run "
        "(ratios), not absolute figures across machines.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    lines += cancellation_section(cancellation) + overhead_section(overhead)
    lines += scale_section(scale) + soak_section(load("soak"))
    notes = DOCS / "benchmarks-notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    (DOCS / "benchmarks.md").write_text("\n".join(lines) + "\n")
    if cancellation:
        write_grades(cancellation, {p.name: p.fix for p in PEERS if p.fix})


if __name__ == "__main__":
    main()
