// Sweeps: the list (GET /v1/sweeps, cursor paging) with their progress.
import { api } from "./api.js";
import { h, fill, statusBadge, tagList, when } from "./dom.js";

export async function render(view) {
  const body = h("tbody");
  const cursors = [null];
  let page = 0;
  const more = h("button", { type: "button", on: { click: () => { page++; load(); } } }, "Next ›");
  async function load() {
    const got = await api.get("/v1/sweeps", { limit: 50, cursor: cursors[page] });
    cursors[page + 1] = got.next_cursor;
    more.disabled = !got.next_cursor;
    fill(body, ...got.items.map((s) => {
      const total = Object.values(s.counts).reduce((a, b) => a + b, 0);
      const done = (s.counts.succeeded || 0) + (s.counts.failed || 0) + (s.counts.cancelled || 0) + (s.counts.skipped || 0);
      return h("tr", { dataset: { id: s.id } }, h("td", h("a", { href: `#/sweeps/${s.id}` }, s.name)), h("td", statusBadge(s.status)),
        h("td", s.method), h("td", h("progress", { max: total || 1, value: done }), ` ${done}/${total}`),
        h("td", when(s.created_at)), h("td", tagList(s.tags)), h("td.muted", h("code", s.id.slice(0, 8))));
    }));
    if (!got.items.length) body.append(h("tr", h("td.muted", { colSpan: 7 }, "No sweeps yet (POST /v1/sweeps or reglab sweep).")));
  }
  fill(view, h("h1", "Sweeps"), h("table", { id: "sweeps" },
    h("thead", h("tr", ["name", "status", "method", "progress", "created", "tags", "id"].map((c) => h("th", c)))), body),
    h("div.toolbar", more));
  await load();
}
