"""The leaks page in real headless Chromium: the ranked table (the growing function first and
alone flagged), its stacks, the captures with the target's pauses, and the held-bytes flame
graph opening in speedscope in bytes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.chromium import ARTIFACTS
from tests.memory_captures import CACHE, CHURN, LEAK, body, capture
from tests.servers import RunningServer, start_server, stop_process

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

SERVICE = "mem-trader"


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with two memory captures of a process that leaks in one function."""
    data_dir = tmp_path_factory.mktemp("server")
    server: RunningServer = start_server(f"sqlite:///{data_dir / 'hotpath.db'}", data_dir)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    try:
        with server.client() as client:
            for i in range(2):
                sent = capture(SERVICE, start=start + timedelta(minutes=5 * i), seconds=20)
                answer = client.post(
                    "/api/v1/memory/captures",
                    content=json.dumps(body(sent)).encode(),
                    headers={"content-type": "application/json"},
                )
                assert answer.status_code == 201, answer.text
        yield server.url
    finally:
        stop_process(server.process)


def test_leaks_page_ranks_the_leak_and_opens_held_bytes_in_speedscope(
    browser,  # type: ignore[no-untyped-def]
    leaky: str,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # From the service page, by its link.
    page.goto(f"{leaky}/services/{SERVICE}?type=held_bytes&from=-1h")
    page.locator("#leaks-link").click()
    page.wait_for_url(f"**/services/{SERVICE}/leaks")
    rows = page.locator("#leaks tbody tr.leak")
    assert rows.count() == 3
    assert rows.nth(0).get_attribute("data-function") == LEAK.name
    assert rows.nth(0).get_attribute("data-flagged") == "true"
    assert "LEAK" in rows.nth(0).inner_text()
    assert "/min" in rows.nth(0).inner_text()  # growth per minute, with its interval
    others = {rows.nth(i).get_attribute("data-function") for i in (1, 2)}
    assert others == {CACHE.name, CHURN.name}
    assert all(rows.nth(i).get_attribute("data-flagged") == "false" for i in (1, 2))
    # The leak's stacks, from its callers down to it.
    rows.nth(0).locator("details.leak-stacks summary").click()
    stack = rows.nth(0).locator(".leak-stack ol").first.inner_text()
    assert stack.index("main") < stack.index("serve") < stack.index(LEAK.name)
    captures = page.locator("#captures tbody tr.capture")
    assert captures.count() == 2
    assert captures.nth(0).locator(".pause-attach").inner_text() == "412.5 ms"
    assert captures.nth(0).locator(".pause-detach").inner_text() == "120.2 ms"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "leaks.png"), full_page=True)

    # The held-bytes flame graph of the range opens in speedscope, weighed in bytes.
    with page.context.expect_page() as popup:
        page.locator("#held-flamegraph-link").click()
    viewer = popup.value
    viewer.on("pageerror", lambda e: errors.append(str(e)))
    viewer.locator("text=Sandwich").click()
    viewer.locator("text=Symbol Name").wait_for(timeout=20_000)
    text = viewer.evaluate("document.body.innerText")
    assert LEAK.name in text and CACHE.name in text
    # speedscope prints byte weights with byte units (a KB/MB figure), never sample counts.
    assert re.search(r"\d+(\.\d+)? (KB|MB)", text), text[:500]
    assert "samples" not in text.lower()
    viewer.screenshot(path=str(ARTIFACTS / "leaks_speedscope.png"))
    page.close()
    viewer.close()
    assert errors == []
