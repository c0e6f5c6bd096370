-- 0010: the walk of a Bulk Data export (store.Exporter): a type's resources
-- in rid order, the order they were first stored and about the order their
-- history rows lie in the file, so an export reads the database front to
-- back instead of one random page per resource. Partial on a condition
-- every row meets (versions start at 1) that only the export's query states:
-- SQLite considers a partial index only for queries whose WHERE implies its
-- condition, so searches keep the (type, id) index that gives their id order.
CREATE INDEX IF NOT EXISTS resources_type_rid ON resources (type, rid) WHERE version > 0;
