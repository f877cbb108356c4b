// The REST API, as the page uses it: the bearer key from sessionStorage, problem+json errors
// as ApiError (status, title, detail, errors: [{loc, msg}]). Nothing else talks to the server.
const KEY = "reglab.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.title = body?.title || "";
    this.errors = Array.isArray(body?.errors) ? body.errors : [];
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (v) => (v ? sessionStorage.setItem(KEY, v) : sessionStorage.removeItem(KEY)),
};

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const key = apiKey.get();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

// Listeners told about a 401 (the shell asks for a key).
const unauthorized = new Set();
export const onUnauthorized = (fn) => unauthorized.add(fn);

async function request(method, path, { query, body, raw } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  const resp = await fetch(url, init);
  if (!resp.ok) {
    let problem = null;
    try { problem = await resp.json(); } catch { /* not JSON */ }
    if (resp.status === 401) unauthorized.forEach((fn) => fn(problem));
    throw new ApiError(resp.status, problem);
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body, query) => request("POST", path, { body, query }),
  patch: (path, body) => request("PATCH", path, { body }),
  blob: async (path) => (await request("GET", path, { raw: true })).blob(),
  // Server-sent events need the Authorization header, which EventSource cannot send: read the
  // stream with fetch and split it into events.
  async stream(path, query, onEvent, signal) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, v);
    const resp = await fetch(url, { headers: headers({ Accept: "text/event-stream" }), signal });
    if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = { event: "message", data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") ev.event = val;
          else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
          else if (field === "id") ev.id = val;
        }
        if (ev.data || ev.event !== "message") onEvent(ev);
      }
    }
  },
};
