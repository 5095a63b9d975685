// The grid's side panel: value counts of low-cardinality columns and histograms of numeric ones,
// counted by the server (GET /facets) at the grid's ref and under its filter, so they equal what
// /count says. Clicking a value or a bar narrows the filter to it.

import { api, t } from "./api.js";
import { errorBox, formatValue, h } from "./dom.js";

const KEYWORDS = new Set(["and", "or", "not", "in", "between", "like", "ilike", "is", "null", "true", "false", "cast", "as"]);

/** A column name as the filter language reads it (backticks when it is not a plain identifier). */
export function columnRef(name) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !KEYWORDS.has(name.toLowerCase()) ? name : `\`${name}\``;
}

/** A value as a filter literal. */
export function literal(value) {
  if (typeof value === "string") return `'${value.replace(/'/g, "''")}'`;
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

/** The filter narrowed by one more clause. */
export function narrowed(filter, clause) {
  return filter ? `(${filter}) AND ${clause}` : clause;
}

function valuesFacet(facet, onPick) {
  const top = Math.max(1, ...facet.values.map((v) => v.count));
  const items = facet.values.map((v) => {
    const clause = `${columnRef(facet.column)} = ${literal(v.value)}`;
    return h("li", {}, h("button.value", {
      type: "button", title: `filter ${clause}`, dataset: { column: facet.column, value: String(v.value), count: String(v.count) },
      onclick: () => onPick(clause),
    }, h("span", {}, formatValue(v.value)), h("span.count", {}, String(v.count)),
    h("span.bar", { style: `width:${(100 * v.count / top).toFixed(1)}%`, "aria-hidden": "true" })));
  });
  if (facet.nulls) {
    items.push(h("li", {}, h("button.value", { type: "button", dataset: { column: facet.column, value: "null", count: String(facet.nulls) },
      onclick: () => onPick(`${columnRef(facet.column)} IS NULL`) }, h("span.muted", {}, "∅ (no value)"), h("span.count", {}, String(facet.nulls)))));
  }
  const rest = facet.other ? h("li.muted", {}, `${facet.distinct - facet.values.length} more values: ${facet.other} rows`) : null;
  return h("ul", {}, items, rest);
}

function histogramFacet(facet, onPick) {
  if (!facet.bins.length) return h("p.muted", {}, "no values");
  const top = Math.max(1, ...facet.bins.map((b) => b.count));
  const col = columnRef(facet.column);
  const fmt = (v) => (Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000));
  const bars = facet.bins.map((b) => {
    const clause = `${col} >= ${b.lo} AND ${col} ${b.closed ? "<=" : "<"} ${b.hi}`;
    const label = `${facet.column} ${fmt(b.lo)} to ${b.closed ? "" : "under "}${fmt(b.hi)}: ${b.count} rows`;
    return h("button", { type: "button", title: label, "aria-label": label, style: `height:${(100 * b.count / top).toFixed(1)}%`,
      dataset: { column: facet.column, lo: String(b.lo), hi: String(b.hi), count: String(b.count) }, onclick: () => onPick(clause) });
  });
  return h("div", {}, h("div.hist", { role: "group", "aria-label": `histogram of ${facet.column}` }, bars),
    h("div.range", {}, h("span", {}, fmt(facet.min)), h("span", {}, fmt(facet.max))));
}

/** The panel for a table at `pin` under `filter`; `onFilter(newFilter)` applies a picked value. */
export function facetPanel(table, pin, filter, onFilter) {
  const panel = h("aside.facets", { id: "facets", "aria-label": "facets" }, h("p.muted", {}, "counting…"));
  const pick = (clause) => onFilter(narrowed(filter, clause));
  panel.load = async () => {
    try {
      const params = { ...Object.fromEntries(pin), ...(filter ? { filter } : {}) };
      const body = await api(`${t(table)}/facets`, { params });
      const sections = body.facets.map((f) => h("section", { dataset: { facet: f.column, kind: f.kind, type: f.type } },
        h("h2", {}, f.column, h("span.muted", {}, ` ${f.type}`)),
        f.kind === "values" ? valuesFacet(f, pick) : histogramFacet(f, pick)));
      panel.replaceChildren(h("p.muted", { id: "facets-count" }, `${body.count} rows`), ...sections);
      if (!sections.length) panel.append(h("p.muted", {}, "No columns to count."));
    } catch (err) {
      panel.replaceChildren(errorBox(err));
    }
  };
  return panel;
}
