-- 0015: token systems are interned (docs/design/architecture.md PERF-SQLB-2).
-- A token row's system (a URI of 20-60 bytes, e.g.
-- http://terminology.hl7.org/CodeSystem/observation-category) was stored as
-- text in each of idx_token's three B-trees (the primary key, idx_token_rid,
-- idx_token_comp), repeated for every resource: about 70 % of each token
-- entry. It becomes sid, a small integer naming a token_systems row ('' is
-- a system like any other: the rows of codes without one). Every row keeps
-- its code, system and resource; searches look the system up (an unknown
-- system matches nothing, as before). The security labels' rows
-- (_security, two on nearly every resource) no longer carry the
-- compartment, so idx_token_comp, partial on it, leaves them out: no search
-- is driven by a label within a patient (store/sqlite pickDriver). A bulk load left
-- unfinished is finished before this runs (migrate), so idx_token exists.
CREATE TABLE token_systems (
    sid    INTEGER PRIMARY KEY,
    system TEXT    NOT NULL UNIQUE
);
INSERT INTO token_systems (system) SELECT DISTINCT system FROM idx_token ORDER BY system;

CREATE TABLE idx_token_sid (
    pid  INTEGER NOT NULL,
    code TEXT    NOT NULL,
    sid  INTEGER NOT NULL,
    rid  INTEGER NOT NULL REFERENCES resources (rid),
    cid  INTEGER,
    PRIMARY KEY (pid, code, sid, rid)
) WITHOUT ROWID;
INSERT INTO idx_token_sid (pid, code, sid, rid, cid)
    SELECT x.pid, x.code, s.sid, x.rid, CASE WHEN p.name = '_security' THEN NULL ELSE x.cid END
    FROM idx_token x JOIN token_systems s ON s.system = x.system JOIN params p ON p.pid = x.pid
    ORDER BY x.pid, x.code, s.sid, x.rid;
DROP TABLE idx_token;
ALTER TABLE idx_token_sid RENAME TO idx_token;
CREATE INDEX idx_token_rid ON idx_token (rid, pid);
CREATE INDEX idx_token_comp ON idx_token (cid, pid, code, sid, rid) WHERE cid IS NOT NULL;
