"""The service page switches between a service's profile types, in real headless Chromium:
the timeline, the flame graph's profile and the compare link all follow the chosen type."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from tests.servers import RunningServer, start_server, stop_process

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

SERVICE = "trader"


def window_body(stacks: str, type_id: str, start: datetime) -> bytes:
    window = wire.from_profile(
        collapsed.loads(stacks),
        service=SERVICE,
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels={"pid": "1"},
    )
    return json.dumps({**json.loads(window.model_dump_json()), "type": type_id}).encode()


@pytest.fixture(scope="module")
def trader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with ten minutes of a cpu and a wall-clock profile of one process."""
    data_dir = tmp_path_factory.mktemp("server")
    server: RunningServer = start_server(f"sqlite:///{data_dir / 'hotpath.db'}", data_dir)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        with server.client() as client:
            for minutes in range(12, 2, -1):
                start = now - timedelta(minutes=minutes)
                for stacks, kind in (
                    ("main;compute 98\nmain;sleep 2\n", "cpu"),
                    ("main;compute 50\nmain;sleep 450\n", "wall"),
                ):
                    response = client.post(
                        "/api/v1/windows",
                        content=window_body(stacks, kind, start),
                        headers={"content-type": "application/json"},
                    )
                    assert response.status_code == 201, response.text
        yield server.url
    finally:
        stop_process(server.process)


def profile_query(page) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    src = page.locator("#flamegraph").get_attribute("src")
    fragment = parse_qs(urlsplit(src).fragment)
    return parse_qs(urlsplit(fragment["profileURL"][0]).query)


def test_switching_types_moves_the_timeline_flame_graph_and_compare_link(
    browser, trader: str
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    timelines: list[dict[str, list[str]]] = []
    page.on(
        "request",
        lambda r: (
            timelines.append(parse_qs(urlsplit(r.url).query))
            if "/api/v1/timeline" in r.url
            else None
        ),
    )
    page.goto(f"{trader}/services/{SERVICE}?from=-1h")
    page.locator("#timeline-chart path.tl-line").wait_for()
    assert page.locator("#profile-types a.active").inner_text() == "cpu"
    assert page.locator("#range-samples").inner_text() == "1,000 samples"
    assert profile_query(page)["type"] == ["cpu"]
    assert timelines[-1]["type"] == ["cpu"]

    page.locator('#profile-types a[data-type="wall"]').click()
    page.locator("#timeline-chart path.tl-line").wait_for()
    assert page.locator("#profile-types a.active").inner_text() == "wall"
    assert page.locator("#range-samples").inner_text() == "5,000 samples"
    assert profile_query(page)["type"] == ["wall"]
    assert timelines[-1]["type"] == ["wall"]
    assert parse_qs(urlsplit(page.url).query)["type"] == ["wall"]

    # Two ranges on the wall timeline: the compare link compares wall with wall.
    page.locator("#compare-mode").check()
    box = page.locator("#timeline-chart").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.95, y, steps=4)
    page.mouse.up()
    page.locator("#compare-bar").wait_for()
    href = page.locator("#compare-link").get_attribute("href")
    assert parse_qs(urlsplit(href).query)["type"] == ["wall"]
    time.sleep(0.2)
    page.close()
    assert errors == []
