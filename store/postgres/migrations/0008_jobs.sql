-- 0008: asynchronous jobs (store.JobStore), e.g. Bulk Data export: kept in
-- the store so any process answers a job's status and any may finish it.
-- Times are Unix milliseconds (UTC); NULL is the zero time.
CREATE TABLE jobs (
    id       text    PRIMARY KEY,
    kind     text    NOT NULL,
    owner    text    NOT NULL,  -- client id that started the job
    state    text    NOT NULL,  -- accepted, running, done, failed
    request  bytea   NOT NULL,  -- the kind's JSON
    progress text    NOT NULL,
    result   bytea   NOT NULL,  -- the kind's JSON
    error    text    NOT NULL,
    created  bigint  NOT NULL,
    updated  bigint  NOT NULL,
    expires  bigint ,           -- NULL while active
    lease    bigint ,           -- a running job's worker holds it until then
    attempts bigint  NOT NULL
);
CREATE INDEX jobs_owner ON jobs (owner, kind, state);
CREATE INDEX jobs_claim ON jobs (kind, state, created);
