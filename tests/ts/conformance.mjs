// The official LanceDB TypeScript client (@lancedb/lancedb, pinned in package.json) against a
// Lightbox server. Run by tests/test_lancedb_ts.py:
//   node conformance.mjs '{"url": ..., "table": ..., "vector": [...], "filter": ..., "image_b64": ...}'
// Every step's result (or its error) is printed as one JSON object; the Python test checks them
// against Lightbox's native API.
import * as lancedb from "@lancedb/lancedb";

const cfg = JSON.parse(process.argv[2]);
const out = {};

async function step(name, fn) {
  try {
    out[name] = { ok: await fn() };
  } catch (err) {
    out[name] = { error: String(err && err.message ? err.message : err) };
  }
}

const plain = (rows) => rows.map((r) => ({ ...r }));

const db = await lancedb.connect("db://lightbox", { apiKey: cfg.api_key ?? "KEY", hostOverride: cfg.url });
await step("table_names", () => db.tableNames());
const tbl = await db.openTable(cfg.table);
await step("schema", async () => {
  const schema = await tbl.schema();
  return schema.fields.map((f) => ({ name: f.name, type: String(f.type) }));
});
await step("count", () => tbl.countRows());
await step("count_filter", () => tbl.countRows(cfg.filter));
await step("search", async () =>
  plain(await tbl.vectorSearch(cfg.vector).where(cfg.filter).limit(cfg.k).select(cfg.columns).toArray()),
);
await step("filter_only", async () =>
  plain(await tbl.query().where(cfg.filter).limit(10).select(["id"]).toArray()),
);
await step("take_offsets", async () => plain(await tbl.takeOffsets([0, 2]).select(["id"]).toArray()));
await step("version", () => tbl.version());
const tags = await tbl.tags();
await step("tag_create", async () => {
  await tags.create("ts-v1", await tbl.version());
  return true;
});
await step("tags_list", async () => Object.fromEntries(Object.entries(await tags.list()).map(([k, v]) => [k, v.version])));
await step("tag_version", () => tags.getVersion("ts-v1"));
await step("add", async () => {
  const image = Buffer.from(cfg.image_b64, "base64");
  return await tbl.add([{ id: "ts-new.png", image }]);
});
await step("count_after_add", () => tbl.countRows());
await step("checkout_version", async () => {
  await tbl.checkout(1);
  return { version: await tbl.version(), count: await tbl.countRows() };
});
await step("checkout_tag", async () => {
  await tbl.checkout("ts-v1");
  return { version: await tbl.version(), count: await tbl.countRows() };
});
await step("checkout_latest", async () => {
  await tbl.checkoutLatest();
  return { version: await tbl.version(), count: await tbl.countRows() };
});
await step("list_versions", async () => (await tbl.listVersions()).map((v) => v.version));
await step("create_index", async () => {
  await tbl.createIndex("id", { config: lancedb.Index.btree() });
  return true;
});
await step("list_indices", async () => (await tbl.listIndices()).map((i) => ({ name: i.name, type: i.indexType })));
await step("tag_delete", async () => {
  await tags.delete("ts-v1");
  return Object.keys(await tags.list());
});
await step("create_table", async () => {
  const t = await db.createTable("ts_plain", [{ id: "a", x: 1 }, { id: "b", x: 2 }]);
  return await t.countRows();
});
await step("drop_table", async () => {
  await db.dropTable("ts_plain");
  return await db.tableNames();
});
await step("missing_table", () => db.openTable("no_such_table"));

// full-text and hybrid search on a table of captions: made, indexed, tagged, then written to
const ids = (rows) => rows.map((r) => r.id);
const docs = await db.createTable("ts_docs", [
  { id: "a", caption: "a red cat sleeping", vector: [1, 0, 0, 0] },
  { id: "b", caption: "a blue dog running", vector: [0, 1, 0, 0] },
  { id: "c", caption: "a red dog chasing a cat", vector: [0, 0, 1, 0] },
]);
await docs.createIndex("caption", { config: lancedb.Index.fts({ withPosition: true }) });
const indexed = await docs.version();
await docs.add([{ id: "d", caption: "a late cat", vector: [0, 0, 0, 1] }]);
await step("fts", async () => ids(await docs.search("cat", "fts").select(["id"]).limit(10).toArray()));
await step("fts_scores", async () => (await docs.query().fullTextSearch("cat").select(["id"]).limit(10).toArray())
  .map((r) => r._score));
await step("fts_phrase", async () => ids(await docs.search('"red cat"', "fts").select(["id"]).limit(10).toArray()));
await step("hybrid", async () =>
  ids(await docs.query().fullTextSearch("red dog").nearestTo([0, 0, 1, 0]).select(["id"]).limit(3).toArray()));
await step("fts_at_old_version", async () => {
  await docs.checkout(indexed);
  const old = ids(await docs.search("cat", "fts").select(["id"]).limit(10).toArray());
  await docs.checkoutLatest();
  return old;
});
await step("fts_no_index", () => docs.search("cat", "fts", ["id"]).limit(3).toArray());

process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? Number(v) : v)));
