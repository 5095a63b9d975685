// The grid: thumbnails of a table at a ref, 100 a page by cursor as the sentinel scrolls into
// view, a filter box (the API's own filter language and errors), sort and shown columns.

import { api, t } from "./api.js";
import { errorBox, formatValue, h } from "./dom.js";
import { href } from "./route.js";
import { facetPanel } from "./facets.js";
import { annotationColumns, overlayColumns } from "./overlay.js";
import { cell, firstScreen, scalarColumns, smallOriginals, SOURCE_COLUMNS, tabs } from "./table.js";

const PAGE = 100;
const SETTLE_MS = 1500; // the longest the first page's images hold back the count and facets

/** Resolves when every image under el has loaded (or failed), or after ms. */
function imagesSettled(el, ms) {
  const pending = [...el.querySelectorAll("img")].filter((i) => !i.complete);
  const all = Promise.all(pending.map((i) => new Promise((done) => {
    i.addEventListener("load", done, { once: true });
    i.addEventListener("error", done, { once: true });
  })));
  return Promise.race([all, new Promise((done) => setTimeout(done, ms))]);
}

export function filterBox(route, onApply) {
  const input = h("input", {
    type: "search", name: "filter", id: "filter", value: route.params.get("filter") || "",
    placeholder: "filter, e.g. label = 3 AND split = 'train'", "aria-label": "filter (SQL)", spellcheck: "false",
  });
  const form = h("form.toolbar", { role: "search", onsubmit: (e) => { e.preventDefault(); onApply(input.value.trim()); } },
    input, h("button", { type: "submit" }, "Apply"));
  return { form, input };
}

export function gridView(route, ctx) {
  const { table, params } = route;
  const { info, pin } = ctx;
  const columns = scalarColumns(info);
  // a table without images (features, tensors) is listed as rows; one without ids cannot link rows
  const images = info.schema.some((c) => c.name === "image") && columns.includes("id");
  const defaultShown = images ? columns.filter((c) => ["label", "caption", "class"].includes(c)) : columns.slice(0, 8);
  const shown = params.has("cols") ? params.get("cols").split(",").filter((c) => columns.includes(c)) : defaultShown;
  const sort = params.get("sort") || "";
  const filter = params.get("filter") || "";
  const view = params.get("view") || ""; // a saved view (#/t/<table>?view=name): its filter, sort and ref apply
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) next.set(k, v);
    location.hash = href("grid", table, next);
  };

  const root = h("section", { "aria-label": `table ${table}` });
  const { form } = filterBox(route, (f) => go({ filter: f }));
  const errors = h("div", { id: "grid-errors" });
  const [sortCol, sortDir] = sort.split(" ");
  const sortSelect = h("select", { "aria-label": "sort by", id: "sort" },
    h("option", { value: "" }, "natural order"),
    columns.map((c) => h("option", { value: c, selected: c === sortCol }, c)));
  const dirSelect = h("select", { "aria-label": "sort direction", id: "sort-dir" },
    h("option", { value: "asc" }, "ascending"), h("option", { value: "desc", selected: sortDir === "desc" }, "descending"));
  const applySort = () => go({ sort: sortSelect.value ? `${sortSelect.value} ${dirSelect.value}` : "" });
  sortSelect.addEventListener("change", applySort);
  dirSelect.addEventListener("change", applySort);
  const chooser = h("details.columns", {}, h("summary", {}, `columns (${shown.length})`), h("div", {},
    columns.map((c) => h("label", {}, h("input", {
      type: "checkbox", value: c, checked: shown.includes(c), name: "col",
      onchange: (e) => {
        const boxes = [...e.target.closest("div").querySelectorAll("input:checked")].map((b) => b.value);
        go({ cols: boxes.join(",") || "-" });
      },
    }), " ", c))));
  const status = h("div.status", { id: "grid-status", "aria-live": "polite" }, "loading…");
  const grid = images ? h("div.grid", { id: "grid" }) : h("table.log", { id: "grid" });
  const sentinel = h("div.sentinel", { "aria-hidden": "true" });
  // annotations are drawn over the tiles unless switched off (boxes=0 in the URL)
  const annotations = images ? annotationColumns(info) : null;
  const drawBoxes = annotations && params.get("boxes") !== "0";
  const boxToggle = annotations ? h("label", {}, h("input", { type: "checkbox", id: "show-boxes", checked: drawBoxes,
    onchange: (e) => go({ boxes: e.target.checked ? "" : "0" }) }), " boxes") : null;
  const facets = facetPanel(table, pin, filter, (f) => go({ filter: f }));
  root.append(tabs(route, info), form, errors, h("div.toolbar", {}, "sort", sortSelect, dirSelect, chooser, boxToggle),
    h("div.browse", {}, facets, h("div", {}, status, grid, sentinel)));

  let cursor = null;
  let loaded = 0;
  let busy = false;
  let done = false;
  let total = null;
  const wanted = images ? ["id", ...shown, ...SOURCE_COLUMNS.filter((c) => columns.includes(c)),
    ...(drawBoxes ? overlayColumns(annotations).filter((c) => c !== annotations.segmentation) : [])] : shown;
  const body = { filter: filter || null, columns: wanted.length ? [...new Set(wanted)] : null, limit: PAGE,
    order_by: sort ? [sort] : [], ...(view ? { view } : {}) };
  const showStatus = () => {
    status.textContent = `${loaded} shown` + (total !== null ? ` of ${total} rows` : "") +
      (view ? ` in view ${view}` : "") + (filter ? ` matching ${filter}` : "") + (done ? "" : " · scroll for more");
  };

  async function more() {
    if (busy || done) return;
    busy = true;
    try {
      const page = await api(`${t(table)}/query`, { method: "POST", params: pin, json: { ...body, cursor } });
      if (images) {
        // the first screen in one or two requests; later pages by pinned URLs the browser keeps
        const inline = await (loaded === 0 ? firstScreen : smallOriginals)(table, page.rows, pin);
        const frag = document.createDocumentFragment();
        for (const row of page.rows) {
          frag.append(cell(table, row, { pin, params, shown, inline, annotations: drawBoxes ? annotations : null }));
        }
        grid.append(frag);
      } else {
        plainRows(grid, page.rows, wanted);
      }
      loaded += page.rows.length;
      cursor = page.next_cursor;
      done = !cursor;
      grid.dataset.pages = String((Number(grid.dataset.pages) || 0) + 1);
      if (loaded === 0) grid.replaceWith(h("p.muted", { id: "grid" }, "No rows."));
      showStatus();
    } catch (err) {
      done = true;
      errors.replaceChildren(errorBox(err));
      status.textContent = "";
    } finally {
      busy = false;
    }
    // a tall window may show the sentinel with room to spare: keep filling
    if (!done && sentinel.getBoundingClientRect().top < window.innerHeight + 600) setTimeout(more, 0);
  }

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "600px" });
  observer.observe(sentinel);
  // the count, the facets (and the ref switcher: root.settled) wait for the first page and its
  // thumbnails, so on a cold server they do not take CPU from the renders the first screen waits for
  const first = more().then(() => imagesSettled(grid, SETTLE_MS));
  root.settled = first;
  first.then(() => errors.childElementCount ? null : api(`${t(table)}/count`, { params: { ...Object.fromEntries(pin), ...(filter ? { filter } : {}), ...(view ? { view } : {}) } }))
    .then((r) => { if (r) { total = r.count; showStatus(); } }, () => { /* the page query reports the error */ });
  first.then(() => (errors.childElementCount ? facets.replaceChildren() : facets.load()));
  return root;
}

/** Rows of a table without images, as a plain table (the header once, on the first page). */
function plainRows(table, rows, columns) {
  const names = columns.length ? columns : Object.keys(rows[0] || {});
  if (!table.tHead && names.length) table.append(h("thead", {}, h("tr", {}, names.map((c) => h("th", { scope: "col" }, c)))));
  const body = table.tBodies[0] || table.appendChild(h("tbody"));
  for (const row of rows) body.append(h("tr", {}, names.map((c) => h("td.mono", {}, formatValue(row[c])))));
}
