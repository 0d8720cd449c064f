"""The real Pyroscope Python client of the legacy ingest API (pyroscope-io 0.8.16, which
posts gzipped pprof to `/ingest?format=pprof` every 10 s of wall clock) profiling a real
process into a real server: what it sent is stored as a cpu profile of its application, with
its tags, and reads back through the format registry with the stacks the process ran."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from hotpath.profiler.formats import collapsed
from hotpath.profiler.model import function_stats

CLIENT = textwrap.dedent("""
    import sys, time
    import pyroscope

    def busy_pricing(seconds):
        end = time.perf_counter() + seconds
        acc = 0
        while time.perf_counter() < end:
            for i in range(1_000):
                acc += i * i
        return acc

    pyroscope.configure(
        application_name="legacy-engine",
        server_address=sys.argv[1],
        sample_rate=100,
        tags={"region": "eu"},
    )
    busy_pricing(float(sys.argv[2]))
    pyroscope.shutdown()  # sends the last partial window
""")


def _service_when_stored(url: str, name: str, wait_s: float = 20.0) -> list[dict]:
    """The service's entry once the client's last window is stored: on a loaded machine the
    server may still be writing it when the client has exited."""
    deadline = time.monotonic() + wait_s
    while True:
        services = httpx.get(f"{url}/api/v1/services", timeout=30).json()
        found = [s for s in services if s["name"] == name]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_pyroscope_io_legacy_client_is_stored_as_cpu(sqlite_server, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    done = subprocess.run(
        # 14 s: the client uploads on 10 s wall-clock boundaries and its shutdown may cut the
        # last, partial upload short (the server sees the client disconnect); in 14 s either
        # the first boundary comes after 4 s (that upload holds >= 4 s) or a whole 10 s
        # window ends before the run does
        [sys.executable, str(script), sqlite_server.url, "14"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = _service_when_stored(sqlite_server.url, "legacy-engine")
    assert entry["types"] == ["cpu"]
    response = httpx.get(
        f"{sqlite_server.url}/api/v1/profile",
        params={"service": "legacy-engine", "format": "collapsed", "from": "-10m"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    profile = collapsed.loads(response.text)
    # >= 4 s stored at 100 Hz: hundreds of samples, nearly all in the busy function.
    assert profile.total > 200, profile.total
    # Its static tags arrive inside the pprof, on every sample: they label the series.
    tagged = httpx.get(
        f"{sqlite_server.url}/api/v1/profile",
        params={
            "service": "legacy-engine",
            "format": "collapsed",
            "from": "-10m",
            "label": "region=eu",
        },
        timeout=30,
    )
    assert collapsed.loads(tagged.text).total == profile.total
    busy = {s.name: s.total_weight for s in function_stats(profile)}.get("busy_pricing", 0)
    assert busy / profile.total > 0.8, collapsed.dumps(profile)[:2000]
