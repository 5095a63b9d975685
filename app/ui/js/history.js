// History: the version log, a diff between two refs (added, removed and changed rows as
// thumbnails, a changed image before and after), and tagging a version (a write: a read-only key
// sees the service's 403 message).

import { api, t } from "./api.js";
import { errorBox, formatTime, formatValue, h } from "./dom.js";
import { href } from "./route.js";
import { cell, isInternalTag, tabs } from "./table.js";

const DIFF_PAGE = 60;

export async function historyView(route, ctx) {
  const { table, params } = route;
  const { info } = ctx;
  const branch = info.branch || params.get("branch") || null;
  const log = await api(`${t(table)}/versions`, { params: { limit: "100", ...(branch ? { branch } : {}) } });
  const root = h("section", { "aria-label": `history of ${table}` }, tabs(route, info));
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) next.set(k, v);
    location.hash = href("history", table, next);
  };
  const prev = (i) => (log[i + 1] ? String(log[i + 1].version) : null);
  const rows = log.map((v, i) => h("tr", { dataset: { version: v.version } },
    h("td", {}, branch ? `v${v.version}` : h("a", { href: href("grid", table, { version: v.version }) }, `v${v.version}`)),
    h("td", {}, formatTime(v.timestamp)),
    h("td", {}, v.message || ""), h("td", {}, v.author || ""), h("td", {}, v.operation || ""),
    h("td", {}, String(v.num_rows)),
    h("td.mono", {}, `+${v.rows_added ?? 0} −${v.rows_removed ?? 0} ~${v.rows_updated ?? 0}`),
    h("td", {}, (v.tags || []).filter((tag) => !isInternalTag(tag)).map((tag) => h("span.pill", {}, tag))),
    h("td", {}, prev(i) && !branch ? h("a", { href: href("history", table, { ...Object.fromEntries(params), from: prev(i), to: String(v.version) }) }, "diff") : "")));
  const logTable = h("table.log", { id: "log" },
    h("caption", { class: "muted" }, `version log${branch ? " of branch " + branch : " (main)"}`),
    h("thead", {}, h("tr", {}, ["version", "time", "message", "author", "operation", "rows", "changes", "tags", ""]
      .map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));

  const refs = [...log.map((v) => String(v.version)), ...Object.keys(info.tags || {}).filter((n) => !isInternalTag(n)), "main", ...Object.keys(info.branches || {})];
  const datalist = h("datalist", { id: "refs-list" }, refs.map((r) => h("option", { value: r })));
  const from = params.get("from") || (log[1] ? String(log[1].version) : "");
  const to = params.get("to") || (log[0] ? String(log[0].version) : "main");
  const diffForm = h("form.toolbar", { id: "diff-form", onsubmit: (e) => {
    e.preventDefault();
    go({ from: e.target.elements.from.value.trim(), to: e.target.elements.to.value.trim() });
  } }, "compare", h("input", { name: "from", value: from, list: "refs-list", "aria-label": "from ref", size: 12 }),
  "→", h("input", { name: "to", value: to, list: "refs-list", "aria-label": "to ref", size: 12 }),
  h("button", { type: "submit" }, "Diff"), datalist);
  const diffOut = h("div", { id: "diff" });

  const tagOut = h("div", { id: "tag-result", "aria-live": "polite" });
  const tagForm = h("form.toolbar", { id: "tag-form", onsubmit: async (e) => {
    e.preventDefault();
    const name = e.target.elements.name.value.trim();
    const version = Number(e.target.elements.version.value);
    tagOut.replaceChildren();
    try {
      await api(`${t(table)}/tags`, { method: "POST", json: { name, version } });
      tagOut.replaceChildren(h("p.notice", {}, `tagged v${version} as ${name}`));
    } catch (err) {
      tagOut.replaceChildren(errorBox(err));
    }
  } }, "tag version", h("input", { name: "version", type: "number", min: 0, value: info.version, "aria-label": "version to tag", style: "width:6em" }),
  "as", h("input", { name: "name", required: true, "aria-label": "tag name", placeholder: "name" }), h("button", { type: "submit" }, "Tag"));

  const fork = branch ? (info.branches || {})[branch] : null;
  const branchOut = fork ? h("div", { id: "branch-changes" }, h("p.muted", {}, "comparing with the fork point…")) : null;
  if (fork) {
    const point = `${fork.parent_branch || "main"}@${fork.parent_version}`;
    root.append(h("h2", {}, `What branch ${branch} adds and changes`),
      h("p.muted", {}, `against its fork point, version ${fork.parent_version} of ${fork.parent_branch || "main"}`), branchOut);
    diffView(table, point, branch).then((el) => branchOut.replaceChildren(el), (err) => branchOut.replaceChildren(errorBox(err)));
  }
  root.append(h("h2", {}, "Diff"), diffForm, diffOut, h("h2", {}, "Versions"), logTable, h("h2", {}, "Tag"), tagForm, tagOut);
  if (params.get("from") || params.get("to")) {
    diffView(table, from, to).then((el) => diffOut.replaceChildren(el), (err) => diffOut.replaceChildren(errorBox(err)));
  }
  return root;
}

function pinOf(side) {
  return new URLSearchParams(side.branch ? { branch: side.branch } : { version: String(side.version) });
}

/** old → new for each changed column a person reads (the server sends these values). */
function valueChanges(change) {
  const entries = Object.entries(change.values || {}).filter(([c]) => c !== "sha256");
  if (!entries.length) return null;
  const show = (v) => {
    const text = formatValue(v);
    return text.length > 80 ? text.slice(0, 79) + "…" : text;
  };
  return h("table.values", {}, h("tbody", {}, entries.map(([c, v]) => h("tr", { dataset: { column: c } },
    h("th", { scope: "row" }, c), h("td.mono", {}, h("del", {}, show(v.from)), " → ", h("ins", {}, show(v.to)))))));
}

/** The changes from one ref to another: added and removed rows as thumbnails; a changed row as its
 * old → new values, with its image twice (before, after) only when the image bytes changed. Rows
 * whose vectors alone changed (a re-embedding) are counted, not shown. */
export async function diffView(table, from, to) {
  const d = await api(`${t(table)}/diff`, { params: { from, to, limit: String(DIFF_PAGE), vectors: "count" } });
  const a = pinOf(d.from);
  const b = pinOf(d.to);
  const linkParams = (pin) => ({ ...Object.fromEntries(pin) });
  const section = (title, count, items) => h("section", { "aria-label": title, id: `diff-${title}` },
    h("h3", {}, `${title}: ${count}` + (count > items.length ? ` (first ${items.length} shown)` : "")),
    items.length ? h("div.grid", {}, items) : h("p.muted", {}, "none"));
  const added = d.added.map((id) => cell(table, { id }, { pin: b, params: linkParams(b), cls: "added", extra: ["added"] }));
  const removed = d.removed.map((id) => cell(table, { id }, { pin: a, params: linkParams(a), cls: "removed", extra: ["removed"] }));
  const changed = d.changed.map((c) => {
    const bytes = c.columns.includes("sha256");
    const images = bytes
      ? h("div.pair", {},
        cell(table, { id: c.id }, { pin: a, params: linkParams(a), extra: [`before (v${d.from.version})`] }),
        cell(table, { id: c.id }, { pin: b, params: linkParams(b), extra: [`after (v${d.to.version})`] }))
      : h("div.pair", {}, cell(table, { id: c.id }, { pin: b, params: linkParams(b) }));
    return h("div.card", { dataset: { id: c.id, bytes: String(bytes) } },
      h("div.mono", {}, c.id), h("div.muted", {}, `changed: ${c.columns.join(", ")}`), valueChanges(c), images);
  });
  const listedChanges = d.counts.changed - d.vectors_only;
  const vectorNote = d.vectors_only
    ? h("p.muted", { id: "diff-vectors-only" }, `${d.vectors_only} row${d.vectors_only === 1 ? "" : "s"} changed only in vector columns (not listed).`)
    : null;
  const side = (s) => `v${s.version}${s.branch ? " (" + s.branch + ")" : ""}`;
  return h("div", {},
    h("p", { id: "diff-summary" }, `${side(d.from)} → ${side(d.to)}: ` +
      `${d.counts.added} added, ${d.counts.removed} removed, ${d.counts.changed} changed`),
    h("section", { "aria-label": "changed", id: "diff-changed" },
      h("h3", {}, `changed: ${listedChanges}` + (listedChanges > changed.length ? ` (first ${changed.length} shown)` : "")),
      vectorNote, changed.length ? h("div.changed-list", {}, changed) : h("p.muted", {}, "none")),
    section("removed", d.counts.removed, removed), section("added", d.counts.added, added));
}
