"""A conformance report as the plain-text table the command prints, and its verdict lines."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the report renders itself with this module
    from trioproxy.conformance.report import Report, ScenarioResult

__all__ = ["render_table", "speed_cell", "verdict_lines"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def speed_cell(r: "ScenarioResult") -> str:
    """``fast``, ``slow``, or ``-``; with the second look's p99 when there was one."""
    if r.speed is None:
        return "-"
    if r.second_look is None:
        return r.speed
    return f"{r.speed} on 2nd look ({_ms(r.graded_p99_ms)})"


def _count(r: "ScenarioResult") -> str:
    n = len(r.samples_ms) or r.checked
    return f"{n}+{len(r.second_look.samples_ms)}" if r.second_look else str(n)


def _notes(r: "ScenarioResult") -> list[str]:
    looks = [r] if r.second_look is None else [r, r.second_look]
    notes = [f"    {failure}" for look in looks for failure in look.failures[:3]]
    if late := sum(look.closed_late for look in looks):
        notes.append(f"    {late} closed later than {r.close_within_ms:g} ms: not correct")
    if r.second_look is not None and r.second_look.never_closed:
        notes.append(f"    {r.second_look.never_closed} never closed on the second look")
    return notes


def render_table(report: "Report") -> str:
    strict = report.config.strict
    lines = [
        f"{'scenario':<30} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'never closed':>13} {'bound':>7}  {'speed':<26} result"
    ]
    for r in report.results:
        bound = "-" if r.bound_ms is None else f"{r.bound_ms:g}"
        verdict = f"skipped: {r.skipped}" if r.skipped else ("PASS" if r.passes(strict) else "FAIL")
        lines.append(
            f"{r.name:<30} {_count(r):>5} {_ms(r.percentile(0.5)):>8} "
            f"{_ms(r.percentile(0.99)):>8} {_ms(max(r.samples_ms, default=None)):>8} "
            f"{r.never_closed:>13} {bound:>7}  {speed_cell(r):<26} {verdict}"
        )
        lines += _notes(r)
    return "\n".join([*lines, "", *verdict_lines(report)])


def verdict_lines(report: "Report") -> list[str]:
    """What the run's verdict rests on: correctness, then speed, and whether it counted."""
    c = report.config
    if report.correct:
        correct = (
            f"correct: every stopped upstream closed within {c.close_within_s:g} s "
            f"({c.storm_close_within_s:g} s in storms), every answer whole"
        )
    else:
        wrong = ", ".join(r.name for r in report.results if not r.correct)
        correct = f"NOT correct: {wrong}"
    slow = report.slow
    if not slow:
        speed = "speed: every timed scenario fast (p99 within its bound)"
    else:
        counts = "--strict: counted" if c.strict else "counted only with --strict"
        names = ", ".join(r.name for r in slow)
        speed = f"speed: {len(slow)} slow (p99 over its bound): {names} ({counts})"
    return [correct, speed]
