-- 0005: token index rows carry their resource's compartment, and
-- idx_token_comp finds one patient's resources with a code directly:
-- Observation?patient=X&code=Y reads the matches instead of every resource
-- of the patient checked for the code. Compartments are interned as cids in
-- the order patients first appear, so the index grows at its end during
-- ingest (a patient's resources arrive together) instead of at random pages.
CREATE TABLE compartments (
    cid     INTEGER PRIMARY KEY,
    patient TEXT    NOT NULL UNIQUE
);
INSERT INTO compartments (patient)
    SELECT patient FROM resources WHERE patient IS NOT NULL GROUP BY patient ORDER BY min(rid);
ALTER TABLE idx_token ADD COLUMN cid INTEGER;
UPDATE idx_token SET cid = (SELECT c.cid FROM resources r JOIN compartments c ON c.patient = r.patient WHERE r.rid = idx_token.rid);
CREATE INDEX idx_token_comp ON idx_token (cid, pid, code, system, rid) WHERE cid IS NOT NULL;
