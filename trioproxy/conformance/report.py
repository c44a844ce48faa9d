"""What a conformance run found: per scenario, the stop-to-close samples and the verdict."""

import json
from dataclasses import asdict, dataclass, field

from trioproxy.conformance.scenarios import StopResult

__all__ = ["FORMAT", "FORMAT_VERSION", "Report", "RunConfig", "ScenarioResult", "write_json"]

FORMAT = "trioproxy-conformance"
FORMAT_VERSION = 1
"""Raised when a field changes meaning or goes away; new fields may come without it
(docs/conformance.md describes the format)."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    repeats: int = 20
    storms: tuple[int, ...] = (200,)
    bound_ms: float = 5.0
    storm_bound_ms: float = 20.0
    wait_s: float = 3.0
    """How long a stopped request's upstream may run before it counts as never closed."""
    integrity_streams: int = 20


@dataclass
class ScenarioResult:
    name: str
    samples_ms: list[float] = field(default_factory=list)
    never_closed: int = 0
    never_opened: int = 0
    bound_ms: float | None = None
    failures: list[str] = field(default_factory=list)
    skipped: str = ""
    checked: int = 0
    """Whole answers compared byte for byte (integrity scenarios)."""

    def percentile(self, q: float) -> float | None:
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        p99 = self.percentile(0.99)
        within = self.bound_ms is None or p99 is None or p99 <= self.bound_ms
        return not self.failures and self.never_closed == 0 and within

    def add(self, result: StopResult) -> None:
        if result.upstream == "closed" and result.propagation_ms is not None:
            self.samples_ms.append(result.propagation_ms)
        elif result.upstream == "never opened":
            self.never_opened += 1
        else:
            self.never_closed += 1

    def add_closed(self, ms: float | None) -> None:
        if ms is None:
            self.never_closed += 1
        else:
            self.samples_ms.append(ms)

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {
            "p50_ms": self.percentile(0.5),
            "p99_ms": self.percentile(0.99),
            "max_ms": max(self.samples_ms, default=None),
            "passed": self.passed,
        }


@dataclass
class Report:
    proxy: str
    results: list[ScenarioResult]
    config: RunConfig = field(default_factory=RunConfig)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def table(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines = [
            f"{'scenario':<30} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'never closed':>13} {'bound':>7}  result"
        ]
        for r in self.results:
            bound = "-" if r.bound_ms is None else f"{r.bound_ms:g}"
            verdict = f"skipped: {r.skipped}" if r.skipped else ("PASS" if r.passed else "FAIL")
            lines.append(
                f"{r.name:<30} {len(r.samples_ms) or r.checked:>5} {ms(r.percentile(0.5)):>8} "
                f"{ms(r.percentile(0.99)):>8} {ms(max(r.samples_ms, default=None)):>8} "
                f"{r.never_closed:>13} {bound:>7}  {verdict}"
            )
            lines += [f"    {failure}" for failure in r.failures[:3]]
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "proxy": self.proxy,
            "passed": self.passed,
            "config": asdict(self.config),
            "scenarios": [r.as_json() for r in self.results],
        }


def write_json(report: Report, path: str) -> None:
    with open(path, "w") as out:
        json.dump(report.as_json(), out, indent=2)
