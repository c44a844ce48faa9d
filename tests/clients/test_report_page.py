"""``trioproxy conformance --html``: the page opens in headless Chromium with no
network, shows every scenario's grade and draws each stopped request."""

import pathlib
from typing import Any

from tests.clients.conftest import CHROMIUM, require, run_node
from tests.helpers import Stack
from tests.helpers.samples import a_report
from trioproxy.conformance import render_html
from trioproxy.sim import SimUpstream

SCREENSHOT = pathlib.Path(__file__).parents[2] / "build" / "conformance-report.png"


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
