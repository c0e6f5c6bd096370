-- 0010: history and the index tables no longer check their rid against
-- resources with a foreign key. The store never deletes a resources row (a
-- deletion is a version) and writes history and index rows only with rids
-- it read or allocated in the same transaction under the apply lock; the
-- per-row check (a probe of resources_pkey through a trigger) cost about a
-- third of every index row's insert in a bulk ingest (docs/benchmarks.md,
-- "PostgreSQL ingest: set-based writes").
ALTER TABLE history DROP CONSTRAINT IF EXISTS history_rid_fkey;
ALTER TABLE idx_token DROP CONSTRAINT IF EXISTS idx_token_rid_fkey;
ALTER TABLE idx_string DROP CONSTRAINT IF EXISTS idx_string_rid_fkey;
ALTER TABLE idx_date DROP CONSTRAINT IF EXISTS idx_date_rid_fkey;
ALTER TABLE idx_ref DROP CONSTRAINT IF EXISTS idx_ref_rid_fkey;
ALTER TABLE idx_number DROP CONSTRAINT IF EXISTS idx_number_rid_fkey;
ALTER TABLE idx_quantity DROP CONSTRAINT IF EXISTS idx_quantity_rid_fkey;
