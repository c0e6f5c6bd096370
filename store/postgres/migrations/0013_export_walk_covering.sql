-- 0013: the export walk's index (0009) carries every resources column the
-- walk reads (store.Exporter: id, version, last_updated, deleted, patient),
-- as SQLite's 0011 does, so PostgreSQL walks a type's entries in rid order
-- with an index-only scan and reads no resources row (where the visibility
-- map says a page is all-visible: Store.Analyze vacuums resources for it),
-- only each resource's history row for its body. Same name: the export
-- query is unchanged. docs/design/security.md BULK-13.
DROP INDEX IF EXISTS resources_type_rid;
CREATE INDEX resources_type_rid ON resources (type, rid) INCLUDE (id, version, last_updated, deleted, patient);
