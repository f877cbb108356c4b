// Line charts on uPlot: series on a shared x, optional 95% bands (clipped by the caller), log
// axes, smoothing done by the caller. Every chart's plotted data is kept on
// window.__reglab.plots[id] (x, series by label) so tests and scripts can read back what is drawn.
// uPlot (145 KB) is imported, not a static dependency, so a page's API calls need not wait for it
// to load: await chartsReady before the first lineChart.
let uPlot = null;
export const chartsReady = import("./vendor/uPlot.esm.js").then((m) => { uPlot = m.default; });

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
export const color = (i) => PALETTE[i % PALETTE.length];

window.__reglab = window.__reglab || { plots: {} };

const tickFormat = (u, ticks) => ticks.map((v) => (v === null ? "" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(0) : String(+v.toPrecision(6))));

// lines: [{label, values, color?, band?: {low, high}}]; opts: {id, title, xLabel, logX, logY,
// width (pass it when drawing many: reading the element's width forces a layout each time),
// height, xRange: [min, max], onZoom(xMin, xMax): called with a dragged x range instead of
// uPlot zooming its own scale}
export function lineChart(el, x, lines, opts = {}) {
  if (!uPlot) throw new Error("lineChart before chartsReady");
  el.innerHTML = "";
  const data = [x];
  const series = [{ label: opts.xLabel || "step" }];
  const bands = [];
  lines.forEach((line, i) => {
    const stroke = line.color || color(i);
    data.push(line.values);
    series.push({ label: line.label, stroke, width: 1.5, spanGaps: true, points: { show: x.length < 40 } });
    if (line.band) {
      const hi = data.push(line.band.high) - 1;
      series.push({ label: `${line.label} hi`, band: true, stroke: "transparent", points: { show: false }, spanGaps: true });
      const lo = data.push(line.band.low) - 1;
      series.push({ label: `${line.label} lo`, band: true, stroke: "transparent", points: { show: false }, spanGaps: true });
      bands.push({ series: [hi, lo], fill: stroke + "33" });
    }
  });
  const logY = opts.logY && lines.every((l) => l.values.every((v) => v === null || v > 0));
  const plot = new uPlot({
    title: opts.title,
    width: opts.width || Math.max(320, (el.clientWidth || 610) - 10),
    height: opts.height || 260,
    series,
    bands,
    scales: {
      x: { time: false, distr: opts.logX ? 3 : 1, log: 10, ...(opts.xRange ? { range: () => opts.xRange } : {}) },
      y: { distr: logY ? 3 : 1, log: 10 },
    },
    axes: [{ label: opts.xLabel || "step", values: tickFormat }, { size: 60, values: tickFormat }],
    legend: { live: true },
    cursor: { drag: { x: true, y: false, setScale: !opts.onZoom } },
    hooks: opts.onZoom ? { setSelect: [(u) => {
      if (u.select.width > 1) opts.onZoom(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
    }] } : {},
  }, data, el);
  // the band's edges are series too: keep them out of the legend
  const items = plot.root.querySelectorAll(".u-legend .u-series");
  series.forEach((sr, i) => { if (sr.band && items[i]) items[i].style.display = "none"; });
  if (opts.id) {
    window.__reglab.plots[opts.id] = {
      x,
      series: Object.fromEntries(lines.map((l) => [l.label, l.values])),
      bands: Object.fromEntries(lines.filter((l) => l.band).map((l) => [l.label, l.band])),
      logX: !!opts.logX,
      logY,
    };
  }
  return plot;
}
