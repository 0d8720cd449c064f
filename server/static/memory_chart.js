/* hotpath: the service page's memory chart (from /api/v1/memory): each process's RSS over
   the page's range, one line per pid, under the samples timeline.

   A pid whose RSS is growing over the trend horizon (Theil-Sen with Mann-Kendall, judged by
   the server) is drawn thicker and listed with the server's sentence. The y axis runs from
   0 to the highest reading, in MB (10^6 bytes, as the sentences say). */
"use strict";

(function () {
  const root = document.getElementById("memory");
  if (!root) return;
  const svg = document.getElementById("memory-chart");
  const status = document.getElementById("memory-status");
  const legend = document.getElementById("memory-legend");
  const trends = document.getElementById("memory-trends");
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 56, right: 12, top: 10, bottom: 20 };
  const COLOURS = ["#2271b1", "#3c8d2f", "#e08a00", "#7a1fa2", "#00838f", "#8d6e63", "#5c6bc0", "#c2185b"];
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const mb = (v) => (v / 1e6 >= 100 ? (v / 1e6).toFixed(0) : (v / 1e6).toFixed(1)) + " MB";

  function node(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    parent.appendChild(el);
    return el;
  }

  // Colours through the DOM: style attributes in markup are refused by the CSP.
  function legendItem(colour, text, growing) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    item.append(swatch, text);
    if (growing) item.className = "growing";
    legend.appendChild(item);
  }

  function draw(data) {
    svg.replaceChildren();
    legend.replaceChildren();
    trends.replaceChildren();
    const processes = data.processes;
    if (!processes.length) {
      status.textContent = "no memory readings in this range (agents ship RSS with every window)";
      return;
    }
    const width = svg.clientWidth || 800;
    const height = svg.clientHeight || 140;
    const t0 = Number(root.dataset.startMs);
    const t1 = Number(root.dataset.endMs);
    const top = Math.max(...processes.flatMap((p) => p.points.map((q) => q.rss_bytes)), 1) * 1.1;
    const x = (t) => MARGIN.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - MARGIN.left - MARGIN.right);
    const y = (v) => MARGIN.top + (1 - v / top) * (height - MARGIN.top - MARGIN.bottom);
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      node("line", { class: "tl-grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }, svg);
      node("text", { class: "tl-axis", x: MARGIN.left - 4, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = mb(v);
    }
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      node("text", { class: "tl-axis", x: x(t), y: height - 5, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, svg)
        .textContent = clock(new Date(t));
    }
    let growing = 0;
    processes.forEach((p, n) => {
      const colour = COLOURS[n % COLOURS.length];
      const isGrowing = Boolean(p.trend && p.trend.growing);
      growing += isGrowing ? 1 : 0;
      const d = p.points.map((q, i) => `${i ? "L" : "M"}${x(Date.parse(q.at)).toFixed(1)},${y(q.rss_bytes).toFixed(1)}`).join("");
      const line = node("path", { class: isGrowing ? "mem-line growing" : "mem-line", d, stroke: colour, "data-pid": p.pid }, svg);
      node("title", {}, line).textContent = p.trend ? p.trend.summary : `pid ${p.pid}`;
      if (p.points.length === 1) {
        node("circle", { cx: x(Date.parse(p.points[0].at)), cy: y(p.points[0].rss_bytes), r: 2.5, fill: colour, "data-pid": p.pid }, svg);
      }
      legendItem(colour, `pid ${p.pid} ${mb(p.latest.rss_bytes)}${isGrowing ? " ▲ growing" : ""}`, isGrowing);
      if (p.trend) {
        const item = document.createElement("li");
        item.textContent = p.trend.summary;
        item.dataset.pid = p.pid;
        if (isGrowing) item.className = "growing";
        trends.appendChild(item);
      }
    });
    const summary = `${processes.length} process${processes.length === 1 ? "" : "es"}, ${growing} growing`;
    status.textContent = summary;
    svg.onmousemove = (event) => {
      const box = svg.getBoundingClientRect();
      const at = t0 + ((event.clientX - box.left - MARGIN.left) / (width - MARGIN.left - MARGIN.right)) * (t1 - t0);
      const parts = processes.map((p) => {
        let best = p.points[0];
        for (const q of p.points) if (Math.abs(Date.parse(q.at) - at) < Math.abs(Date.parse(best.at) - at)) best = q;
        return `pid ${p.pid} ${mb(best.rss_bytes)}`;
      });
      status.textContent = `${clock(new Date(at))}: ${parts.join(", ")}`;
    };
    svg.onmouseleave = () => { status.textContent = summary; };
  }

  fetch(root.dataset.url)
    .then((r) => (r.ok ? r.json() : r.json().then((e) => Promise.reject(new Error(e.detail || r.statusText)))))
    .then(draw)
    .catch((err) => { status.textContent = `could not load memory: ${err.message}`; });
})();
