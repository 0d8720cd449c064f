"""Uploading real profile files to the real server (`hotpath upload`, `POST /api/v1/profiles`),
reading them back, exporting in every format, refusing bad input with nothing stored, and
speedscope opening our pprof export in real Chromium."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

from hotpath.profiler.formats import registry
from hotpath.profiler.formats.pprof_schema import profile_class
from hotpath.profiler.model import Profile
from tests.servers import REPO

DATA = Path(__file__).resolve().parent / "data" / "formats"

# (file, type to upload it as: None = every type the file holds, service).
UPLOADS = [
    ("pyspy.speedscope.json", None, "pyspy-speedscope"),
    ("pyspy.collapsed.txt", None, "pyspy-collapsed"),
    ("pyinstrument.speedscope.json", None, "pyinstrument-speedscope"),
    ("pyinstrument.session.json", None, "pyinstrument-session"),
    ("memray.speedscope.json", None, "memray"),  # held_bytes and alloc_count
    ("memray.speedscope.json", "alloc_bytes", "memray-temporary"),  # as if --temporary-...
    ("pyroscope-io.cpu.pprof", None, "pyroscope-cpu"),
    ("pyroscope-io.memory.pprof.gz", None, "pyroscope-memory"),  # alloc_bytes, alloc_count
]
# How speedscope shows each unit of ours: time as time, bytes as bytes, counts as counts.
SPEEDSCOPE_UNIT = {"samples": "nanoseconds", "bytes": "bytes", "allocations": "none"}


def hotpath(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotpath", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def fixture_file(name: str, tmp_path: Path) -> Path:
    """The fixture as uploaded. pprof files and pyinstrument sessions carry the time they were
    captured: a copy with that time moved to now keeps them inside the default read range
    and raw retention."""
    path = DATA / name
    if name.endswith(".session.json"):
        session = json.loads(path.read_text())
        session["start_time"] = time.time() - session["duration"] - 60
        out = tmp_path / name
        out.write_text(json.dumps(session))
        return out
    if "pprof" not in name:
        return path
    data = path.read_bytes()
    zipped = data[:2] == b"\x1f\x8b"
    msg = profile_class().FromString(gzip.decompress(data) if zipped else data)
    msg.time_nanos = time.time_ns() - msg.duration_nanos - 60 * 10**9
    out = tmp_path / name
    raw = msg.SerializeToString()
    out.write_bytes(gzip.compress(raw, mtime=0) if zipped else raw)
    return out


def expected(path: Path, kind: str | None) -> list[Profile]:
    return registry.load(path.read_bytes(), type=kind)


def read_back(url: str, service: str, profile: Profile, fmt: str = "collapsed") -> httpx.Response:
    params = {"service": service, "format": fmt, "from": "-1h", "type": profile.type.id}
    response = httpx.get(url + "/api/v1/profile", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_every_real_file_uploads_and_reads_back_by_type(server, tmp_path) -> None:
    for name, kind, service in UPLOADS:
        path = fixture_file(name, tmp_path)
        result = hotpath(
            "upload", str(path), "--service", service, "--server", server.url,
            "--label", "source=fixture", *(["--type", kind] if kind else []),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        wanted = expected(path, kind)
        for want in wanted:
            assert f"{service} {want.type.id}: {want.total} {want.unit}" in result.stderr
        # The same bytes over plain HTTP: recognised as the same upload, stored once.
        again = httpx.post(
            server.url + "/api/v1/profiles",
            params={
                "service": service,
                "label": "source=fixture",
                **({"type": kind} if kind else {}),
            },
            content=path.read_bytes(),
        )
        assert again.status_code == 200, again.text
        assert [p["duplicate"] for p in again.json()["profiles"]] == [True] * len(wanted)
        for want in wanted:
            stored = registry.load(read_back(server.url, service, want).content, "collapsed")
            assert stored[0].samples == want.samples, (name, want.type)
            doc = json.loads(read_back(server.url, service, want, "speedscope").content)
            assert doc["hotpath"]["type"] == want.type.id, name
            assert doc["profiles"][0]["unit"] == SPEEDSCOPE_UNIT[want.unit], name
    services = {s["name"]: s for s in httpx.get(server.url + "/api/v1/services").json()}
    assert set(services["memray"]["types"]) == {"held_bytes", "alloc_count"}


def test_export_in_every_format_gives_back_the_uploaded_stacks(sqlite_server, tmp_path) -> None:
    path = fixture_file("pyroscope-io.cpu.pprof", tmp_path)
    (want,) = expected(path, None)
    upload = hotpath("upload", str(path), "--service", "exp", "--server", sqlite_server.url)
    assert upload.returncode == 0, upload.stderr
    for fmt in registry.writable():
        out = tmp_path / f"export.{fmt}"
        result = hotpath(
            "export", "--service", "exp", "--format", fmt, "-o", str(out),
            "--server", sqlite_server.url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        (got,) = registry.load(out.read_bytes(), format=fmt)
        assert got.samples == want.samples, fmt
        assert got.type == want.type, fmt
    pprof = read_back(sqlite_server.url, "exp", want, "pprof")
    assert pprof.headers["content-type"] == registry.media_type("pprof")
    msg = profile_class().FromString(gzip.decompress(pprof.content))
    kinds = [msg.string_table[t.type] for t in msg.sample_type]
    assert kinds == ["samples", "cpu"] and msg.period == 10_000_000


# (query, file, what the 422 must say). One server for all: each start costs seconds.
BAD_UPLOADS = [
    ({"format": "jfr"}, "pyspy.collapsed.txt", "unknown format 'jfr'"),
    ({"format": "pprof"}, "pyspy.speedscope.json", "is speedscope, not pprof"),
    ({}, "workload.py", "not a profile format we know"),
    ({"format": "pprof"}, "workload.py", "not a valid pprof file"),
    ({"type": "gpu"}, "pyspy.collapsed.txt", "unknown profile type 'gpu'"),
    ({"type": "cpu"}, "memray.speedscope.json", "no cpu profile"),
    ({"label": "nolabel"}, "pyspy.collapsed.txt", "'nolabel' is not key=value"),
    ({"service": "bad name!"}, "pyspy.collapsed.txt", "service"),
]


def test_bad_uploads_are_refused_naming_the_problem_and_store_nothing(sqlite_server) -> None:
    for params, file, message in BAD_UPLOADS:
        query = {"service": "refused", **params}
        response = httpx.post(
            sqlite_server.url + "/api/v1/profiles?" + urlencode(query),
            content=(DATA / file).read_bytes(),
        )
        assert response.status_code == 422, (params, file, response.text)
        assert message in json.dumps(response.json()["detail"]), response.text
    # The command line: exit 2 with the server's message.
    result = hotpath(
        "upload", str(DATA / "memray.speedscope.json"), "--service", "refused",
        "--type", "wall", "--server", sqlite_server.url,
    )  # fmt: skip
    assert result.returncode == 2
    assert "server said 422" in result.stderr and "no wall profile" in result.stderr
    assert httpx.get(sqlite_server.url + "/api/v1/services").json() == []


@pytest.mark.browser
def test_speedscope_renders_our_pprof_export(browser, sqlite_server, tmp_path) -> None:
    path = fixture_file("pyroscope-io.cpu.pprof", tmp_path)
    upload = hotpath("upload", str(path), "--service", "flame", "--server", sqlite_server.url)
    assert upload.returncode == 0, upload.stderr
    profile_url = "/api/v1/profile?" + urlencode(
        {"service": "flame", "format": "pprof", "from": "-1h"}
    )
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{sqlite_server.url}/speedscope/index.html#profileURL={quote(profile_url)}")
    page.locator("text=Sandwich").wait_for(timeout=20_000)
    page.locator("text=Sandwich").click()
    page.locator("text=Symbol Name").wait_for(timeout=10_000)
    body = page.evaluate("document.body.innerText")
    for name in ("price_quotes", "check_risk", "main"):
        assert name in body, f"{name} missing from speedscope's table"
    # speedscope shows pprof's cpu/nanoseconds column: the time, not a count of samples.
    seconds = expected(path, None)[0].total / 100
    assert f"{seconds:.2f}s (100%)" in body
    assert "Something went wrong" not in body
    assert errors == []
