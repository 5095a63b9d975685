// Hash routes: every view's state lives in the URL so links are shareable and reloadable.
//   #/                               tables
//   #/t/<table>?tag=v1&filter=...&sort=label%20desc&cols=label,split     grid (&view=NAME: a saved view)
//   #/t/<table>/row/<id>?...         one row        #/t/<table>/search?...   search
//   #/t/<table>/history?from=..&to=..                version log and diff
//   #/t/<table>/curate?label=..                      label issues, duplicate groups, saved views

export const REF_KEYS = ["version", "tag", "branch", "as_of"];

export function parse(hash = location.hash) {
  const text = hash.replace(/^#/, "") || "/";
  const q = text.indexOf("?");
  const path = q < 0 ? text : text.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : text.slice(q + 1));
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] !== "t" || !parts[1]) return { view: "tables", params };
  const route = { table: parts[1], params, view: "grid" };
  if (parts[2] === "row" && parts.length > 3) return { ...route, view: "row", id: parts.slice(3).join("/") };
  if (parts[2] === "search") return { ...route, view: "search" };
  if (parts[2] === "history") return { ...route, view: "history" };
  if (parts[2] === "curate") return { ...route, view: "curate" };
  return route;
}

/** The hash of a view; params is a URLSearchParams or a plain object (empty values dropped). */
export function href(view, table, params, id) {
  const clean = new URLSearchParams();
  for (const [k, v] of new URLSearchParams(params || "")) if (v !== "" && v != null) clean.set(k, v);
  const qs = clean.toString() ? `?${clean}` : "";
  if (view === "tables" || !table) return `#/${qs}`;
  const base = `#/t/${encodeURIComponent(table)}`;
  if (view === "row") return `${base}/row/${encodeURIComponent(id)}${qs}`;
  if (view === "search" || view === "history" || view === "curate") return `${base}/${view}${qs}`;
  return `${base}${qs}`;
}

/** Only the ref of params (one of version, tag, branch, as_of), as URLSearchParams. */
export function refOf(params) {
  const out = new URLSearchParams();
  for (const k of REF_KEYS) if (params.get(k)) { out.set(k, params.get(k)); break; }
  return out;
}

/** params with the ref replaced. */
export function withRef(params, ref) {
  const out = new URLSearchParams(params);
  for (const k of REF_KEYS) out.delete(k);
  for (const [k, v] of new URLSearchParams(ref)) out.set(k, v);
  return out;
}

export function describeRef(params) {
  const ref = refOf(params);
  const [k, v] = [...ref][0] || [];
  if (!k) return "latest";
  return k === "as_of" ? `as of ${v}` : `${k} ${v}`;
}
