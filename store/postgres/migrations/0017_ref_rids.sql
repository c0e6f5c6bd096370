-- 0017: a reference row whose target "Type/id" is a stored resource holds
-- that resource's rid (trid) instead of the text (docs/design/security.md
-- PERF-PG-6, as SQLite's PERF-SQLB-4). The target's text (40-50 bytes of a
-- random UUID for most) was the widest column of idx_ref's primary key and
-- the one that ordered its inserts: every row landed on a random page of
-- the parameter's range, and the key's pages split and were logged whole.
-- A rid is a fixed-width integer, and a recent one for a target written in
-- the same batch, so the rows of a load append at the end of their
-- parameter's range. Any other target (an absolute URL, a versioned
-- reference, a resource not stored when the row was written) keeps its
-- text in target with trid 0; a rid row's target is ''. A search value
-- "Type/id" matches a row of either form; Refs (_include) and sorts read a
-- rid back as its "Type/id" (a resource's type and id never change).
--
-- The table is copied with the targets resolved by the same rule the
-- writers apply (store/internal/sqlcore RefKey: one "/" between a non-empty
-- type and id), and its indexes are built on the copy by sorting. A bulk
-- load cut short (PERF-PG-3) left its saved definitions of idx_ref's old
-- indexes and may have written a row twice while the key was gone: the
-- definitions are dropped (built here instead), and the copy is DISTINCT.
DO $$ BEGIN
    IF to_regclass('bulk_indexes') IS NOT NULL THEN
        EXECUTE 'DELETE FROM bulk_indexes WHERE tbl = ''idx_ref''';
    END IF;
END $$;
CREATE TABLE idx_ref_0017 (
    pid    integer NOT NULL,
    trid   bigint NOT NULL,
    target text COLLATE "C" NOT NULL,
    rid    bigint NOT NULL
);
INSERT INTO idx_ref_0017 (pid, trid, target, rid)
SELECT DISTINCT x.pid, coalesce(t.rid, 0), CASE WHEN t.rid IS NULL THEN x.target ELSE '' END, x.rid
FROM idx_ref x
LEFT JOIN resources t ON x.target ~ '^[^/]+/[^/]+$'
    AND t.type = split_part(x.target, '/', 1) AND t.id = split_part(x.target, '/', 2);
DROP TABLE idx_ref;
ALTER TABLE idx_ref_0017 RENAME TO idx_ref;
ALTER TABLE idx_ref ADD CONSTRAINT idx_ref_pkey PRIMARY KEY (pid, trid, target, rid);
CREATE INDEX idx_ref_rid ON idx_ref (rid, pid);
