// The trajshard report's page script: the bin histograms, the distributions and the episode browser,
// drawn with plotly.js from the JSON document in #report-data. No network, no server.
(function () {
  "use strict";
  const T = { script: performance.now() };  // ms since navigation: when each stage finished
  const D = JSON.parse(document.getElementById("report-data").textContent);
  T.data = performance.now();
  const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  const EDGE = "#c0392b", BAR = "#2c7fb8", DEAD = "#888";
  const SEGMENT_FILL = ["rgba(44,127,184,0.07)", "rgba(230,145,56,0.10)"];
  const SEGMENT_BAR = ["#cfe0ef", "#f6dcc0"];
  // What tests and a curious reader can look at from the console.
  const R = (window.trajshardReport = { ready: false, episode: -1, tick: 0, binsDrawn: 0, timings: T });

  const fmt = (v) => (v === null || v === undefined ? "—" : Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : +v.toPrecision(5));
  const el = (tag, attrs, text) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };

  // ---------- action bins: one chart per dimension, drawn when it scrolls into view ----------
  function drawBins(div, d) {
    const B = d.counts.length;
    const total = d.counts.reduce((a, b) => a + b, 0) || 1;
    const spans = d.lower.map((lo, i) => (lo !== null && d.upper[i] !== null ? d.upper[i] - lo : 0));
    const byValue = spans.some((s) => s > 0);
    const x = [], width = [], colors = [], custom = [], deadX = [], deadCustom = [];
    for (let i = 0; i < B; i++) {
      const xi = byValue ? (d.lower[i] + d.upper[i]) / 2 : i + 1;
      x.push(xi);
      width.push(byValue ? spans[i] : 1);
      colors.push(i === 0 || i === B - 1 ? EDGE : BAR);
      const row = [i + 1, d.token[i], fmt(d.lower[i]), fmt(d.upper[i]), fmt(d.centre[i]), (100 * d.counts[i]) / total];
      custom.push(row);
      if (d.counts[i] === 0) { deadX.push(xi); deadCustom.push(row); }
    }
    const traces = [
      {
        type: "bar", x, y: d.counts, width, marker: { color: colors, line: { width: 0 } }, customdata: custom,
        hovertemplate: "bin %{customdata[0]} (token %{customdata[1]})<br>action %{customdata[2]} … %{customdata[3]}" +
          "<br>decodes to %{customdata[4]}<br>count %{y:,} (%{customdata[5]:.2f}%)<extra></extra>",
      },
      {
        type: "scatter", mode: "markers", x: deadX, y: deadX.map(() => 0), customdata: deadCustom,
        marker: { symbol: "line-ns-open", size: 7, color: DEAD }, cliponaxis: false,
        hovertemplate: "bin %{customdata[0]} (token %{customdata[1]}): dead<br>action %{customdata[2]} … %{customdata[3]}<extra></extra>",
      },
    ];
    const clip = d.clip_rate === null ? "" : `  clip ${(100 * d.clip_rate).toFixed(2)}%`;
    const rmse = d.rmse === null ? "" : `  rmse ${fmt(d.rmse)}`;
    const layout = {
      title: { text: `<b>${d.dim} ${escapeHtml(d.name)}</b>${d.guard ? ` <span style="color:${EDGE}">[${d.guard}]</span>` : ""}` +
        `<br><span style="font-size:11px">dead ${d.dead}  edge ${(100 * d.edge_share).toFixed(1)}%${clip}  H ${d.entropy_bits.toFixed(2)} bits${rmse}</span>`,
        font: { size: 13 }, x: 0.02, xanchor: "left" },
      height: 240, margin: { l: 48, r: 10, t: 48, b: 36 }, bargap: 0, showlegend: false,
      xaxis: { title: { text: byValue ? "action value" : "bin", font: { size: 11 } }, zeroline: false },
      yaxis: { title: { text: "count", font: { size: 11 } }, rangemode: "tozero" },
      hovermode: "closest",
    };
    return Plotly.newPlot(div, traces, layout, CONFIG).then(() => { R.binsDrawn += 1; });
  }

  function setupBins() {
    const grid = document.getElementById("bins-grid");
    if (!grid || !D.bins) return;
    const cells = D.bins.dims.map((d) => {
      const cell = el("div", { class: "plot bin-cell", id: `bins-dim-${d.dim}` });
      grid.appendChild(cell);
      return [cell, d];
    });
    if (!("IntersectionObserver" in window)) { cells.forEach(([c, d]) => drawBins(c, d)); return; }
    const byCell = new Map(cells);
    const seen = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting && byCell.has(e.target)) {
          const d = byCell.get(e.target);
          byCell.delete(e.target);
          seen.unobserve(e.target);
          drawBins(e.target, d);
        }
      }
    }, { rootMargin: "300px" });
    cells.forEach(([c]) => seen.observe(c));
  }

  // ---------- distributions over every episode ----------
  function histTrace(h, name) {
    const x = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
    const width = h.counts.map((_, i) => h.edges[i + 1] - h.edges[i]);
    return { type: "bar", x, y: h.counts, width, name, opacity: 0.65, marker: { line: { width: 0 } },
      customdata: h.counts.map((_, i) => [fmt(h.edges[i]), fmt(h.edges[i + 1])]),
      hovertemplate: `${name}: %{customdata[0]} … %{customdata[1]}: %{y:,} episodes<extra></extra>` };
  }
  function drawDistributions() {
    const out = [];
    const dist = D.distributions;
    const steps = document.getElementById("dist-steps");
    if (steps && dist.steps.counts.length) {
      out.push(Plotly.newPlot(steps, [histTrace(dist.steps, "steps")], {
        title: { text: "Episode length (every episode)", font: { size: 13 } }, height: 260,
        margin: { l: 48, r: 10, t: 36, b: 40 }, xaxis: { title: { text: "steps" } }, yaxis: { title: { text: "episodes" } },
        showlegend: false }, CONFIG));
    }
    const align = document.getElementById("dist-align");
    const streams = Object.keys(dist.max_dt_ms);
    if (align && streams.length) {
      out.push(Plotly.newPlot(align, streams.map((s) => histTrace(dist.max_dt_ms[s], s)), {
        title: { text: "Largest |dt| per episode, by stream", font: { size: 13 } }, height: 280,
        margin: { l: 48, r: 10, t: 36, b: 70 }, xaxis: { title: { text: "ms" } }, yaxis: { title: { text: "episodes" } },
        barmode: "overlay", legend: { orientation: "h", y: -0.45 } }, CONFIG));
    }
    return Promise.all(out);
  }

  // ---------- the episode browser ----------
  const CURVES = [["plot-state", "state", "state"], ["plot-action", "action", "action"], ["plot-tokens", "tokens", "action"]];
  let pending = null, timer = null;

  function nearest(sorted, v) {  // index of the value in a sorted array closest to v
    let lo = 0, hi = sorted.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid] < v) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(sorted[lo - 1] - v) <= Math.abs(sorted[lo] - v)) lo -= 1;
    return lo;
  }

  function escapeHtml(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

  function drawCurve(id, kind, namesKey, e) {
    const div = document.getElementById(id);
    const series = e[kind];
    if (!series) { Plotly.purge(div); div.textContent = `${kind}: ${e.token_note}`; return Promise.resolve(); }
    const names = D.names[namesKey] || [];
    const traces = series.map((y, d) => ({
      type: "scatter", mode: "lines", x: e.x, y, line: { width: 1.3 }, name: `${d} ${names[d] || ""}`,
      hovertemplate: `%{y}<extra>${escapeHtml(`${d} ${names[d] || ""}`)}</extra>`,
    }));
    const shapes = [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#111", width: 1.5 } }];
    const annotations = [];
    e.segments.forEach((s, i) => {
      if (e.segments.length < 2) return;  // one instruction: nothing to mark
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: s.start - 0.5, x1: s.end + 0.5, y0: 0, y1: 1,
        fillcolor: SEGMENT_FILL[i % 2], line: { width: 0 }, layer: "below" });
      if (kind === "state") {
        annotations.push({ xref: "x", yref: "paper", x: s.start - 0.5, y: 1, xanchor: "left", yanchor: "bottom",
          text: escapeHtml(s.text.length > 40 ? s.text.slice(0, 39) + "…" : s.text), showarrow: false, font: { size: 10, color: "#555" } });
      }
    });
    const title = kind === "tokens" ? "tokens (first row of a chunk)" : kind;
    const layout = {
      title: { text: title, font: { size: 13 }, x: 0.01, xanchor: "left" }, height: 270,
      margin: { l: 52, r: 10, t: kind === "state" ? 44 : 30, b: 36 }, shapes, annotations, hovermode: "x unified",
      xaxis: { title: { text: "step", font: { size: 11 } }, range: [-0.5, e.steps - 0.5] },
      legend: { font: { size: 10 } },
    };
    return Plotly.react(div, traces, layout, CONFIG);
  }

  function loadEpisode(i) {
    const e = D.episodes[i];
    R.episode = i;
    const slider = document.getElementById("tick");
    slider.max = String(e.steps - 1);
    slider.value = "0";
    const facts = document.getElementById("episode-facts");
    facts.textContent = `${e.id} (source ${e.source}${e.embodiment ? ", " + e.embodiment : ""}), ${e.steps} steps, ` +
      `split ${e.split}, shards ${e.shards.join(", ")}` + (e.x.length < e.read_steps ? `; curves thinned to ${e.x.length} points` : "");
    const frames = document.getElementById("frames");
    frames.replaceChildren();
    for (const cam of D.cameras) {
      const fig = el("figure");
      fig.appendChild(el("img", { id: `frame-${cam}`, alt: `${cam} frame` }));
      fig.appendChild(el("figcaption", { id: `cap-${cam}` }, cam));
      frames.appendChild(fig);
    }
    const bar = document.getElementById("segments");
    bar.replaceChildren();
    e.segments.forEach((s, k) => {
      const seg = el("div", { class: "segment", title: `steps ${s.start}–${s.end}: ${s.text}` }, s.text);
      seg.style.flexGrow = String(s.end - s.start + 1);
      seg.style.background = SEGMENT_BAR[k % 2];
      bar.appendChild(seg);
    });
    bar.appendChild(el("div", { id: "segment-cursor", class: "cursor" }));
    const drawn = CURVES.map(([id, kind, names]) => drawCurve(id, kind, names, e));
    setTick(0);
    return Promise.all(drawn).then(() => moveCursors(0));
  }

  function setTick(k) {
    const e = D.episodes[R.episode];
    R.tick = k;
    for (const cam of D.cameras) {
      const f = e.frames[cam];
      const img = document.getElementById(`frame-${cam}`);
      const cap = document.getElementById(`cap-${cam}`);
      const j = f ? nearest(f.steps, k) : -1;
      if (j < 0) { img.removeAttribute("src"); cap.textContent = `${cam}: no frame`; continue; }
      const src = "data:image/jpeg;base64," + f.jpg[j];
      if (img.getAttribute("src") !== src) img.setAttribute("src", src);
      cap.textContent = `${cam} · frame of step ${f.steps[j]}`;
    }
    const p = nearest(e.x, k);
    document.getElementById("tick-label").textContent = `step ${k} / ${e.steps - 1}` + (p >= 0 ? `, t ≈ ${e.t[p].toFixed(2)} s` : "");
    const seg = e.segments.find((s) => s.start <= k && k <= s.end) || e.segments[e.segments.length - 1];
    document.getElementById("instruction").textContent = seg ? `“${seg.text}” (steps ${seg.start}–${seg.end})` : "";
    const cursor = document.getElementById("segment-cursor");
    if (cursor) cursor.style.left = `${(100 * (k + 0.5)) / e.steps}%`;
    pending = k;  // the curves' cursors move once per frame, whatever the slider's event rate
    requestAnimationFrame(() => { if (pending !== null) { const t = pending; pending = null; moveCursors(t); } });
  }

  function moveCursors(k) {
    return Promise.all(CURVES.map(([id]) => {
      const div = document.getElementById(id);
      if (!div.layout || !div.layout.shapes || !div.layout.shapes.length) return null;
      return Plotly.relayout(div, { "shapes[0].x0": k, "shapes[0].x1": k });
    }));
  }

  function setupBrowser() {
    const sel = document.getElementById("episode-select");
    if (!sel || !D.episodes.length) return Promise.resolve();
    const slider = document.getElementById("tick");
    slider.addEventListener("input", () => setTick(Number(slider.value)));
    sel.addEventListener("change", () => { stop(); loadEpisode(Number(sel.value)); });
    const play = document.getElementById("play");
    function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; } }
    play.addEventListener("click", () => {
      if (timer) { stop(); return; }
      const e = D.episodes[R.episode];
      if (Number(slider.value) >= e.steps - 1) slider.value = "0";
      play.textContent = "pause";
      timer = setInterval(() => {
        const next = Number(slider.value) + 1;
        if (next > e.steps - 1) { stop(); return; }
        slider.value = String(next);
        setTick(next);
      }, 1000 / Math.min(30, Math.max(1, e.fps || 10)));
    });
    return loadEpisode(0);
  }

  Promise.all([drawDistributions().then(() => { T.distributions = performance.now(); }),
    setupBrowser().then(() => { T.browser = performance.now(); })])
    .then(() => { setupBins(); R.ready = true; R.readyAt = T.ready = performance.now(); })
    .catch((err) => { console.error("trajshard report:", err); });
})();
