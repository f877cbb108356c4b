// h("tag.class", {attrs, on: {click}}, ...children): elements from data without innerHTML, so
// names, tags and messages from the API can never inject markup.
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const statusBadge = (s) => h(`span.status.${s}`, { dataset: { status: s } }, s);
export const tagList = (tags) => Object.entries(tags || {}).map(([k, v]) => h("span.tag", `${k}=${v}`));
export const when = (t) => (t ? new Date(t).toLocaleString() : "–");
export function errorBox(err) {
  return h("p.error", { role: "alert" }, err.message || String(err));
}

// replaceChildren that skips null/false and flattens arrays (the DOM's would print "null").
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
