"""How fast the diff page's flame graph renders a call tree of about 100,000 nodes.

The data goes through the real path: a real server (`tests.servers.start_server`, SQLite in a
temporary directory) receives two synthetic windows over `POST /api/v1/windows`, a base
(label version=1) and a head (version=2), whose merged call tree has --nodes nodes. The tree
is deep and wide: 40 subtrees under the root, a fan-out of 2-8 near the top and of mostly 1-2
further down (chains), depths up to --max-depth; every leaf and a third of the inner nodes have
self samples. In the head one subtree grew (x3), one vanished and one is new, the rest has
+-20% noise. Then headless Chromium opens /services/bench/diff and the script prints:

* the size of /api/v1/diff/tree's JSON and the server's time to answer it;
* time to first render: from navigation start to the end of the first complete draw
  (`window.__hotpathFirstRender`, set by diffgraph.js), which includes both API calls;
* the first layout and paint, and the number of frames drawn (those >= 0.5 px wide);
* a hover redraw (hit test, overlay, tooltip) and a zoom redraw (a click on a frame: layout
  and paint), each as the script's own work and as the time from the event to the next
  animation frame (the medians of --repeat events);
* a search and the reverse view, for the record.

Usage: python benchmarks/flamegraph_render.py [--nodes 100000] [--repeat 20] [--screenshot PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpath.profiler.formats import window as wire
from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.servers import start_server, stop_process

VERBS = ["get", "put", "load", "parse", "check", "route", "send", "encode", "decode", "merge"]
NOUNS = ["order", "quote", "risk", "book", "fill", "price", "limit", "trade", "cache", "frame"]


def synthetic_tree(
    nodes: int, max_depth: int, seed: int
) -> tuple[list[tuple[str, str]], list[list[int]], list[tuple[int, int]]]:
    """Functions, stacks (function indexes from the root down) and (base, head) counts whose
    merged call tree has exactly `nodes` nodes besides the root."""
    rng = random.Random(seed)
    functions = [
        (f"{v}_{n}_{i}", f"svc/{n}_{i % 40}.py") for i in range(300) for v in VERBS for n in NOUNS
    ]
    parent, fn, depth = [-1], [-1], [0]
    children: list[list[int]] = [[]]
    queue = [(0, nodes)]  # (node, how many descendants it still gets)
    while queue:
        node, budget = queue.pop()
        if budget <= 0:
            continue
        d = depth[node]
        if d == 0:
            k = 40
        elif d < 4:
            k = rng.randint(2, 8)
        elif d >= max_depth - 1:
            k = budget  # a flat fan at the bottom
        else:
            k = rng.choices([1, 2, 3, 4], [0.62, 0.22, 0.1, 0.06])[0]
        k = min(k, budget)
        weights = [rng.expovariate(1) for _ in range(k)]
        spare = budget - k
        shares = [int(spare * w / sum(weights)) for w in weights]
        shares[0] += spare - sum(shares)
        for name, share in zip(rng.sample(range(len(functions)), k), shares, strict=True):
            child = len(parent)
            parent.append(node)
            fn.append(name)
            depth.append(d + 1)
            children.append([])
            children[node].append(child)
            queue.append((child, share))
    # Which subtrees change: under three of the root's children.
    change = [1.0] * len(parent)
    grew, vanished, new = children[0][3], children[0][11], children[0][27]
    for i in range(1, len(parent)):
        top = i
        while parent[top] != 0:
            top = parent[top]
        change[i] = {grew: 3.0, vanished: 0.0, new: -1.0}.get(top, rng.uniform(0.8, 1.2))
    stacks, counts = [], []
    for i in range(1, len(parent)):
        if children[i] and rng.random() > 1 / 3:
            continue
        path = []
        at = i
        while at != 0:
            path.append(fn[at])
            at = parent[at]
        base = rng.randint(1, 50)
        head = round(base * change[i]) if change[i] >= 0 else rng.randint(1, 50)
        stacks.append(path[::-1])
        counts.append((0 if change[i] < 0 else base, head))
    return functions, stacks, counts


def window_body(
    functions: list[tuple[str, str]],
    stacks: list[list[int]],
    counts: list[int],
    start: datetime,
    version: str,
) -> bytes:
    kept = [(s, c) for s, c in zip(stacks, counts, strict=True) if c > 0]
    window = wire.Window(
        service="bench",
        idempotency_key=uuid.uuid4().hex,
        start=start,
        end=start + timedelta(seconds=10),
        sample_rate_hz=100,
        labels={"version": version},
        frames=[(name, file, 1) for name, file in functions],
        stacks=[s for s, _ in kept],
        counts=[c for _, c in kept],
    )
    return zstandard.ZstdCompressor().compress(window.model_dump_json().encode())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


HOVER_JS = """async (points) => {
  const canvas = document.getElementById("graph-overlay");
  const box = canvas.getBoundingClientRect();
  const out = [];
  for (const [x, y] of points) {
    const t0 = performance.now();
    canvas.dispatchEvent(new MouseEvent("mousemove",
      {clientX: box.left + x, clientY: box.top + y, bubbles: true}));
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    out.push([performance.now() - t0, window.__hotpathStats.hoverMs,
              !document.getElementById("tooltip").hidden]);
  }
  return out;
}"""

CLICK_JS = """async ([x, y]) => {
  const canvas = document.getElementById("graph-overlay");
  const box = canvas.getBoundingClientRect();
  const t0 = performance.now();
  canvas.dispatchEvent(new MouseEvent("click",
    {clientX: box.left + x, clientY: box.top + y, bubbles: true}));
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const s = window.__hotpathStats;
  return [performance.now() - t0, s.layoutMs, s.paintMs, s.frames,
          document.getElementById("graph").dataset.zoom];
}"""

ACTION_JS = """async ([selector, value]) => {
  const target = document.querySelector(selector);
  const t0 = performance.now();
  if (value === null) target.click();
  else { target.value = value; target.dispatchEvent(new Event("input", {bubbles: true})); }
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const s = window.__hotpathStats;
  return [performance.now() - t0, s.layoutMs, s.paintMs, s.frames];
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--max-depth", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--screenshot", type=Path, help="save the rendered page here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    functions, stacks, counts = synthetic_tree(args.nodes, args.max_depth, args.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(f"sqlite:///{tmp}/hotpath.db", Path(tmp))
        try:
            with server.client() as client:
                for i, version in enumerate(("1", "2")):
                    side = [c[i] for c in counts]
                    start = now - timedelta(minutes=20 - 10 * i)
                    body = window_body(functions, stacks, side, start, version)
                    response = client.post(
                        "/api/v1/windows", content=body, headers={"Content-Encoding": "zstd"}
                    )
                    response.raise_for_status()
                query = (
                    "service=bench&base_from=-1h&head_from=-1h"
                    "&base_label=version%3D1&head_label=version%3D2"
                )
                t0 = time.perf_counter()
                tree = client.get(f"/api/v1/diff/tree?{query}")
                tree_s = time.perf_counter() - t0
                tree.raise_for_status()
                n_nodes = len(tree.json()["nodes"]["fn"])
                max_stack = max(len(s) for s in stacks)
            print(f"diff tree: {n_nodes:,} nodes (root included), deepest stack {max_stack}")
            print(f"  JSON {len(tree.content) / 1e6:.2f} MB, server answered in {tree_s:.2f} s")

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{server.url}/services/bench/diff?{query.replace('service=bench&', '')}")
                page.wait_for_function("window.__hotpathFirstRender !== undefined", timeout=120_000)
                first = page.evaluate(
                    """() => {
                      const s = window.__hotpathStats;
                      const tree = performance.getEntriesByType("resource")
                        .find((e) => e.name.includes("/api/v1/diff/tree"));
                      return [window.__hotpathFirstRender, s.layoutMs, s.paintMs, s.frames,
                              tree ? tree.responseEnd : null];
                    }"""
                )
                print(f"time to first render: {first[0]:.0f} ms after navigation start")
                print(
                    f"  the tree's response ended at {first[4]:.0f} ms; in the browser after "
                    f"that (JSON parse, preparation, layout, paint): {first[0] - first[4]:.0f} ms"
                )
                print(
                    f"  first layout {first[1]:.1f} ms, paint {first[2]:.1f} ms, "
                    f"{first[3]:,} frames drawn (>= 0.5 px)"
                )
                box = page.locator("#graph-overlay").bounding_box()
                assert box is not None
                rng = random.Random(1)
                rows = max(1, int(box["height"] // 18))
                points = [
                    [rng.uniform(2, box["width"] - 2), 18 * rng.randrange(min(rows, 12)) + 9]
                    for _ in range(args.repeat)
                ]
                hovers = page.evaluate(HOVER_JS, points)
                shown = sum(1 for h in hovers if h[2])
                print(
                    f"hover redraw: {median([h[1] for h in hovers]):.2f} ms of work, "
                    f"{median([h[0] for h in hovers]):.1f} ms from event to next frame "
                    f"(median of {len(hovers)}; tooltip shown for {shown})"
                )
                zooms, resets = [], []
                for i in range(args.repeat):
                    x = box["width"] * (0.05 + 0.9 * i / max(1, args.repeat - 1))
                    zooms.append(page.evaluate(CLICK_JS, [x, 18 * 2 + 9]))
                    resets.append(page.evaluate(ACTION_JS, ["#reset-zoom", None]))
                print(
                    f"zoom redraw (click a frame at depth 2): layout "
                    f"{median([z[1] for z in zooms]):.1f} ms + paint "
                    f"{median([z[2] for z in zooms]):.1f} ms, "
                    f"{median([z[0] for z in zooms]):.1f} ms from click to next frame, "
                    f"{median([z[3] for z in zooms]):,.0f} frames drawn (median of {len(zooms)})"
                )
                print(
                    f"zoom out (reset): layout {median([r[1] for r in resets]):.1f} ms + paint "
                    f"{median([r[2] for r in resets]):.1f} ms, "
                    f"{median([r[0] for r in resets]):.1f} ms to next frame"
                )
                search = page.evaluate(ACTION_JS, ["#search", "parse_"])
                print(
                    f"search 'parse_': {search[0]:.1f} ms to next frame "
                    f"(paint {search[2]:.1f} ms); {page.locator('#matched').inner_text()}"
                )
                page.evaluate(ACTION_JS, ["#search", ""])
                reverse = page.evaluate(ACTION_JS, ["#view-base", None])
                print(
                    f"reverse view: layout {reverse[1]:.1f} ms + paint {reverse[2]:.1f} ms, "
                    f"{reverse[0]:.1f} ms to next frame, {reverse[3]:,} frames drawn"
                )
                if args.screenshot:
                    page.evaluate(ACTION_JS, ["#view-head", None])
                    page.screenshot(path=str(args.screenshot))
                if errors:
                    print("console errors:", *errors, sep="\n  ")
                browser.close()
        finally:
            stop_process(server.process)


if __name__ == "__main__":
    main()
