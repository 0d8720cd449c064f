/* hotpath: the differential flame graph of the diff page, on a canvas.

   Data: /api/v1/diff/tree (the merged call tree of base and head as columns: fn, parent,
   base, head, base_self, head_self; node 0 is the root) and /api/v1/diff (per function: self
   shares, change, p-value, flagged) for the table beside the graph.

   Widths follow one side: the head by default, the base in the reverse view, so frames that
   vanished in the head can be seen. Colours follow how each frame's share of its own side's
   samples changed (inclusive counts): red grew, blue shrank, grey unchanged.

   Built to stay interactive with 100,000 nodes: the layout is computed once per view, zoom
   and width into typed arrays, skipping frames narrower than MIN_WIDTH px and their subtrees;
   rectangles are drawn batched by colour; redraws go through requestAnimationFrame; hover
   hit-tests the layout (binary search in the frame's row) and paints on an overlay canvas. */
"use strict";

(function () {
  const ROW = 18; // px per frame
  const MIN_WIDTH = 0.5; // px: narrower frames (and everything under them) are not drawn
  const SATURATE_PP = 5; // a change of this many points gets the full colour
  const UNCHANGED_PP = 0.05; // below this, a frame is grey
  const LEVELS = 10; // colour steps per direction
  const ONE_SIDED_LEVEL = 4; // frames in one side only get at least this colour
  const NEUTRAL = [220, 220, 220];
  const RED = [214, 39, 40];
  const BLUE = [33, 102, 196];
  const WHITE = [255, 255, 255];
  // What a requested animation frame must redo.
  const LAYOUT = 1;
  const PAINT = 2;
  const HOVER = 4;

  const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));
  const css = (rgb) => `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;

  // Palette index i in 0..2*LEVELS: LEVELS is grey, below is blue (shrank), above red (grew).
  // The second half of PALETTE is the same colours dimmed, for frames a search does not match.
  const PALETTE = [];
  const DIMMED = [];
  for (let level = -LEVELS; level <= LEVELS; level++) {
    const rgb = level === 0 ? NEUTRAL : mix(NEUTRAL, level > 0 ? RED : BLUE, Math.abs(level) / LEVELS);
    PALETTE.push(css(rgb));
    DIMMED.push(css(mix(rgb, WHITE, 0.72)));
  }
  const COLOURS = PALETTE.concat(DIMMED);

  const numberFormat = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => numberFormat.format(n);
  const fmtPct = (share) => `${(100 * share).toFixed(2)}%`;
  const fmtPp = (pp) => `${pp > 0 ? "+" : pp < 0 ? "−" : "±"}${Math.abs(pp).toFixed(2)}`;
  const fmtMs = (ms) => `${ms > 0 ? "+" : ms < 0 ? "−" : ""}${Math.abs(ms).toFixed(1)}`;
  function fmtP(p) {
    if (p === 0) return "< 1e-300";
    if (p < 0.001) return p.toExponential(1);
    return p.toFixed(3);
  }
  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }
  const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  class DiffGraph {
    constructor(tree, elements) {
      this.el = elements;
      this.ctx = elements.canvas.getContext("2d");
      this.overlay = elements.overlay.getContext("2d");
      this.prepare(tree);
      this.view = "head";
      this.zoom = 0;
      this.hovered = -1;
      this.matched = null; // Uint8Array per function id, when a search is active
      this.nodeMatched = null;
      this.width = 0;
      this.pending = 0; // what the next animation frame must do: LAYOUT | PAINT | HOVER
      this.mouse = null;
      this.firstDrawn = false;
      this.stats = { layoutMs: 0, paintMs: 0, hoverMs: 0, frames: 0 };
      window.__hotpathStats = this.stats;
      this.bindEvents();
    }

    /* Everything that does not depend on the view or the zoom, once. */
    prepare(tree) {
      const nodes = tree.nodes;
      const n = nodes.fn.length;
      this.n = n;
      this.functions = tree.functions;
      this.fn = Int32Array.from(nodes.fn);
      this.parent = Int32Array.from(nodes.parent);
      this.base = Float64Array.from(nodes.base);
      this.head = Float64Array.from(nodes.head);
      this.baseSelf = Float64Array.from(nodes.base_self);
      this.headSelf = Float64Array.from(nodes.head_self);
      this.baseTotal = tree.base_samples || this.base[0];
      this.headTotal = tree.head_samples || this.head[0];

      // Children as one flat array (CSR), siblings sorted by name as in classic flame graphs,
      // so that both shapes put the same function at the same place.
      const order = this.functions.map((_, i) => i);
      order.sort((a, b) => (this.functions[a].name < this.functions[b].name ? -1 : this.functions[a].name > this.functions[b].name ? 1 : 0));
      const rank = new Int32Array(this.functions.length + 1);
      order.forEach((fnId, r) => { rank[fnId] = r + 1; }); // the root (fn -1) ranks 0
      const childStart = new Int32Array(n + 1);
      for (let i = 1; i < n; i++) childStart[this.parent[i] + 1]++;
      for (let i = 0; i < n; i++) childStart[i + 1] += childStart[i];
      const fill = childStart.slice(0, n);
      const children = new Int32Array(Math.max(n - 1, 0));
      for (let i = 1; i < n; i++) children[fill[this.parent[i]]++] = i;
      for (let i = 0; i < n; i++) {
        const a = childStart[i];
        const b = childStart[i + 1];
        if (b - a > 1) {
          const slice = children.subarray(a, b);
          slice.sort((x, y) => rank[this.fn[x]] - rank[this.fn[y]]);
        }
      }
      this.childStart = childStart;
      this.children = children;

      // Colour level per node, from the change of its inclusive share.
      this.level = new Int8Array(n);
      this.changePp = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const baseShare = this.baseTotal ? this.base[i] / this.baseTotal : 0;
        const headShare = this.headTotal ? this.head[i] / this.headTotal : 0;
        const pp = 100 * (headShare - baseShare);
        this.changePp[i] = pp;
        let level = 0;
        if (Math.abs(pp) >= UNCHANGED_PP) {
          // A square root, so that a change of a fraction of a point is visible too.
          level = Math.max(1, Math.round(Math.sqrt(Math.min(Math.abs(pp), SATURATE_PP) / SATURATE_PP) * LEVELS));
          if (pp < 0) level = -level;
        }
        if (this.base[i] === 0 && this.head[i] > 0) level = Math.max(level, ONE_SIDED_LEVEL);
        if (this.head[i] === 0 && this.base[i] > 0) level = Math.min(level, -ONE_SIDED_LEVEL);
        this.level[i] = level;
      }

      // Layout buffers, reused by every layout; sized for the worst case (all nodes drawn).
      this.lNode = new Int32Array(n);
      this.lX = new Float32Array(n);
      this.lW = new Float32Array(n);
      this.lDepth = new Int32Array(n);
      this.rowItems = new Int32Array(n);
      this.bucketOf = new Uint8Array(n);
      this.byBucket = new Int32Array(n);
      this.stackNode = new Int32Array(n);
      this.stackX = new Float64Array(n);
      this.stackDepth = new Int32Array(n);
      this.count = 0;
      this.maxDepth = 0;
    }

    name(node) {
      const id = this.fn[node];
      return id < 0 ? "all" : this.functions[id].name;
    }

    file(node) {
      const id = this.fn[node];
      return id < 0 ? "" : this.functions[id].file;
    }

    weights() {
      return this.view === "head" ? this.head : this.base;
    }

    /* Frames to draw, as (node, x, width, depth), in pre-order from left to right, so that
       each row's frames are sorted by x; then rows indexed for hit-testing. */
    layout() {
      const t0 = performance.now();
      const w = this.weights();
      const width = this.width;
      let count = 0;
      let maxDepth = 0;
      const chain = [];
      for (let a = this.zoom; a !== -1; a = this.parent[a]) chain.push(a);
      chain.reverse();
      // The zoomed frame's ancestors stay above it, full width: clicking one zooms out to it.
      for (let d = 0; d < chain.length - 1; d++) {
        this.lNode[count] = chain[d];
        this.lX[count] = 0;
        this.lW[count] = width;
        this.lDepth[count] = d;
        count++;
      }
      const top = this.zoom;
      if (w[top] > 0 && width > 0) {
        const scale = width / w[top];
        let sp = 0;
        this.stackNode[sp] = top;
        this.stackX[sp] = 0;
        this.stackDepth[sp] = chain.length - 1;
        sp++;
        while (sp > 0) {
          sp--;
          const node = this.stackNode[sp];
          const x = this.stackX[sp];
          const depth = this.stackDepth[sp];
          this.lNode[count] = node;
          this.lX[count] = x;
          this.lW[count] = w[node] * scale;
          this.lDepth[count] = depth;
          count++;
          if (depth > maxDepth) maxDepth = depth;
          const a = this.childStart[node];
          const b = this.childStart[node + 1];
          // Pushed right to left, so that they are popped (laid out) left to right.
          let end = x;
          for (let c = a; c < b; c++) end += w[this.children[c]] * scale;
          for (let c = b - 1; c >= a; c--) {
            const child = this.children[c];
            const cw = w[child] * scale;
            end -= cw;
            if (cw >= MIN_WIDTH) {
              this.stackNode[sp] = child;
              this.stackX[sp] = end;
              this.stackDepth[sp] = depth + 1;
              sp++;
            }
          }
        }
      }
      maxDepth = Math.max(maxDepth, chain.length - 1);
      this.count = count;
      this.maxDepth = maxDepth;
      // Rows: a stable counting sort by depth keeps each row sorted by x.
      const rowStart = new Int32Array(maxDepth + 2);
      for (let i = 0; i < count; i++) rowStart[this.lDepth[i] + 1]++;
      for (let d = 0; d <= maxDepth; d++) rowStart[d + 1] += rowStart[d];
      const fill = rowStart.slice(0, maxDepth + 1);
      for (let i = 0; i < count; i++) this.rowItems[fill[this.lDepth[i]]++] = i;
      this.rowStart = rowStart;
      this.stats.layoutMs = performance.now() - t0;
    }

    resizeCanvases() {
      const dpr = window.devicePixelRatio || 1;
      const height = Math.max(1, (this.maxDepth + 1) * ROW);
      for (const canvas of [this.el.canvas, this.el.overlay]) {
        const pw = Math.round(this.width * dpr);
        const ph = Math.round(height * dpr);
        if (canvas.width !== pw || canvas.height !== ph) {
          canvas.width = pw;
          canvas.height = ph;
          canvas.style.width = `${this.width}px`;
          canvas.style.height = `${height}px`;
        }
      }
      this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.overlay.setTransform(dpr, 0, 0, dpr, 0, 0);
    }

    paint() {
      const t0 = performance.now();
      this.resizeCanvases();
      const ctx = this.ctx;
      const count = this.count;
      ctx.clearRect(0, 0, this.width, (this.maxDepth + 1) * ROW);
      // Batch the rectangles by colour: one path and one fill per colour.
      const buckets = COLOURS.length;
      const start = new Int32Array(buckets + 1);
      const matched = this.nodeMatched;
      for (let i = 0; i < count; i++) {
        const node = this.lNode[i];
        let bucket = this.level[node] + LEVELS;
        if (matched && !matched[node]) bucket += PALETTE.length;
        this.bucketOf[i] = bucket;
        start[bucket + 1]++;
      }
      for (let b = 0; b < buckets; b++) start[b + 1] += start[b];
      const fill = start.slice(0, buckets);
      for (let i = 0; i < count; i++) this.byBucket[fill[this.bucketOf[i]]++] = i;
      for (let b = 0; b < buckets; b++) {
        if (start[b] === start[b + 1]) continue;
        ctx.fillStyle = COLOURS[b];
        ctx.beginPath();
        for (let k = start[b]; k < start[b + 1]; k++) {
          const i = this.byBucket[k];
          const w = this.lW[i];
          ctx.rect(this.lX[i], this.lDepth[i] * ROW, w > 2 ? w - 1 : w, ROW - 1);
        }
        ctx.fill();
      }
      if (matched) {
        ctx.strokeStyle = "#7a1fa2";
        ctx.lineWidth = 1;
        ctx.beginPath();
        for (let i = 0; i < count; i++) {
          if (matched[this.lNode[i]] && this.lW[i] >= 3) {
            ctx.rect(this.lX[i] + 0.5, this.lDepth[i] * ROW + 0.5, this.lW[i] - 2, ROW - 2);
          }
        }
        ctx.stroke();
      }
      this.paintLabels();
      this.stats.paintMs = performance.now() - t0;
      this.stats.frames = count;
      this.el.canvas.dataset.framesDrawn = String(count);
      this.el.canvas.dataset.view = this.view;
      this.el.canvas.dataset.zoom = this.name(this.zoom);
      if (!this.firstDrawn) {
        this.firstDrawn = true;
        window.__hotpathFirstRender = performance.now();
      }
    }

    paintLabels() {
      const ctx = this.ctx;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      if (!this.charWidth) {
        const sample = "handle_order_risk_check parse";
        this.charWidth = ctx.measureText(sample).width / sample.length;
      }
      const matched = this.nodeMatched;
      for (const light of [false, true]) {
        ctx.fillStyle = light ? "#ffffff" : "#1d2327";
        for (let i = 0; i < this.count; i++) {
          const w = this.lW[i];
          if (w < 28) continue;
          const node = this.lNode[i];
          const dim = matched && !matched[node];
          const strong = Math.abs(this.level[node]) >= 6 && !dim;
          if (strong !== light) continue;
          const room = Math.floor((w - 8) / this.charWidth);
          if (room < 2) continue;
          const name = this.name(node);
          const text = name.length <= room ? name : `${name.slice(0, room - 1)}…`;
          ctx.globalAlpha = dim ? 0.5 : 1;
          ctx.fillText(text, this.lX[i] + 4, this.lDepth[i] * ROW + ROW / 2, w - 7);
        }
      }
      ctx.globalAlpha = 1;
    }

    /* The layout index of the frame under (x, y) in canvas pixels, or -1. */
    hit(x, y) {
      const depth = Math.floor(y / ROW);
      if (depth < 0 || depth > this.maxDepth || x < 0 || x > this.width) return -1;
      let lo = this.rowStart[depth];
      let hi = this.rowStart[depth + 1] - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const i = this.rowItems[mid];
        if (this.lX[i] <= x) {
          found = i;
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
      if (found >= 0 && x <= this.lX[found] + this.lW[found]) return found;
      return -1;
    }

    /* Where the first drawn frame of a function is, in the canvas's CSS pixels, or null:
       for tests and benchmarks (window.__hotpathGraph.locate("name")). */
    locate(name) {
      for (let i = 0; i < this.count; i++) {
        if (this.name(this.lNode[i]) === name) {
          return { x: this.lX[i], y: this.lDepth[i] * ROW, width: this.lW[i], height: ROW };
        }
      }
      return null;
    }

    /* Redraws are requested with flags and done once per animation frame. */
    request(flags) {
      const idle = this.pending === 0;
      this.pending |= flags;
      if (idle) requestAnimationFrame(() => this.frame());
    }

    frame() {
      const flags = this.pending;
      this.pending = 0;
      const width = this.el.scroll.clientWidth;
      if (width !== this.width) {
        this.width = width;
        this.layoutDone = false;
      }
      if (flags & LAYOUT || !this.layoutDone) {
        this.layout();
        this.layoutDone = true;
      }
      if (flags & (LAYOUT | PAINT)) this.paint();
      this.updateHover();
    }

    updateHover() {
      const t0 = performance.now();
      const ctx = this.overlay;
      ctx.clearRect(0, 0, this.width, (this.maxDepth + 1) * ROW);
      const tip = this.el.tooltip;
      const index = this.mouse ? this.hit(this.mouse.x, this.mouse.y) : -1;
      if (index < 0) {
        this.hovered = -1;
        tip.hidden = true;
        this.el.overlay.style.cursor = "default";
      } else {
        const node = this.lNode[index];
        ctx.strokeStyle = "#1d2327";
        ctx.lineWidth = 2;
        ctx.strokeRect(this.lX[index] + 1, this.lDepth[index] * ROW + 1, Math.max(this.lW[index] - 2, 1), ROW - 2);
        if (node !== this.hovered) {
          this.hovered = node;
          tip.innerHTML = this.tooltipHtml(node);
        }
        tip.hidden = false;
        this.placeTooltip();
        this.el.overlay.style.cursor = "pointer";
      }
      this.stats.hoverMs = performance.now() - t0;
    }

    tooltipHtml(node) {
      const bShare = this.baseTotal ? this.base[node] / this.baseTotal : 0;
      const hShare = this.headTotal ? this.head[node] / this.headTotal : 0;
      const bSelf = this.baseTotal ? this.baseSelf[node] / this.baseTotal : 0;
      const hSelf = this.headTotal ? this.headSelf[node] / this.headTotal : 0;
      const pp = this.changePp[node];
      const cls = this.level[node] > 0 ? "grew" : this.level[node] < 0 ? "shrank" : "same";
      const file = this.file(node);
      let note = "";
      if (this.base[node] === 0) note = '<div class="tip-note">only in the head</div>';
      else if (this.head[node] === 0) note = '<div class="tip-note">only in the base (gone in the head)</div>';
      return (
        `<div class="tip-fn">${escapeHtml(this.name(node))}</div>` +
        (file ? `<div class="tip-file">${escapeHtml(file)}</div>` : "") +
        `<div class="tip-change ${cls}">${fmtPp(pp)} pp</div>` +
        "<table><tr><th></th><th>base</th><th>head</th></tr>" +
        `<tr><td>share</td><td>${fmtPct(bShare)}</td><td>${fmtPct(hShare)}</td></tr>` +
        `<tr><td>self share</td><td>${fmtPct(bSelf)}</td><td>${fmtPct(hSelf)}</td></tr>` +
        `<tr><td>samples</td><td>${fmtInt(this.base[node])}</td><td>${fmtInt(this.head[node])}</td></tr>` +
        "</table>" + note
      );
    }

    placeTooltip() {
      const tip = this.el.tooltip;
      const { clientX, clientY } = this.mouse;
      const margin = 14;
      const w = tip.offsetWidth;
      const h = tip.offsetHeight;
      let left = clientX + margin;
      let top = clientY + margin;
      if (left + w > window.innerWidth - 4) left = Math.max(4, clientX - margin - w);
      if (top + h > window.innerHeight - 4) top = Math.max(4, clientY - margin - h);
      tip.style.left = `${left}px`;
      tip.style.top = `${top}px`;
    }

    setView(view) {
      if (view === this.view) return;
      this.view = view;
      // A zoomed frame absent from the other side's shape cannot be shown: zoom out to the
      // nearest ancestor that is there.
      const w = this.weights();
      while (this.zoom > 0 && w[this.zoom] <= 0) this.zoom = this.parent[this.zoom];
      this.el.viewHead.setAttribute("aria-pressed", String(view === "head"));
      this.el.viewBase.setAttribute("aria-pressed", String(view === "base"));
      this.updateMatchedText();
      this.syncControls();
      this.request(LAYOUT);
    }

    setZoom(node) {
      this.zoom = node;
      this.syncControls();
      this.request(LAYOUT);
    }

    syncControls() {
      this.el.reset.disabled = this.zoom === 0;
      this.el.reset.textContent = this.zoom === 0 ? "Reset zoom" : `Reset zoom (${this.name(this.zoom)})`;
    }

    search(text) {
      const query = text.trim();
      if (!query) {
        this.matched = null;
        this.nodeMatched = null;
      } else {
        let pattern;
        try {
          pattern = new RegExp(query, "i");
        } catch (_) {
          pattern = new RegExp(escapeRegExp(query), "i");
        }
        this.matched = Uint8Array.from(this.functions, (f) => (pattern.test(f.name) ? 1 : 0));
        const nodeMatched = new Uint8Array(this.n);
        for (let i = 1; i < this.n; i++) nodeMatched[i] = this.matched[this.fn[i]];
        this.nodeMatched = nodeMatched;
      }
      this.updateMatchedText();
      this.request(PAINT);
    }

    /* The share of samples under any matching frame, each sample counted once (a match
       below a match adds nothing): for both sides, the current view's first. */
    matchedShare(weights, total) {
      if (!total) return 0;
      const covered = new Uint8Array(this.n);
      let sum = 0;
      for (let i = 1; i < this.n; i++) {
        const p = this.parent[i];
        if (covered[p]) covered[i] = 1;
        else if (this.nodeMatched[i]) {
          covered[i] = 1;
          sum += weights[i];
        }
      }
      return sum / total;
    }

    updateMatchedText() {
      const out = this.el.matchedText;
      if (!this.nodeMatched) {
        out.textContent = "";
        out.dataset.share = "";
        return;
      }
      const functions = this.matched.reduce((a, b) => a + b, 0);
      const head = this.matchedShare(this.head, this.headTotal);
      const base = this.matchedShare(this.base, this.baseTotal);
      const [first, second] = this.view === "head" ? [["head", head], ["base", base]] : [["base", base], ["head", head]];
      out.dataset.share = String(this.view === "head" ? head : base);
      out.textContent = functions
        ? `Matched ${fmtInt(functions)} function${functions === 1 ? "" : "s"}: ${fmtPct(first[1])} of ${first[0]}, ${fmtPct(second[1])} of ${second[0]}`
        : "No match";
    }

    bindEvents() {
      const over = this.el.overlay;
      over.addEventListener("mousemove", (event) => {
        const rect = over.getBoundingClientRect();
        this.mouse = { x: event.clientX - rect.left, y: event.clientY - rect.top, clientX: event.clientX, clientY: event.clientY };
        this.request(HOVER);
      });
      over.addEventListener("mouseleave", () => {
        this.mouse = null;
        this.request(HOVER);
      });
      over.addEventListener("click", (event) => {
        const rect = over.getBoundingClientRect();
        const index = this.hit(event.clientX - rect.left, event.clientY - rect.top);
        if (index >= 0) this.setZoom(this.lNode[index]);
      });
      this.el.reset.addEventListener("click", () => this.setZoom(0));
      this.el.viewHead.addEventListener("click", () => this.setView("head"));
      this.el.viewBase.addEventListener("click", () => this.setView("base"));
      this.el.search.addEventListener("input", () => this.search(this.el.search.value));
      document.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && document.activeElement !== this.el.search) this.setZoom(0);
      });
      new ResizeObserver(() => this.request(LAYOUT)).observe(this.el.scroll);
    }
  }

  function renderTable(diff, table, caption, onPick) {
    const rows = diff.functions.filter((f) => f.change_pp > 0);
    const faster = diff.functions.filter((f) => f.change_pp < 0).length;
    const flagged = rows.filter((f) => f.flagged).length;
    caption.textContent =
      `${fmtInt(flagged)} flagged (p < ${diff.alpha} and at least +${diff.min_change_pp} pp of self time), ` +
      `${fmtInt(rows.length - flagged)} more grew; ${fmtInt(faster)} got faster (not listed). ` +
      "Shares are of each side's samples. Click a row to find it in the graph.";
    const body = table.tBodies[0];
    body.innerHTML = rows.length
      ? rows
          .map(
            (f) =>
              `<tr class="${f.flagged ? "flagged" : ""}" data-function="${escapeHtml(f.function)}">` +
              `<td class="fn" title="${escapeHtml(f.function)} (${escapeHtml(f.file)})">` +
              `<span class="fn-name">${escapeHtml(f.function)}</span>` +
              `<span class="fn-file">${escapeHtml(f.file)}</span></td>` +
              `<td class="num">${fmtPct(f.base_share)}</td>` +
              `<td class="num">${fmtPct(f.head_share)}</td>` +
              `<td class="num change">${fmtPp(f.change_pp)}</td>` +
              `<td class="num">${fmtMs(f.ms_per_cpu_s)}</td>` +
              `<td class="num">${fmtP(f.p_value)}</td>` +
              `<td>${f.flagged ? '<span class="flag" title="significant slowdown">slower</span>' : ""}</td></tr>`,
          )
          .join("")
      : '<tr><td colspan="7" class="empty">No function\'s self share grew.</td></tr>';
    body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-function]");
      if (row) onPick(row.dataset.function);
    });
  }

  async function readJson(response) {
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        if (body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) {
        /* not JSON: keep the status text */
      }
      throw new Error(`${response.status}: ${detail}`);
    }
    return response.json();
  }

  async function main() {
    const root = document.getElementById("diffgraph");
    if (!root) return;
    const el = {
      canvas: document.getElementById("graph"),
      overlay: document.getElementById("graph-overlay"),
      scroll: document.getElementById("graph-scroll"),
      status: document.getElementById("graph-status"),
      tooltip: document.getElementById("tooltip"),
      reset: document.getElementById("reset-zoom"),
      viewHead: document.getElementById("view-head"),
      viewBase: document.getElementById("view-base"),
      search: document.getElementById("search"),
      matchedText: document.getElementById("matched"),
    };
    let graph = null;
    const pick = (name) => {
      el.search.value = `^${escapeRegExp(name)}$`;
      if (graph) graph.search(el.search.value);
    };
    // The table's request starts when the tree's answer begins to arrive: one server process
    // computes the two in turn (Python), so the graph comes first, while its body downloads.
    const headers = { headers: { Accept: "application/json" } };
    const treeResponse = fetch(root.dataset.treeUrl, headers);
    const diffResponse = treeResponse.catch(() => null).then(() => fetch(root.dataset.diffUrl, headers));
    const tree = treeResponse.then(readJson).then(
      (data) => {
        el.status.hidden = true;
        graph = new DiffGraph(data, el);
        window.__hotpathGraph = graph;
        graph.request(LAYOUT);
      },
      (error) => {
        el.status.textContent = `Could not load the call tree (${error.message}).`;
        el.status.classList.add("error");
      },
    );
    const table = diffResponse.then(readJson).then(
      (diff) => renderTable(diff, document.getElementById("slower"), document.getElementById("slower-caption"), pick),
      (error) => {
        const caption = document.getElementById("slower-caption");
        caption.textContent = `Could not compare (${error.message}).`;
        caption.classList.add("error");
      },
    );
    await Promise.all([tree, table]);
  }

  main();
})();
