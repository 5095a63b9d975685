// One row: the full image (rendered like a thumbnail when the browser cannot show the original),
// every column, a download of the original bytes, and the row's history across recent versions.

import { api, apiUrl, getKey, imageUrl, rowPath, setImage, t } from "./api.js";
import { changedColumns, errorBox, formatBytes, formatTime, formatValue, h, inParallel } from "./dom.js";
import { href } from "./route.js";
import { annotationColumns, overlay } from "./overlay.js";
import { BROWSER_IMAGES, tabs, thumbUrl } from "./table.js";

const HISTORY_VERSIONS = 30; // the row's history is read at this many recent versions at most
const PARALLEL = 4;
const UNREADABLE = Symbol("unreadable");

export async function rowView(route, ctx) {
  const { table, id, params } = route;
  const { info, pin } = ctx;
  const row = await api(rowPath(table, id), { params: pin });
  const root = h("section.row-page-wrap", { "aria-label": `row ${id}` });
  const original = apiUrl(`${rowPath(table, id)}/image`, pin);
  const hasImage = "image_url" in row;
  let picture = h("p.muted", {}, "This row has no image.");
  if (hasImage) {
    const shown = BROWSER_IMAGES.has(row.mime) ? original : thumbUrl(table, id, pin, 1024);
    const img = h("img", { alt: `image ${id}` + (row.label !== undefined ? `, label ${row.label}` : ""), id: "row-image" });
    img.addEventListener("load", () => { if (img.naturalWidth < 256) img.style.width = "min(100%, 384px)"; });
    setImage(img, shown);
    // boxes and polygons in the original's pixels, over the image drawn whole (contain)
    picture = h("div.image", {}, h("div.stage", {}, img, overlay(row, annotationColumns(info), { polygons: true })));
  }
  const fields = Object.entries(row).filter(([k]) => k !== "image_url");
  const name = id.split("/").pop() || "image";
  const download = h("a", { href: original, download: name, id: "download", class: "button" }, "Download original");
  if (getKey()) {
    download.addEventListener("click", async (e) => { // a header cannot ride on a plain link
      if (download.dataset.ready) return;
      e.preventDefault();
      download.href = await imageUrl(original);
      download.dataset.ready = "1";
      download.click();
    });
  }
  const more = info.embeddings.length
    ? h("a", { href: href("search", table, withLike(params, id)), id: "more-like-this" }, "More like this") : null;
  const history = h("div", { id: "row-history" }, h("p.muted", {}, "reading the row at recent versions…"));
  root.append(
    tabs(route, info),
    h("h1.mono", {}, id),
    h("div.row-page", {},
      picture,
      h("div", {},
        hasImage ? h("p.toolbar", {}, download, more,
          h("span.muted", {}, `${row.mime || ""} · ${formatBytes(row.size_bytes)}`)) : null,
        h("table.kv", { id: "row-fields" }, h("tbody", {}, fields.map(([k, v]) =>
          h("tr", {}, h("th", { scope: "row" }, k), h("td.mono", {}, k === "size_bytes" ? `${v} (${formatBytes(v)})` : formatValue(v)))))),
        h("h2", {}, "History"), history)));
  rowHistory(table, id, ctx, params).then((el) => history.replaceChildren(el), (err) => history.replaceChildren(errorBox(err)));
  return root;
}

function withLike(params, id) {
  const next = new URLSearchParams(params);
  next.set("like", id);
  next.delete("text");
  return next;
}

/** When the row was added, changed or removed, by which write: the row read at each of the most
 * recent versions up to the one shown (bounded), compared with the version before. */
async function rowHistory(table, id, ctx, params) {
  const { info } = ctx;
  if (info.branch) return h("p.muted", {}, "Row history is shown for versions on main.");
  const log = await api(`${t(table)}/versions`, { params: { limit: String(HISTORY_VERSIONS + 1), cursor: String(info.version + 1) } });
  const versions = log.slice(0, HISTORY_VERSIONS).reverse(); // oldest first
  const states = await inParallel(versions, PARALLEL, async (v) => {
    try {
      const r = await api(`${t(table)}/fetch`, { method: "POST", params: { version: String(v.version) }, json: { ids: [id] } });
      return r.rows[0] || null;
    } catch {
      return UNREADABLE; // e.g. a version pruned by optimize: skipped
    }
  });
  const events = [];
  const truncated = log.length > HISTORY_VERSIONS;
  let before = truncated ? undefined : null; // undefined: not known before the window
  versions.forEach((v, i) => {
    const now = states[i];
    if (now === UNREADABLE) return;
    if (before === undefined) {
      if (now) events.push({ v, what: "present", columns: [] });
    } else if (!before && now) events.push({ v, what: "added", columns: [] });
    else if (before && !now) events.push({ v, what: "removed", columns: [] });
    else if (before && now) {
      const changed = changedColumns(before, now);
      if (changed.length) events.push({ v, what: "changed", columns: changed });
    }
    before = now;
  });
  const table_ = h("table.log", {}, h("thead", {}, h("tr", {}, ["version", "what", "when", "write"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, events.map((e) => h("tr", { dataset: { version: e.v.version, what: e.what } },
      h("td", {}, h("a", { href: href("row", table, { ...Object.fromEntries(params), version: e.v.version, tag: "", branch: "", as_of: "" }, id) }, `v${e.v.version}`)),
      h("td", {}, e.what === "present" ? `present (in v${e.v.version}, the oldest version read)` : e.what,
        e.columns.length ? h("span.muted", {}, ` (${e.columns.join(", ")})`) : null),
      h("td", {}, formatTime(e.v.timestamp)),
      h("td", {}, `${e.v.operation || ""}${e.v.message ? ": " + e.v.message : ""}${e.v.author ? " · " + e.v.author : ""}`)))));
  return h("div", {}, table_, truncated ? h("p.muted", {}, `Read at the ${HISTORY_VERSIONS} versions up to v${info.version}.`) : null);
}
