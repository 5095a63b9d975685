// A tiny element builder: h("a.cell", {href}, child, ...). Text children are escaped by the DOM.

export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function errorBox(err) {
  return h("div.error", { role: "alert" }, err.message || String(err));
}

export function formatBytes(n) {
  if (n == null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function formatValue(v) {
  if (v === null || v === undefined) return "∅";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** The columns whose values differ between two reads of one row. A column one read lacks (added or
 * dropped in between) reads as null there, as in the server's diff: a new column changes only the
 * rows given a value in it. */
export function changedColumns(before, now) {
  return Object.keys({ ...before, ...now }).filter((k) => JSON.stringify(before[k] ?? null) !== JSON.stringify(now[k] ?? null));
}

export function formatTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A long id shortened in the middle so the end (the file name, which tells rows apart) stays:
 * "categories/Adwaita_icons/scalable/apps/org.gnome.Maps.png" -> "categories/…/org.gnome.Maps.png". */
export function shortId(id, max = 19) { // 19 characters of 11 px monospace fit a 128 px tile
  if (id.length <= max) return id;
  const name = id.slice(id.lastIndexOf("/") + 1);
  if (name.length + 2 >= max) { // the name alone is too long: its start and its end (the extension)
    const keep = Math.floor((max - 1) / 3);
    return name.slice(0, keep) + "…" + name.slice(name.length - (max - 1 - keep));
  }
  const head = max - name.length - 1;
  const rest = id.slice(0, id.length - name.length);
  return rest.slice(0, Math.max(1, head - 1)) + "…" + (head > 1 ? "/" : "") + name;
}

/** fn(item, i) over items, at most `limit` calls at once (the browser has six connections a host);
 * the results in the items' order. fn handles its own errors. */
export async function inParallel(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}
