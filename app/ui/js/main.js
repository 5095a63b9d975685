// The gallery's router: renders the view the URL names, keeps the last grid alive so coming back
// to it (Escape, the back button) keeps its pages, scroll position and loaded images.

import { api, getKey, askKey } from "./api.js";
import { curateView, hasCurateColumns } from "./curate.js";
import { errorBox, h } from "./dom.js";
import { gridView } from "./grid.js";
import { historyView } from "./history.js";
import { rowView } from "./row.js";
import { href, parse } from "./route.js";
import { searchView } from "./search.js";
import { isInternalTag, refBar, resolve } from "./table.js";

const view = document.getElementById("view");
let kept = null; // {hash, el, scroll}: the last grid
let renderId = 0;

async function tablesView(route) {
  const { tables } = await api("/tables");
  const infos = await Promise.all(tables.map((tb) => api(`/tables/${encodeURIComponent(tb.name)}`).catch((err) => ({ error: err }))));
  const internal = route.params.get("internal") === "1";
  const visible = (info) => Object.keys(info.tags).filter((n) => internal || !isInternalTag(n));
  const hiddenCount = infos.reduce((n, info) => n + (info.error ? 0 : Object.keys(info.tags).length - visible(info).length), 0);
  const toggle = hiddenCount || internal ? h("label.muted", {}, h("input", { type: "checkbox", id: "show-internal", checked: internal,
    onchange: (e) => { location.hash = href("tables", null, e.target.checked ? { internal: "1" } : {}); } }),
  ` show internal tags (clone guards)${hiddenCount ? `: ${hiddenCount} hidden` : ""}`) : null;
  const root = h("section", { "aria-label": "tables" }, h("h1", {}, "Tables"), toggle);
  if (!tables.length) root.append(h("p.muted", {}, "No tables yet: `lightbox ingest FOLDER --table NAME` makes one."));
  root.append(h("div.tables", { id: "tables" }, tables.map((tb, i) => {
    const info = infos[i];
    return h("article.card", { dataset: { table: tb.name } },
      h("h2", {}, h("a", { href: href("grid", tb.name) }, tb.name)),
      h("div", {}, `${tb.num_rows} rows · version ${tb.version}`),
      info.error ? errorBox(info.error) : [
        h("div", {}, "tags: ", visible(info).length ? visible(info).map((n) => h("a.pill", { href: href("grid", tb.name, { tag: n }) }, n)) : h("span.muted", {}, "none")),
        h("div", {}, "branches: ", Object.keys(info.branches).length ? Object.keys(info.branches).map((n) => h("a.pill.branch", {
          href: href("history", tb.name, { branch: n }), title: `what branch ${n} adds and changes` }, n)) : h("span.muted", {}, "none")),
        h("div", {}, "vectors: ", info.embeddings.length ? info.embeddings.map((e) => h("span.pill.vec", {}, `${e.column} · ${e.model} · ${e.dim}d`)) : h("span.muted", {}, "none")),
      ],
      h("div.toolbar", {}, h("a", { href: href("search", tb.name) }, "search"), "·", h("a", { href: href("history", tb.name) }, "history"),
        !info.error && hasCurateColumns(info) ? ["·", h("a", { href: href("curate", tb.name) }, "curate")] : null));
  })));
  return root;
}

function crumbs(route) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(h("a", { href: "#/" }, "tables"));
  if (route.table) {
    nav.append("/ ", h("a", { href: href("grid", route.table, route.params) }, route.table));
    if (route.view === "row") nav.append("/ ", h("span.mono", {}, route.id));
    else if (route.view !== "grid") nav.append("/ ", route.view);
  }
}

async function render() {
  const id = ++renderId;
  const route = parse();
  const hash = location.hash || "#/";
  if (kept && view.firstChild === kept.el) kept.scroll = window.scrollY;
  crumbs(route);
  document.title = route.table ? `${route.table} · Lightbox` : "Lightbox";
  if (route.view === "grid" && kept && kept.hash === hash) {
    view.replaceChildren(kept.el);
    window.scrollTo(0, kept.scroll);
    return;
  }
  view.replaceChildren(h("p.muted", {}, "Loading…"));
  try {
    let el;
    if (route.view === "tables") {
      document.getElementById("refbar").replaceChildren();
      el = await tablesView(route);
    } else {
      const ctx = await resolve(route.table, route.params);
      if (id !== renderId) return;
      if (route.view === "grid") {
        el = gridView(route, ctx);
        kept = { hash, el, scroll: 0 };
        el.settled.then(() => refBar(route, ctx.info)).catch(() => {}); // after the first screen's images
      } else setTimeout(() => refBar(route, ctx.info).catch(() => {}), 50); // after the view's own first requests
      if (route.view === "grid") { /* built above */ } else if (route.view === "row") el = await rowView(route, ctx);
      else if (route.view === "search") el = searchView(route, ctx);
      else if (route.view === "curate") el = await curateView(route, ctx);
      else el = await historyView(route, ctx);
    }
    if (id !== renderId) return;
    view.replaceChildren(el);
    if (route.view !== "grid") window.scrollTo(0, 0);
  } catch (err) {
    if (id !== renderId) return;
    view.replaceChildren(h("h1", {}, "Could not load this page"), errorBox(err), h("p", {}, h("a", { href: "#/" }, "all tables")));
  }
}

function parent(route) {
  if (route.view === "tables") return null;
  if (route.view === "grid") return href("tables");
  const keep = new URLSearchParams(route.params);
  for (const k of ["like", "text", "from", "to", "written"]) keep.delete(k);
  return href("grid", route.table, keep);
}

let depth = 0; // in-app navigations, so Escape can go back rather than leave the site
window.addEventListener("hashchange", () => { depth++; render(); });
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || document.querySelector("dialog[open]")) return;
  const target = e.target;
  if (target.matches && target.matches("input, select, textarea") && target.value) return; // Escape clears first
  const up = parent(parse());
  if (!up) return;
  e.preventDefault();
  const back = kept && up === kept.hash;
  if (back && depth > 0) history.back();
  else location.hash = up;
});
document.getElementById("key-button").addEventListener("click", () => askKey("Enter another API key.").then(render));
document.getElementById("key-button").hidden = !getKey();
render();
