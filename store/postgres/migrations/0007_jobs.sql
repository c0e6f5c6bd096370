-- 0007: jobs answered 202 Accepted and finished in the background (an ingest
-- batch with Prefer: respond-async), readable from any replica (store.Job).
-- IF NOT EXISTS: the migration tests roll schema_version back and re-run it.
CREATE TABLE IF NOT EXISTS jobs (
  id       text PRIMARY KEY,
  kind     text NOT NULL,
  owner    text NOT NULL,
  status   text NOT NULL,
  created  timestamptz NOT NULL,
  updated  timestamptz NOT NULL,
  progress integer NOT NULL,
  total    integer NOT NULL,
  result   bytea,
  error    text NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated);
