// Sweep page (GET /v1/sweeps/{id}): progress, the results table (mean and 95% interval over
// seeds per configuration), the metric against each parameter (log axis when log-spaced, bands
// clipped to the metric's range), factorial main effects and interactions as bars with their
// intervals, parallel coordinates over the configurations, and stopped trials with the reason.
import { api } from "./api.js";
import { h, fill, statusBadge, when } from "./dom.js";
import { lineChart, color, chartsReady } from "./chart.js";
import { fmt, logSpaced, metricRange, clip } from "./stats.js";

const LIVE = new Set(["running", "queued", "pending"]);
const loadEcharts = () => import("./vendor/echarts.esm.min.js");

// mean [low, high], the interval clipped to the range the metric can take
const ci = (e, key = "") => {
  if (!e) return "–";
  const r = metricRange(key);
  return e.ci_low !== null && e.ci_low !== undefined ? `${fmt(e.mean)} [${fmt(clip(e.ci_low, r), 3)}, ${fmt(clip(e.ci_high, r), 3)}]` : fmt(e.mean);
};
const label = (params) => Object.entries(params).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(", ") || "all";

// Per parameter: one line per combination of the others, x sorted, mean and clipped band.
export function paramLines(table, x, y) {
  const groups = new Map();
  for (const row of table) {
    const est = row.metrics[y];
    if (!est) continue;
    const { [x]: xv, ...rest } = row.params;
    const g = label(rest);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push([xv, est]);
  }
  const xs = [...new Set(table.map((r) => r.params[x]))];
  const numeric = xs.every((v) => typeof v === "number");
  const order = numeric ? xs.sort((a, b) => a - b) : xs.map(String).sort();
  const range = metricRange(y);
  const lines = [...groups.entries()].map(([g, pts], i) => {
    const at = new Map(pts.map(([xv, e]) => [numeric ? xv : String(xv), e]));
    const col = order.map((xv) => at.get(xv));
    return {
      label: g, color: color(i), values: col.map((e) => (e ? e.mean : null)),
      band: { low: col.map((e) => (e && e.ci_low !== null ? clip(e.ci_low, range) : null)), high: col.map((e) => (e && e.ci_high !== null ? clip(e.ci_high, range) : null)) },
    };
  });
  return { x: numeric ? order : order.map((_, i) => i), categories: numeric ? null : order, lines, log: numeric && logSpaced(order) };
}

function effectBars(echarts, el, effects, metric) {
  const rows = [...Object.entries(effects.main_effects).map(([k, e]) => [k, e, "main"]),
    ...Object.entries(effects.interactions).map(([k, e]) => [k.replace(":", " × "), e, "interaction"])];
  const ends = rows.flatMap(([, e]) => [e.effect, e.ci_low ?? e.effect, e.ci_high ?? e.effect, 0]);
  const pad = (Math.max(...ends) - Math.min(...ends)) * 0.05 || 1e-6;
  const lo = +(Math.min(...ends) - pad).toPrecision(3), hi = +(Math.max(...ends) + pad).toPrecision(3);
  const chart = echarts.init(el, null, { renderer: "canvas" });
  chart.setOption({
    animation: false,
    title: { text: `effects on ${metric} (95% CI)`, textStyle: { fontSize: 13 } },
    grid: { left: 60, right: 20, top: 40, bottom: 60 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: rows.map((r) => r[0]), axisLabel: { interval: 0, rotate: rows.length > 4 ? 20 : 0 } },
    yAxis: { type: "value", min: lo, max: hi, axisLabel: { showMinLabel: false, showMaxLabel: false } },
    series: [
      { type: "bar", data: rows.map(([, e, kind]) => ({ value: e.effect, itemStyle: { color: kind === "main" ? "#2563eb" : "#9ca3af" } })) },
      {
        type: "custom", z: 10, data: rows.map(([, e], i) => [i, e.ci_low ?? e.effect, e.ci_high ?? e.effect]),
        renderItem: (params, a) => {
          const lo = a.coord([a.value(0), a.value(1)]), hi = a.coord([a.value(0), a.value(2)]);
          const w = a.size([1, 0])[0] * 0.15;
          const st = { stroke: "#111", lineWidth: 1.5 };
          return { type: "group", children: [
            { type: "line", shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style: st },
            { type: "line", shape: { x1: lo[0] - w, y1: lo[1], x2: lo[0] + w, y2: lo[1] }, style: st },
            { type: "line", shape: { x1: hi[0] - w, y1: hi[1], x2: hi[0] + w, y2: hi[1] }, style: st }] };
        },
      },
    ],
  });
  return rows.map(([name, e]) => ({ name, ...e }));
}

function parallel(echarts, el, res) {
  const params = Object.keys(res.table[0]?.params || {});
  const dims = [...params, res.metric];
  const axes = dims.map((d, i) => {
    const vals = res.table.map((r) => (i < params.length ? r.params[d] : r.metrics[d]?.mean));
    const numeric = vals.every((v) => typeof v === "number" || v === null || v === undefined);
    if (!numeric) return { dim: i, name: d, type: "category", data: [...new Set(vals.map(String))] };
    return { dim: i, name: d, type: i < params.length && logSpaced(vals) ? "log" : "value", scale: true };
  });
  const data = res.table.filter((r) => r.metrics[res.metric]).map((r) => dims.map((d, i) => {
    const v = i < params.length ? r.params[d] : r.metrics[d].mean;
    return axes[i].type === "category" ? String(v) : v;
  }));
  const chart = echarts.init(el, null, { renderer: "canvas" });
  const ms = data.map((r) => r[r.length - 1]);
  chart.setOption({
    animation: false,
    parallelAxis: axes,
    parallel: { left: 60, right: 80, top: 30, bottom: 30 },
    visualMap: { show: true, min: Math.min(...ms), max: Math.max(...ms), dimension: dims.length - 1, right: 0, top: "middle",
      inRange: { color: res.mode === "min" ? ["#15803d", "#fbbf24", "#b91c1c"] : ["#b91c1c", "#fbbf24", "#15803d"] }, calculable: true },
    series: [{ type: "parallel", lineStyle: { width: 2, opacity: 0.7 }, data }],
  });
  return { dims, data };
}

export async function render(view, route) {
  const id = route.id;
  let timer = null;
  const charts = [];
  async function draw() {
    const [sw] = await Promise.all([api.get(`/v1/sweeps/${id}`), chartsReady]);
    const res = sw.results;
    const total = Object.values(sw.counts).reduce((a, b) => a + b, 0);
    const done = (sw.counts.succeeded || 0) + (sw.counts.failed || 0) + (sw.counts.cancelled || 0) + (sw.counts.skipped || 0);
    const keys = res.keys.filter((k) => res.table.some((r) => r.metrics[k]));
    const shownKeys = [res.metric, ...["test_acc", "gen_gap", "ece"].filter((k) => k !== res.metric && keys.includes(k))];
    const params = Object.keys(res.table[0]?.params || {});

    const resultRows = res.table.map((r) => h(`tr${res.best && res.best.config === r.config ? ".diff" : ""}`, { dataset: { config: r.config } },
      h("td.num", String(r.config)), params.map((p) => h("td", fmt(r.params[p], 3))), h("td.num", String(r.n)),
      shownKeys.map((k) => h("td.num", { dataset: { metric: k } }, ci(r.metrics[k], k)))));
    const stopped = sw.experiments.filter((t) => t.stop_reason);
    const byParam = h("div.grid", { id: "by-param" });
    const effectsBox = h("div");
    const parBox = h("div.card", h("div.parallel", { id: "parallel" }));
    charts.splice(0).forEach((c) => c.dispose?.());
    fill(view, 
      h("h1", sw.name, " ", statusBadge(sw.status)),
      h("p", `${sw.method} · metric ${sw.metric} (${sw.mode}) · created ${when(sw.created_at)} · `, h("code", sw.id)),
      h("p", h("progress", { id: "sweep-progress", max: total || 1, value: done }), ` ${done}/${total} · `,
        Object.entries(sw.counts).filter(([, n]) => n).map(([s, n]) => `${s} ${n}`).join(" · ")),
      res.best ? h("p", "best: ", h("b", label(res.best.params)), ` ${sw.metric} ${ci({ mean: res.best.mean, ci_low: res.best.ci_low, ci_high: res.best.ci_high }, sw.metric)}`) : null,
      h("h2", "Results (mean [95% CI] over seeds; succeeded runs)"),
      h("table", { id: "results" }, h("thead", h("tr", h("th", "config"), params.map((p) => h("th", p)), h("th.num", "n"), shownKeys.map((k) => h("th.num", k)))), h("tbody", resultRows)),
      sw.factors.length ? [h("h2", "Factorial effects"), effectsBox] : [h("h2", `${sw.metric} against each parameter`), byParam],
      params.length > 0 ? [h("h2", "Parallel coordinates"), parBox] : null,
      h("h2", "Trials"),
      h("table", { id: "trials" }, h("thead", h("tr", ["#", "config", "seed", "status", "stop reason", "run"].map((c) => h("th", c)))),
        h("tbody", sw.experiments.map((t) => h(`tr${t.stop_reason ? ".diff" : ""}`, { dataset: { idx: t.idx } }, h("td.num", String(t.idx)), h("td.num", String(t.config)),
          h("td.num", String(t.seed)), h("td", statusBadge(t.status)), h("td", t.stop_reason || ""),
          h("td", t.experiment_id ? h("a", { href: `#/runs/${t.experiment_id}` }, t.experiment_id.slice(0, 8)) : "–"))))),
      stopped.length ? h("p.muted", `${stopped.length} trial(s) stopped early; reasons shown above.`) : null,
    );
    const plotted = { effects: null, params: {} };
    if (!sw.factors.length) {
      for (const p of params) {
        const pl = paramLines(res.table, p, sw.metric);
        const el = h("div.chart", { dataset: { param: p } });
        byParam.append(h("div.card", el));
        lineChart(el, pl.x, pl.lines, { id: `sweep:${p}`, title: `${sw.metric} vs ${p}${pl.log ? " (log x)" : ""}`, xLabel: p, logX: pl.log, height: 260 });
        plotted.params[p] = { log: pl.log, categories: pl.categories };
      }
    }
    if (sw.factors.length || params.length) {
      const echarts = await loadEcharts();
      const eff = res.effects?.[sw.metric];
      if (sw.factors.length) {
        if (eff) {
          const el = h("div.bar-chart", { id: "effects" });
          fill(effectsBox, h("div.card", el));
          plotted.effects = effectBars(echarts, el, eff, sw.metric);
          charts.push(echarts.getInstanceByDom(el));
        } else fill(effectsBox, h("p.muted", "Effects appear once every cell of the design has a succeeded run."));
      }
      if (res.table.some((r) => r.metrics[sw.metric])) {
        const el = parBox.firstChild;
        plotted.parallel = parallel(echarts, el, res);
        charts.push(echarts.getInstanceByDom(el));
      } else fill(parBox, h("p.muted", "No succeeded run yet."));
    }
    window.__reglab.sweep = { id: sw.id, ...plotted };
    if (LIVE.has(sw.status)) timer = setTimeout(draw, 3000);
  }
  await draw();
  return () => { clearTimeout(timer); charts.forEach((c) => c.dispose?.()); };
}
