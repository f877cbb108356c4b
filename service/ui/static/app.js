// The shell: a hash router over the pages, and the API key dialog (the key is kept in
// sessionStorage and sent as a bearer token by api.js).
import { apiKey, onUnauthorized } from "./api.js";

// index.html preloads the modules every page imports and the two small page modules people
// open most (runs.js, run.js); a page that draws charts also needs chart.js and uPlot (145 KB),
// preloaded here with the page's own module rather than found after it (the Runs page, which
// draws none, no longer loads them)
const CHARTS = ["chart.js", "vendor/uPlot.esm.js"];
const pages = {
  runs: { load: () => import("./runs.js") },
  run: { load: () => import("./run.js"), preload: CHARTS },
  compare: { load: () => import("./compare.js"), preload: CHARTS },
  sweeps: { load: () => import("./sweeps.js") },
  sweep: { load: () => import("./sweep.js"), preload: CHARTS },
  catalog: { load: () => import("./catalog.js"), preload: ["form.js"] },
};

function preload(hrefs) {
  for (const href of hrefs || []) {
    if (document.querySelector(`link[rel=modulepreload][href="${href}"]`)) continue;
    const link = document.createElement("link");
    link.rel = "modulepreload";
    link.href = href;
    document.head.append(link);
  }
}

// #/runs, #/runs/<id>, #/compare?ids=a,b, #/sweeps, #/sweeps/<id>, #/catalog
export function parseRoute(hash) {
  const [path, qs] = (hash.replace(/^#/, "") || "/runs").split("?");
  const parts = path.split("/").filter(Boolean);
  const query = Object.fromEntries(new URLSearchParams(qs || ""));
  if (parts[0] === "runs" && parts[1]) return { page: "run", id: parts[1], query, nav: "runs" };
  if (parts[0] === "sweeps" && parts[1]) return { page: "sweep", id: parts[1], query, nav: "sweeps" };
  if (parts[0] in pages) return { page: parts[0], query, nav: parts[0] === "compare" ? "runs" : parts[0] };
  return { page: "runs", query, nav: "runs" };
}

window.__reglab = window.__reglab || { plots: {} };
let current = null; // the page's cleanup (timers, streams)

async function render() {
  const route = parseRoute(location.hash);
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === route.nav));
  if (current) { try { current(); } catch { /* already gone */ } current = null; }
  const view = document.getElementById("view");
  view.dataset.page = route.page;
  view.dataset.ready = "false";
  preload(pages[route.page].preload);
  const mod = await pages[route.page].load();
  try {
    current = (await mod.render(view, route)) || null;
  } catch (err) {
    view.innerHTML = "";
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = err.message;
    view.append(p);
  }
  view.dataset.ready = "true";
  window.__reglab.rendered = { page: route.page, at: performance.now() }; // ms since navigation
}

function askKey(reason) {
  const dialog = document.getElementById("key-dialog");
  if (dialog.open) return;
  document.getElementById("key-reason").textContent = reason || "Enter your API key.";
  document.getElementById("key-input").value = apiKey.get();
  dialog.showModal();
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  if (ev.submitter?.value === "save") {
    apiKey.set(document.getElementById("key-input").value.trim());
    render();
  }
});
document.getElementById("key-button").addEventListener("click", () => askKey("Enter your API key."));
onUnauthorized((problem) => askKey(problem?.detail || "This server needs an API key."));
window.addEventListener("hashchange", render);
render();
