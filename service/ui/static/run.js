// Run page: curves of every metric key (GET /metrics?max_points=<a chart's width in px>, LTTB on
// the server; every point once a step range zooms in, or with #/runs/<id>?points=all; then
// ?since_step= while it runs) with smoothing, log axes and a step range; the spec, provenance,
// summary and error; checkpoints (downloaded with the key); logs (followed as server-sent events
// while it runs); cancel.
import { api } from "./api.js";
import { h, fill, statusBadge, tagList, when, errorBox } from "./dom.js";
import { lineChart, chartsReady } from "./chart.js";
import { smooth, fmt } from "./stats.js";

const LIVE = new Set(["queued", "running"]);

// Keys sharing a chart: the losses, the accuracies; every other key alone.
export function groupKeys(keys) {
  const groups = new Map();
  for (const k of keys) {
    const g = /_loss$/.test(k) ? "loss" : /_acc$/.test(k) ? "accuracy" : k;
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(k);
  }
  return [...groups.entries()];
}

export async function render(view, route) {
  const id = route.id;
  // a chart's width, measured on an empty grid cell: the page asks for about one point a pixel
  const charts = h("div.grid", { id: "charts" }, h("div.card", h("div.chart")));
  fill(view, charts);
  const width = Math.max(320, charts.firstChild.firstChild.clientWidth - 10);
  // max_points: null once every point is here (asked for, or fetched when zoomed in)
  let maxPoints = route.query.points === "all" ? null : width;
  // everything the page needs at once: the run, its metrics, checkpoints and logs
  const first = {
    exp: api.get(`/v1/experiments/${id}`),
    metrics: api.get(`/v1/experiments/${id}/metrics`, { max_points: maxPoints }),
    checkpoints: api.get(`/v1/experiments/${id}/checkpoints`),
    logs: api.get(`/v1/experiments/${id}/logs`, { since: 0, limit: 2000 }),
  };
  Object.values(first).forEach((p) => p.catch(() => {})); // each is awaited (and reported) below
  let exp = await first.exp;
  let series = {}; // key -> {steps: [], values: []}
  let lastStep = -1;
  let thinned = false; // some series came back with max_points points: LTTB may have dropped some
  const ctl = { smoothing: Number(route.query.smooth) || 0, logX: false, logY: false, from: null, to: null, hidden: new Set() };
  const head = h("div");
  const keyBoxes = h("span");
  const stops = [];

  async function pull(pending) {
    const q = lastStep >= 0 ? { since_step: lastStep } : {};
    const got = (await (pending || api.get(`/v1/experiments/${id}/metrics`, q))).series;
    if (pending && maxPoints) thinned = Object.values(got).some((pts) => pts.length >= maxPoints);
    for (const [k, pts] of Object.entries(got)) {
      const s = (series[k] ||= { steps: [], values: [] });
      for (const p of pts) { s.steps.push(p.step); s.values.push(p.value); lastStep = Math.max(lastStep, p.step); }
    }
  }

  // zoomed in on a thinned series: fetch every point once, then draw the range from them
  async function fullResolution() {
    if (!thinned) return;
    thinned = false;
    maxPoints = null;
    const whole = api.get(`/v1/experiments/${id}/metrics`);
    series = {};
    lastStep = -1;
    await pull(whole);
  }
  async function zoom(from, to) {
    ctl.from = from;
    ctl.to = to;
    controls.querySelector("input[name=from]").value = from ?? "";
    controls.querySelector("input[name=to]").value = to ?? "";
    if (from !== null || to !== null) await fullResolution();
    draw();
  }

  let drawable = false; // the metrics and uPlot are here (a control touched before waits)
  function draw() {
    if (!drawable) return;
    const t0 = performance.now();
    const keys = Object.keys(series).sort();
    fill(keyBoxes, ...keys.map((k) => h("label", h("input", {
      type: "checkbox", checked: !ctl.hidden.has(k), dataset: { key: k },
      on: { change: (e) => { e.target.checked ? ctl.hidden.delete(k) : ctl.hidden.add(k); draw(); } },
    }), ` ${k}`)));
    const shown = keys.filter((k) => !ctl.hidden.has(k));
    const cards = [];
    for (const [group, members] of groupKeys(shown)) {
      const steps = [...new Set(members.flatMap((k) => series[k].steps))].sort((a, b) => a - b);
      const inRange = steps.filter((s) => (ctl.from === null || s >= ctl.from) && (ctl.to === null || s <= ctl.to));
      const lines = members.map((k) => {
        const at = new Map(series[k].steps.map((s, i) => [s, series[k].values[i]]));
        return { label: k, values: smooth(inRange.map((s) => at.get(s) ?? null), ctl.smoothing) };
      });
      const el = h("div.chart", { dataset: { group } });
      const card = h("div.card", el);
      cards.push([el, inRange, lines, group]);
    }
    fill(charts, ...cards.map(([el]) => el.parentNode));
    for (const [el, x, lines, group] of cards) {
      lineChart(el, x, lines, { id: `run:${group}`, title: group, logX: ctl.logX, logY: ctl.logY, height: 240, width,
        onZoom: (lo, hi) => { if (Math.ceil(lo) <= Math.floor(hi)) zoom(Math.ceil(lo), Math.floor(hi)); } });
    }
    window.__reglab.lastRender = { page: "run", ms: performance.now() - t0, keys: shown.length, maxPoints };
  }

  function drawHead() {
    const canCancel = LIVE.has(exp.status) && !exp.cancel_requested;
    fill(head, 
      h("h1", exp.name, " ", statusBadge(exp.status), " ", h("span.muted", `epoch ${exp.progress.epoch}/${exp.progress.epochs}`)),
      h("p", h("code", exp.id), " · created ", when(exp.created_at), " · started ", when(exp.started_at),
        " · finished ", when(exp.finished_at), " · attempts ", String(exp.attempts), " · queue ", exp.queue,
        exp.sweep_id ? [" · sweep ", h("a", { href: `#/sweeps/${exp.sweep_id}` }, exp.sweep_id.slice(0, 8))] : null,
        " ", tagList(exp.tags)),
      exp.note ? h("p", exp.note) : null,
      // a queued run's note says why it waits (no worker on its queue); an ended run's, why it failed
      exp.error ? h(LIVE.has(exp.status) ? "p.muted" : "pre.error", { id: "run-error" }, exp.error) : null,
      canCancel ? h("button", { type: "button", id: "cancel", on: { click: cancel } }, "Cancel run") : null,
      exp.cancel_requested && LIVE.has(exp.status) ? h("p.muted", "cancel requested") : null,
    );
  }
  async function cancel() {
    try { exp = await api.post(`/v1/experiments/${id}/cancel`); drawHead(); } catch (e) { head.append(errorBox(e)); }
  }

  const num = (name, on) => h("input", { type: "number", name, size: 6, style: "width:6em", on: { change: on } });
  const controls = h("div.toolbar",
    h("label", "smoothing ", h("input", { type: "range", name: "smoothing", min: 0, max: 0.99, step: 0.01, value: ctl.smoothing,
      on: { input: (e) => { ctl.smoothing = Number(e.target.value); draw(); } } })),
    h("label", h("input", { type: "checkbox", name: "logx", on: { change: (e) => { ctl.logX = e.target.checked; draw(); } } }), " log x"),
    h("label", h("input", { type: "checkbox", name: "logy", on: { change: (e) => { ctl.logY = e.target.checked; draw(); } } }), " log y"),
    h("label", "steps from ", num("from", (e) => zoom(e.target.value === "" ? null : Number(e.target.value), ctl.to))),
    h("label", "to ", num("to", (e) => zoom(ctl.from, e.target.value === "" ? null : Number(e.target.value)))),
    h("span.hint", "drag on a chart to zoom, double-click to reset"));
  charts.addEventListener("dblclick", () => { if (ctl.from !== null || ctl.to !== null) zoom(null, null); });

  const ckpts = h("div");
  async function drawCheckpoints(pending) {
    const items = (await (pending || api.get(`/v1/experiments/${id}/checkpoints`))).items;
    fill(ckpts, items.length ? h("table", h("thead", h("tr", ["epoch", "kind", "size", "sha256", ""].map((c) => h("th", c)))),
      h("tbody", items.map((c) => h("tr", h("td.num", String(c.epoch)), h("td", c.kind), h("td.num", `${(c.size / 1024).toFixed(1)} KiB`),
        h("td", h("code", c.sha256.slice(0, 16))), h("td", h("button", { type: "button", dataset: { checkpoint: c.id }, on: { click: () => download(c) } }, "download"))))))
      : h("p.muted", "No checkpoints yet."));
  }
  async function download(c) {
    const blob = await api.blob(c.url);
    const a = h("a", { href: URL.createObjectURL(blob), download: `${id}-${c.kind}-${c.epoch}.safetensors` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  const logs = h("pre.logs", { id: "logs" });
  let logSince = 0;
  const aborter = new AbortController();
  const addLine = (l) => { logs.append(`${l.time ? l.time.slice(11, 19) : ""} ${l.level} ${l.message}\n`); logSince = Math.max(logSince, l.seq); };
  async function drawLogs(pending) {
    try {
      const page = await pending;
      page.items.forEach(addLine);
      if (!page.items.length) logs.textContent = "";
      if (LIVE.has(page.status)) {
        api.stream(`/v1/experiments/${id}/logs`, { follow: "true", since: logSince }, (ev) => {
          if (ev.event === "log") addLine(JSON.parse(ev.data));
        }, aborter.signal).catch(() => {});
      }
    } catch (e) {
      logs.replaceWith(h("p.muted", e.status === 404 ? "No logs from this server." : e.message));
    }
  }

  const summaryBody = h("tbody");
  const fullSummary = h("pre");
  const envPre = h("pre", { id: "environment" });
  const drawSummary = () => {
    fill(summaryBody, Object.entries(exp.summary?.metrics || {}).map(([k, v]) => h("tr", h("th", k), h("td.num", { dataset: { metric: k } }, fmt(v)))));
    fullSummary.textContent = JSON.stringify(exp.summary, null, 2);
    envPre.textContent = JSON.stringify(exp.environment ?? null, null, 2);
  };
  drawSummary();
  fill(view, head, h("h2", "Curves"), controls, h("div.toolbar", "keys: ", keyBoxes), charts,
    h("h2", "Summary"), h("table", { id: "summary" }, summaryBody),
    h("details", h("summary", "Spec"), h("pre", { id: "spec" }, JSON.stringify(exp.spec, null, 2))),
    h("details", h("summary", "Provenance"), envPre),
    h("details", h("summary", "Full summary"), fullSummary),
    h("h2", "Checkpoints"), ckpts, h("h2", "Logs"), logs);
  drawHead();
  await Promise.all([pull(first.metrics), chartsReady]);
  drawable = true;
  draw();
  await Promise.all([drawCheckpoints(first.checkpoints), drawLogs(first.logs)]);

  let timer = null;
  async function poll() {
    try {
      exp = await api.get(`/v1/experiments/${id}`);
      const before = lastStep;
      await pull();
      drawHead();
      if (lastStep !== before) draw();
      if (!LIVE.has(exp.status)) { drawSummary(); await drawCheckpoints(); return; }
    } catch { /* transient: try again */ }
    timer = setTimeout(poll, 1500);
  }
  if (LIVE.has(exp.status)) timer = setTimeout(poll, 1500);
  stops.push(() => clearTimeout(timer), () => aborter.abort());
  return () => stops.forEach((f) => f());
}
