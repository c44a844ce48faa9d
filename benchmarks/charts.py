"""The PNG charts of docs/benchmarks.md, drawn from the same results as its tables.

Apart from the text (benchmarks/tables.py) so the text can be generated, and
checked against the committed doc, where matplotlib is not installed: only
``python -m benchmarks.report`` imports this module, when it writes.
"""

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["draw_charts"]


def _bar_chart(
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


def _cancellation(charts: pathlib.Path, peers: dict[str, Any]) -> None:
    names = [s["name"] for s in next(iter(peers.values()))["scenarios"]]
    labels = [n for n in names if not n.startswith("integrity")]
    series = {}
    for peer_name, peer in peers.items():
        by_name = {s["name"]: s for s in peer["scenarios"]}
        series[peer_name] = [
            by_name[n]["p99_ms"]
            if by_name[n]["p99_ms"] is not None and not by_name[n]["never_closed"]
            else 0.0
            for n in labels
        ]
    _bar_chart(
        charts / "cancellation.png",
        "p99 client stop -> upstream close (0 = never closed)",
        [label.replace(" ", "\n", 1) for label in labels],
        series,
        "ms (log)",
        log=True,
    )


def _overhead(charts: pathlib.Path, data: dict[str, Any]) -> None:
    peers = data["peers"]
    _bar_chart(
        charts / "overhead.png",
        f"requests/s at {data['connections']} connections",
        list(peers),
        {
            "JSON": [p["json"]["requests_per_s"] for p in peers.values()],
            "SSE, 200 events": [p["sse"]["requests_per_s"] for p in peers.values()],
        },
        "requests/s (log)",
        log=True,
    )


def _scale(charts: pathlib.Path, peers: dict[str, Any]) -> None:
    # NaN (no process of its own to measure) is left out.
    measured = {
        n: p for n, p in peers.items() if p["cpu_s_per_1000_events"] == p["cpu_s_per_1000_events"]
    }
    _bar_chart(
        charts / "scale.png",
        "CPU per 1000 relayed events",
        list(measured),
        {"CPU s / 1000 events": [p["cpu_s_per_1000_events"] for p in measured.values()]},
        "CPU seconds",
    )


def draw_charts(charts: pathlib.Path, results: dict[str, dict[str, Any]]) -> None:
    """One chart per result file that has peers; the doc links them by the same test."""
    charts.mkdir(parents=True, exist_ok=True)
    if peers := results["cancellation"].get("peers"):
        _cancellation(charts, peers)
    if results["overhead"].get("peers"):
        _overhead(charts, results["overhead"])
    scale = results["scale"]
    if scale.get("peers") and "tokens" in scale:
        _scale(charts, scale["peers"])
