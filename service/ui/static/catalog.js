// Catalog: every regularizer (GET /v1/regularizers: description, parameters, defaults); a
// submit form built from the API's JSON schemas (ExperimentSpec from /openapi.json, each
// regularizer's from the catalog), checked before sending, the API's 422 shown at the field;
// and a raw JSON editor.
import { api } from "./api.js";
import { h, fill, errorBox } from "./dom.js";
import { resolve, objectFields } from "./form.js";

const describe = (s) => {
  const bits = [];
  if (s.enum) bits.push(s.enum.join(" | "));
  else if (s.type) bits.push(s.type);
  else if (s.anyOf) bits.push(s.anyOf.map((x) => x.type || "object").join(" | "));
  for (const [k, sym] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"]]) {
    if (s[k] !== undefined) bits.push(`${sym} ${s[k]}`);
  }
  return bits.join(", ");
};

function regularizerCard(r) {
  const props = Object.entries(r.parameters.properties || {});
  return h("div.card", { dataset: { regularizer: r.name } }, h("h3", r.name), h("p", r.description),
    props.length ? h("table", h("thead", h("tr", ["parameter", "type", "default", "meaning"].map((c) => h("th", c)))),
      h("tbody", props.map(([k, s]) => h("tr", h("td", h("code", k)), h("td", describe(s)), h("td", JSON.stringify(r.defaults[k] ?? s.default ?? null)), h("td", s.description || "")))))
      : h("p.muted", "no parameters"));
}

export async function render(view) {
  const [catalog, openapi] = await Promise.all([api.get("/v1/regularizers"), api.get("/openapi.json")]);
  const regs = catalog.items;
  const root = openapi;
  const spec = resolve({ $ref: "#/components/schemas/ExperimentSpec" }, root);
  const top = objectFields({ properties: { name: spec.properties.name, seed: spec.properties.seed } }, root, "", { values: { name: "from-the-dashboard" } });
  const data = objectFields(resolve(spec.properties.data, root), root, "data", { values: { name: "mnist1d" } });
  const train = objectFields(resolve(spec.properties.train, root), root, "train", { values: { epochs: 5, device: "cpu" } });

  // model: the discriminated union as a select, then the chosen model's fields
  const mapping = spec.properties.model.discriminator.mapping;
  const modelBox = h("div");
  let model = null;
  const modelSelect = h("select", { name: "model.name", dataset: { loc: "model.name" }, on: { change: () => pickModel(modelSelect.value) } },
    Object.keys(mapping).map((n) => h("option", { value: n, selected: n === "mlp" }, n)));
  function pickModel(name) {
    model = objectFields(resolve({ $ref: mapping[name] }, root), root, "model", { skip: ["name"], values: name === "mlp" ? { hidden: [32] } : {} });
    fill(modelBox, model.el);
  }
  pickModel("mlp");

  // regularizers: any from the catalog, fields from its parameters' schema
  const chosen = [];
  const regBox = h("div", { id: "chosen-regularizers" });
  function drawRegs() {
    fill(regBox, chosen.map((c, i) => {
      c.fields = objectFields(c.entry.parameters, root, `regularizers[${i}]`, { values: c.values, required: [] });
      return h("fieldset", { dataset: { index: i } }, h("legend", c.entry.name, " ",
        h("button", { type: "button", on: { click: () => { keep(); chosen.splice(i, 1); drawRegs(); } } }, "remove")), c.fields.el);
    }));
  }
  const keep = () => chosen.forEach((c) => { if (c.fields) c.values = c.fields.read()[0]; });
  const addSelect = h("select", { name: "add-regularizer" }, regs.map((r) => h("option", { value: r.name }, r.name)));
  const addBtn = h("button", { type: "button", id: "add-regularizer", on: { click: () => {
    keep();
    chosen.push({ entry: regs.find((r) => r.name === addSelect.value), values: {} });
    drawRegs();
  } } }, "add");

  const formErrors = h("div", { id: "form-errors" });
  const raw = h("textarea", { id: "raw-spec", spellcheck: false });
  const rawErrors = h("div", { id: "raw-errors" });

  function collect() {
    keep();
    const errors = [];
    const part = (f) => { const [v, e] = f.read(); errors.push(...e); return v; };
    const out = { ...part(top), data: part(data), model: { name: modelSelect.value, ...part(model) }, train: part(train) };
    out.regularizers = chosen.map((c) => ({ name: c.entry.name, ...part(c.fields) }));
    return [out, errors];
  }
  function clearErrors() {
    view.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    view.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    fill(formErrors);
  }
  // Each error at its field when the form has it, else listed above the buttons.
  function showErrors(errors, where) {
    const loose = [];
    for (const e of errors) {
      const input = where === formErrors ? view.querySelector(`[data-loc="${CSS.escape(e.loc)}"]`) : null;
      const msg = input && view.querySelector(`.field-error[data-for="${CSS.escape(e.loc)}"]`);
      if (input && msg) { input.classList.add("invalid"); msg.textContent = e.msg; } else loose.push(e);
    }
    fill(where, loose.map((e) => h("p.error", { dataset: { loc: e.loc } }, `${e.loc}: ${e.msg}`)));
  }
  async function send(body, where) {
    try {
      const exp = await api.post("/v1/experiments", body);
      location.hash = `#/runs/${exp.id}`;
    } catch (e) {
      if (e.status === 422 && e.errors.length) showErrors(e.errors, where);
      else fill(where, errorBox(e));
    }
  }
  async function submitForm(ev) {
    ev.preventDefault();
    clearErrors();
    const [body, errors] = collect();
    raw.value = JSON.stringify(body, null, 2);
    if (errors.length) { showErrors(errors, formErrors); return; } // caught here, never sent
    await send(body, formErrors);
  }
  async function submitRaw() {
    fill(rawErrors);
    let body;
    try { body = JSON.parse(raw.value); } catch (e) { fill(rawErrors, h("p.error", `not valid JSON: ${e.message}`)); return; }
    await send(body, rawErrors);
  }

  const form = h("form", { id: "spec-form", novalidate: true, on: { submit: submitForm } },
    h("fieldset", h("legend", "experiment"), top.el),
    h("details", { open: true }, h("summary", "data"), data.el),
    h("details", { open: true }, h("summary", "model"), h("div.form-row", h("label", "model ", modelSelect)), modelBox),
    h("details", { open: true }, h("summary", "train"), train.el),
    h("details", { open: true }, h("summary", "regularizers"), regBox, h("div.form-row", addSelect, " ", addBtn)),
    formErrors,
    h("div.toolbar", h("button", { type: "submit", id: "submit-form" }, "Check and submit"),
      h("button", { type: "button", on: { click: () => { const [b] = collect(); raw.value = JSON.stringify(b, null, 2); } } }, "Copy to JSON editor")));
  raw.value = JSON.stringify(collect()[0], null, 2);
  fill(view, h("h1", "Catalog"),
    h("div.grid", h("div", h("h2", "Submit an experiment"), form),
      h("div", h("h2", "Raw JSON"), raw, rawErrors, h("div.toolbar", h("button", { type: "button", id: "submit-raw", on: { click: submitRaw } }, "Submit JSON")))),
    h("h2", `Regularizers (${regs.length})`), h("div.grid", { id: "regularizers" }, regs.map(regularizerCard)));
}
