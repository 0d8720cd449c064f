"""The pages in real headless Chromium: home page -> service -> speedscope renders our profile."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.chromium import ARTIFACTS
from tests.servers import REPO, attach_agent, stop_process

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser


@pytest.fixture
def profiled_trader(sqlite_server, tmp_path) -> Iterator[str]:
    """The demo trader sampled by the real agent for a few seconds; yields the server URL."""
    trader = subprocess.Popen([sys.executable, "-m", "hotpath.cli.demo_trader"], cwd=REPO)
    agent = attach_agent(
        trader.pid, sqlite_server.url, "demo-trader", "--window", "1", spool_dir=tmp_path / "spool"
    )
    try:
        time.sleep(4)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
    finally:
        stop_process(trader)
        stop_process(agent)
    yield sqlite_server.url


def test_home_page_leads_to_a_rendered_flame_graph(browser, profiled_trader: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(profiled_trader + "/")
    link = page.locator("a.service-link", has_text="demo-trader")
    assert link.count() == 1
    link.click()
    page.wait_for_url("**/services/demo-trader")

    viewer = page.frame_locator("#flamegraph")
    viewer.locator("text=Left Heavy").wait_for(timeout=20_000)
    page.wait_for_timeout(1500)  # let the canvas paint before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "flamegraph.png"))

    # speedscope draws the flame graph on a canvas; its sandwich view lists the same functions
    # as text, so the names can be checked.
    viewer.locator("text=Sandwich").click()
    table = viewer.locator("text=Symbol Name")
    table.wait_for(timeout=10_000)
    body = page.frames[1].evaluate("document.body.innerText")
    for name in ("handle_order", "risk_check", "price_quote", "fetch_quotes", "route_order"):
        assert name in body, f"{name} missing from speedscope's table"
    assert "Something went wrong" not in body and "Error" not in body
    page.screenshot(path=str(ARTIFACTS / "sandwich.png"))
    assert errors == []


def test_hot_path_page_shows_latency_budget_and_attribution(browser, profiled_trader: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(profiled_trader + "/services/demo-trader")
    page.locator("#hot-paths a", has_text="order_execution").click()
    page.wait_for_url("**/services/demo-trader/hotpaths/order_execution*")
    # The chart: one line per quantile and the budget line, drawn from the API's points.
    page.locator("#latency-chart circle[data-series='p99_ms']").first.wait_for(timeout=10_000)
    assert page.locator("#latency-chart path[data-series='p99_ms']").count() == 1
    assert page.locator("#latency-chart .lat-budget").count() == 1
    assert "budget 3.00 ms" in page.locator("#latency-legend").inner_text()
    # Attribution: the functions the order path calls, risk_check the heaviest.
    summary = page.locator("#attribution-summary").inner_text()
    assert summary.startswith("of ") and "risk_check" in summary
    children = page.locator("#attribution-children").inner_text()
    for name in ("risk_check", "price_quote", "decode_order", "route_order"):
        assert name in children
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hotpath.png"), full_page=True)

    # The hot path's own flame graph opens in speedscope, with only what is below it.
    with page.context.expect_page() as popup:
        page.locator("#hotpath-flamegraph-link").click()
    viewer = popup.value
    viewer.locator("text=Sandwich").click()
    viewer.locator("text=Symbol Name").wait_for(timeout=20_000)
    body = viewer.evaluate("document.body.innerText")
    assert "handle_order" in body and "risk_check" in body
    assert "main" not in body.split() and "time.sleep" not in body
    assert errors == []
