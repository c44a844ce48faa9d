"""What a conformance run found: per scenario, the stop-to-close samples and the verdict.

The verdict keeps correctness apart from speed. **Correct**: every stopped
request's upstream closed, each within a generous bound (``close_within``:
a second a phase, two in a storm), every request could be run, and unstopped
answers arrived whole. **Speed**: the p99 against a tight bound, graded
``fast`` or ``slow``; a first look over it gets a second look (the scenario
run again) and is graded on that. Correctness decides the run; speed does too
under ``strict``. A never-closed or late upstream in either look is a
correctness failure, which no second look can forgive.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from trioproxy.conformance.scenarios import StopResult
from trioproxy.conformance.table import render_table

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Report",
    "RunConfig",
    "ScenarioResult",
    "Speed",
    "write_json",
]

FORMAT = "trioproxy-conformance"
FORMAT_VERSION = 2
"""Raised when a field changes meaning or goes away; new fields may come without it
(docs/conformance.md describes the format). 2: ``passed`` is the verdict of the
run's mode, speed included only when ``strict``."""

type Speed = Literal["fast", "slow"]


@dataclass(frozen=True, slots=True)
class RunConfig:
    repeats: int = 20
    storms: tuple[int, ...] = (200,)
    bound_ms: float = 5.0
    """Speed: the p99 a phase should stay within."""
    storm_bound_ms: float = 20.0
    wait_s: float = 3.0
    """How long a stopped request's upstream may run before it counts as never closed."""
    integrity_streams: int = 20
    strict: bool = False
    """The speed bounds decide the run too, not only correctness."""
    close_within_s: float = 1.0
    """Correctness: every stopped upstream of a phase closes within this."""
    storm_close_within_s: float = 2.0
    """Correctness in a storm, where a proxy's closes queue behind each other."""


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
    close_within_ms: float | None = None
    second_look: "ScenarioResult | None" = None
    """The scenario run again, when the first look's p99 missed the speed bound."""

    def percentile(self, q: float) -> float | None:
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def closed_late(self) -> int:
        """Stops whose upstream closed, but after the correctness bound."""
        bound = self.close_within_ms
        return 0 if bound is None else sum(ms > bound for ms in self.samples_ms)

    def _look_correct(self) -> bool:
        return not self.failures and self.never_closed == 0 and self.closed_late == 0

    @property
    def correct(self) -> bool:
        if self.skipped:
            return True
        again = self.second_look
        return self._look_correct() and (again is None or again._look_correct())

    @property
    def graded_p99_ms(self) -> float | None:
        """The p99 the speed grade is decided on: the second look's when there was one."""
        return (self.second_look or self).percentile(0.99)

    @property
    def speed(self) -> Speed | None:
        """None when nothing was timed against a bound (skipped, integrity, never opened),
        or the scenario is not correct: a stop never passed on has no time to grade."""
        p99 = self.graded_p99_ms
        if self.skipped or self.bound_ms is None or p99 is None or not self.correct:
            return None
        return "fast" if p99 <= self.bound_ms else "slow"

    @property
    def wants_second_look(self) -> bool:
        """Correct but over the speed bound on a first look: maybe the machine, maybe not."""
        p99 = self.percentile(0.99)
        over = self.bound_ms is not None and p99 is not None and p99 > self.bound_ms
        return over and self.second_look is None and self.correct

    def passes(self, strict: bool) -> bool:
        return self.correct and not (strict and self.speed == "slow")

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

    def _figures(self) -> dict[str, object]:
        """The raw figures of one look."""
        return asdict(self) | {
            "p50_ms": self.percentile(0.5),
            "p99_ms": self.percentile(0.99),
            "max_ms": max(self.samples_ms, default=None),
            "closed_late": self.closed_late,
            "second_look": None,
        }

    def as_json(self, strict: bool = False) -> dict[str, object]:
        again = self.second_look
        return self._figures() | {
            "second_look": None if again is None else again._figures(),
            "correct": self.correct,
            "speed": self.speed,
            "graded_p99_ms": self.graded_p99_ms,
            "passed": self.passes(strict),
        }


@dataclass
class Report:
    proxy: str
    results: list[ScenarioResult]
    config: RunConfig = field(default_factory=RunConfig)

    @property
    def correct(self) -> bool:
        return all(r.correct for r in self.results)

    @property
    def slow(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.speed == "slow"]

    @property
    def passed(self) -> bool:
        return all(r.passes(self.config.strict) for r in self.results)

    def table(self) -> str:
        return render_table(self)

    def as_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "proxy": self.proxy,
            "passed": self.passed,
            "correct": self.correct,
            "fast": not self.slow,
            "config": asdict(self.config),
            "scenarios": [r.as_json(self.config.strict) for r in self.results],
        }


def write_json(report: Report, path: str) -> None:
    with open(path, "w") as out:
        json.dump(report.as_json(), out, indent=2)
