-- 0009: the walk of a Bulk Data export (store.Exporter): a type's resources
-- in rid order, the order they were first stored and about the order their
-- history rows lie in the heap, deletions included (resources_type leaves
-- them out, and a _since export lists them).
CREATE INDEX IF NOT EXISTS resources_type_rid ON resources (type, rid);
