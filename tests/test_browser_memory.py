"""The service page's memory chart in real headless Chromium: one line per pid, the growing
pid marked and its sentence listed, nothing refused by the Content-Security-Policy."""

from __future__ import annotations

import pytest

from tests.chromium import ARTIFACTS
from tests.servers import RunningServer
from tests.test_memory_rss import memory_server, plant_growth_and_wobble

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

__all__ = ["memory_server"]  # the fixture, used by name below


def test_service_page_charts_rss_per_pid_and_marks_the_growing_one(
    browser, memory_server: RunningServer
) -> None:
    plant_growth_and_wobble(memory_server, service="mem-page")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{memory_server.url}/services/mem-page?from=-15m")
    page.wait_for_selector("#memory-chart path.mem-line", timeout=10_000)
    lines = page.locator("#memory-chart path.mem-line")
    assert lines.count() == 2
    assert page.locator('#memory-chart path.mem-line.growing[data-pid="1"]').count() == 1
    assert page.locator('#memory-chart path.mem-line.growing[data-pid="2"]').count() == 0
    growing = page.locator("#memory-trends li.growing")
    assert growing.count() == 1
    assert growing.inner_text().startswith("RSS of pid 1 growing 3.0 MB/min")
    assert "not growing" in page.locator('#memory-trends li[data-pid="2"]').inner_text()
    assert "2 processes, 1 growing" in page.locator("#memory-status").inner_text()
    # The line rises: its last point is higher on screen (smaller y) than its first.
    d = page.locator('#memory-chart path[data-pid="1"]').get_attribute("d") or ""
    ys = [float(p.split(",")[1]) for p in d.replace("M", "L").split("L") if p]
    assert len(ys) == 60 and ys[-1] < ys[0] - 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#memory").screenshot(path=str(ARTIFACTS / "memory_chart.png"))
    assert not errors, errors
    page.close()
