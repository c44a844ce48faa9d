"""The tables of docs/benchmarks.md, as Markdown lines, from the results' JSON.

Text only (no charts, no files written): the doc's test regenerates it from
the committed results. Each section is empty when its result file is missing.
"""

from typing import Any

__all__ = [
    "cancellation_section",
    "fmt",
    "graded_p99",
    "overhead_section",
    "scale_section",
    "soak_section",
]


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def graded_p99(scenario: dict[str, Any]) -> float | None:
    """The p99 a scenario's speed was graded on: its second look's when it had one.
    Results written before the conformance verdict had a second look hold only ``p99_ms``."""
    value: float | None = scenario.get("graded_p99_ms", scenario["p99_ms"])
    return value


def _looked_again(scenario: dict[str, Any]) -> str:
    return " (2nd look)" if scenario.get("second_look") else ""


def cancellation_section(data: dict[str, Any]) -> list[str]:
    peers = data.get("peers", {})
    if not peers:
        return []
    bounds = data["config"]
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
            cell = "skipped" if s["skipped"] else fmt(graded_p99(s)) + _looked_again(s)
            if s["never_closed"]:
                cell += f" ({s['never_closed']} never closed)"
            if s["failures"]:
                cell += f" ({len(s['failures'])} failed)"
            row.append(cell + (" ✓" if s["passed"] and not s["skipped"] else ""))
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"✓ = within the bound ({bounds['bound_ms']:g} ms per phase, "
        f"{bounds['storm_bound_ms']:g} ms for storms) with every upstream closed.",
        "",
    ]
    if any(s.get("second_look") for peer in peers.values() for s in peer["scenarios"]):
        lines += [
            "(2nd look): the first look's p99 missed the bound, and the scenario was run "
            "again; the figure is the second look's, as its grade is "
            "([conformance.md](conformance.md)).",
            "",
        ]
    return [*lines, "![cancellation](charts/cancellation.png)", ""]


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
