"""``trioproxy conformance --html``: the page opens in headless Chromium with no
network, shows every scenario's grade and draws each stopped request."""

import pathlib
from typing import Any

from tests.clients.conftest import CHROMIUM, require
from tests.clients.test_node_clients import run_node
from tests.conftest import Stack
from trioproxy.conformance import Report, ScenarioResult, render_html
from trioproxy.sim import SimUpstream

SCREENSHOT = pathlib.Path(__file__).parents[2] / "build" / "conformance-report.png"


def a_report() -> Report:
    """One passing and one failing phase, a skipped one, and an integrity check."""
    fast = ScenarioResult("streaming RST", samples_ms=[0.4, 0.5, 0.7, 1.2], bound_ms=5.0)
    never = ScenarioResult("waiting_headers FIN", samples_ms=[], never_closed=3, bound_ms=5.0)
    never.failures.append("waiting_headers-FIN-0: upstream still running after 3 s")
    skipped = ScenarioResult("streaming h2-reset", skipped="no h2c (ConnectionError)")
    whole = ScenarioResult("integrity (whole answers)", checked=20)
    return Report("a proxy <under test>", [fast, never, skipped, whole])


async def test_the_html_report_renders_offline_with_grades_and_dots(
    tmp_path: pathlib.Path,
) -> None:
    require(CHROMIUM, "apt-get install chromium (bash scripts/test.sh does)")
    page = tmp_path / "report.html"
    page.write_text(render_html(a_report()))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    stack = Stack(SimUpstream(), "", "", "", 0)
    lines = await run_node("report-page", stack, "", file=str(page), screenshot=str(SCREENSHOT))
    result: Any = lines[-1]
    assert result["requested"] == [f"file://{page}"]  # nothing else: no network
    assert result["verdict"] == "FAIL"
    grades = {row["name"]: row["grade"] for row in result["rows"]}
    assert grades == {
        "streaming RST": "PASS",
        "waiting_headers FIN": "FAIL",
        "streaming h2-reset": "skipped: no h2c (ConnectionError)",
        "integrity (whole answers)": "PASS",
    }
    drawn = {row["name"]: (row["dots"], row["never"]) for row in result["rows"]}
    assert drawn["streaming RST"] == (4, 0)
    assert drawn["waiting_headers FIN"] == (0, 1)
    assert SCREENSHOT.stat().st_size > 10_000  # a page was drawn, not a blank
