"""The differential flame graph and the service page's timeline in real headless Chromium.

One real server holds a service in two versions: version 1 for minutes 40 to 31 ago, version 2
for minutes 20 to 11 ago, one 10 s window a minute, loaded through Pyroscope's ingest API. In
version 2 `risk_check` takes a much larger share, `slow_new` appears and `old_cache` is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.chromium import ARTIFACTS
from tests.servers import RunningServer, start_server, stop_process

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

SERVICE = "shop"
BASE_STACKS = {
    "main (app.py:1);handle (app.py:10);parse (parse.py:5)": 300,
    "main (app.py:1);handle (app.py:10);risk_check (risk.py:20)": 200,
    "main (app.py:1);handle (app.py:10);route (route.py:7)": 400,
    "main (app.py:1);idle (app.py:99)": 100,
    "main (app.py:1);old_cache (cache.py:3)": 80,
}
HEAD_STACKS = {
    "main (app.py:1);handle (app.py:10);parse (parse.py:5)": 300,
    "main (app.py:1);handle (app.py:10);risk_check (risk.py:20)": 700,
    "main (app.py:1);handle (app.py:10);risk_check (risk.py:20);slow_new (risk.py:50)": 100,
    "main (app.py:1);handle (app.py:10);route (route.py:7)": 380,
    "main (app.py:1);idle (app.py:99)": 100,
}
DIFF_QUERY = "base_from=-1h&base_label=version%3D1&head_from=-1h&head_label=version%3D2"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL, with both versions of the service loaded."""
    data_dir = tmp_path_factory.mktemp("server")
    server: RunningServer = start_server(f"sqlite:///{data_dir / 'hotpath.db'}", data_dir)
    now = int(time.time()) // 60 * 60
    try:
        with server.client() as client:
            for version, stacks, minutes_ago in (
                ("1", BASE_STACKS, range(40, 30, -1)),
                ("2", HEAD_STACKS, range(20, 10, -1)),
            ):
                body = "".join(f"{stack} {count}\n" for stack, count in stacks.items())
                for minutes in minutes_ago:
                    start = now - 60 * minutes
                    response = client.post(
                        "/ingest",
                        params={
                            "name": f"{SERVICE}{{version={version}}}",
                            "from": start,
                            "until": start + 10,
                            "format": "folded",
                        },
                        content=body,
                    )
                    assert response.status_code == 200, response.text
        yield server.url
    finally:
        stop_process(server.process)


@pytest.fixture
def page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh page that records console errors and uncaught exceptions: none are allowed."""
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert errors == [], f"console errors: {errors}"


def open_diff(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url)
    page.wait_for_function("() => window.__hotpathFirstRender !== undefined", timeout=15_000)
    page.locator("#slower tbody tr[data-function]").first.wait_for(timeout=15_000)
    # The page settles after its first render: what loads below the graph can add a scrollbar,
    # which narrows the canvas and redraws it. Positions are measured once that is over.
    page.wait_for_load_state("networkidle")
    width = None
    for _ in range(100):
        next_frame(page)
        now = page.evaluate("document.getElementById('graph').getBoundingClientRect().width")
        if now == width:
            break
        width = now


def frame_of(page, name: str) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    """Where the function's frame is drawn, in page coordinates (its centre), or None."""
    rect = page.evaluate(f"window.__hotpathGraph.locate({name!r})")
    if rect is None:
        return None
    box = page.locator("#graph").bounding_box()
    return {
        "x": box["x"] + rect["x"] + rect["width"] / 2,
        "y": box["y"] + rect["y"] + rect["height"] / 2,
        "width": rect["width"],
    }


def pixel(page, x: float, y: float) -> list[int]:  # type: ignore[no-untyped-def]
    """The RGB of the graph's canvas at a page position."""
    return page.evaluate(
        """([x, y]) => {
          const canvas = document.getElementById("graph");
          const box = canvas.getBoundingClientRect();
          const scale = canvas.width / box.width;
          const data = canvas.getContext("2d").getImageData(
            Math.round((x - box.left) * scale), Math.round((y - box.top) * scale), 1, 1).data;
          return [data[0], data[1], data[2]];
        }""",
        [x, y],
    )


def canvas_digest(page) -> list[int]:  # type: ignore[no-untyped-def]
    """Painted pixels and red pixels of the graph's canvas, and a checksum of its image."""
    return page.evaluate(
        """() => {
          const canvas = document.getElementById("graph");
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0, red = 0, sum = 0;
          for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] === 0) continue;
            painted++;
            if (data[i] > 150 && data[i + 1] < 90 && data[i + 2] < 90) red++;
            sum = (sum * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) % 1000000007;
          }
          return [painted, red, sum];
        }"""
    )


def test_diff_page_draws_the_graph_and_lists_the_grown_function_first(page, shop: str) -> None:
    open_diff(page, f"{shop}/services/{SERVICE}/diff?{DIFF_QUERY}")

    headings = page.locator(".sides").inner_text()
    assert "version=1" in headings and "version=2" in headings
    assert "10,800 samples" in headings and "15,800 samples" in headings  # 10 windows each

    drawn = int(page.locator("#graph").get_attribute("data-frames-drawn"))
    assert drawn == 8  # all, main, handle, parse, risk_check, slow_new, route, idle
    painted, red, _ = canvas_digest(page)
    assert painted > 10_000 and red > 1_000

    rows = page.locator("#slower tbody tr")
    first = rows.first
    assert first.get_attribute("data-function") == "risk_check"
    assert first.locator(".flag").inner_text() == "slower"
    cells = first.locator("td").all_inner_texts()
    assert cells[1:4] == ["18.52%", "44.30%", "+25.79"]
    assert rows.nth(1).get_attribute("data-function") == "slow_new"
    functions = page.locator("#slower tbody tr[data-function]").evaluate_all(
        "rows => rows.map(r => r.dataset.function)"
    )
    assert "parse" not in functions and "old_cache" not in functions  # they did not grow

    # Colours: risk_check's share grew (red), parse's shrank (blue).
    risk = frame_of(page, "risk_check")
    r, g, b = pixel(page, risk["x"], risk["y"])
    assert r > 150 and g < 90 and b < 90
    parse = frame_of(page, "parse")
    r, g, b = pixel(page, parse["x"], parse["y"])
    assert b > r + 40

    # The reverse view: the base's shape, where old_cache (gone in the head) is drawn in blue.
    assert frame_of(page, "old_cache") is None
    page.locator("#view-base").click()
    page.wait_for_function("() => document.getElementById('graph').dataset.view === 'base'")
    old = frame_of(page, "old_cache")
    assert old is not None and frame_of(page, "slow_new") is None
    r, g, b = pixel(page, old["x"], old["y"])
    assert b > r + 40
    page.locator("#view-head").click()
    page.wait_for_function("() => document.getElementById('graph').dataset.view === 'head'")

    # A screenshot for the README: the graph with risk_check's tooltip beside the table.
    risk = frame_of(page, "risk_check")
    page.mouse.move(risk["x"], risk["y"])
    page.locator("#tooltip").wait_for(state="visible")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "diff.png"))  # docs/diff.png is a copy of one


def test_hovering_a_frame_shows_its_shares_in_the_tooltip(page, shop: str) -> None:
    open_diff(page, f"{shop}/services/{SERVICE}/diff?{DIFF_QUERY}")
    tooltip = page.locator("#tooltip")
    assert tooltip.is_hidden()
    risk = frame_of(page, "risk_check")
    page.mouse.move(risk["x"], risk["y"])
    tooltip.wait_for(state="visible")
    assert tooltip.locator(".tip-fn").inner_text() == "risk_check"
    text = tooltip.inner_text()
    assert "risk.py" in text
    # Inclusive shares: 2,000 of 10,800 samples in the base, 8,000 of 15,800 in the head.
    assert "18.52%" in text and "50.63%" in text and "+32.11 pp" in text
    assert "2,000" in text and "8,000" in text

    page.mouse.move(5, 5)  # off the graph
    tooltip.wait_for(state="hidden")


def test_clicking_a_frame_zooms_into_it_and_reset_zooms_out(page, shop: str) -> None:
    open_diff(page, f"{shop}/services/{SERVICE}/diff?{DIFF_QUERY}")
    before = canvas_digest(page)
    risk = frame_of(page, "risk_check")
    assert risk["width"] < 600
    page.mouse.click(risk["x"], risk["y"])
    page.wait_for_function("() => document.getElementById('graph').dataset.zoom === 'risk_check'")
    # risk_check is full width; its siblings are gone, its ancestors stay above it.
    zoomed = frame_of(page, "risk_check")
    graph_width = page.locator("#graph").bounding_box()["width"]
    assert zoomed["width"] == pytest.approx(graph_width, abs=1)
    assert frame_of(page, "parse") is None and frame_of(page, "main") is not None
    assert page.locator("#graph").get_attribute("data-frames-drawn") == "5"
    assert canvas_digest(page) != before
    assert page.locator("#reset-zoom").is_enabled()

    page.locator("#reset-zoom").click()
    page.wait_for_function("() => document.getElementById('graph').dataset.zoom === 'all'")
    assert page.locator("#graph").get_attribute("data-frames-drawn") == "8"
    assert canvas_digest(page) == before
    assert page.locator("#reset-zoom").is_disabled()


def test_search_highlights_matching_frames_and_shows_their_share(page, shop: str) -> None:
    open_diff(page, f"{shop}/services/{SERVICE}/diff?{DIFF_QUERY}")
    parse = frame_of(page, "parse")
    risk = frame_of(page, "risk_check")
    parse_before = pixel(page, parse["x"], parse["y"])
    risk_before = pixel(page, risk["x"], risk["y"])

    page.locator("#search").fill("risk")
    matched = page.locator("#matched")
    # risk_check holds 8,000 of the head's 15,800 samples and 2,000 of the base's 10,800.
    page.wait_for_function(
        "() => document.getElementById('matched').textContent.includes('50.63%')"
    )
    assert matched.inner_text() == "Matched 1 function: 50.63% of head, 18.52% of base"
    next_frame(page)
    assert frame_of(page, "parse") == parse  # nothing moved
    assert pixel(page, risk["x"], risk["y"]) == risk_before  # matched: colour kept
    dimmed = pixel(page, parse["x"], parse["y"])
    assert sum(dimmed) > sum(parse_before) + 150  # not matched: faded towards white

    # Clicking a row of the table searches for that function.
    page.locator("#slower tbody tr[data-function='slow_new']").click()
    assert page.locator("#search").input_value() == "^slow_new$"
    page.wait_for_function("() => document.getElementById('matched').textContent.includes('6.33%')")

    page.locator("#search").fill("")
    page.wait_for_function("() => document.getElementById('matched').textContent === ''")
    next_frame(page)
    assert pixel(page, parse["x"], parse["y"]) == parse_before


def drag(page, start_ms: float, end_ms: float, shift: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Drag on the timeline from one time to another (unix ms)."""
    chart = page.locator("#timeline-chart")
    geometry = chart.evaluate(
        "svg => [svg.dataset.viewFrom, svg.dataset.viewUntil, svg.dataset.plotLeft,"
        " svg.dataset.plotRight].map(Number)"
    )
    view_from, view_until, left, right = geometry
    box = chart.bounding_box()

    def x_of(ms: float) -> float:
        return box["x"] + left + (ms - view_from) / (view_until - view_from) * (right - left)

    y = box["y"] + box["height"] / 2
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(x_of(start_ms), y)
    page.mouse.down()
    page.mouse.move(x_of((start_ms + end_ms) / 2), y, steps=3)
    page.mouse.move(x_of(end_ms), y, steps=3)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def viewer_range(page) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The from/until of the profile the speedscope iframe shows."""
    src = page.locator("#flamegraph").get_attribute("src")
    fragment = parse_qs(urlsplit(src).fragment)
    profile = parse_qs(urlsplit(fragment["profileURL"][0]).query)
    return profile["from"][0], profile["until"][0]


def test_dragging_on_the_timeline_moves_the_flame_graph_and_two_ranges_compare(
    page, shop: str
) -> None:
    page.goto(f"{shop}/services/{SERVICE}?from=-1h")
    page.locator("#timeline-chart path.tl-line").wait_for()
    page.frame_locator("#flamegraph").locator("text=Left Heavy").wait_for(timeout=20_000)
    range_before = page.locator("#range-text").inner_text()
    viewer_before = viewer_range(page)
    assert page.locator("#range-samples").inner_text() == "26,600 samples"

    minute = 60_000
    now = int(time.time()) // 60 * minute
    # The first range: version 1's ten minutes, and the empty minutes around them.
    drag(page, now - 43 * minute, now - 28 * minute)
    page.wait_for_function(
        f"() => document.getElementById('range-text').textContent !== {range_before!r}"
    )
    viewer_after = viewer_range(page)
    assert viewer_after != viewer_before
    start, until = viewer_after
    assert (start, until) == (iso(now - 43 * minute), iso(now - 28 * minute))
    assert page.locator("#range-text").inner_text() == range_text(
        now - 43 * minute, now - 28 * minute
    )
    assert page.locator("#range-samples").inner_text() == "10,800 samples"
    query = parse_qs(urlsplit(page.url).query)
    assert (query["from"][0], query["until"][0]) == (start, until)  # a reload keeps it
    assert page.locator("#compare-bar").is_hidden()
    page.frame_locator("#flamegraph").locator("text=Left Heavy").wait_for(timeout=20_000)

    # The second range (Shift+drag): version 2's minutes. The flame graph stays on the first.
    drag(page, now - 22 * minute, now - 9 * minute, shift=True)
    page.locator("#compare-bar").wait_for(state="visible")
    assert viewer_range(page) == viewer_after
    page.wait_for_timeout(500)  # speedscope paints
    page.screenshot(path=str(ARTIFACTS / "timeline.png"))

    page.reload()  # the URL kept both ranges
    page.locator("#compare-bar").wait_for(state="visible")
    assert moments(viewer_range(page)) == moments(viewer_after)
    assert page.locator("#range-text").inner_text() == range_text(
        now - 43 * minute, now - 28 * minute
    )

    page.locator("#compare-link").click()
    page.wait_for_url(f"**/services/{SERVICE}/diff?*")
    open_diff(page, page.url)
    headings = page.locator(".sides").inner_text()
    assert "10,800 samples" in headings and "15,800 samples" in headings
    first = page.locator("#slower tbody tr").first
    assert first.get_attribute("data-function") == "risk_check"
    assert first.locator(".flag").count() == 1


def test_the_timeline_draws_one_line_per_label_value(page, shop: str) -> None:
    page.goto(f"{shop}/services/{SERVICE}?from=-1h")
    page.locator("#timeline-chart path.tl-line").wait_for()
    assert page.locator("#timeline-chart path.tl-line").count() == 1
    page.locator("#timeline-by").select_option("version")
    page.wait_for_function(
        "() => document.querySelectorAll('#timeline-chart path.tl-line').length === 2"
    )
    legend = page.locator("#timeline-legend").inner_text()
    assert "1 (10,800)" in legend and "2 (15,800)" in legend
    assert parse_qs(urlsplit(page.url).query)["by"] == ["version"]


def test_the_pages_answer_bad_input_with_a_clear_status(shop: str) -> None:
    with httpx.Client(base_url=shop) as client:
        assert client.get(f"/services/nope/diff?{DIFF_QUERY}").status_code == 404
        bad = client.get(f"/services/{SERVICE}/diff?base_from=yesterday")
        assert bad.status_code == 422 and "cannot read the time" in bad.text
        empty = client.get(f"/services/{SERVICE}/diff?base_label=version%3D9")
        assert empty.status_code == 200 and "Nothing to compare" in empty.text


def next_frame(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the graph has repainted: redraws happen on the next animation frame."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def moments(pair: tuple[str, str]) -> tuple[datetime, datetime]:
    """The page writes `...Z`, the server `...+00:00`: compare the moments."""
    start, until = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in pair)
    return start, until


def range_text(start_ms: int, end_ms: int) -> str:
    start, end = time.gmtime(start_ms / 1000), time.gmtime(end_ms / 1000)
    end_format = "%H:%M:%S" if start[:3] == end[:3] else "%Y-%m-%d %H:%M:%S"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S', start)} \N{EN DASH} "
        f"{time.strftime(end_format, end)} UTC"
    )
