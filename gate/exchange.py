"""`hotpath gate --server`: upload this run, fetch the base branch's history to compare with.

The upload goes first, so the server keeps every run of every branch (its charts and change
points see pull-request runs too); it is idempotent, so re-running a CI job does not add the
run twice. The history comes back as the JSON files exactly as uploaded, so the gate compares
them with the same loader and statistics as in offline mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import zstandard

from hotpath.cli.options import auth_headers

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
HISTORY_RUNS = 50


class GateServerError(Exception):
    """A message for the user: the gate cannot use the server (the CLI exits 2)."""


@dataclass
class ServerHistory:
    runs: list[tuple[str, bytes]]  # base-branch runs (source name, JSON as uploaded), oldest
    # first, excluding this upload
    run_url: str  # the server page of the uploaded run


def exchange(
    server: str,
    project: str,
    branch: str,
    commit: str | None,
    base_branch: str,
    run_path: Path,
    *,
    history_runs: int = HISTORY_RUNS,
) -> ServerHistory:
    base = server.rstrip("/")
    try:
        data = Path(run_path).read_bytes()
    except OSError as exc:
        raise GateServerError(f"{run_path}: cannot read the file: {exc.strerror or exc}") from None
    params = {"project": project, "branch": branch}
    if commit:
        params["commit"] = commit
    with httpx.Client(base_url=base, timeout=30, headers=auth_headers()) as client:
        uploaded = call(
            client,
            "POST",
            "/api/v1/bench/runs",
            f"uploading {run_path}",
            params=params,
            content=zstandard.ZstdCompressor(level=3).compress(data),
            headers={"Content-Encoding": "zstd", "X-Hotpath-Source": Path(run_path).name},
        ).json()
        run_id = uploaded["run"]["id"]
        listed = call(
            client,
            "GET",
            "/api/v1/bench/runs",
            f"reading the runs of {project} {base_branch}",
            # One more than wanted, in case this upload is among them (gate on the base branch).
            params={"project": project, "branch": base_branch, "limit": history_runs + 1},
        ).json()
        earlier = [r for r in listed if r["id"] != run_id][-history_runs:]
        runs = [
            (
                _source_name(base, meta),
                call(
                    client, "GET", f"/api/v1/bench/runs/{meta['id']}/raw", "reading a run"
                ).content,
            )
            for meta in earlier
        ]
    return ServerHistory(runs=runs, run_url=base + uploaded["run"]["url"])


def call(
    client: httpx.Client,
    method: str,
    path: str,
    doing: str,
    *,
    attempts: int = 4,
    backoff_s: float = 0.5,
    **kwargs: Any,
) -> httpx.Response:
    """One request, retried on connection errors and on 5xx/429 (the server or its database
    restarting); a 4xx is final and becomes a GateServerError carrying the server's message."""
    last = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            last = f"cannot reach the server at {client.base_url}: {exc or type(exc).__name__}"
            continue
        if response.status_code in RETRYABLE_STATUS:
            last = f"the server answered {response.status_code}: {_detail(response)}"
            continue
        if response.status_code >= 400:
            raise GateServerError(
                f"{doing}: the server refused it ({response.status_code}): {_detail(response)}"
            )
        return response
    raise GateServerError(f"{doing}: {last} (after {attempts} attempts)")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail[:5]
        )
    return str(detail)


def _source_name(server: str, meta: dict[str, Any]) -> str:
    commit = (meta.get("commit") or "no commit")[:12]
    return f"{server} run {meta['id']} ({meta['branch']} {commit}, {meta['source']})"
