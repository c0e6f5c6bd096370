-- 0011: the export walk's index (0010) covers every resources column the
-- walk reads (store.Exporter: id, version, hid, last_updated, deleted,
-- patient), so the walk reads a type's index entries alone, front to back,
-- and no resources row: with (type, rid) only, each entry sent SQLite to the
-- resources row, and since a type's rows are spread over the whole table,
-- every type's walk read the whole table (twice per export: once to cut the
-- files, once to serve them). Same name and condition, so the export query is
-- unchanged.
DROP INDEX IF EXISTS resources_type_rid;
CREATE INDEX resources_type_rid ON resources (type, rid, id, version, hid, last_updated, deleted, patient) WHERE version > 0;
