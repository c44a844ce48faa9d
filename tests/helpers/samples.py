"""Sample data more than one test reads."""

from trioproxy.conformance import Report, ScenarioResult

__all__ = ["a_report"]


def a_report() -> Report:
    """One passing and one failing phase, a skipped one, and an integrity check."""
    fast = ScenarioResult("streaming RST", samples_ms=[0.4, 0.5, 0.7, 1.2], bound_ms=5.0)
    never = ScenarioResult("waiting_headers FIN", samples_ms=[], never_closed=3, bound_ms=5.0)
    never.failures.append("waiting_headers-FIN-0: upstream still running after 3 s")
    skipped = ScenarioResult("streaming h2-reset", skipped="no h2c (ConnectionError)")
    whole = ScenarioResult("integrity (whole answers)", checked=20)
    return Report("a proxy <under test>", [fast, never, skipped, whole])
