-- 0008: jobs answered 202 Accepted and finished in the background (an ingest
-- batch with Prefer: respond-async), readable from any process (store.Job).
-- IF NOT EXISTS: the migration tests roll schema_version back and re-run it.
CREATE TABLE IF NOT EXISTS jobs (
  id       TEXT PRIMARY KEY,
  kind     TEXT NOT NULL,
  owner    TEXT NOT NULL,
  status   TEXT NOT NULL,
  created  INTEGER NOT NULL, -- unix milliseconds
  updated  INTEGER NOT NULL,
  progress INTEGER NOT NULL,
  total    INTEGER NOT NULL,
  result   BLOB,
  error    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated);
