// The numbers the charts need: smoothing, mean and 95% t interval over seeds, whether values
// are log-spaced, and the range a metric can take (bands are clipped to it).

// Two-sided 95% t quantiles for 1..30 degrees of freedom; 1.96 beyond.
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
  2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06,
  2.056, 2.052, 2.048, 2.045, 2.042];
export const t95 = (df) => (df < 1 ? NaN : df <= 30 ? T95[df - 1] : 1.96);

export function meanCI(values) {
  const xs = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  const n = xs.length;
  if (!n) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, low: null, high: null, n };
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const half = t95(n - 1) * sd / Math.sqrt(n);
  return { mean, low: mean - half, high: mean + half, n };
}

// Exponential moving average with TensorBoard's debiasing; weight 0 returns the input. Gaps
// (null) stay gaps.
export function smooth(values, weight) {
  if (!weight) return values;
  let last = 0, count = 0;
  return values.map((v) => {
    if (v === null || v === undefined || !Number.isFinite(v)) return v;
    last = last * weight + (1 - weight) * v;
    count += 1;
    return last / (1 - weight ** count);
  });
}

// Log-spaced: all positive, at least three distinct values and evenly spaced in log (ratios of
// neighbours within 10% of each other), or spanning more than a decade. Same rule as
// service/sweeps/plot.py's log_spaced.
export function logSpaced(values) {
  const xs = [...new Set(values.filter((v) => typeof v === "number" && Number.isFinite(v)))].sort((a, b) => a - b);
  if (xs.length < 2 || xs[0] <= 0) return false;
  if (xs[xs.length - 1] / xs[0] > 10) return true;
  if (xs.length < 3) return false;
  const logs = xs.map(Math.log);
  const steps = logs.slice(1).map((v, i) => v - logs[i]);
  const lin = xs.slice(1).map((v, i) => v - xs[i]);
  const spread = (a) => (Math.max(...a) - Math.min(...a)) / Math.max(...a);
  return spread(steps) < 0.1 && spread(lin) > 0.1;
}

// The range a metric can take, from its name (same rule as service/sweeps/plot.py's
// metric_range): accuracies, ECE, confidence and sparsity in [0, 1]; losses, norms, lr and
// system figures non-negative; anything else (gen_gap = val_loss - train_loss) unbounded.
export function metricRange(key) {
  const k = key.toLowerCase();
  if (k === "gen_gap") return [-Infinity, Infinity];
  if (/(^|_)(acc|accuracy|ece|confidence|sparsity)($|_)/.test(k)) return [0, 1];
  if (/(loss|norm|lr|penalty|_s$|_mb$|percent)/.test(k)) return [0, Infinity];
  return [-Infinity, Infinity];
}

export const clip = (v, [lo, hi]) => (v === null || v === undefined ? v : Math.min(hi, Math.max(lo, v)));

export const fmt = (v, digits = 4) =>
  v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(digits)) : String(v);
