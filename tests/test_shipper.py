"""The agent's shipper: spool-first delivery, orphaned spools adopted, nothing sent twice; its
token, and windows refused for good set aside in the quarantine without blocking the rest."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import zstandard

from hotpath.agent.shipper import Shipper
from hotpath.profiler.formats import collapsed
from hotpath.profiler.formats import window as wire
from tests.servers import REPO, attach_agent, free_port, start_server, stop_process
from tests.test_agent import agent_summary, spawn_target

START = datetime.now(UTC) - timedelta(minutes=10)


def window(i: int) -> wire.Window:
    return wire.from_profile(
        collapsed.loads(f"main;work_{i % 3} {i + 1}\n"),
        service="svc",
        idempotency_key=uuid.uuid4().hex,
        start=START + timedelta(seconds=10 * i),
        end=START + timedelta(seconds=10 * i + 10),
        sample_rate_hz=100,
        labels={},
    )


def stored_total(url: str) -> int:
    response = httpx.get(
        url + "/api/v1/profile", params={"service": "svc", "format": "collapsed", "from": "-1h"}
    )
    return collapsed.loads(response.text).total if response.status_code == 200 else 0


def test_windows_left_by_a_crashed_agent_are_adopted_and_sent_once(
    sqlite_server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # An agent that found no server, then died without a goodbye (os._exit: no cleanup).
    crashed = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from hotpath.agent.shipper import Shipper
        from tests.test_shipper import window
        shipper = Shipper("http://127.0.0.1:{free_port()}", Path({str(spool)!r}), backoff_s=60)
        for i in range(5):
            shipper.submit(window(i))
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", crashed], check=True, timeout=60)
    assert len(list(spool.glob("agent-*/*.zst"))) == 5

    live = Shipper(sqlite_server.url, spool)
    assert live.adopted == 5
    for i in range(5, 8):
        live.submit(window(i))
    assert live.close(timeout_s=20) == 0
    assert live.shipped == 8
    assert stored_total(sqlite_server.url) == sum(range(1, 9))
    assert not list(spool.glob("agent-*")), "empty agent folders are removed"


def test_two_live_agents_never_take_each_others_windows(sqlite_server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first, second = Shipper(sqlite_server.url, spool), Shipper(sqlite_server.url, spool)
    assert first.adopted == second.adopted == 0
    for i in range(10):
        (first if i % 2 else second).submit(window(i))
    assert first.close() == 0 and second.close() == 0
    assert first.shipped == second.shipped == 5
    assert stored_total(sqlite_server.url) == sum(range(1, 11))


# -- tokens, refusals and the quarantine ----------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def test_the_token_goes_with_every_window_and_a_refused_one_keeps_them_spooled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that requires tokens: a wrong token is refused (401), the windows stay in the
    spool (not quarantined) and the log says why once; the next agent, with the right token,
    adopts and sends them all."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    server = start_server(db, tmp_path / "server", auth="required")
    spool = tmp_path / "spool"
    try:
        with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
            wrong = Shipper(server.url, spool, token="hp_wrong", backoff_s=0.05)
            for i in range(4):
                wrong.submit(window(i))
            time.sleep(1.5)  # several backed-off retries
            assert wrong.close(timeout_s=0.5) == 4
        assert (wrong.shipped, wrong.quarantined) == (0, 0)
        refusals = [r.getMessage() for r in caplog.records if "refused the token" in r.message]
        assert len(refusals) == 1, "logged once, not once per retry"
        assert "the server refused the token: HTTP 401" in refusals[0]
        assert "hp_wrong" not in caplog.text, "the token itself is never logged"
        assert not (spool / "quarantine").exists()

        right = Shipper(server.url, spool, token=server.token)
        assert right.adopted == 4
        right.submit(window(4))
        assert right.close(timeout_s=20) == 0
        assert right.shipped == 5
        with server.client() as client:
            response = client.get(
                "/api/v1/profile", params={"service": "svc", "format": "collapsed", "from": "-1h"}
            )
        assert collapsed.loads(response.text).total == sum(range(1, 6))
    finally:
        stop_process(server.process)


def test_a_window_the_server_refuses_is_set_aside_and_the_next_ones_go_on(
    sqlite_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real 413 (more labels than the server allows) between good windows."""
    spool = tmp_path / "spool"
    bad = window(1)
    bad.labels = {f"k{i}": "v" for i in range(40)}
    shipper = Shipper(sqlite_server.url, spool)
    with caplog.at_level(logging.ERROR, logger="hotpath.agent"):
        for w in (window(0), bad, window(2)):
            shipper.submit(w)
        assert shipper.close(timeout_s=20) == 0
    assert (shipper.shipped, shipper.quarantined) == (2, 1)
    assert stored_total(sqlite_server.url) == 1 + 3
    aside = list((spool / "quarantine").glob("*.zst"))
    assert [p.name.endswith(f"-{bad.idempotency_key}.zst") for p in aside] == [True]
    reason = aside[0].with_suffix(".reason").read_text()
    assert "status: 413" in reason and "labels" in reason and "time: " in reason
    assert "refused window" in caplog.text and "set aside in" in caplog.text
    assert not list(spool.glob("agent-*")), "the agent folder is gone; the quarantine stays"


def test_hot_paths_the_service_has_no_room_for_are_left_out_and_the_samples_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real server with room for 2 hot-path names; windows bring 3: the first is refused
    (422 naming the third), sent again without it, and so are the next ones; every sample
    is stored, nothing is set aside, and the log says so once."""
    from hotpath.profiler.hotpath.histogram import Histogram

    server = start_server(
        f"sqlite:///{tmp_path / 'h.db'}",
        tmp_path / "srv",
        env={"HOTPATH_MAX_HOT_PATHS_PER_SERVICE": "2"},
    )
    try:
        histogram = Histogram()
        histogram.record(2_000_000)
        shipper = Shipper(server.url, tmp_path / "spool")
        with caplog.at_level(logging.WARNING, logger="hotpath.agent"):
            for i in range(4):
                w = window(i)
                w.hot_paths = [
                    wire.HotPathWindow(name=name, histogram=histogram.to_wire())
                    for name in ("order", "quote", "cancel")
                ]
                shipper.submit(w)
            assert shipper.close(timeout_s=20) == 0
        assert (shipper.shipped, shipper.quarantined) == (4, 0)
        assert stored_total(server.url) == 1 + 2 + 3 + 4
        paths = httpx.get(
            server.url + "/api/v1/hotpaths", params={"service": "svc", "from": "-1h"}
        ).json()
        assert sorted((p["name"], p["count"]) for p in paths) == [("order", 4), ("quote", 4)]
        assert caplog.text.count("no room for hot paths cancel") == 1
    finally:
        stop_process(server.process)


class ScriptedServer:
    """A real HTTP server with scripted answers, for what our server does not do on demand:
    `answer(window_json) -> status`."""

    def __init__(self, answer: Callable[[dict], int]) -> None:
        self.stored: list[str] = []
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                data = json.loads(zstandard.ZstdDecompressor().decompress(body))
                owner.requests += 1
                status = answer(data)
                if status == 201:
                    owner.stored.append(data["idempotency_key"])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"detail": f"scripted {status}"}).encode())

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_a_window_answered_500_n_times_in_a_row_is_set_aside(tmp_path: Path) -> None:
    def answer(data: dict) -> int:
        poisoned = any("poison" in frame[0] for frame in data["frames"])
        return 500 if poisoned else 201

    server = ScriptedServer(answer)
    poison = wire.from_profile(
        collapsed.loads("main;poison 5\n"),
        service="svc",
        idempotency_key=uuid.uuid4().hex,
        start=START + timedelta(seconds=15),
        end=START + timedelta(seconds=16),
        sample_rate_hz=100,
        labels={},
    )
    try:
        shipper = Shipper(server.url, tmp_path / "spool", backoff_s=0.02, max_server_errors=3)
        good = [window(i) for i in range(4)]
        for w in (*good[:2], poison, *good[2:]):
            shipper.submit(w)
        assert shipper.close(timeout_s=20) == 0
    finally:
        server.close()
    assert server.stored == [w.idempotency_key for w in good], "in order, none blocked"
    assert server.requests == 4 + 3
    assert shipper.quarantined == 1
    reason = next((tmp_path / "spool" / "quarantine").glob("*.reason")).read_text()
    assert "HTTP 500 3 times in a row" in reason and "scripted 500" in reason


def test_503_and_429_are_waited_out_however_long(tmp_path: Path) -> None:
    """The server's database away (503) or a rate limit (429) says nothing about the window."""
    answers = iter([503] * 4 + [429] * 2)
    server = ScriptedServer(lambda _data: next(answers, 201))
    try:
        shipper = Shipper(server.url, tmp_path / "spool", backoff_s=0.02, max_server_errors=2)
        for i in range(3):
            shipper.submit(window(i))
        assert shipper.close(timeout_s=30) == 0
    finally:
        server.close()
    assert (shipper.shipped, shipper.quarantined, shipper.deferred) == (3, 0, 3)
    assert len(server.stored) == 3


def test_a_wrong_server_address_keeps_windows_spooled(sqlite_server, tmp_path: Path) -> None:
    """404 for the ingest route is the address's fault, not the window's: nothing set aside."""
    shipper = Shipper(sqlite_server.url + "/wrong/prefix", tmp_path / "spool", backoff_s=0.05)
    shipper.submit(window(0))
    time.sleep(0.5)
    assert shipper.close(timeout_s=0.2) == 1
    assert (shipper.shipped, shipper.quarantined) == (0, 0)


def test_rejected_files_of_older_agents_move_into_the_quarantine(
    sqlite_server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    old = spool / "agent-1-deadbeef"
    old.mkdir(parents=True)
    (old / ".lock").touch()
    (old / "00000000000000000001-aaaa.rejected").write_bytes(b"refused long ago")
    body = zstandard.ZstdCompressor().compress(window(0).model_dump_json().encode())
    (old / "00000000000000000002-bbbb.zst").write_bytes(body)

    shipper = Shipper(sqlite_server.url, spool)
    assert shipper.close(timeout_s=20) == 0
    assert (shipper.adopted, shipper.shipped) == (1, 1)
    assert not old.exists()
    aside = spool / "quarantine" / "00000000000000000001-aaaa.zst"
    assert aside.read_bytes() == b"refused long ago"
    assert "earlier agent" in aside.with_suffix(".reason").read_text()


def test_the_real_agent_sends_its_token_from_the_environment(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    server = start_server(db, tmp_path / "server", auth="required")
    target, _ = spawn_target(tmp_path, seconds=60)
    env = {**os.environ, "HOTPATH_TOKEN": server.token or ""}
    agent = attach_agent(
        target.pid, server.url, "acc", "--window", "1", spool_dir=tmp_path / "spool", env=env
    )
    try:
        time.sleep(3)
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
        assert server.token and server.token not in err
        summary = agent_summary(err)
        with server.client() as client:
            response = client.get(
                "/api/v1/profile", params={"service": "acc", "format": "collapsed", "from": "-1h"}
            )
        assert collapsed.loads(response.text).total == summary["samples"] > 0
    finally:
        stop_process(target)
        stop_process(agent)
        stop_process(server.process)
