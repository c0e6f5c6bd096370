-- A bulk load into an empty store (store.BulkWriter, Store.BeginBulk) drops
-- the secondary indexes of the resource tables and builds them again when it
-- ends: this table holds their CREATE statements meanwhile. A store opened
-- with rows here was left mid-load by a process that died; Open builds them
-- again (docs/design/architecture.md PERF-SQLB-1).
CREATE TABLE IF NOT EXISTS bulk_indexes (
    name TEXT PRIMARY KEY,
    sql  TEXT NOT NULL
);
