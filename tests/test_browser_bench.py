"""The benchmark pages in real headless Chromium: projects -> project -> history chart with its
change point marked at the right commit, and the link to the profile diff of that commit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from tests.chromium import ARTIFACTS
from tests.test_bench_api import PDFMINER, synthetic_run

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser


def upload_history(client, template: dict) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    medians = np.r_[rng.normal(0.010, 0.0002, 20), rng.normal(0.012, 0.0002, 10)]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for i, median in enumerate(medians):
        body = synthetic_run(template, start + timedelta(hours=i), f"c{i:03d}", median)
        response = client.post(
            "/api/v1/bench/runs", params={"project": "pdf", "branch": "main"}, content=body
        )
        assert response.status_code == 201, response.text


def upload_profile_pair(client, fullname: str, head_commit: str) -> None:  # type: ignore[no-untyped-def]
    """What `hotpath gate --profile` uploads: a base and a head profile sharing a pair id."""
    now = datetime.now(UTC).replace(microsecond=0)
    for role, stacks in (
        ("base", "test_x;risk 10\ntest_x;parse 10\n"),
        ("head", "test_x;risk 30\ntest_x;parse 10\n"),
    ):
        window = wire.from_profile(
            collapsed.loads(stacks),
            service="bench-pdf",
            idempotency_key=uuid.uuid4().hex,
            start=now - timedelta(seconds=5),
            end=now,
            sample_rate_hz=2000,
            labels={
                "benchmark": fullname,
                "pair": "p1",
                "role": role,
                "commit": head_commit if role == "head" else "c019",
            },
        )
        response = client.post("/api/v1/windows", content=window.model_dump_json())
        assert response.status_code == 201, response.text


def test_history_chart_marks_the_change_point_and_links_its_profile_diff(
    browser, sqlite_server
) -> None:  # type: ignore[no-untyped-def]
    template = json.loads(Path(PDFMINER).read_bytes())
    fullname = template["benchmarks"][0]["fullname"]
    with sqlite_server.client() as client:
        upload_history(client, template)
        upload_profile_pair(client, fullname, "c020")

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(sqlite_server.url) else None,
    )

    page.goto(sqlite_server.url + "/benchmarks")
    page.locator("a.service-link", has_text="pdf").click()
    page.wait_for_url("**/benchmarks/pdf")
    row = page.locator("table.bench-table tbody tr", has=page.locator("a.bench-link"))
    assert row.count() == len({fullname})
    assert "c020" in row.first.inner_text()  # the last change point, attributed to c020
    row.first.locator("a.bench-link").click()
    page.wait_for_url("**/benchmarks/pdf/history?**")

    page.locator("#bench-svg").wait_for(timeout=10_000)
    assert page.locator("#bench-svg circle.bc-dot").count() == 30
    marks = page.locator("#bench-svg g.bc-change")
    assert marks.count() == 1
    assert marks.first.get_attribute("data-index") == "20"
    assert "c020" in marks.first.inner_html()
    assert "slower" in (marks.first.get_attribute("class") or "")
    # The dashed line sits between run 19 and run 20.
    dots = page.locator("#bench-svg circle.bc-dot")
    line_x = float(marks.first.locator("line").get_attribute("x1") or "nan")
    assert (
        float(dots.nth(19).get_attribute("cx")) < line_x < float(dots.nth(20).get_attribute("cx"))
    )

    link = page.locator("table.bench-changes a", has_text="flame graph diff")
    assert link.count() == 1
    target = urlsplit(link.get_attribute("href") or "")
    assert target.path == "/services/bench-pdf/diff"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "bench_history.png"), full_page=True)
    link.click()
    page.wait_for_url("**/services/bench-pdf/diff?**")
    page.locator("table.slower").first.wait_for(timeout=10_000)
    page.locator("text=risk").first.wait_for(timeout=10_000)

    assert errors == []
    assert outside == []
    page.close()
