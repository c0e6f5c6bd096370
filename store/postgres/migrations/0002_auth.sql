-- 0002: SMART authorization state (store.AuthStore): registered clients,
-- users, grants with their refresh-token family, and signing keys.
-- Times are Unix milliseconds (UTC); NULL is the zero time.

CREATE TABLE clients (
    id            text COLLATE "C" PRIMARY KEY,
    name          text   NOT NULL,
    kind          text   NOT NULL,
    secret_hash   text   NOT NULL,
    redirect_uris text[] NOT NULL,
    launch_url    text   NOT NULL,
    scopes        text[] NOT NULL,
    origins       text[] NOT NULL,
    jwks          bytea,
    jwks_url      text   NOT NULL,
    created       bigint
);

CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    name          text    NOT NULL,
    role          text    NOT NULL,
    password_hash text    NOT NULL,
    fhir_user     text    NOT NULL,
    disabled      boolean NOT NULL,
    created       bigint
);

-- One row per grant. refresh_hash is the SHA-256 (hex) of the current refresh
-- token, NULL when the grant has none.
CREATE TABLE grants (
    id           text COLLATE "C" PRIMARY KEY,
    client_id    text NOT NULL,
    user_id      text NOT NULL,
    scope        text NOT NULL,
    patient      text NOT NULL,
    encounter    text NOT NULL,
    refresh_hash text,
    created      bigint,
    expires      bigint,
    revoked      bigint
);
CREATE UNIQUE INDEX grants_refresh ON grants (refresh_hash) WHERE refresh_hash IS NOT NULL;
CREATE INDEX grants_revoked ON grants (revoked) WHERE revoked IS NOT NULL;
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_user ON grants (user_id);

-- Refresh hashes a grant rotated away from: presenting one again is a reuse.
CREATE TABLE grant_refresh_retired (
    hash     text   PRIMARY KEY,
    grant_id text   NOT NULL,
    retired  bigint NOT NULL
);
CREATE INDEX grant_refresh_retired_grant ON grant_refresh_retired (grant_id);

CREATE TABLE signing_keys (
    kid         text COLLATE "C" PRIMARY KEY,
    alg         text  NOT NULL,
    private_pem bytea NOT NULL,
    created     bigint,
    retired     bigint
);
