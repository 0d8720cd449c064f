/* hotpath: the hot-path page's latency chart (from /api/v1/hotpaths/{name}/timeline).

   p50, p95, p99 and max per step as lines, the budget as a dashed red line, and steps whose
   p99 is over the budget shaded. The y axis is linear from 0 and fits the budget and the p99
   (max may run off the top: it is one call; its value shows on hover). */
"use strict";

(function () {
  const root = document.getElementById("latency");
  if (!root) return;
  const svg = document.getElementById("latency-chart");
  const status = document.getElementById("latency-status");
  const legend = document.getElementById("latency-legend");
  const stepText = document.getElementById("latency-step");
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 56, right: 12, top: 10, bottom: 20 };
  const SERIES = [
    ["p50_ms", "p50", "#2271b1"],
    ["p95_ms", "p95", "#3c8d2f"],
    ["p99_ms", "p99", "#e08a00"],
    ["max_ms", "max", "#7a1fa2"],
  ];
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";

  function node(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    parent.appendChild(el);
    return el;
  }

  function stepName(s) {
    if (s % 3600 === 0) return s === 3600 ? "hour" : `${s / 3600} hours`;
    if (s % 60 === 0) return s === 60 ? "minute" : `${s / 60} minutes`;
    return `${s} s`;
  }

  // The swatch's colour is set through the DOM: a style attribute in markup is refused by
  // the Content-Security-Policy (server/security_headers.py).
  function legendItem(colour, text) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    item.append(swatch, text);
    legend.appendChild(item);
  }

  function draw(data) {
    svg.replaceChildren();
    stepText.textContent = stepName(data.step_s);
    legend.replaceChildren();
    for (const [, label, colour] of SERIES) legendItem(colour, label);
    if (data.budget_ms) legendItem("#b32d2e", `budget ${ms(data.budget_ms)}`);
    const points = data.points;
    if (!points.length) {
      status.textContent = "no calls in this range";
      return;
    }
    const width = svg.clientWidth || 800;
    const height = svg.clientHeight || 180;
    const times = points.map((p) => Date.parse(p.start));
    // The page's whole range, so that quiet stretches show as gaps.
    const t0 = Math.min(Number(root.dataset.startMs) || times[0], times[0]);
    const t1 = Math.max(Number(root.dataset.endMs) || 0, times[times.length - 1] + data.step_s * 1000);
    const top = Math.max(data.budget_ms ? data.budget_ms * 1.25 : 0, ...points.map((p) => p.p99_ms * 1.1), 0.01);
    const x = (t) => MARGIN.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - MARGIN.left - MARGIN.right);
    const y = (v) => MARGIN.top + (1 - Math.min(v, top) / top) * (height - MARGIN.top - MARGIN.bottom);
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      node("line", { class: "tl-grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }, svg);
      node("text", { class: "tl-axis", x: MARGIN.left - 4, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = ms(v);
    }
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      node("text", { class: "tl-axis", x: x(t), y: height - 5, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, svg)
        .textContent = clock(new Date(t));
    }
    const stepPx = Math.max(1, x(t0 + data.step_s * 1000) - x(t0));
    if (data.budget_ms) {
      points.forEach((p, i) => {
        if (p.p99_ms > data.budget_ms) {
          node("rect", { class: "lat-breach", x: x(times[i]), y: MARGIN.top, width: stepPx, height: height - MARGIN.top - MARGIN.bottom }, svg);
        }
      });
      node("line", { class: "lat-budget", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(data.budget_ms), y2: y(data.budget_ms) }, svg);
    }
    for (const [key, , colour] of SERIES) {
      const d = points.map((p, i) => `${i ? "L" : "M"}${(x(times[i]) + stepPx / 2).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
      node("path", { class: "lat-line", d, stroke: colour, "data-series": key }, svg);
      if (points.length <= 60) {
        // Dots, so that isolated steps (a line of one point) show too.
        points.forEach((p, i) => {
          node("circle", { cx: x(times[i]) + stepPx / 2, cy: y(p[key]), r: 2.5, fill: colour, "data-series": key }, svg);
        });
      }
    }
    const breaches = data.budget_ms ? points.filter((p) => p.p99_ms > data.budget_ms).length : 0;
    const summary = `${points.length} steps` + (data.budget_ms ? `, p99 over budget in ${breaches}` : "");
    status.textContent = summary;
    svg.onmousemove = (event) => {
      const box = svg.getBoundingClientRect();
      const at = event.clientX - box.left;
      let best = 0;
      times.forEach((t, i) => {
        if (Math.abs(x(t) + stepPx / 2 - at) < Math.abs(x(times[best]) + stepPx / 2 - at)) best = i;
      });
      const p = points[best];
      status.textContent = `${clock(new Date(times[best]))}: ${p.count} calls, p50 ${ms(p.p50_ms)}, p95 ${ms(p.p95_ms)}, p99 ${ms(p.p99_ms)}, max ${ms(p.max_ms)}` +
        (p.over_budget_share != null ? `, ${(p.over_budget_share * 100).toFixed(1)}% over budget` : "");
    };
    svg.onmouseleave = () => { status.textContent = summary; };
  }

  fetch(root.dataset.url)
    .then((r) => (r.ok ? r.json() : r.json().then((e) => Promise.reject(new Error(e.detail || r.statusText)))))
    .then(draw)
    .catch((err) => { status.textContent = `could not load latency: ${err.message}`; });
})();
