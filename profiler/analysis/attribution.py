"""Budget attribution: which functions spend a hot path's time, in milliseconds.

The in-process histogram says how long a hot-path call takes (its mean, p99, ...); it cannot
say where the time goes. The sampler's stacks can: a stack sampled while a thread was inside
the hot-path function holds that function's frame, and what is below it is where that sample's
time went. So:

1. keep the stacks that contain the hot-path function, cut at its outermost frame (a
   recursive call or a nested hot path counts once, in the outer call);
2. per function below it, the share of those samples where it is the leaf (self) and where it
   is anywhere (total, once per stack);
3. shares times the histogram's mean call duration give milliseconds per call: "of 84 ms,
   risk_check 41 ms, price_quote 25 ms".

The split is of the time the sampler sees. py-spy samples running threads only (unless the
agent runs with idle sampling), so a hot path that also waits (a socket, a lock, sleep) has
its on-CPU time split across the whole mean. The `Attribution` says how many samples it rests
on: a few dozen samples give shares to within about ±10 pp, a few thousand to about ±1 pp.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

from hotpath.profiler.model import Frame, Profile, Stack, function_stats

OWN_TIME = "(self)"  # the children row of the hot-path function's own code


@dataclass(frozen=True, slots=True)
class FunctionShare:
    name: str
    file: str
    self_share: float  # of the samples inside the hot path, with this function as the leaf
    total_share: float  # ... with this function anywhere below the hot-path frame
    self_ms: float | None  # share times the mean call duration; None without a histogram
    total_ms: float | None


@dataclass(frozen=True, slots=True)
class Attribution:
    function: tuple[str, str]  # (qualname, filename) of the hot path's code
    samples_inside: int  # samples whose stack is inside the hot path
    samples_total: int  # all samples of the profile, for context
    mean_ms: float | None  # the histogram's mean call duration
    children: list[FunctionShare]  # the direct callees, and OWN_TIME: they add up to 100%
    functions: list[FunctionShare]  # every function under the hot path, heaviest total first


def parse_function(text: str) -> tuple[str, str]:
    """ "qualname (filename)", as hot paths report their code, into its two parts."""
    # A qualname has no space; a path may have " (".
    name, sep, rest = text.partition(" (")
    if not sep or not rest.endswith(")") or not name:
        return text, ""
    return name, rest[:-1]


def matches(frame: Frame, qualname: str, filename: str) -> bool:
    """Is this sampled frame the hot path's code? Samplers shorten paths (py-spy drops the
    sys.path prefix) and the recorder keeps only the end of long ones: the qualname and the
    file's name must agree, and the shorter path must end the longer one."""
    if frame.name != qualname:
        return False
    if not filename or not frame.file:
        return True
    if PurePath(frame.file).name != PurePath(filename).name:
        return False
    short, long = sorted((frame.file, filename), key=len)
    return long.endswith(short)


def under_function(profile: Profile, qualname: str, filename: str) -> Profile:
    """The stacks that pass through the function, re-rooted at its outermost frame: the flame
    graph of the hot path alone."""
    inside = profile.empty_like()
    for stack, weight in profile.samples.items():
        rooted = _cut(stack, qualname, filename)
        if rooted is not None:
            inside.samples[rooted] += weight
    return inside


def attribute(profile: Profile, qualname: str, filename: str, mean_ms: float | None) -> Attribution:
    """Split the hot path's time between the functions below it (see the module docstring)."""
    inside = under_function(profile, qualname, filename)
    n = inside.total
    stats = function_stats(inside)
    self_w = {(s.name, s.file): s.self_weight for s in stats}
    child_w: Counter[tuple[str, str]] = Counter()
    for stack, weight in inside.samples.items():
        child = stack[1].function_key if len(stack) > 1 else (OWN_TIME, "")
        child_w[child] += weight

    def share(key: tuple[str, str], own: int, total: int) -> FunctionShare:
        self_share, total_share = (own / n, total / n) if n else (0.0, 0.0)
        return FunctionShare(
            key[0],
            key[1],
            self_share,
            total_share,
            None if mean_ms is None else self_share * mean_ms,
            None if mean_ms is None else total_share * mean_ms,
        )

    functions = [share((s.name, s.file), s.self_weight, s.total_weight) for s in stats]
    children = [
        # A child's self time is what it spends in its own code; its total is its whole
        # subtree, which is its share of the hot path.
        share(key, self_w.get(key, 0) if key[0] != OWN_TIME else weight, weight)
        for key, weight in child_w.items()
    ]
    children.sort(key=lambda f: (-f.total_share, f.name, f.file))
    return Attribution((qualname, filename), n, profile.total, mean_ms, children, functions)


def _cut(stack: Stack, qualname: str, filename: str) -> Stack | None:
    for i, frame in enumerate(stack):
        if matches(frame, qualname, filename):
            return stack[i:]
    return None
