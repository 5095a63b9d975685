// What every table page shares: the ref resolved to a pinned version once, the ref switcher,
// the tabs, and thumbnail cells.

import { api, apiUrl, rowPath, setImage, t } from "./api.js";
import { h, shortId } from "./dom.js";
import { overlay } from "./overlay.js";
import { describeRef, href, refOf, withRef } from "./route.js";

// CSS pixels: a tile's picture area. A thumbnail this size of a photo decodes at 1/8 of its JPEG scale
// (a 1024x768 photo costs a 128x96 decode), the cheapest a cold server can render.
export const THUMB = 128;

/** Describe the table at the URL's ref and the ref that pins it: a version number when the ref
 * resolves on main (so image URLs are immutable and cached forever), else the tag or branch. */
export async function resolve(table, params) {
  const ref = refOf(params);
  const info = await api(t(table), { params: ref });
  let pin;
  if (!info.branch) pin = new URLSearchParams({ version: String(info.version) });
  else pin = ref.get("tag") ? new URLSearchParams({ tag: ref.get("tag") }) : new URLSearchParams({ branch: info.branch });
  return { info, pin };
}

/** Columns a person can read under a thumbnail: not the image bytes, not vectors. */
export function scalarColumns(info) {
  return info.schema
    .filter((c) => c.name !== "image" && !/fixed_size_list|binary/.test(c.type))
    .map((c) => c.name);
}

export function thumbUrl(table, id, pin, size = THUMB) {
  const params = new URLSearchParams(pin);
  params.set("size", String(size));
  return apiUrl(`${rowPath(table, id)}/thumbnail`, params);
}

const SMALL_BYTES = 8 * 1024;
const BATCH = 200; // thumbnails one POST /thumbnails may ask for
export const BROWSER_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"]);
/** The columns that let a cell pick how to show its image (see isSmall). */
export const SOURCE_COLUMNS = ["mime", "width", "height", "size_bytes"];

/** An original no bigger than its thumbnail would be (an 8x8 PNG digit, an icon) is shown as is. */
function isSmall(row) {
  return BROWSER_IMAGES.has(row.mime) && row.width <= THUMB && row.height <= THUMB && row.size_bytes <= SMALL_BYTES;
}

/** The small originals of a page of rows, fetched in one request (POST /fetch with_images) rather
 * than one request each: a page of 100 digits costs one round trip instead of 17 rounds over the
 * browser's six connections. Returns id -> data: URL; rows it does not cover get thumbnail URLs. */
export async function smallOriginals(table, rows, pin) {
  const small = rows.filter(isSmall);
  if (!small.length) return new Map();
  try {
    const { rows: found } = await api(`${t(table)}/fetch`, {
      method: "POST", params: pin, json: { ids: small.map((r) => r.id), columns: ["id", "image"], with_images: true },
    });
    const mime = new Map(small.map((r) => [r.id, r.mime]));
    return new Map(found.filter((r) => r.image).map((r) => [r.id, `data:${mime.get(r.id)};base64,${r.image}`]));
  } catch {
    return new Map(); // the cells fall back to one request each
  }
}

/** A screen's images (a grid's first page, the curation page's lists) in at most two requests, made
 * together: the small originals (smallOriginals) and the others' thumbnails at the tile's size for this
 * screen (POST /thumbnails), rather than a request each over the browser's six connections. Returns
 * id -> data: URL; the rows it does not cover (an error, past BATCH) get their pinned thumbnail URLs,
 * as every later page of the grid does. */
export async function firstScreen(table, rows, pin) {
  const [small, thumbs] = await Promise.all([smallOriginals(table, rows, pin),
    thumbnailBatch(table, rows.filter((r) => !isSmall(r)), pin)]);
  return new Map([...small, ...thumbs]);
}

async function thumbnailBatch(table, rows, pin) {
  if (!rows.length) return new Map();
  try {
    const ids = [...new Set(rows.map((r) => r.id))].slice(0, BATCH); // the rest by URL
    const { thumbnails } = await api(`${t(table)}/thumbnails`, {
      method: "POST", params: pin, json: { ids, size: window.devicePixelRatio > 1 ? THUMB * 2 : THUMB },
    });
    return new Map(thumbnails.map((x) => [x.id, `data:${x.mime};base64,${x.data}`]));
  } catch {
    return new Map(); // the cells fall back to one request each
  }
}

function cellSource(table, row, pin, inline) {
  if (inline && inline.has(row.id)) return inline.get(row.id);
  return isSmall(row) ? apiUrl(`${rowPath(table, row.id)}/image`, pin) : thumbUrl(table, row.id, pin);
}

/** One thumbnail cell linking to its row; `extra` adds lines (e.g. a search distance); `inline`
 * holds data: URLs from smallOriginals; `annotations` (annotationColumns) draws the row's boxes.
 * The image is drawn whole ("contain") on the tile's neutral background, never stretched; a
 * thumbnail comes at the tile's size and at twice it for high-DPI screens (srcset). */
export function cell(table, row, { pin, params, shown = [], extra = [], cls = "", inline = null, annotations = null }) {
  const id = row.id;
  const img = h("img", { alt: `image ${id}`, decoding: "async" });
  img.addEventListener("load", () => { if (img.naturalWidth < 64) img.classList.add("pixelated"); });
  const src = cellSource(table, row, pin, inline);
  if (src.startsWith("data:")) img.src = src;
  else if (src.includes("/thumbnail?")) setImage(img, src, thumbUrl(table, id, pin, THUMB * 2));
  else setImage(img, src);
  const lines = [h("div.meta.mono", { title: id }, shortId(id))];
  for (const c of shown) if (c !== "id") lines.push(h("div.meta", {}, h("b", {}, `${c}: `), fmt(row[c])));
  for (const line of extra) lines.push(h("div.meta", {}, line));
  return h(`a.cell${cls ? "." + cls : ""}`, { href: href("row", table, params, id), dataset: { id } },
    h("div.frame", {}, img, annotations ? overlay(row, annotations) : null), lines);
}

function fmt(v) {
  if (v === null || v === undefined) return "∅";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Math.round(v * 1000) / 1000);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The tabs of a table page, carrying the ref (and filter) along; Curate where the table has vectors to
 * curate by, or the columns curate wrote. */
export function tabs(route, info) {
  const keep = new URLSearchParams(route.params);
  for (const k of ["like", "text", "from", "to", "written"]) keep.delete(k);
  const tab = (view, label) => h("a", {
    href: href(view, route.table, keep), "aria-current": route.view === view ? "page" : null,
  }, label);
  const curate = !info || info.embeddings.length || info.schema.some((c) => c.name === "label_issue" || c.name === "duplicate_of");
  return h("nav.toolbar", { "aria-label": "table views" }, tab("grid", "Grid"), "·", tab("search", "Search"), "·",
    tab("history", "History"), curate ? ["·", tab("curate", "Curate")] : null);
}

/** Tags the service keeps for itself (a clone's guard on its source version): hidden unless asked for. */
export function isInternalTag(name) {
  return name.startsWith("lightbox-clone-");
}

/** The ref switcher: latest, tags, branches, versions from the log, or a timestamp. */
export async function refBar(route, info) {
  const bar = document.getElementById("refbar");
  bar.replaceChildren();
  const current = refOf(route.params);
  const currentKey = [...current][0] ? `${[...current][0][0]}=${[...current][0][1]}` : "";
  const select = h("select", { "aria-label": "version, tag or branch", id: "ref-select" });
  const option = (value, label) => h("option", { value, selected: value === currentKey }, label);
  select.append(option("", "latest (main)"));
  const tags = Object.entries(info.tags || {}).filter(([name]) => !isInternalTag(name) || `tag=${name}` === currentKey);
  if (tags.length) select.append(h("optgroup", { label: "tags" },
    tags.map(([name, v]) => option(`tag=${name}`, `tag ${name} (v${v.version}${v.branch ? " " + v.branch : ""})`))));
  const branches = Object.keys(info.branches || {});
  if (branches.length) select.append(h("optgroup", { label: "branches" }, branches.map((b) => option(`branch=${b}`, `branch ${b}`))));
  let versions = [];
  try { versions = await api(`${t(route.table)}/versions`, { params: { limit: "100" } }); } catch { /* shown elsewhere */ }
  if (versions.length) select.append(h("optgroup", { label: "versions" }, versions.map((v) =>
    option(`version=${v.version}`, `v${v.version} ${v.message ? "· " + v.message.slice(0, 40) : ""}`))));
  if (currentKey && ![...select.options].some((o) => o.value === currentKey)) {
    select.append(option(currentKey, describeRef(route.params)));
  }
  select.value = currentKey;
  const go = (ref) => { location.hash = href(route.view, route.table, withRef(route.params, ref), route.id); };
  select.addEventListener("change", () => go(select.value));
  const when = h("input", { type: "datetime-local", step: "1", "aria-label": "as of time (UTC)", id: "ref-time" });
  const asOf = h("button.quiet", { type: "button", onclick: () => {
    if (when.value) go(new URLSearchParams({ as_of: new Date(when.value + "Z").toISOString() }));
  } }, "as of (UTC)");
  bar.append(h("label", { for: "ref-select", class: "muted" }, "ref"), select, when, asOf);
}
