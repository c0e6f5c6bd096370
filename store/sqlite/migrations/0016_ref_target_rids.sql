-- 0016: a reference row names a stored target by its rid (docs/design/security.md
-- PERF-SQLB-4). idx_ref's primary key (pid, target, rid) held the target's
-- text "Type/id", whose ids are random UUIDs: each insert (a Provenance's
-- target, an Observation's encounter) dirtied a random leaf page, and that
-- tree was a third of the pages an ingest wrote, more the larger the store.
-- Keyed by the target's rid, a row lands near the end of its parameter's
-- range (resources are written before the rows that refer to them, and
-- rids grow), and its target takes 1-4 bytes instead of 40-50. target
-- has no declared type (no affinity), so it holds an INTEGER (the rid of the resource "Type/id" names, when it was stored
-- as the row was written) or TEXT (any other target, and targets not
-- stored then); a search matches either (store/internal/sqlcore ValuePred),
-- and a target read back is the text (RefTarget). Existing rows are
-- resolved here as the writer resolves new ones (sqlcore.RefKey: split at
-- the first '/', a non-empty type, a non-empty id without '/').
CREATE TABLE idx_ref_new (
    pid    INTEGER NOT NULL,
    target         NOT NULL,  -- INTEGER: the target's rid; TEXT: any other
    rid    INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, target, rid)
) WITHOUT ROWID;
INSERT OR IGNORE INTO idx_ref_new (pid, target, rid)
    SELECT x.pid, coalesce((
        SELECT t.rid FROM resources t
        WHERE instr(x.target, '/') > 1
          AND t.type = substr(x.target, 1, instr(x.target, '/') - 1)
          AND t.id = substr(x.target, instr(x.target, '/') + 1)
          AND t.id <> '' AND instr(t.id, '/') = 0
    ), x.target), x.rid
    FROM idx_ref x
    ORDER BY 1, 2, 3;
DROP TABLE idx_ref;
ALTER TABLE idx_ref_new RENAME TO idx_ref;
CREATE INDEX idx_ref_rid ON idx_ref (rid, pid);
