-- 0002: SMART authorization state (store.AuthStore): registered clients,
-- users, grants with their refresh-token family, and signing keys.
-- Times are Unix milliseconds (UTC); NULL is the zero time. List fields are
-- JSON arrays of strings.

CREATE TABLE clients (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    redirect_uris TEXT    NOT NULL,  -- JSON array
    launch_url    TEXT    NOT NULL,
    scopes        TEXT    NOT NULL,  -- JSON array
    origins       TEXT    NOT NULL,  -- JSON array
    jwks          BLOB,
    jwks_url      TEXT    NOT NULL,
    created       INTEGER
);

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    fhir_user     TEXT    NOT NULL,
    disabled      INTEGER NOT NULL,
    created       INTEGER
);

-- One row per grant. refresh_hash is the SHA-256 (hex) of the current refresh
-- token, NULL when the grant has none.
CREATE TABLE grants (
    id           TEXT    PRIMARY KEY,
    client_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    patient      TEXT    NOT NULL,
    encounter    TEXT    NOT NULL,
    refresh_hash TEXT,
    created      INTEGER,
    expires      INTEGER,
    revoked      INTEGER
);
CREATE UNIQUE INDEX grants_refresh ON grants (refresh_hash) WHERE refresh_hash IS NOT NULL;
CREATE INDEX grants_revoked ON grants (revoked) WHERE revoked IS NOT NULL;

-- Refresh hashes a grant rotated away from: presenting one again is a reuse
-- (the grant is then revoked).
CREATE TABLE grant_refresh_retired (
    hash     TEXT    PRIMARY KEY,
    grant_id TEXT    NOT NULL,
    retired  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX grant_refresh_retired_grant ON grant_refresh_retired (grant_id);

CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    alg         TEXT    NOT NULL,
    private_pem BLOB    NOT NULL,
    created     INTEGER,
    retired     INTEGER
);
