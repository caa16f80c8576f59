// telstate serve: the page.  Plain JavaScript, no framework, no build step.
// Every piece of data from the server goes into the page as text (textContent,
// createTextNode, properties), never as markup: key names and values are arbitrary.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const probe = { updates: 0, lastUpdate: null, plotsDrawn: 0, keysShown: 0, firstRender: null };
  window.telstateProbe = probe; // read by the browser tests and the benchmark

  const state = {
    filter: "",
    selected: null, // id of the key whose value is shown
    plotted: [], // ids of the sensors on the plot (the selected one first)
    mode: "overlay", // numeric sensors: one chart ("overlay") or one each ("stacked")
    window: null, // [st, et] in Unix seconds, or null: everything
    series: new Map(), // id -> last payload from /api/series
    charts: [],
    events: null,
    status: "connecting",
    live: false,
  };

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
      if (Array.isArray(value)) value.forEach((v) => query.append(name, v));
      else if (value !== null && value !== undefined) query.append(name, String(value));
    }
    const response = await fetch(`/api/${path}?${query}`);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function setStatus(status) {
    state.status = status;
    const badge = $("status");
    badge.textContent = status;
    badge.className = `status ${status}`;
    document.body.dataset.status = status;
  }

  // ------------------------------------------------------------------ key list

  let listRequest = 0;
  async function loadKeys() {
    const mine = ++listRequest;
    let data;
    try {
      data = await api("keys", { filter: state.filter });
    } catch (error) {
      $("count").textContent = `cannot list keys: ${error.message}`;
      return;
    }
    if (mine !== listRequest) return; // a newer filter is on its way
    const box = $("keys");
    box.replaceChildren();
    $("count").textContent = `${data.shown} of ${data.total} keys`;
    for (const group of data.groups) {
      const title = group.kind === "global" ? "global" : `${group.kind} ${group.name}`;
      const table = el("table", {},
        el("tr", {}, ...["", "key", "type", "count", "size", "sensor span (UTC)"].map((h) => el("th", { text: h }))));
      for (const row of group.keys) {
        const add = row.type === "sensor"
          ? el("button", { class: "add", text: "+", title: "add to the plot", onclick: (event) => { event.stopPropagation(); addToPlot(row.id); } })
          : null;
        table.append(el("tr", { class: "key", dataset: { id: row.id }, onclick: () => select(row.id) },
          el("td", {}, add),
          el("td", { class: "name", text: row.name }),
          el("td", { text: row.type }),
          el("td", { class: "num", text: row.type === "immutable" ? "" : String(row.count) }),
          el("td", { class: "num", text: row.size_text }),
          el("td", { class: "span", text: row.span })));
      }
      box.append(el("details", { open: true, className: "group" },
        el("summary", { text: `${title} (${group.keys.length})` }), table));
    }
    markSelected();
    probe.keysShown = data.shown;
    if (probe.firstRender === null) probe.firstRender = performance.now();
  }

  function markSelected() {
    for (const row of document.querySelectorAll("tr.key")) {
      row.classList.toggle("selected", row.dataset.id === state.selected);
    }
  }

  // ------------------------------------------------------------------ values

  function tree(node) {
    const note = node.more ? el("span", { class: "note", text: ` … ${node.more} more ${node.t === "scalar" || node.t === "array" ? "characters" : "items"} not shown` }) : null;
    if (node.t === "scalar") return el("span", {}, node.text, note);
    if (node.t === "array") {
      const full = el("pre", { class: "full", hidden: true, text: node.full }, note);
      const toggle = el("button", { text: "show all", onclick: () => { full.hidden = !full.hidden; toggle.textContent = full.hidden ? "show all" : "hide"; } });
      return el("span", {}, node.summary, " ", toggle, full);
    }
    if (node.t === "list") {
      if (!node.items.length && !node.more) return el("span", { text: node.open + node.close });
      const nest = el("div", { class: "nest" });
      for (const item of node.items) nest.append(el("div", {}, tree(item), ","));
      if (note) nest.append(note);
      return el("span", {}, node.open, nest, node.close);
    }
    if (node.t === "dict") {
      if (!node.items.length && !node.more) return el("span", { text: "{}" });
      const nest = el("div", { class: "nest" });
      for (const [key, value] of node.items) nest.append(el("div", {}, tree(key), ": ", tree(value), ","));
      if (note) nest.append(note);
      return el("span", {}, "{", nest, "}");
    }
    return el("span", { text: "?" });
  }

  function indexedTable(node) {
    const table = el("table", {}, el("tr", {}, el("th", { text: "sub-key" }), el("th", { text: "value" })));
    for (const [key, value] of node.items) {
      table.append(el("tr", {}, el("td", { class: "tree" }, tree(key)), el("td", { class: "tree" }, tree(value))));
    }
    if (node.more) table.append(el("tr", {}, el("td", { class: "note", colSpan: 2, text: `… ${node.more} more sub-keys not shown` })));
    return table;
  }

  let valueRequest = 0;
  async function select(id) {
    probe.selectedAt = performance.now();
    if (state.selected !== id) state.window = null;
    state.selected = id;
    if (!state.plotted.includes(id)) state.plotted = [];
    markSelected();
    const mine = ++valueRequest;
    let data;
    try {
      data = await api("value", { key: id });
    } catch (error) {
      $("detail").replaceChildren(el("p", { class: "error", text: error.message }));
      return;
    }
    if (mine !== valueRequest) return;
    showValue(data);
  }

  function showValue(data) {
    const detail = $("detail");
    detail.replaceChildren(el("h2", { id: "key-name", text: data.name }));
    if (data.type === "sensor") {
      if (!state.plotted.includes(data.id)) state.plotted.unshift(data.id);
      detail.append(
        el("div", { class: "meta", text: `sensor, ${data.count} samples${data.span ? ", " + data.span : ""}` }),
        el("div", { class: "meta" }, "latest: ", el("span", { id: "latest-time", text: data.time || "" }), "  ",
          el("span", { id: "latest", class: "tree" }, data.value ? tree(data.value) : "")),
        el("div", { class: "toolbar" },
          el("button", { text: "◀ pan", onclick: () => pan(-0.5) }),
          el("button", { text: "pan ▶", onclick: () => pan(0.5) }),
          el("button", { text: "zoom out", onclick: () => zoom(2) }),
          el("button", { text: "full range", onclick: () => { state.window = null; drawPlots(); } }),
          el("button", { id: "mode", text: state.mode === "overlay" ? "stack" : "overlay", onclick: toggleMode }),
          el("span", { class: "meta", text: "drag to zoom, wheel zooms, + in the list adds sensors" })),
        el("div", { id: "plots", class: "plots" }),
        el("div", { class: "toolbar" },
          el("strong", { text: "Samples in view" }),
          el("a", { id: "csv", text: "download CSV" }),
          el("a", { id: "json", text: "download JSON" })),
        el("div", { id: "samples-note", class: "meta" }),
        el("table", { id: "samples" }));
      drawPlots();
    } else {
      detail.append(el("div", { class: "meta", text: data.type }));
      const body = data.type === "indexed" ? indexedTable(data.value) : el("div", { class: "tree" }, tree(data.value));
      detail.append(el("div", { id: "value" }, body));
      state.plotted = [];
      destroyCharts();
    }
    listen();
  }

  // ------------------------------------------------------------------ plots

  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");

  // UTC tick labels: HH:MM:SS within a day, with the date on wider spans
  function timeLabels(u, splits) {
    const span = (u.scales.x.max || 0) - (u.scales.x.min || 0);
    return splits.map((v) => {
      const text = new Date(v * 1e3).toISOString();
      return span > 86400 ? `${text.slice(5, 10)} ${text.slice(11, 16)}` : span > 5 ? text.slice(11, 19) : text.slice(11, 23);
    });
  }

  function destroyCharts() {
    for (const chart of state.charts) chart.destroy();
    state.charts = [];
  }

  function addToPlot(id) {
    if (state.selected === null) { select(id); return; }
    if (!state.plotted.includes(id) && state.plotted.length < 8) {
      state.plotted.push(id);
      drawPlots();
      listen();
    }
  }

  function toggleMode() {
    state.mode = state.mode === "overlay" ? "stacked" : "overlay";
    $("mode").textContent = state.mode === "overlay" ? "stack" : "overlay";
    drawPlots();
  }

  function plotWidth() {
    const box = $("plots");
    return Math.max(300, Math.floor((box ? box.clientWidth : 800) - 10));
  }

  let plotRequest = 0;
  async function drawPlots() {
    const box = $("plots");
    if (!box) return;
    const mine = ++plotRequest;
    const [st, et] = state.window || [null, null];
    const buckets = Math.min(4000, plotWidth());
    let payloads;
    try {
      payloads = await Promise.all(state.plotted.map((id) => api("series", { key: id, st, et, buckets })));
    } catch (error) {
      box.replaceChildren(el("p", { class: "error", text: error.message }));
      return;
    }
    if (mine !== plotRequest) return;
    payloads.forEach((p) => state.series.set(p.id, p));
    render(payloads);
    showSamples();
  }

  function absolute(p) {
    return p.t.map((dt) => p.t0 + dt);
  }

  function windowOf(payloads) {
    if (state.window) return state.window;
    let lo = Infinity, hi = -Infinity;
    for (const p of payloads) {
      if (p.t.length) { lo = Math.min(lo, p.t0 + p.t[0]); hi = Math.max(hi, p.t0 + p.t[p.t.length - 1]); }
    }
    if (!isFinite(lo)) { const now = Date.now() / 1e3; return [now - 60, now]; }
    if (hi <= lo) hi = lo + 1;
    return [lo, hi];
  }

  // A drag selects a time range: it becomes the window, fetched again at full resolution.
  // (uPlot's own drag-to-zoom is off, so that only the user changes the window.)
  function onSelect(u) {
    if (u.select.width < 2) return;
    const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    state.window = [min, max];
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(drawPlots, 50);
  }
  let zoomTimer = 0;

  function baseOptions(title, height) {
    return {
      title, width: plotWidth(), height, tzDate: utc,
      cursor: { sync: { key: "telstate" }, drag: { x: true, y: false, setScale: false } },
      scales: { x: { time: true, auto: false, range: () => windowOf([...state.series.values()]) } },
      hooks: { setSelect: [onSelect],
        ready: [(u) => u.over.addEventListener("wheel", (e) => { e.preventDefault(); wheel(u, e); }, { passive: false })] },
      legend: { live: true },
    };
  }

  function render(payloads) {
    const box = $("plots");
    destroyCharts();
    box.replaceChildren();
    const numeric = payloads.filter((p) => p.kind === "numeric");
    const states = payloads.filter((p) => p.kind === "state");
    const groups = state.mode === "overlay" ? (numeric.length ? [numeric] : []) : numeric.map((p) => [p]);
    for (const group of groups) {
      const data = uPlot.join(group.map((p) => [absolute(p), p.v]));
      const opts = baseOptions(group.length === 1 ? group[0].name : "", 260);
      opts.series = [{ label: "time (UTC)" }, ...group.map((p, i) => ({
        label: p.name, stroke: COLORS[(payloads.indexOf(p)) % COLORS.length], width: 1, spanGaps: false, points: { show: false },
      }))];
      opts.axes = [{ values: timeLabels }, { size: 70 }];
      const holder = el("div", { class: "plot", dataset: { kind: "numeric", ids: group.map((p) => p.id).join(" "), points: String(group.reduce((n, p) => n + p.t.length, 0)) } });
      box.append(holder);
      state.charts.push(new uPlot(opts, data, holder));
    }
    for (const p of states) {
      const holder = el("div", { class: "plot", dataset: { kind: "state", ids: p.id, points: String(p.t.length) } });
      box.append(holder);
      state.charts.push(bandChart(p, holder));
      if (p.cut) box.append(el("div", { class: "note", text: `${p.name}: too many state changes in view, zoom in to see them all` }));
    }
    if (!payloads.length) box.append(el("p", { text: "no samples" }));
    probe.plotsDrawn += 1;
    probe.drawnAt = performance.now();
    document.body.dataset.plotsDrawn = String(probe.plotsDrawn);
  }

  function hue(label) {
    let h = 0;
    for (let i = 0; i < label.length; i++) h = (h * 31 + label.charCodeAt(i)) >>> 0;
    return `hsl(${h % 360}, 55%, 72%)`;
  }

  function bandChart(p, holder) {
    const times = absolute(p);
    const opts = baseOptions(p.name, 90);
    opts.series = [{ label: "time (UTC)" }, { label: "state", show: false }];
    opts.axes = [{ values: timeLabels }, { show: false }];
    opts.scales.y = { auto: false, range: [0, 1] };
    opts.legend = { show: false };
    opts.hooks.draw = [(u) => {
      const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      const right = u.bbox.left + u.bbox.width;
      ctx.save();
      ctx.beginPath(); ctx.rect(u.bbox.left, top, u.bbox.width, height); ctx.clip();
      ctx.font = `${12 * devicePixelRatio}px sans-serif`; ctx.textBaseline = "middle";
      for (let i = 0; i < times.length; i++) {
        const x0 = Math.max(u.bbox.left, u.valToPos(times[i], "x", true));
        const x1 = i + 1 < times.length ? Math.min(right, u.valToPos(times[i + 1], "x", true)) : right;
        if (x1 <= x0) continue;
        ctx.fillStyle = hue(p.v[i]);
        ctx.fillRect(x0, top, x1 - x0, height);
        const label = p.v[i];
        const width = ctx.measureText(label).width;
        if (width + 6 < x1 - x0) { ctx.fillStyle = "#222"; ctx.fillText(label, x0 + 3, top + height / 2); }
      }
      ctx.restore();
    }];
    return new uPlot(opts, [times, times.map(() => 0.5)], holder);
  }

  function wheel(u, event) {
    const [lo, hi] = windowOf([...state.series.values()]);
    const at = u.posToVal(event.offsetX, "x");
    const factor = event.deltaY > 0 ? 1.5 : 1 / 1.5;
    state.window = [at - (at - lo) * factor, at + (hi - at) * factor];
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(drawPlots, 120);
  }

  function pan(fraction) {
    const [lo, hi] = windowOf([...state.series.values()]);
    const step = (hi - lo) * fraction;
    state.window = [lo + step, hi + step];
    drawPlots();
  }

  function zoom(factor) {
    const [lo, hi] = windowOf([...state.series.values()]);
    const mid = (lo + hi) / 2, half = (hi - lo) * factor / 2;
    state.window = [Math.max(0, mid - half), mid + half];
    drawPlots();
  }

  let samplesRequest = 0;
  async function showSamples() {
    const id = state.selected;
    if (!id || !$("samples")) return;
    const [st, et] = state.window || [null, null];
    for (const format of ["csv", "json"]) {
      const query = new URLSearchParams({ key: id, format });
      if (st !== null) { query.set("st", st); query.set("et", et); }
      $(format).href = `/api/download?${query}`;
    }
    const mine = ++samplesRequest;
    let data;
    try {
      data = await api("samples", { key: id, st, et, limit: 200 });
    } catch (error) {
      $("samples-note").textContent = error.message;
      return;
    }
    if (mine !== samplesRequest || !$("samples")) return;
    $("samples-note").textContent = data.cut
      ? `the first ${data.rows.length} of ${data.count} samples in view (zoom in, or download them all)`
      : `${data.count} samples in view`;
    const table = $("samples");
    table.replaceChildren(el("tr", {}, el("th", { text: "time (UTC)" }), el("th", { text: "value" })));
    for (const [time, value] of data.rows) table.append(el("tr", {}, el("td", { text: time }), el("td", { text: value })));
  }

  // ------------------------------------------------------------------ live updates

  function listen() {
    if (!state.live) return;
    const ids = [...new Set([state.selected, ...state.plotted].filter(Boolean))];
    if (state.events) state.events.close();
    const query = new URLSearchParams();
    ids.forEach((id) => query.append("key", id));
    const events = new EventSource(`/api/events?${query}`);
    state.events = events;
    events.addEventListener("status", (event) => {
      const { status } = JSON.parse(event.data);
      const recovered = status === "live" && state.status !== "live";
      setStatus(status);
      if (recovered) refresh();
    });
    events.addEventListener("update", (event) => applyUpdate(JSON.parse(event.data)));
    events.onerror = () => { if (events === state.events) setStatus("disconnected"); };
  }

  function refresh() {
    loadKeys();
    if (state.selected) select(state.selected);
  }

  function applyUpdate(update) {
    if (update.id === state.selected) {
      const series = state.series.get(update.id);
      if (series === undefined) { select(update.id); }
      else {
        $("latest").replaceChildren(el("span", { text: update.text.text }));
        $("latest-time").textContent = update.time === null ? "" : new Date(update.time * 1e3).toISOString();
      }
    }
    const series = state.series.get(update.id);
    if (series && update.time !== null) {
      const inView = !state.window || update.time <= state.window[1];
      if (!state.window || state.window[1] >= update.time - 1e-9 || inView) {
        if (series.kind === "numeric") { series.t.push(update.time - series.t0); series.v.push(update.number); }
        else if (series.v[series.v.length - 1] !== update.label) { series.t.push(update.time - series.t0); series.v.push(update.label); }
        render([...state.plotted.map((id) => state.series.get(id)).filter(Boolean)]);
      }
    }
    probe.updates += 1;
    probe.lastUpdate = { id: update.id, time: update.time, at: performance.timeOrigin + performance.now() };
    document.body.dataset.updates = String(probe.updates);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    let timer = 0;
    $("filter").addEventListener("input", (event) => {
      state.filter = event.target.value;
      clearTimeout(timer);
      timer = setTimeout(loadKeys, 150);
    });
    try {
      const info = await api("info");
      $("source").textContent = info.label;
      document.title = `telstate: ${info.label}`;
      state.live = info.live;
      setStatus(info.live ? info.status : "static");
    } catch (error) {
      setStatus("disconnected");
    }
    await loadKeys();
    if (state.live) listen();
    window.addEventListener("resize", () => { clearTimeout(zoomTimer); zoomTimer = setTimeout(drawPlots, 200); });
  }
  start();
})();
