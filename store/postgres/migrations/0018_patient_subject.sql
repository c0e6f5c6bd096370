-- 0018: a resource's patient and subject reference rows naming the same
-- target are one row of the parameter "patient|subject" (docs/design/
-- security.md PERF-PG-8), which a search for either parameter matches.
-- Almost every clinical resource has such a pair (19 % of idx_ref's rows
-- in the bench's data were the second row of one): each was a heap row and
-- two B-tree entries more per resource written, in idx_ref_pkey's middle.
-- A patient or subject row without the other keeps its parameter.
--
-- The table is copied with each pair made one row (by the rule the writers
-- apply: same resource, same target), in rid order, and its indexes are
-- built on the copy by sorting. A bulk load cut short (PERF-PG-3) left its
-- saved definitions of idx_ref's indexes and may have written a row twice
-- while the key was gone: the definitions are dropped (built here
-- instead), and the copy is DISTINCT.
INSERT INTO search_params (name) VALUES ('patient|subject') ON CONFLICT (name) DO NOTHING;
DO $$ BEGIN
    IF to_regclass('bulk_indexes') IS NOT NULL THEN
        EXECUTE 'DELETE FROM bulk_indexes WHERE tbl = ''idx_ref''';
    END IF;
END $$;
CREATE TABLE idx_ref_0018 (
    pid    integer NOT NULL,
    trid   bigint NOT NULL,
    target text COLLATE "C" NOT NULL,
    rid    bigint NOT NULL
);
WITH p AS (
    SELECT (SELECT pid FROM search_params WHERE name = 'patient') AS pat,
           (SELECT pid FROM search_params WHERE name = 'subject') AS sub,
           (SELECT pid FROM search_params WHERE name = 'patient|subject') AS two
)
INSERT INTO idx_ref_0018 (pid, trid, target, rid)
SELECT pid, trid, target, rid FROM (
    SELECT DISTINCT x.pid, x.trid, x.target, x.rid
    FROM idx_ref x, p WHERE x.pid IS DISTINCT FROM p.pat AND x.pid IS DISTINCT FROM p.sub
    UNION ALL
    SELECT CASE WHEN count(DISTINCT x.pid) > 1 THEN p.two ELSE min(x.pid) END, x.trid, x.target, x.rid
    FROM idx_ref x, p WHERE x.pid IN (p.pat, p.sub)
    GROUP BY x.rid, x.trid, x.target, p.two
) y ORDER BY rid, pid;
DROP TABLE idx_ref;
ALTER TABLE idx_ref_0018 RENAME TO idx_ref;
ALTER TABLE idx_ref ADD CONSTRAINT idx_ref_pkey PRIMARY KEY (pid, trid, target, rid);
CREATE INDEX idx_ref_rid ON idx_ref (rid, pid);
