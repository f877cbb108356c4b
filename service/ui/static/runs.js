// Runs: the experiments table (GET /v1/experiments: brief view, the API's filter and sort,
// cursor paging), polled while any is live; select rows to compare.
import { api } from "./api.js";
import { h, fill, statusBadge, tagList, when, errorBox } from "./dom.js";
import { fmt } from "./stats.js";

const HEADLINE = ["test_acc", "gen_gap", "ece"];
const SORTABLE = { created: "created_at", ...Object.fromEntries(HEADLINE.map((k) => [k, k])) };
const LIVE = new Set(["queued", "running"]);

export async function render(view, route) {
  const q = route.query;
  const state = { filter: q.filter || "", sort: q.sort || "", limit: Number(q.limit) || 50, cursors: [null], page: 0 };
  const selected = new Set();
  const filterInput = h("input", { type: "text", name: "filter", value: state.filter, placeholder: "test_acc>0.8 and params.model.name=mlp or tags.team=vision" });
  const err = h("div");
  const body = h("tbody");
  const pager = h("span.muted");
  const compareBtn = h("button", { type: "button", disabled: true, id: "compare-selected", on: { click: () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; } } }, "Compare selected");
  const prev = h("button", { type: "button", on: { click: () => { if (state.page > 0) { state.page--; load(); } } } }, "‹ Prev");
  const next = h("button", { type: "button", on: { click: () => { if (state.cursors[state.page + 1]) { state.page++; load(); } } } }, "Next ›");
  const thead = h("thead");
  const drawHeader = () => fill(thead, h("tr", h("th", ""), h("th", "name"), h("th", "status"),
    sortHeader("created", "created"), h("th.num", "epoch"),
    HEADLINE.map((k) => sortHeader(k, k)), h("th", "tags"), h("th", "id")));

  function sortHeader(label, key) {
    const field = SORTABLE[key];
    const arrow = state.sort === field ? " ↑" : state.sort === `-${field}` ? " ↓" : "";
    return h(`th.sortable${key === "created" ? "" : ".num"}`, {
      dataset: { sort: field },
      on: { click: () => { state.sort = state.sort === `-${field}` ? field : `-${field}`; reset(); } },
    }, label + arrow);
  }

  function reset() {
    state.cursors = [null];
    state.page = 0;
    const params = new URLSearchParams();
    if (state.filter) params.set("filter", state.filter);
    if (state.sort) params.set("sort", state.sort);
    history.replaceState(null, "", `#/runs${params.size ? "?" + params : ""}`);
    drawHeader();
    load();
  }
  let timer = null;
  async function load() {
    clearTimeout(timer);
    let page;
    try {
      page = await api.get("/v1/experiments", {
        filter: state.filter, sort: state.sort, limit: state.limit, cursor: state.cursors[state.page],
      });
    } catch (e) {
      fill(err, errorBox(e));
      filterInput.classList.toggle("invalid", e.status === 422);
      return;
    }
    fill(err, );
    filterInput.classList.remove("invalid");
    state.cursors[state.page + 1] = page.next_cursor;
    fill(body, ...page.items.map(row));
    if (!page.items.length) body.append(h("tr", h("td.muted", { colSpan: 11 }, "No experiments match.")));
    pager.textContent = `page ${state.page + 1} · ${page.items.length} shown`;
    prev.disabled = state.page === 0;
    next.disabled = !page.next_cursor;
    view.dataset.ready = "true";
    if (page.items.some((r) => LIVE.has(r.status))) timer = setTimeout(load, 2000);
  }

  function row(r) {
    const box = h("input", { type: "checkbox", checked: selected.has(r.id), on: { change: (e) => {
      e.target.checked ? selected.add(r.id) : selected.delete(r.id);
      compareBtn.disabled = selected.size < 2;
      compareBtn.textContent = `Compare selected (${selected.size})`;
    } } });
    return h("tr", { dataset: { id: r.id, status: r.status } },
      h("td", box),
      h("td", h("a", { href: `#/runs/${r.id}` }, r.name)),
      h("td", statusBadge(r.status)),
      h("td", when(r.created_at)),
      h("td.num", `${r.progress.epoch}/${r.progress.epochs}`),
      HEADLINE.map((k) => h("td.num", { dataset: { metric: k } }, fmt(r.metrics[k]))),
      h("td", tagList(r.tags)),
      h("td.muted", h("code", r.id.slice(0, 8))));
  }

  const form = h("form.toolbar", { on: { submit: (e) => { e.preventDefault(); state.filter = filterInput.value.trim(); reset(); } } },
    h("label", "Filter ", filterInput), h("button", { type: "submit" }, "Apply"),
    h("span.hint", "grammar: metric>x, params.<path>=v, tags.<key>=v, in (…), and/or, ( )"));
  fill(view, h("h1", "Runs"), form, err,
    h("div.toolbar", compareBtn, prev, next, pager),
    h("table", { id: "runs" }, thead, body));
  drawHeader();
  await load();
  return () => clearTimeout(timer);
}
