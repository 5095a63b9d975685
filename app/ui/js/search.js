// Search: by an uploaded image (drop or pick a file), by text when a vector column was built by a
// text-capable model, or "more like this" from a row; by keywords on the full-text indexes, or both
// (hybrid) from the search box's mode; results with distances or scores; the filter applies.

import { api, t } from "./api.js";
import { errorBox, h } from "./dom.js";
import { href } from "./route.js";
import { filterBox } from "./grid.js";
import { cell, scalarColumns, smallOriginals, SOURCE_COLUMNS, tabs } from "./table.js";

const K = 48;
let lastUpload = null; // {table, file}: a new filter re-runs the last image search

function textCapable(embedding) {
  // the builtin embedder reads pixels only; sentence-transformers models read text (CLIP ones both)
  return Boolean(embedding.model) && !embedding.model.startsWith("builtin");
}

export function searchView(route, ctx) {
  const { table, params } = route;
  const { info, pin } = ctx;
  const root = h("section", { "aria-label": `search ${table}` }, tabs(route));
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
  const base = { k: K, column, filter: params.get("filter") || null, columns: [...new Set(["id", ...shown, ...SOURCE_COLUMNS.filter((c) => columns.includes(c))])] };

  async function run(label, options) {
    errors.replaceChildren();
    status.textContent = `searching ${label}…`;
    results.replaceChildren();
    try {
      const { hits } = await api(`${t(table)}/search`, { method: "POST", params: pin, ...options });
      const inline = await smallOriginals(table, hits, pin);
      results.append(...hits.map((hit, i) => cell(table, hit, {
        pin, params, shown, inline, extra: [`#${i + 1} · ${scoreText(hit)}`],
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
    run(`to ${f.name}`, { form });
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
  if (params.get("like")) run(`to row ${params.get("like")}`, { json: { ...base, image_id: params.get("like") } });
  else if (params.get("text") && keywords) {
    run(`for “${params.get("text")}” and keywords “${keywords}”`, { json: { ...base, text: params.get("text"), keywords } });
  } else if (params.get("text")) run(`to “${params.get("text")}”`, { json: { ...base, text: params.get("text") } });
  else if (keywords) run(`for keywords “${keywords}”`, { json: { ...base, column: null, keywords } });
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

function scoreText(hit) {
  if (hit._relevance_score !== undefined) return `relevance ${hit._relevance_score.toFixed(4)}`;
  if (hit._score !== undefined) return `score ${hit._score.toFixed(3)}`;
  return `distance ${hit._distance.toFixed(4)}`;
}
