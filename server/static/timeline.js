/* hotpath: the timeline of the service page (samples over time, from /api/v1/timeline).

   Drag on it to select a range: the flame graph (speedscope, in the iframe) follows it, and
   the page's URL is kept in sync (history.replaceState), so a reload shows the same thing.
   Shift+drag, or a drag with "second range" ticked, selects a second range; with both, the
   "Compare" link opens the diff page with base = the first range and head = the second.

   Selections snap to the timeline's buckets (a minute, or an hour beyond two days), the
   resolution at which the server stores counts, so the sample count shown for a selection
   is the sum of the buckets it covers: exact, with no extra request.

   Everything is of the page's profile type (data-type: cpu, wall, alloc_bytes...): the
   timeline, the flame graph and the compare link all carry type=, so two types never mix.

   URL parameters: type, from/until (the selected range, the same as the server's), view_from and
   view_until (the timeline's own span, which stays when a range is selected), cmp_from and
   cmp_until (the second range), by (a label key: one line per value). */
"use strict";

(function () {
  const root = document.getElementById("timeline");
  if (!root) return;

  const MINUTE = 60_000;
  const HOUR = 3_600_000;
  const TWO_DAYS = 2 * 86_400_000;
  const HEIGHT = 110;
  const MARGIN = { left: 46, right: 10, top: 10, bottom: 20 };
  const MAX_LINES = 8; // more label values than this are drawn as "other"
  const COLOURS = ["#e08a00", "#2271b1", "#b32d2e", "#3c8d2f", "#7a1fa2", "#00838f", "#8d6e63", "#c2185b", "#777777"];
  const SVG = "http://www.w3.org/2000/svg";

  const el = {
    svg: document.getElementById("timeline-chart"),
    by: document.getElementById("timeline-by"),
    second: document.getElementById("compare-mode"),
    legend: document.getElementById("timeline-legend"),
    status: document.getElementById("timeline-status"),
    stepText: document.getElementById("timeline-step"),
    zoom: document.getElementById("timeline-zoom"),
    compareBar: document.getElementById("compare-bar"),
    compareBase: document.getElementById("compare-base"),
    compareHead: document.getElementById("compare-head"),
    compareLink: document.getElementById("compare-link"),
    compareClear: document.getElementById("compare-clear"),
    rangeText: document.getElementById("range-text"),
    samples: document.getElementById("range-samples"),
    collapsed: document.getElementById("collapsed-link"),
    empty: document.getElementById("flamegraph-empty"),
  };

  const numberFormat = new Intl.NumberFormat("en-US");
  const pad = (n) => String(n).padStart(2, "0");
  const day = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const clock = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const hhmm = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
  function rangeText([a, b]) {
    const start = new Date(a);
    const end = new Date(b);
    const endText = day(start) === day(end) ? clock(end) : `${day(end)} ${clock(end)}`;
    return `${day(start)} ${clock(start)} – ${endText} UTC`;
  }
  function shortRange([a, b]) {
    const start = new Date(a);
    const end = new Date(b);
    return day(start) === day(end) ? `${hhmm(start)}–${hhmm(end)}` : `${day(start)} ${hhmm(start)} – ${day(end)} ${hhmm(end)}`;
  }
  function parseTime(text) {
    if (!text) return null;
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : ms;
  }
  /* The server's rule (store.timeline): minutes up to two days, else hours. */
  const stepFor = (span) => (span <= TWO_DAYS ? MINUTE : HOUR);

  const params = new URLSearchParams(location.search);
  const service = root.dataset.service;
  const labels = JSON.parse(root.dataset.labels || "[]");
  const type = root.dataset.type || "cpu";
  const unit = root.dataset.unit || "samples";
  const state = {
    selected: [Number(root.dataset.startMs), Number(root.dataset.endMs)],
    second: null,
    view: null,
    step: MINUTE,
    by: params.get("by") || "",
    data: null, // {buckets: [ms...], lines: [{name, values, colour}], totals: Float64Array}
    drag: null,
    request: 0,
  };
  const cmp = [parseTime(params.get("cmp_from")), parseTime(params.get("cmp_until"))];
  if (cmp[0] !== null && cmp[1] !== null && cmp[1] > cmp[0]) state.second = cmp;
  {
    let from = parseTime(params.get("view_from")) ?? state.selected[0];
    let until = parseTime(params.get("view_until")) ?? state.selected[1];
    // The timeline shows at least the selections.
    from = Math.min(from, state.selected[0], state.second ? state.second[0] : Infinity);
    until = Math.max(until, state.selected[1], state.second ? state.second[1] : -Infinity);
    setView(from, until);
  }

  /* The timeline's span, aligned to whole buckets so that every bucket it shows is whole. */
  function setView(from, until) {
    let step = stepFor(until - from);
    let a = Math.floor(from / step) * step;
    let b = Math.ceil(until / step) * step;
    if (stepFor(b - a) !== step) {
      step = stepFor(b - a);
      a = Math.floor(from / step) * step;
      b = Math.ceil(until / step) * step;
    }
    state.view = [a, b];
    state.step = step;
  }

  function labelQuery() {
    return labels.map((pair) => ["label", pair]);
  }

  async function load() {
    const query = new URLSearchParams([["service", service], ["type", type], ["from", iso(state.view[0])], ["until", iso(state.view[1])], ...labelQuery()]);
    if (state.by) query.set("by", state.by);
    const request = ++state.request;
    el.status.textContent = "Loading…";
    let body;
    try {
      const response = await fetch(`/api/v1/timeline?${query}`);
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      body = await response.json();
    } catch (error) {
      if (request === state.request) el.status.textContent = `Could not load the timeline (${error.message}).`;
      return;
    }
    if (request !== state.request) return; // a newer request is on its way
    el.status.textContent = "";
    state.step = body.step_s * 1000;
    el.stepText.textContent = state.step === MINUTE ? "minute" : state.step === HOUR ? "hour" : `${body.step_s} s`;
    state.data = shape(body);
    render();
  }

  /* Dense bucket arrays (the API lists non-empty buckets only), one per line, the largest
     MAX_LINES lines kept and the rest summed as "other". */
  function shape(body) {
    const step = state.step;
    const first = Math.floor(state.view[0] / step) * step;
    const count = Math.max(1, Math.ceil((state.view[1] - first) / step));
    const buckets = Array.from({ length: count }, (_, i) => first + i * step);
    let lines = body.lines.map((line) => {
      const values = new Float64Array(count);
      let total = 0;
      for (const [at, n] of line.points) {
        const i = Math.floor((at * 1000 - first) / step);
        if (i >= 0 && i < count) {
          values[i] += n;
          total += n;
        }
      }
      return { name: line.name, values, total };
    });
    lines.sort((x, y) => y.total - x.total);
    if (lines.length > MAX_LINES) {
      const other = { name: "other", values: new Float64Array(count), total: 0 };
      for (const line of lines.slice(MAX_LINES - 1)) {
        line.values.forEach((v, i) => { other.values[i] += v; });
        other.total += line.total;
      }
      lines = [...lines.slice(0, MAX_LINES - 1), other];
    }
    lines.forEach((line, i) => { line.colour = COLOURS[i % COLOURS.length]; });
    const totals = new Float64Array(count);
    for (const line of lines) line.values.forEach((v, i) => { totals[i] += v; });
    return { buckets, lines, totals };
  }

  /* Samples in a range of whole buckets. */
  function samplesIn([a, b]) {
    if (!state.data) return null;
    let sum = 0;
    state.data.buckets.forEach((at, i) => {
      if (at >= a && at < b) sum += state.data.totals[i];
    });
    return sum;
  }

  // Geometry: plot coordinates <-> time.
  function plot() {
    const width = el.svg.clientWidth || 800;
    return { width, x0: MARGIN.left, x1: width - MARGIN.right, y0: MARGIN.top, y1: HEIGHT - MARGIN.bottom };
  }
  function xOf(ms, p) {
    return p.x0 + ((ms - state.view[0]) / (state.view[1] - state.view[0])) * (p.x1 - p.x0);
  }
  function timeOf(x, p) {
    const clamped = Math.min(Math.max(x, p.x0), p.x1);
    return state.view[0] + ((clamped - p.x0) / (p.x1 - p.x0)) * (state.view[1] - state.view[0]);
  }
  function niceMax(value) {
    if (value <= 0) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }
  const TICKS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 48 * HOUR, 168 * HOUR];

  function node(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function render() {
    const svg = el.svg;
    const p = plot();
    svg.setAttribute("viewBox", `0 0 ${p.width} ${HEIGHT}`);
    // The geometry, for tests: a time t (ms) is at x = left + (t - from) / (until - from) * (right - left).
    Object.assign(svg.dataset, { viewFrom: state.view[0], viewUntil: state.view[1], plotLeft: p.x0, plotRight: p.x1 });
    svg.replaceChildren();
    const data = state.data;
    const max = data ? niceMax(Math.max(1, ...data.lines.map((l) => Math.max(0, ...l.values)))) : 1;
    const yOf = (v) => p.y1 - (v / max) * (p.y1 - p.y0);

    // Axes: three y gridlines, time ticks at a round interval about every 90 px.
    for (const v of Number.isInteger(max / 2) ? [0, max / 2, max] : [0, max]) {
      svg.append(node("line", { class: "tl-grid", x1: p.x0, x2: p.x1, y1: yOf(v), y2: yOf(v) }));
      svg.append(node("text", { class: "tl-axis", x: p.x0 - 5, y: yOf(v) + 4, "text-anchor": "end" }, numberFormat.format(v)));
    }
    const span = state.view[1] - state.view[0];
    const interval = TICKS.find((t) => (t / span) * (p.x1 - p.x0) >= 90) || TICKS[TICKS.length - 1];
    for (let t = Math.ceil(state.view[0] / interval) * interval; t <= state.view[1]; t += interval) {
      const d = new Date(t);
      const text = interval >= 24 * HOUR || (d.getUTCHours() === 0 && d.getUTCMinutes() === 0) ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` : hhmm(d);
      const x = xOf(t, p);
      svg.append(node("line", { class: "tl-grid", x1: x, x2: x, y1: p.y0, y2: p.y1 }));
      if (x > 20 && x < p.width - 20) {
        svg.append(node("text", { class: "tl-axis", x, y: HEIGHT - 5, "text-anchor": "middle" }, text));
      }
    }

    // One step line per series: a bucket's count spans the bucket.
    if (data) {
      for (const line of data.lines) {
        let d = "";
        data.buckets.forEach((at, i) => {
          const x = xOf(at, p);
          const y = yOf(line.values[i]);
          d += `${i === 0 ? "M" : "L"}${x.toFixed(1)},${y.toFixed(1)}H${xOf(at + state.step, p).toFixed(1)}`;
        });
        if (data.lines.length === 1) {
          const area = `${d}V${p.y1}H${xOf(data.buckets[0], p).toFixed(1)}Z`;
          svg.append(node("path", { class: "tl-area", d: area }));
        }
        svg.append(node("path", { class: "tl-line", d, stroke: line.colour }));
      }
      el.legend.replaceChildren(
        ...(data.lines.length > 1 || state.by
          ? data.lines.map((line) => {
              const item = document.createElement("span");
              const swatch = document.createElement("span");
              swatch.className = "swatch";
              swatch.style.background = line.colour;
              item.append(swatch, `${line.name} (${numberFormat.format(line.total)})`);
              return item;
            })
          : []),
      );
    }

    // Selections: the first (base) whenever it is narrower than the view or a second exists.
    const whole = state.selected[0] - state.view[0] < state.step && state.view[1] - state.selected[1] < state.step;
    el.zoom.disabled = whole;
    if (state.second || !whole) drawSelection(svg, p, state.selected, "base", state.second ? "base" : "");
    if (state.second) drawSelection(svg, p, state.second, "head", "head");
    if (state.drag) {
      const [a, b] = dragRange(state.drag, p);
      drawSelection(svg, p, [a, b], state.drag.second ? "head" : "base", "");
    }
  }

  function drawSelection(svg, p, [a, b], kind, label) {
    const x = Math.max(p.x0, xOf(a, p));
    const w = Math.max(1, Math.min(p.x1, xOf(b, p)) - x);
    svg.append(node("rect", { class: `sel sel-${kind}`, x, y: p.y0, width: w, height: p.y1 - p.y0 }));
    if (label) svg.append(node("text", { class: `sel-label ${kind}`, x: x + 3, y: p.y0 + 11 }, label));
  }

  /* A drag as a range of whole buckets (at least one). */
  function dragRange(drag, p) {
    const step = state.step;
    const t0 = timeOf(Math.min(drag.x0, drag.x1), p);
    const t1 = timeOf(Math.max(drag.x0, drag.x1), p);
    let a = Math.round(t0 / step) * step;
    let b = Math.round(t1 / step) * step;
    if (b <= a) {
      a = Math.floor(t0 / step) * step;
      b = a + step;
    }
    return [Math.max(a, state.view[0]), Math.min(b, state.view[1])];
  }

  function localX(event) {
    return event.clientX - el.svg.getBoundingClientRect().left;
  }

  let frame = 0;
  function renderSoon() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
  }

  el.svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    const x = localX(event);
    state.drag = { x0: x, x1: x, second: event.shiftKey || el.second.checked };
    el.svg.setPointerCapture(event.pointerId);
    renderSoon();
  });
  el.svg.addEventListener("pointermove", (event) => {
    if (!state.drag) return;
    state.drag.x1 = localX(event);
    renderSoon();
  });
  el.svg.addEventListener("pointerup", (event) => {
    const drag = state.drag;
    if (!drag) return;
    state.drag = null;
    drag.x1 = localX(event);
    if (Math.abs(drag.x1 - drag.x0) >= 3) {
      const range = dragRange(drag, plot());
      if (drag.second) selectSecond(range);
      else selectFirst(range);
    }
    renderSoon();
  });
  el.svg.addEventListener("pointercancel", () => {
    state.drag = null;
    renderSoon();
  });

  function profileQuery([a, b], format) {
    return new URLSearchParams([["service", service], ["type", type], ["from", iso(a)], ["until", iso(b)], ...labelQuery(), ["format", format]]);
  }

  /* The same viewer URL as pages.py builds, for another range. */
  function viewerUrl(range) {
    const title = `${service} · ${type} · ${hhmm(new Date(range[0]))}-${hhmm(new Date(range[1]))} UTC`;
    const profile = `/api/v1/profile?${profileQuery(range, "speedscope")}`;
    return `/speedscope/index.html#profileURL=${encodeURIComponent(profile)}&title=${encodeURIComponent(title)}&view=left-heavy`;
  }

  function selectFirst(range) {
    state.selected = range;
    el.rangeText.textContent = rangeText(range);
    for (const preset of document.querySelectorAll("nav.ranges a.active")) preset.classList.remove("active");
    const samples = samplesIn(range);
    el.samples.textContent = `${numberFormat.format(samples)} ${unit}`;
    el.collapsed.href = `/api/v1/profile?${profileQuery(range, "collapsed")}`;
    const iframe = document.getElementById("flamegraph");
    if (iframe) {
      // A new element: changing only the hash of the old one's src would not reload speedscope.
      const fresh = iframe.cloneNode(false);
      if (samples > 0) {
        fresh.src = viewerUrl(range);
        fresh.hidden = false;
      } else {
        fresh.removeAttribute("src");
        fresh.hidden = true;
      }
      iframe.replaceWith(fresh);
      if (el.empty) el.empty.hidden = samples > 0;
    }
    updateCompare();
    syncUrl();
  }

  function selectSecond(range) {
    state.second = range;
    updateCompare();
    syncUrl();
  }

  function updateCompare() {
    if (!state.second) {
      el.compareBar.hidden = true;
      return;
    }
    el.compareBar.hidden = false;
    el.compareBase.textContent = shortRange(state.selected);
    el.compareHead.textContent = shortRange(state.second);
    const query = new URLSearchParams([
      ["type", type],
      ["base_from", iso(state.selected[0])],
      ["base_until", iso(state.selected[1])],
      ...labels.map((pair) => ["base_label", pair]),
      ["head_from", iso(state.second[0])],
      ["head_until", iso(state.second[1])],
      ...labels.map((pair) => ["head_label", pair]),
    ]);
    el.compareLink.href = `/services/${encodeURIComponent(service)}/diff?${query}`;
  }

  function syncUrl() {
    const query = new URLSearchParams([["type", type], ["from", iso(state.selected[0])], ["until", iso(state.selected[1])], ...labelQuery()]);
    query.set("view_from", iso(state.view[0]));
    query.set("view_until", iso(state.view[1]));
    if (state.second) {
      query.set("cmp_from", iso(state.second[0]));
      query.set("cmp_until", iso(state.second[1]));
    }
    if (state.by) query.set("by", state.by);
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  el.by.value = state.by;
  if (el.by.value !== state.by) {
    el.by.append(new Option(state.by, state.by));
    el.by.value = state.by;
  }
  el.by.addEventListener("change", () => {
    state.by = el.by.value;
    syncUrl();
    load();
  });
  el.second.addEventListener("change", () => {
    el.svg.classList.toggle("second", el.second.checked);
  });
  el.compareClear.addEventListener("click", () => {
    state.second = null;
    updateCompare();
    syncUrl();
    render();
  });
  el.zoom.addEventListener("click", () => {
    setView(...state.selected);
    syncUrl();
    load();
  });
  new ResizeObserver(() => renderSoon()).observe(el.svg);

  updateCompare();
  render();
  load();
})();
