// Compare: the selected runs' curves overlaid (GET /v1/compare aligns them on common steps);
// runs that differ only by seed grouped into their mean with a 95% band; final metrics and
// the spec side by side with the rows that differ highlighted; the generalization gap with and
// without each regularizer.
import { api } from "./api.js";
import { h, fill, statusBadge, errorBox } from "./dom.js";
import { lineChart, color, chartsReady } from "./chart.js";
import { meanCI, fmt, metricRange, clip } from "./stats.js";

const DEFAULT_KEYS = "train_loss,val_loss,val_acc,gen_gap";

// {a: {b: 1}, l: [2]} -> {"a.b": 1, "l[0]": 2}
export function flatten(value, prefix = "", out = {}) {
  if (Array.isArray(value)) {
    if (!value.length) out[prefix] = "[]";
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length && prefix) out[prefix] = "{}";
    keys.forEach((k) => flatten(value[k], prefix ? `${prefix}.${k}` : k, out));
  } else out[prefix] = value;
  return out;
}

// Runs whose specs are equal but for seed and name share a group.
export function seedGroups(items) {
  const groups = new Map();
  for (const e of items) {
    const { seed, name, ...rest } = e.spec;
    const canon = JSON.stringify(sortKeys(rest));
    if (!groups.has(canon)) groups.set(canon, { label: e.name.replace(/\/s\d+$/, ""), members: [] });
    groups.get(canon).members.push(e);
  }
  return [...groups.values()];
}
const sortKeys = (v) => (Array.isArray(v) ? v.map(sortKeys) : v && typeof v === "object"
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])])) : v);

const regNames = (e) => (e.spec.regularizers || []).map((r) => r.name);

export async function render(view, route) {
  const ids = (route.query.ids || "").split(",").filter(Boolean);
  if (ids.length < 1) { fill(view, h("h1", "Compare"), h("p.muted", "Select runs on the Runs page.")); return; }
  const keys = route.query.keys || DEFAULT_KEYS;
  const [cmp] = await Promise.all([api.get("/v1/compare", { ids: ids.join(","), keys, max_points: 1000 }), chartsReady]);
  const groups = seedGroups(cmp.items);
  const canGroup = groups.some((g) => g.members.length > 1);
  let grouped = canGroup && route.query.group !== "0";
  const charts = h("div.grid", { id: "compare-charts" });

  function draw() {
    fill(charts, );
    for (const [key, s] of Object.entries(cmp.series)) {
      const el = h("div.chart", { dataset: { key } });
      charts.append(h("div.card", el));
      let lines;
      if (grouped) {
        const range = metricRange(key);
        lines = groups.map((g, i) => {
          const est = s.steps.map((_, j) => meanCI(g.members.map((m) => s.values[m.id][j])));
          const band = g.members.length > 1 ? {
            low: est.map((e) => (e && e.low !== null ? clip(e.low, range) : null)),
            high: est.map((e) => (e && e.high !== null ? clip(e.high, range) : null)),
          } : null;
          return { label: `${g.label} (n=${g.members.length})`, values: est.map((e) => (e ? e.mean : null)), band, color: color(i) };
        });
      } else {
        lines = cmp.items.map((e, i) => ({ label: `${e.name} ${e.id.slice(0, 6)}`, values: s.values[e.id], color: color(i) }));
      }
      lineChart(el, s.steps, lines, { id: `compare:${key}`, title: key, height: 240 });
    }
  }

  // final metrics: rows where the runs differ are highlighted, the best value in bold
  const metricRows = Object.entries(cmp.table).map(([k, byId]) => {
    const vals = cmp.items.map((e) => byId[e.id]);
    const finite = vals.filter((v) => typeof v === "number");
    const differs = new Set(finite.map((v) => v.toPrecision(4))).size > 1;
    const best = /loss|gap|ece/.test(k) ? Math.min(...finite) : Math.max(...finite);
    return h(`tr${differs ? ".diff" : ""}`, { dataset: { metric: k } }, h("th", k),
      vals.map((v) => h("td.num", v === best && differs ? h("b", fmt(v)) : fmt(v))));
  });
  const flat = cmp.items.map((e) => flatten(e.spec));
  const paths = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
  const specRows = paths.map((p) => {
    const vals = flat.map((f) => (p in f ? JSON.stringify(f[p]) : "–"));
    const differs = new Set(vals).size > 1;
    return h(`tr${differs ? ".diff" : ""}`, { dataset: { path: p } }, h("th", p), vals.map((v) => h("td", v)));
  });
  const onlyDiff = h("input", { type: "checkbox", checked: true, on: { change: () => { specRows.forEach((r) => { r.hidden = onlyDiff.checked && !r.classList.contains("diff"); }); } } });
  specRows.forEach((r) => { r.hidden = !r.classList.contains("diff"); });
  const headRow = h("tr", h("th", ""), cmp.items.map((e) => h("th", h("a", { href: `#/runs/${e.id}` }, e.name), " ", statusBadge(e.status))));

  // the question the product exists for: gen gap with and without each regularizer
  const gap = (e) => cmp.table.gen_gap?.[e.id];
  const names = [...new Set(cmp.items.flatMap(regNames))].sort();
  const gapRows = names.map((n) => {
    const w = meanCI(cmp.items.filter((e) => regNames(e).includes(n)).map(gap));
    const wo = meanCI(cmp.items.filter((e) => !regNames(e).includes(n)).map(gap));
    const ci = (e) => (e ? `${fmt(e.mean)}${e.low !== null ? ` [${fmt(e.low, 3)}, ${fmt(e.high, 3)}]` : ""} (n=${e.n})` : "–");
    return h("tr", { dataset: { regularizer: n } }, h("th", n), h("td.num", ci(w)), h("td.num", ci(wo)),
      h("td.num", w && wo ? fmt(w.mean - wo.mean) : "–"));
  });
  window.__reglab.compare = { ids: cmp.items.map((e) => e.id), groups: groups.map((g) => g.members.map((m) => m.id)) };

  const keysInput = h("input", { type: "text", name: "keys", value: keys, size: 40 });
  fill(view, 
    h("h1", `Compare ${cmp.items.length} runs`),
    h("form.toolbar", { on: { submit: (e) => { e.preventDefault(); location.hash = `#/compare?ids=${ids.join(",")}&keys=${encodeURIComponent(keysInput.value)}`; } } },
      h("label", "metric keys ", keysInput), h("button", { type: "submit" }, "Show"),
      canGroup ? h("label", h("input", { type: "checkbox", name: "group", checked: grouped, on: { change: (e) => { grouped = e.target.checked; draw(); } } }), " group seeds (mean, 95% band)") : null),
    charts,
    h("h2", "Generalization gap (val_loss − train_loss) with and without each regularizer"),
    names.length ? h("table", { id: "gap-table" }, h("thead", h("tr", ["regularizer", "with: mean [95% CI]", "without", "difference"].map((c) => h("th", c)))), h("tbody", gapRows))
      : h("p.muted", "None of these runs uses a regularizer."),
    h("h2", "Final metrics"), h("table", { id: "final-metrics" }, h("thead", headRow), h("tbody", metricRows)),
    h("h2", "Spec"), h("label", onlyDiff, " only rows that differ"),
    h("table", { id: "spec-diff" }, h("thead", headRow.cloneNode(true)), h("tbody", specRows)),
  );
  draw();
}
