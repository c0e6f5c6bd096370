-- A bulk load into an empty store (store.BulkWriter, Store.BeginBulk) writes
-- index rows to staging tables (bulk_idx_*) and drops the search tables and
-- the secondary indexes of resources and history, building them once when
-- it ends: this table holds their CREATE statements meanwhile. A store
-- opened with rows here was left mid-load by a process that died; Open
-- finishes the load (docs/design/architecture.md PERF-SQLB-1).
CREATE TABLE IF NOT EXISTS bulk_indexes (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,  -- 'table' (a search table) or 'index'
    sql  TEXT NOT NULL
);
