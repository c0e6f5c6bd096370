-- 0009: asynchronous jobs (store.JobStore), e.g. Bulk Data export: kept in
-- the store so any process answers a job's status and any may finish it.
-- Times are Unix milliseconds (UTC); NULL is the zero time.
CREATE TABLE jobs (
    id       TEXT    PRIMARY KEY,
    kind     TEXT    NOT NULL,
    owner    TEXT    NOT NULL,  -- client id that started the job
    state    TEXT    NOT NULL,  -- accepted, running, done, failed
    request  BLOB    NOT NULL,  -- the kind's JSON
    progress TEXT    NOT NULL,
    result   BLOB    NOT NULL,  -- the kind's JSON
    error    TEXT    NOT NULL,
    created  INTEGER NOT NULL,
    updated  INTEGER NOT NULL,
    expires  INTEGER,           -- NULL while active
    lease    INTEGER,           -- a running job's worker holds it until then
    attempts INTEGER NOT NULL
);
CREATE INDEX jobs_owner ON jobs (owner, kind, state);
CREATE INDEX jobs_claim ON jobs (kind, state, created);
