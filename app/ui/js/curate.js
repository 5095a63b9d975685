// Curation: the rows whose label is most likely wrong (ranked by label_issue, each with its suggested
// label and its nearest rows), duplicate groups side by side, and the table's saved views. Relabelling a
// row or deleting a copy is one write through the row routes (PATCH / DELETE .../rows/{id}) carrying a
// message, so it is one version in the log; the page then shows that version.

import { api, rowPath, t } from "./api.js";
import { errorBox, formatValue, h, inParallel } from "./dom.js";
import { href, withRef } from "./route.js";
import { cell, firstScreen, scalarColumns, SOURCE_COLUMNS, tabs } from "./table.js";

const RANKED = 12; // rows with the highest label_issue shown at once (more on request)
const NEIGHBOURS = 5; // nearest rows shown beside each
const PARALLEL = 3; // neighbour searches at once
const COPIES = 200; // rows with a duplicate_of read for the groups
export const CURATE_COLUMNS = ["label_issue", "suggested_label", "duplicate_of", "uniqueness"];
const NOT_LABELS = new Set(["id", "mime", "mode", "sha256", "source", ...CURATE_COLUMNS]);

let notice = null; // what the last write did, shown once on the page it led to

/** Whether the table holds what `lightbox curate` writes. */
export function hasCurateColumns(info) {
  return info.schema.some((c) => c.name === "label_issue" || c.name === "duplicate_of");
}

const typeOf = (info, name) => (info.schema.find((c) => c.name === name) || {}).type || "";

/** Columns that can hold a class label (as the curate service takes them): strings, integers, booleans. */
function labelCandidates(info) {
  return info.schema.filter((c) => !NOT_LABELS.has(c.name) && /^(string|large_string|u?int\d+|bool)/.test(c.type) &&
    !/^(width|height|frames|size_bytes)$/.test(c.name)).map((c) => c.name);
}

/** The label column the suggestions are for: ?label=, else `label`, else the first of suggested_label's type. */
function labelColumn(info, params) {
  const names = info.schema.map((c) => c.name);
  if (params.get("label") && names.includes(params.get("label"))) return params.get("label");
  if (names.includes("label")) return "label";
  const type = typeOf(info, "suggested_label");
  return labelCandidates(info).find((c) => typeOf(info, c) === type) || null;
}

/** A typed label as the column's type (a 4xx-worthy problem as an Error). */
function parseLabel(text, type) {
  const value = text.trim();
  if (!value) throw new Error("type a label first");
  if (/int/.test(type)) {
    if (!/^-?\d+$/.test(value)) throw new Error(`the label column holds whole numbers (${type}); “${value}” is not one`);
    return Number(value);
  }
  if (type === "bool") {
    if (!/^(true|false)$/i.test(value)) throw new Error("the label column holds true or false");
    return value.toLowerCase() === "true";
  }
  return value;
}

export async function curateView(route, ctx) {
  const { table, params } = route;
  const { info, pin } = ctx;
  const root = h("section", { "aria-label": `curate ${table}` }, tabs(route, info), h("h1", {}, `Curate ${table}`));
  if (notice) {
    root.append(h("p.notice", { id: "curate-notice", role: "status" }, notice));
    notice = null;
  }
  const views = h("section", { id: "saved-views", "aria-label": "saved views" }, h("h2", {}, "Saved views"));
  if (!hasCurateColumns(info)) {
    root.append(howToCurate(table, info, params), views);
    savedViews(table, views);
    return root;
  }
  const writable = await canWrite(table, info);
  const label = labelColumn(info, params);
  const columns = scalarColumns(info);
  const source = SOURCE_COLUMNS.filter((c) => columns.includes(c));
  const ranked = h("section", { id: "label-issues", "aria-label": "label issues" });
  const groups = h("section", { id: "duplicates", "aria-label": "duplicate groups" });
  if (!writable) {
    root.append(h("p.muted", { id: "read-only-ref" },
      "This is not the latest version: open the latest (the ref switcher) to relabel or delete rows."));
  }
  root.append(ranked, groups, views);
  const env = { table, info, pin, params, label, source, writable };
  if (typeOf(info, "label_issue")) labelIssues(env, ranked).catch((err) => ranked.replaceChildren(errorBox(err)));
  else ranked.append(h("p.muted", {}, "No label_issue column: curate ran without a label column (`--label`)."));
  duplicateGroups(env, groups).catch((err) => groups.replaceChildren(errorBox(err)));
  savedViews(table, views);
  return root;
}

/** Writes go to main's latest version or a branch's: an older version or a tag is shown read-only. */
async function canWrite(table, info) {
  if (info.branch) return true;
  const head = await api(t(table));
  return head.version === info.version;
}

function howToCurate(table, info, params) {
  const out = h("section", { id: "curate-how", "aria-label": "how to curate" });
  const cli = `lightbox curate ${table} --label LABEL_COLUMN -m "find label mistakes"`;
  out.append(h("p", {}, "This table has no curate columns yet (label_issue, suggested_label, duplicate_of, uniqueness). " +
    "Compute them from the command line or the API, or here:"),
  h("pre.mono", { id: "curate-cli" }, `${cli}\nPOST /api/v1/tables/${table}/curate {"label": "LABEL_COLUMN"}`));
  if (!info.embeddings.length) {
    out.append(h("p.muted", {}, `Curation compares rows by their vectors: add a vector column first (\`lightbox embed ${table}\`).`));
    return out;
  }
  const candidates = labelCandidates(info);
  const result = h("div", { id: "curate-result", "aria-live": "polite" });
  const select = h("select", { name: "label", id: "curate-label", "aria-label": "label column" },
    h("option", { value: "" }, "no label column (duplicates and uniqueness only)"),
    candidates.map((c) => h("option", { value: c, selected: c === "label" }, c)));
  const form = h("form.toolbar", { id: "curate-form", onsubmit: async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    result.replaceChildren(h("p.muted", {}, "computing…"));
    try {
      const chosen = select.value || null;
      const out = await api(`${t(table)}/curate`, { method: "POST", params: { message: "curate (gallery)" },
        json: chosen ? { label: chosen } : {} });
      notice = `curated in version ${out.version}: ${out.label_issues_over_half ?? 0} labels in doubt, ` +
        `${out.exact_duplicates + out.near_duplicates} copies`;
      location.hash = href("curate", table, withRef(params, { version: String(out.version) }));
    } catch (err) {
      result.replaceChildren(errorBox(err));
      button.disabled = false;
    }
  } }, h("label", { for: "curate-label" }, "label column"), select, h("button", { type: "submit" }, "Compute curate columns"));
  out.append(form, result);
  return out;
}

/** One write with a message, then the page at the version it made (main) or the branch's latest. */
async function write(env, what, call) {
  const { table, info, params } = env;
  const options = { params: { message: `${what} (curation)`, ...(info.branch ? { branch: info.branch } : {}) } };
  const out = await call(options);
  notice = `${what}: version ${out.version}`;
  const ref = info.branch ? { branch: info.branch, written: String(out.version) } : { version: String(out.version) };
  location.hash = href("curate", table, withRef(params, ref));
}

async function labelIssues(env, out) {
  const { table, pin, label, source } = env;
  out.replaceChildren(h("h2", {}, "Label issues"), h("p.muted", {}, "reading…"));
  const wanted = [...new Set(["id", label, "suggested_label", "label_issue", ...source].filter(Boolean))];
  const body = { filter: "label_issue IS NOT NULL", order_by: ["label_issue desc"], columns: wanted, limit: RANKED };
  const list = h("ol.issues", { id: "issues" });
  const more = h("button", { type: "button", id: "more-issues", hidden: true }, `Show ${RANKED} more`);
  let cursor = null;
  async function page() {
    more.hidden = true;
    const { rows, next_cursor: next } = await api(`${t(table)}/query`, { method: "POST", params: pin, json: { ...body, cursor } });
    const inline = await firstScreen(table, rows, pin);
    const items = rows.map((row, i) => issueItem(env, row, list.children.length + i, inline));
    list.append(...items);
    cursor = next;
    more.hidden = !cursor;
    neighbours(env, rows, items).catch(() => { /* each row's own box says so */ });
    return rows.length;
  }
  more.addEventListener("click", () => page().catch((err) => out.append(errorBox(err))));
  const found = await page();
  out.replaceChildren(h("h2", {}, "Label issues"),
    h("p.muted", {}, "Rows whose label their nearest rows most disagree with (label_issue, highest first), " +
      "each with the label they suggest."), found ? list : h("p.muted", {}, "No row has a label issue score."), more);
}

function issueItem(env, row, i, inline) {
  const { table, pin, params, label, info, writable } = env;
  const id = row.id;
  const suggested = row.suggested_label;
  const differs = suggested !== null && suggested !== undefined && suggested !== row[label];
  const errors = h("div", { "aria-live": "polite" });
  const relabel = async (value) => {
    errors.replaceChildren();
    try {
      await write(env, `relabel row ${id}: ${formatValue(row[label])} -> ${formatValue(value)}`,
        (options) => api(rowPath(table, id), { method: "PATCH", ...options, json: { [label]: value } }));
    } catch (err) {
      errors.replaceChildren(errorBox(err));
    }
  };
  const typed = h("input", { name: "label", size: 8, "aria-label": `new label for ${id}`, placeholder: "label" });
  const actions = writable && label ? h("form.toolbar.actions", { onsubmit: (e) => {
    e.preventDefault();
    try { relabel(parseLabel(typed.value, typeOf(info, label))); } catch (err) { errors.replaceChildren(errorBox(err)); }
  } },
  differs ? h("button.accept", { type: "button", onclick: () => relabel(suggested) }, `Relabel to ${formatValue(suggested)}`) : null,
  typed, h("button", { type: "submit" }, "Relabel")) : null;
  return h("li.issue.card", { dataset: { id, issue: String(row.label_issue) } },
    cell(table, row, { pin, params, inline, shown: [], extra: [`#${i + 1} · issue ${row.label_issue.toFixed(3)}`] }),
    h("div.issue-body", {},
      h("table.values", {}, h("tbody", {},
        h("tr", {}, h("th", { scope: "row" }, label || "label"), h("td.mono.label", {}, formatValue(row[label]))),
        h("tr", {}, h("th", { scope: "row" }, "suggested"), h("td.mono.suggested", {}, h(differs ? "ins" : "span", {}, formatValue(suggested)))))),
      actions, errors),
    h("div.neighbours", { "aria-label": `nearest rows of ${id}` }, h("span.muted", {}, "nearest rows…")));
}

/** Each ranked row's nearest rows, from the search service ("more like this"), a few searches at once. */
async function neighbours(env, rows, items) {
  const { table, pin, params, info, label, source } = env;
  const column = params.get("column") || (info.embeddings[0] || {}).column;
  if (!column) return;
  const columns = [...new Set(["id", label, ...source].filter(Boolean))];
  const found = await inParallel(rows, PARALLEL, (row) => api(`${t(table)}/search`, { method: "POST", params: pin,
    json: { image_id: row.id, column, k: NEIGHBOURS, columns } }).then((r) => r.hits, (err) => err));
  const hits = found.filter(Array.isArray).flat();
  const inline = await firstScreen(table, hits, pin);
  found.forEach((answer, i) => {
    const box = items[i].querySelector(".neighbours");
    if (!Array.isArray(answer)) { box.replaceChildren(errorBox(answer)); return; }
    box.replaceChildren(h("div.muted", {}, "nearest rows"), h("div.grid.small", {}, answer.map((hit) =>
      cell(table, hit, { pin, params, inline, shown: label ? [label] : [], cls: "neighbour" }))));
  });
}

async function duplicateGroups(env, out) {
  const { table, pin, params, label, source, writable } = env;
  out.replaceChildren(h("h2", {}, "Duplicate groups"), h("p.muted", {}, "reading…"));
  const wanted = [...new Set(["id", "duplicate_of", label, ...source].filter(Boolean))];
  const { rows: copies } = await api(`${t(table)}/query`, { method: "POST", params: pin, json: {
    filter: "duplicate_of IS NOT NULL", order_by: ["duplicate_of asc", "id asc"], columns: wanted, limit: COPIES } });
  const byOriginal = new Map();
  for (const row of copies) byOriginal.set(row.duplicate_of, [...(byOriginal.get(row.duplicate_of) || []), row]);
  const ids = [...byOriginal.keys()];
  const { rows: originals } = ids.length ? await api(`${t(table)}/fetch`, { method: "POST", params: pin,
    json: { ids, columns: wanted.filter((c) => c !== "duplicate_of") } }) : { rows: [] };
  const known = new Map(originals.map((r) => [r.id, r]));
  const inline = await firstScreen(table, [...copies, ...originals], pin);
  const shown = label ? [label] : [];
  const groups = ids.map((original) => {
    const first = known.get(original);
    const copyCells = byOriginal.get(original).map((row) => {
      const errors = h("div", { "aria-live": "polite" });
      const remove = writable ? h("button.delete", { type: "button", onclick: async () => {
        errors.replaceChildren();
        try {
          await write(env, `delete copy ${row.id} of ${original}`,
            (options) => api(rowPath(table, row.id), { method: "DELETE", ...options }));
        } catch (err) {
          errors.replaceChildren(errorBox(err));
        }
      } }, "Delete this copy") : null;
      return h("div.copy", { dataset: { id: row.id } }, cell(table, row, { pin, params, inline, shown, extra: ["copy"] }), remove, errors);
    });
    return h("div.group.card", { dataset: { original } },
      h("div.original", {}, first ? cell(table, first, { pin, params, inline, shown, extra: ["original"] })
        : h("p.muted", {}, `original ${original} is not in this version`)), copyCells);
  });
  out.replaceChildren(h("h2", {}, "Duplicate groups"),
    h("p.muted", {}, `${copies.length}${copies.length === COPIES ? "+" : ""} ${copies.length === 1 ? "row is a copy" : "rows are copies"} of another row (duplicate_of): ` +
      "each group shows the original first, then its copies."),
    groups.length ? h("div.groups", { id: "groups" }, groups) : h("p.muted", {}, "No duplicates."));
}

/** The table's saved views, each opening the grid through it. */
async function savedViews(table, out) {
  try {
    const { views } = await api(`${t(table)}/views`);
    if (!views.length) {
      out.append(h("p.muted", {}, `No saved views: \`lightbox view save ${table} NAME --filter ...\` or PUT .../views/NAME makes one.`));
      return;
    }
    out.append(h("table.log", { id: "views" }, h("thead", {}, h("tr", {}, ["view", "filter", "sort", "ref", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, views.map((v) => h("tr", { dataset: { view: v.name } },
        h("td", {}, h("a", { href: href("grid", table, { view: v.name }) }, v.name)),
        h("td.mono", {}, v.filter || "all rows"),
        h("td.mono", {}, (v.order_by || []).map((o) => (typeof o === "string" ? o : JSON.stringify(o))).join(", ")),
        h("td.mono", {}, v.ref ? Object.entries(v.ref).map(([k, x]) => `${k} ${x}`).join(", ") : "latest"),
        h("td", {}, v.error ? h("span.error", {}, v.error) : ""))))));
  } catch (err) {
    out.append(errorBox(err));
  }
}
