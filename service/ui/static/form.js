// A form from a JSON schema (the API's own: ExperimentSpec in /openapi.json, each regularizer's
// parameters from /v1/regularizers): numbers, integers, enums and booleans as inputs checked
// against the schema's bounds before sending; anything else as a JSON field. Every input
// carries data-loc, the field path as the API's 422 spells it (regularizers[0].p), so the
// API's errors land at their field. Empty inputs are left out (the server fills defaults).
import { h } from "./dom.js";

export function resolve(schema, root) {
  let s = schema;
  while (s && s.$ref) s = root.components.schemas[s.$ref.split("/").pop()];
  if (s && s.anyOf) {
    const real = s.anyOf.filter((x) => x.type !== "null");
    if (real.length === 1) return { ...resolve(real[0], root), nullable: true, default: s.default, description: s.description, title: s.title };
  }
  return s || {};
}

// The message for a value the schema refuses, or null.
export function check(schema, value) {
  if (schema.type === "number" || schema.type === "integer") {
    if (!Number.isFinite(value)) return "a number is needed";
    if (schema.type === "integer" && !Number.isInteger(value)) return "an integer is needed";
    if (schema.minimum !== undefined && value < schema.minimum) return `Input should be greater than or equal to ${schema.minimum}`;
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) return `Input should be greater than ${schema.exclusiveMinimum}`;
    if (schema.maximum !== undefined && value > schema.maximum) return `Input should be less than or equal to ${schema.maximum}`;
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) return `Input should be less than ${schema.exclusiveMaximum}`;
  }
  if (schema.type === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) return `at least ${schema.minLength} characters`;
    if (schema.maxLength !== undefined && value.length > schema.maxLength) return `at most ${schema.maxLength} characters`;
  }
  return null;
}

// One field: returns {el, read()} where read() gives [present, value, error].
export function field(name, schema, loc, { required = false, value } = {}) {
  const def = value !== undefined ? value : schema.default;
  const title = schema.title || name;
  const hint = [schema.description, schema.default !== undefined ? `default ${JSON.stringify(schema.default)}` : null].filter(Boolean).join("; ");
  let input, read;
  if (schema.enum) {
    input = h("select", { name: loc, dataset: { loc } }, required ? null : h("option", { value: "" }, "(default)"),
      schema.enum.map((v) => h("option", { value: v, selected: value !== undefined && v === value }, String(v))));
    read = () => (input.value === "" ? [false] : [true, input.value, null]);
  } else if (schema.type === "boolean") {
    input = h("select", { name: loc, dataset: { loc } }, h("option", { value: "" }, "(default)"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    if (value !== undefined) input.value = String(value);
    read = () => (input.value === "" ? [false] : [true, input.value === "true", null]);
  } else if (schema.type === "number" || schema.type === "integer") {
    input = h("input", { type: "text", inputMode: "decimal", name: loc, size: 10, dataset: { loc }, placeholder: def !== undefined && def !== null ? String(def) : "", value: value !== undefined ? String(value) : "" });
    read = () => {
      if (input.value.trim() === "") return [false];
      const v = Number(input.value);
      return [true, v, check(schema, v)];
    };
  } else if (schema.type === "string") {
    input = h("input", { type: "text", name: loc, dataset: { loc }, placeholder: def ?? "", value: value ?? "" });
    read = () => (input.value === "" ? [false] : [true, input.value, check(schema, input.value)]);
  } else {
    input = h("input", { type: "text", name: loc, size: 28, dataset: { loc, json: "1" }, placeholder: def !== undefined ? JSON.stringify(def) : "JSON", value: value !== undefined ? JSON.stringify(value) : "" });
    read = () => {
      if (input.value.trim() === "") return [false];
      try { return [true, JSON.parse(input.value), null]; } catch { return [true, null, "not valid JSON"]; }
    };
  }
  const msg = h("span.field-error", { dataset: { for: loc } });
  const el = h("div.form-row", h("label", { title: hint }, `${title} `, input), h("span.hint", hint), msg);
  return { el, input, msg, read };
}

// An object's fields; returns {el, read()} -> [value, errors[{loc, msg}]].
export function objectFields(schema, root, loc, { values = {}, skip = [], required } = {}) {
  const req = new Set(required || schema.required || []);
  const parts = [];
  for (const [name, sub] of Object.entries(schema.properties || {})) {
    if (skip.includes(name)) continue;
    const s = resolve(sub, root);
    parts.push([name, field(name, s, loc ? `${loc}.${name}` : name, { required: req.has(name), value: values[name] })]);
  }
  return {
    el: parts.map(([, f]) => f.el),
    fields: parts,
    read() {
      const out = {}, errors = [];
      for (const [name, f] of parts) {
        const [present, v, err] = f.read();
        if (err) errors.push({ loc: f.input.dataset.loc, msg: err });
        else if (present) out[name] = v;
      }
      return [out, errors];
    },
  };
}
