"""`hotpath gate --profile`: why did a flagged benchmark get slower?

Each flagged benchmark is re-run alone under pyinstrument (the benchmark fixture runs its
normal rounds), on head and, when the project is a git checkout, on the base commit in a
temporary `git worktree`: base and head profiled on the same machine at the same time make
the fairest diff. The base commit is the newest base-branch run's commit on the server, else
`git merge-base HEAD origin/<base>` (or `<base>`). Profiles are cut to the test function
(pytest's own work left out), written as speedscope JSON, and, with a server, uploaded as
windows of the service `bench-<project>` labelled benchmark, branch, commit, role (base or
head) and pair (one gate run), so the server's differential flame graph compares exactly
these two. Without a base profile from this run, a stored base-branch profile of the
benchmark is used; failing that, head is stored alone and `note` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import zstandard

from hotpath.cli.options import auth_headers
from hotpath.gate.exchange import GateServerError, call
from hotpath.profiler.adapters.pyinstrument import DEFAULT_INTERVAL_S, profile_pytest
from hotpath.profiler.formats import pyinstrument as session_format
from hotpath.profiler.formats import speedscope
from hotpath.profiler.formats import window as wire
from hotpath.profiler.model import WALL, Profile

MAX_LABEL_CHARS = 256
# pyinstrument samples every thread whatever it does: its profiles are wall clock, read and
# compared as such on the server.
PROFILE_TYPE = WALL
# How far back a stored base-branch profile is looked for.
STORED_BASE_LOOKBACK = timedelta(days=30)


@dataclass
class ProfileLink:
    fullname: str
    profile_path: Path | None  # speedscope JSON written locally
    url: str | None  # differential flame graph (or profile) page on the server
    note: str


@dataclass(frozen=True)
class _Uploaded:
    labels: dict[str, str]
    start: datetime
    end: datetime


def service_name(project: str) -> str:
    return f"bench-{project}"


def benchmark_label(fullname: str) -> str:
    """The label value naming a benchmark: its fullname, or a digest of one too long."""
    if len(fullname) <= MAX_LABEL_CHARS:
        return fullname
    return "sha256:" + hashlib.sha256(fullname.encode()).hexdigest()


def profile_flagged(
    fullnames: list[str],
    *,
    rootdir: Path,
    server: str | None,
    project: str | None,
    branch: str | None,
    commit: str | None,
    base_branch: str,
    out_dir: Path,
) -> dict[str, ProfileLink]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rootdir = rootdir.resolve()
    base = server.rstrip("/") if server and project else None
    client = httpx.Client(base_url=base, timeout=30, headers=auth_headers()) if base else None
    pair = uuid.uuid4().hex[:12]
    head_commit = commit or _git(rootdir, "rev-parse", "HEAD")
    links: dict[str, ProfileLink] = {}
    try:
        base_commit = _base_commit(rootdir, client, project, base_branch)
        with _worktree(rootdir, base_commit) as base_root:
            for fullname in fullnames:
                links[fullname] = _profile_one(
                    fullname,
                    rootdir=rootdir,
                    base_root=base_root,
                    base_commit=base_commit,
                    client=client,
                    project=project,
                    branch=branch,
                    head_commit=head_commit,
                    base_branch=base_branch,
                    pair=pair,
                    out_dir=out_dir,
                )
    finally:
        if client is not None:
            client.close()
    return links


def _profile_one(
    fullname: str,
    *,
    rootdir: Path,
    base_root: Path | None,
    base_commit: str | None,
    client: httpx.Client | None,
    project: str | None,
    branch: str | None,
    head_commit: str | None,
    base_branch: str,
    pair: str,
    out_dir: Path,
) -> ProfileLink:
    stem = _file_stem(fullname)
    head, problem = _profile_test(fullname, rootdir)
    if head is None:
        return ProfileLink(fullname, None, None, f"could not profile head: {problem}")
    head_path = out_dir / f"{stem}.head.speedscope.json"
    head_path.write_text(speedscope.dumps(head, f"{fullname} (head)"))
    notes: list[str] = []
    base_profile = None
    if base_root is not None:
        base_profile, problem = _profile_test(fullname, base_root)
        if base_profile is None:
            notes.append(f"base {base_commit[:12] if base_commit else ''} not profiled: {problem}")
        else:
            (out_dir / f"{stem}.base.speedscope.json").write_text(
                speedscope.dumps(base_profile, f"{fullname} (base {base_commit})")
            )
    if client is None or project is None:
        notes.append("base profiled too" if base_profile else "head only")
        return ProfileLink(fullname, head_path, None, "; ".join(notes) + " (no server)")
    common = {"benchmark": benchmark_label(fullname), "pair": pair}
    try:
        head_side = _upload(
            client,
            project,
            head,
            {**common, "role": "head", "branch": branch or "", "commit": head_commit or ""},
        )
        if base_profile is not None:
            base_side = _upload(
                client,
                project,
                base_profile,
                {**common, "role": "base", "branch": base_branch, "commit": base_commit or ""},
            )
            notes.append(f"base {base_commit[:12] if base_commit else ''} and head profiled now")
        else:
            base_side = _stored_base(client, project, fullname, base_branch)
            notes.append(
                "compared with a stored base-branch profile"
                if base_side
                else "no base profile: head stored only"
            )
    except GateServerError as exc:
        return ProfileLink(fullname, head_path, None, f"upload failed: {exc}")
    url = client.base_url.join(
        _diff_url(project, base_side, head_side) if base_side else _profile_url(project, head_side)
    )
    return ProfileLink(fullname, head_path, str(url), "; ".join(notes))


def _profile_test(fullname: str, rootdir: Path) -> tuple[Profile | None, str]:
    node_id = fullname
    result = profile_pytest(node_id, rootdir, interval_s=DEFAULT_INTERVAL_S)
    if result.exit_code != 0 or not result.profile.samples:
        tail = " ".join(result.output.strip().splitlines()[-3:])[-300:]
        return None, f"pytest {node_id} exited {result.exit_code}: {tail}"
    return session_format.focus(result.profile, _test_function(node_id)), ""


def _test_function(node_id: str) -> str:
    """`tests/test_x.py::TestY::test_z[param]` -> `test_z`."""
    return node_id.rpartition("::")[2].partition("[")[0]


def _upload(
    client: httpx.Client, project: str, profile: Profile, labels: dict[str, str]
) -> _Uploaded:
    labels = {k: v for k, v in labels.items() if v}
    start = profile.start or datetime.now(UTC)
    end = max(profile.end or start, start)
    window = wire.from_profile(
        profile,
        service=service_name(project),
        idempotency_key=f"gate-{uuid.uuid4().hex}",
        start=start,
        end=end,
        sample_rate_hz=profile.sample_rate_hz or 1 / DEFAULT_INTERVAL_S,
        labels=labels,
    )
    call(
        client,
        "POST",
        "/api/v1/windows",
        f"uploading the profile of {labels.get('benchmark')}",
        content=zstandard.ZstdCompressor(level=3).compress(window.model_dump_json().encode()),
        headers={"Content-Encoding": "zstd"},
    )
    return _Uploaded(labels, start, end)


def _stored_base(
    client: httpx.Client, project: str, fullname: str, base_branch: str
) -> _Uploaded | None:
    """The base branch's stored profiles of this benchmark over the look-back, if any."""
    until = datetime.now(UTC)
    start = until - STORED_BASE_LOOKBACK
    labels = {"benchmark": benchmark_label(fullname), "branch": base_branch}
    response = client.get(
        "/api/v1/profile",
        params=[
            ("service", service_name(project)),
            ("from", start.isoformat()),
            ("until", until.isoformat()),
            ("format", "collapsed"),
            ("type", PROFILE_TYPE.id),
            *(("label", f"{k}={v}") for k, v in labels.items()),
        ],
    )
    if response.status_code != 200 or int(response.headers.get("x-hotpath-samples", "0")) == 0:
        return None
    return _Uploaded(labels, start, until)


def _selection(side: str, chosen: _Uploaded) -> list[tuple[str, str]]:
    # A second of margin: the server stores window times at microsecond precision.
    return [
        (f"{side}_from", (chosen.start - timedelta(seconds=1)).isoformat()),
        (f"{side}_until", (chosen.end + timedelta(seconds=1)).isoformat()),
        *((f"{side}_label", f"{k}={v}") for k, v in chosen.labels.items()),
    ]


def _diff_url(project: str, base: _Uploaded, head: _Uploaded) -> str:
    query = urlencode(
        [("type", PROFILE_TYPE.id), *_selection("base", base), *_selection("head", head)]
    )
    return f"/services/{quote(service_name(project), safe='')}/diff?{query}"


def _profile_url(project: str, head: _Uploaded) -> str:
    query = urlencode(
        [
            ("from", (head.start - timedelta(seconds=1)).isoformat()),
            ("until", (head.end + timedelta(seconds=1)).isoformat()),
            ("type", PROFILE_TYPE.id),
            *(("label", f"{k}={v}") for k, v in head.labels.items()),
        ]
    )
    return f"/services/{quote(service_name(project), safe='')}?{query}"


def _file_stem(fullname: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", fullname)[-80:].strip("_.")
    return f"{readable}-{hashlib.sha256(fullname.encode()).hexdigest()[:8]}"


# -- git ---------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _base_commit(
    rootdir: Path, client: httpx.Client | None, project: str | None, base_branch: str
) -> str | None:
    if _git(rootdir, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    candidates: list[str] = []
    if client is not None and project is not None:
        with contextlib.suppress(GateServerError, ValueError, KeyError, IndexError):
            runs = call(
                client,
                "GET",
                "/api/v1/bench/runs",
                "reading the newest base-branch run",
                params={"project": project, "branch": base_branch, "limit": 1},
            ).json()
            if runs and runs[-1]["commit"]:
                candidates.append(runs[-1]["commit"])
    for ref in (f"origin/{base_branch}", base_branch):
        merge_base = _git(rootdir, "merge-base", "HEAD", ref)
        if merge_base:
            candidates.append(merge_base)
    for candidate in candidates:
        resolved = _git(rootdir, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if resolved:
            return resolved
    return None


@contextlib.contextmanager
def _worktree(rootdir: Path, commit: str | None) -> Iterator[Path | None]:
    """`rootdir` as of `commit`, in a temporary git worktree; None without a commit."""
    if commit is None:
        yield None
        return
    top = _git(rootdir, "rev-parse", "--show-toplevel")
    if top is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hotpath-gate-base-") as tmp:
        tree = Path(tmp) / "tree"
        if _git(Path(top), "worktree", "add", "--detach", str(tree), commit) is None:
            yield None
            return
        try:
            yield tree / rootdir.relative_to(Path(top).resolve())
        finally:
            _git(Path(top), "worktree", "remove", "--force", str(tree))
