// Search: by an uploaded image (drop or pick a file), by text when a vector column was built by a
// text-capable model, or "more like this" from a row; by keywords on the full-text indexes, or both
// (hybrid) from the search box's mode; results with distances or scores; the filter applies.

import { api, setImage, t } from "./api.js";
import { errorBox, h } from "./dom.js";
import { annotationColumns, overlayColumns } from "./overlay.js";
import { href } from "./route.js";
import { filterBox } from "./grid.js";
import { cell, scalarColumns, smallOriginals, SOURCE_COLUMNS, tabs, THUMB, thumbUrl } from "./table.js";

const K = 48;
let lastUpload = null; // {table, file}: a new filter re-runs the last image search

function textCapable(embedding) {
  // the builtin embedder reads pixels only; sentence-transformers models read text (CLIP ones both)
  return Boolean(embedding.model) && !embedding.model.startsWith("builtin");
}

// What a hit's rank is measured by, in the order looked for: a vector search's distance (lower is
// nearer), a keyword search's score and a hybrid search's relevance (higher is better).
const MEASURES = [["_distance", "distance"], ["_score", "score"], ["_relevance_score", "relevance"]];

export function scoreOf(hit) {
  const found = MEASURES.filter(([key]) => typeof hit[key] === "number");
  return found.map(([key, name]) => `${name} ${hit[key].toFixed(4)}`).join(" · ") || "";
}

/** The query above the results: `{image, caption, link}` for an image, `{text}` for words. */
export function queryPanel(query) {
  if (!query) return null;
  if (query.text !== undefined) {
    return h("figure.query-panel", { "aria-label": "query" }, h("figcaption.muted", {}, "query text"),
      h("blockquote", { id: "query-text" }, `“${query.text}”`));
  }
  const img = h("img", { id: "query-image", alt: `query: ${query.caption}${query.link ? query.link.text : ""}` });
  if (query.image.startsWith("blob:")) img.src = query.image;
  else setImage(img, query.image);
  return h("figure.query-panel", { "aria-label": "query" }, img,
    h("figcaption", {}, h("span.muted", {}, "query: "), query.caption, query.link ? h("a.mono", { href: query.link.href }, query.link.text) : null));
}

export function searchView(route, ctx) {
  const { table, params } = route;
  const { info, pin } = ctx;
  const root = h("section", { "aria-label": `search ${table}` }, tabs(route, info));
  const fullText = (info.indexes || []).some((i) => String(i.type).toUpperCase() === "INVERTED");
  if (!info.embeddings.length && !fullText) {
    root.append(h("p.muted", {}, "This table has no vector column and no full-text index; add vectors with " +
      "`lightbox embed`, or a full-text index with `lightbox index TABLE create COLUMN --type FTS`, to search it."));
    return root;
  }
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) next.set(k, v);
    location.hash = href("search", table, next);
  };
  const { form } = filterBox(route, (f) => go({ filter: f }));
  const columnSelect = info.embeddings.length > 1 ? h("select", { id: "vector-column", "aria-label": "vector column",
    onchange: (e) => go({ column: e.target.value }) },
  info.embeddings.map((e) => h("option", { value: e.column, selected: e.column === params.get("column") }, `${e.column} (${e.model})`))) : null;
  const column = params.get("column") || (info.embeddings[0] || {}).column || null;
  const embedding = info.embeddings.find((e) => e.column === column) || info.embeddings[0] || {};
  const file = h("input", { type: "file", accept: "image/*", id: "search-file", "aria-label": "search by an image file" });
  const drop = info.embeddings.length ? h("div.drop", { id: "drop" },
    h("label", { for: "search-file" }, "Drop an image here, or choose a file: "), file) : null;
  const textForm = searchBox(textCapable(embedding), fullText, params, go);
  const errors = h("div", { id: "search-errors" });
  const status = h("div.status", { id: "search-status", "aria-live": "polite" });
  const results = h("div.grid", { id: "results" });
  root.append(...[form, h("div.toolbar", {}, columnSelect), drop, textForm, errors, status, results].filter(Boolean));
  const columns = scalarColumns(info);
  const shown = (params.get("cols") || columns.filter((c) => c === "label").join(",")).split(",").filter((c) => columns.includes(c));
  const annotations = params.get("boxes") === "0" ? null : annotationColumns(info); // drawn as on the grid
  const base = { k: K, column, filter: params.get("filter") || null,
    columns: [...new Set(["id", ...shown, ...SOURCE_COLUMNS.filter((c) => columns.includes(c)), ...overlayColumns(annotations)
      .filter((c) => c !== annotations.segmentation)])] };

  const queryShown = h("div", { id: "search-query" });
  results.before(queryShown);

  /** Run one search; `query` is what the panel above the results shows (an image or the text). */
  async function run(label, options, query) {
    errors.replaceChildren();
    status.textContent = `searching ${label}…`;
    results.replaceChildren();
    queryShown.replaceChildren(queryPanel(query));
    try {
      const { hits } = await api(`${t(table)}/search`, { method: "POST", params: pin, ...options });
      const inline = await smallOriginals(table, hits, pin);
      results.append(...hits.map((hit, i) => cell(table, hit, {
        pin, params, shown, inline, annotations, extra: [`#${i + 1} · ${scoreOf(hit)}`],
      })));
      status.textContent = `${hits.length} ${label.startsWith("for") ? "best" : "nearest"} ${label}`;
    } catch (err) {
      errors.replaceChildren(errorBox(err));
      status.textContent = "";
    }
  }

  function upload(f) {
    if (!f) return;
    lastUpload = { table, file: f };
    const form = new FormData();
    form.append("image", f, f.name);
    for (const [k, v] of Object.entries(base)) if (v !== null) form.append(k, Array.isArray(v) ? JSON.stringify(v) : String(v));
    run(`to ${f.name}`, { form }, { image: URL.createObjectURL(f), caption: `the image ${f.name}` });
  }
  file.addEventListener("change", () => upload(file.files[0]));
  drop?.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop?.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop?.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload(e.dataTransfer.files[0]);
  });
  const keywords = params.get("keywords");
  const like = params.get("like");
  if (like) {
    const query = { image: thumbUrl(table, like, pin, THUMB * 2), caption: "row ", link: { href: href("row", table, params, like), text: like } };
    run(`to row ${like}`, { json: { ...base, image_id: like } }, query);
  } else if (params.get("text") && keywords) {
    run(`for “${params.get("text")}” and keywords “${keywords}”`, { json: { ...base, text: params.get("text"), keywords } },
      { text: `${params.get("text")} + keywords: ${keywords}` });
  } else if (params.get("text")) run(`to “${params.get("text")}”`, { json: { ...base, text: params.get("text") } }, { text: params.get("text") });
  else if (keywords) run(`for keywords “${keywords}”`, { json: { ...base, column: null, keywords } }, { text: keywords });
  else if (lastUpload && lastUpload.table === table) upload(lastUpload.file);
  else status.textContent = info.embeddings.length ? "Pick an image to find its nearest rows." : "Type keywords to search.";
  return root;
}

// The search box: keywords (BM25 on the full-text indexes: words, "a phrase", +must, -must_not), the
// semantic text mode (embedded by the column's model), or both fused (hybrid), as the table allows.
function searchBox(semantic, fullText, params, go) {
  const modes = [fullText && ["keywords", "keywords"], semantic && ["text", "semantic"],
    semantic && fullText && ["both", "semantic + keywords"]].filter(Boolean);
  if (!modes.length) return null;
  const current = params.get("text") && params.get("keywords") ? "both" : params.get("text") ? "text" : modes[0][0];
  const mode = h("select", { name: "mode", id: "search-mode", "aria-label": "search mode" },
    modes.map(([value, label]) => h("option", { value, selected: value === current }, label)));
  const value = current === "text" ? params.get("text") : params.get("keywords") || params.get("text");
  return h("form.toolbar", { id: "search-box", onsubmit: (e) => {
    e.preventDefault();
    const words = e.target.elements.q.value.trim();
    const chosen = e.target.elements.mode.value;
    go({ text: chosen === "keywords" ? "" : words, keywords: chosen === "text" ? "" : words, like: "" });
  } }, mode, h("input", { type: "search", name: "q", value: value || "", "aria-label": "search by text or keywords",
    placeholder: 'words, "a phrase", +must, -not' }), h("button", { type: "submit" }, "Search"));
}

