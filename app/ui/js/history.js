// History: the version log, a diff between two refs (added, removed and changed rows as
// thumbnails, a changed image before and after), and tagging a version (a write: a read-only key
// sees the service's 403 message).

import { api, t } from "./api.js";
import { errorBox, formatTime, h } from "./dom.js";
import { href } from "./route.js";
import { cell, tabs } from "./table.js";

const DIFF_PAGE = 60;

export async function historyView(route, ctx) {
  const { table, params } = route;
  const { info } = ctx;
  const branch = info.branch || params.get("branch") || null;
  const log = await api(`${t(table)}/versions`, { params: { limit: "100", ...(branch ? { branch } : {}) } });
  const root = h("section", { "aria-label": `history of ${table}` }, tabs(route));
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
    h("td", {}, (v.tags || []).map((tag) => h("span.pill", {}, tag))),
    h("td", {}, prev(i) && !branch ? h("a", { href: href("history", table, { ...Object.fromEntries(params), from: prev(i), to: String(v.version) }) }, "diff") : "")));
  const logTable = h("table.log", { id: "log" },
    h("caption", { class: "muted" }, `version log${branch ? " of branch " + branch : " (main)"}`),
    h("thead", {}, h("tr", {}, ["version", "time", "message", "author", "operation", "rows", "changes", "tags", ""]
      .map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));

  const refs = [...log.map((v) => String(v.version)), ...Object.keys(info.tags || {}), "main", ...Object.keys(info.branches || {})];
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

  root.append(h("h2", {}, "Diff"), diffForm, diffOut, h("h2", {}, "Versions"), logTable, h("h2", {}, "Tag"), tagForm, tagOut);
  if (params.get("from") || params.get("to")) {
    diffView(table, from, to, params).then((el) => diffOut.replaceChildren(el), (err) => diffOut.replaceChildren(errorBox(err)));
  }
  return root;
}

function pinOf(side) {
  return new URLSearchParams(side.branch ? { branch: side.branch } : { version: String(side.version) });
}

async function diffView(table, from, to, params) {
  const d = await api(`${t(table)}/diff`, { params: { from, to, limit: String(DIFF_PAGE) } });
  const a = pinOf(d.from);
  const b = pinOf(d.to);
  const linkParams = (pin) => ({ ...Object.fromEntries(pin) });
  const section = (title, count, items) => h("section", { "aria-label": title, id: `diff-${title}` },
    h("h3", {}, `${title}: ${count}` + (count > items.length ? ` (first ${items.length} shown)` : "")),
    items.length ? h("div.grid", {}, items) : h("p.muted", {}, "none"));
  const added = d.added.map((id) => cell(table, { id }, { pin: b, params: linkParams(b), cls: "added", extra: ["added"] }));
  const removed = d.removed.map((id) => cell(table, { id }, { pin: a, params: linkParams(a), cls: "removed", extra: ["removed"] }));
  const changed = d.changed.map((c) => h("div.card", { dataset: { id: c.id } },
    h("div.mono", {}, c.id), h("div.muted", {}, `changed: ${c.columns.join(", ")}`),
    h("div.pair", {},
      cell(table, { id: c.id }, { pin: a, params: linkParams(a), extra: [`before (v${d.from.version})`] }),
      cell(table, { id: c.id }, { pin: b, params: linkParams(b), extra: [`after (v${d.to.version})`] }))));
  return h("div", {},
    h("p", { id: "diff-summary" }, `v${d.from.version}${d.from.branch ? " (" + d.from.branch + ")" : ""} → v${d.to.version}${d.to.branch ? " (" + d.to.branch + ")" : ""}: ` +
      `${d.counts.added} added, ${d.counts.removed} removed, ${d.counts.changed} changed`),
    h("section", { "aria-label": "changed", id: "diff-changed" }, h("h3", {}, `changed: ${d.counts.changed}`),
      changed.length ? h("div.changed-list", {}, changed) : h("p.muted", {}, "none")),
    section("removed", d.counts.removed, removed), section("added", d.counts.added, added));
}
