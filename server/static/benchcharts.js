/* hotpath: the history chart of one benchmark (from /api/v1/bench/history), in SVG.

   Runs are spaced evenly (one per merge, however far apart in time); each is a dot with a
   whisker of ±1 standard deviation, clipped to the chart. The mean of each segment between
   change points is a horizontal line, and each change point a dashed vertical line before its
   first run, labelled with the change and the commit it is attributed to. Hovering a dot
   shows its run, commit, time and value (an SVG <title>, so no extra tooltip code). */
"use strict";

(function () {
  const root = document.getElementById("bench-chart");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 960;
  const HEIGHT = 300;
  const MARGIN = { left: 64, right: 16, top: 28, bottom: 28 };

  function node(name, attrs, parent, text) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }

  function unitFor(max) {
    if (max >= 1) return [1, "s"];
    if (max >= 1e-3) return [1e-3, "ms"];
    if (max >= 1e-6) return [1e-6, "µs"];
    return [1e-9, "ns"];
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(v);
    return ticks;
  }

  function status(text, isError) {
    const el = document.getElementById("bench-status");
    if (!el) return;
    el.textContent = text;
    el.className = isError ? "error" : "empty";
  }

  function draw(data) {
    const points = data.points;
    if (!points.length) {
      status("No runs of this benchmark on this branch.", false);
      return;
    }
    const values = points.map((p) => p.value);
    const lows = points.map((p) => Math.max(0, p.value - p.stddev));
    const highs = points.map((p) => p.value + p.stddev);
    // The scale follows the values and the segment means; whiskers are clipped, so one
    // noisy run cannot flatten the rest.
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = (hi - lo) * 0.15 || hi * 0.05 || 1e-9;
    lo = Math.max(0, lo - pad);
    hi = hi + pad;
    const [scale, unit] = unitFor(hi);
    const inner = { w: WIDTH - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom };
    const x = (i) => MARGIN.left + (points.length === 1 ? inner.w / 2 : (i / (points.length - 1)) * inner.w);
    const y = (v) => MARGIN.top + inner.h - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * inner.h;

    const svg = node("svg", {
      id: "bench-svg",
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": `history of ${data.fullname}`,
    });
    for (const tick of niceTicks(lo, hi, 5)) {
      node("line", { class: "bc-grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(tick), y2: y(tick) }, svg);
      node("text", { class: "bc-axis", x: MARGIN.left - 6, y: y(tick) + 4, "text-anchor": "end" }, svg,
        `${+(tick / scale).toPrecision(3)} ${unit}`);
    }
    // Dates when the history spans days, else month-day and time; a label every few runs.
    const span = Date.parse(points[points.length - 1].run_time) - Date.parse(points[0].run_time);
    const stamp = (t) => (span > 3 * 86_400_000 ? t.slice(0, 10) : t.slice(5, 16).replace("T", " "));
    const labelEvery = Math.max(1, Math.ceil(points.length / 8));
    points.forEach((p, i) => {
      if (i % labelEvery !== 0) return;
      node("text", { class: "bc-axis", x: x(i), y: HEIGHT - 8, "text-anchor": "middle" }, svg, stamp(p.run_time));
    });

    // Segment means between change points.
    const bounds = [0, ...data.change_points.map((c) => c.index), points.length];
    for (let s = 0; s + 1 < bounds.length; s++) {
      const seg = values.slice(bounds[s], bounds[s + 1]);
      const mean = seg.reduce((a, b) => a + b, 0) / seg.length;
      node("line", {
        class: "bc-level", x1: x(bounds[s]), x2: x(bounds[s + 1] - 1), y1: y(mean), y2: y(mean),
      }, svg);
    }

    const line = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.value).toFixed(1)}`);
    node("path", { class: "bc-line", d: line.join("") }, svg);
    points.forEach((p, i) => {
      node("line", { class: "bc-whisker", x1: x(i), x2: x(i), y1: y(lows[i]), y2: y(highs[i]) }, svg);
      const dot = node("circle", { class: "bc-dot", cx: x(i), cy: y(p.value), r: 3.5, "data-run": p.run_id }, svg);
      const when = p.run_time.replace("T", " ").slice(0, 16);
      node("title", {}, dot,
        `run #${p.run_id} · ${p.commit ? p.commit.slice(0, 12) : "no commit"} · ${when}\n` +
        `median ${(p.value / scale).toPrecision(4)} ${unit} (±${(p.stddev / scale).toPrecision(2)}), ${p.rounds} rounds`);
    });

    data.change_points.forEach((c, k) => {
      const at = points.length > 1 ? (x(c.index - 1) + x(c.index)) / 2 : x(c.index);
      const mark = node("g", { class: `bc-change ${c.change > 0 ? "slower" : "faster"}`, "data-index": c.index }, svg);
      node("line", { x1: at, x2: at, y1: MARGIN.top - 4, y2: HEIGHT - MARGIN.bottom }, mark);
      const pct = `${c.change > 0 ? "+" : ""}${(c.change * 100).toFixed(1)}%`;
      const label = `${pct} at ${c.commit ? c.commit.slice(0, 10) : "?"}`;
      const anchor = at > WIDTH - 160 ? "end" : "start";
      node("text", { x: at + (anchor === "end" ? -4 : 4), y: MARGIN.top - 10 + (k % 2) * 12, "text-anchor": anchor }, mark, label);
      node("title", {}, mark, `change point before run #${c.run_id}: ${pct}, p = ${c.p_value.toFixed(3)}`);
    });
    root.replaceChildren(svg);
  }

  fetch(root.dataset.url, { headers: { Accept: "application/json" } })
    .then(async (response) => {
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
      return body;
    })
    .then(draw)
    .catch((error) => status(`Could not load the history: ${error.message}`, true));
})();
