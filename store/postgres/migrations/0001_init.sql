-- 0001: resources with version history, search index tables, source records.
-- Times are Unix milliseconds (UTC). Text compared or sorted by the store uses
-- the "C" collation (byte order), as the SQLite backend does. Index tables
-- refer to resources by rid (insertion order) and name the search parameter.

CREATE TABLE source_records (
    srid      bigserial PRIMARY KEY,
    kind      text   NOT NULL,
    clinic_id text   NOT NULL,
    hash      text   NOT NULL,
    body      bytea  NOT NULL,
    -- the keys ("Type/id", newline-separated) of the resources it produced
    resources text   NOT NULL,
    updated   bigint NOT NULL,
    UNIQUE (kind, clinic_id)
);

-- One row per resource: its current version (the body lives in history).
CREATE TABLE resources (
    rid          bigserial PRIMARY KEY,
    type         text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    version      bigint  NOT NULL,
    last_updated bigint  NOT NULL,
    deleted      boolean NOT NULL,
    patient      text COLLATE "C",     -- compartment; NULL when none
    hash         bytea,                -- SHA-256 of the unstamped body; NULL when deleted
    src          bigint,               -- source record that last wrote it
    UNIQUE (type, id)
);
CREATE INDEX resources_type ON resources (type, rid) WHERE NOT deleted;
-- Compartment: Everything (patient, type, id) and access-controlled searches
-- (type, patient, rid: a patient's resources of a type in insertion order).
CREATE INDEX resources_patient ON resources (patient, type, id) WHERE patient IS NOT NULL;
CREATE INDEX resources_type_patient ON resources (type, patient, rid) WHERE patient IS NOT NULL AND NOT deleted;
CREATE INDEX resources_updated ON resources (type, last_updated, rid);

-- Every version, the current one included. body is NULL for a deletion.
CREATE TABLE history (
    rid          bigint  NOT NULL REFERENCES resources (rid),
    version      bigint  NOT NULL,
    last_updated bigint  NOT NULL,
    deleted      boolean NOT NULL,
    patient      text COLLATE "C",
    body         bytea,
    PRIMARY KEY (rid, version)
);

-- Index tables: the primary key serves lookups by value (search drivers), the
-- *_rid index per-resource checks (EXISTS filters, sort keys, _include, and
-- replacement on update).
CREATE TABLE idx_token (
    param  text COLLATE "C" NOT NULL,
    code   text COLLATE "C" NOT NULL,
    system text COLLATE "C" NOT NULL,
    rid    bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, code, system, rid)
);
CREATE INDEX idx_token_rid ON idx_token (rid, param);

CREATE TABLE idx_string (
    param text COLLATE "C" NOT NULL,
    value text COLLATE "C" NOT NULL,
    rid   bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, value, rid)
);
CREATE INDEX idx_string_rid ON idx_string (rid, param);

CREATE TABLE idx_date (
    param text COLLATE "C" NOT NULL,
    lo    bigint NOT NULL,
    hi    bigint NOT NULL,
    rid   bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, lo, hi, rid)
);
CREATE INDEX idx_date_rid ON idx_date (rid, param);

CREATE TABLE idx_ref (
    param  text COLLATE "C" NOT NULL,
    target text COLLATE "C" NOT NULL,
    rid    bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, target, rid)
);
CREATE INDEX idx_ref_rid ON idx_ref (rid, param);

CREATE TABLE idx_number (
    param text COLLATE "C" NOT NULL,
    num   double precision NOT NULL,
    rid   bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, num, rid)
);
CREATE INDEX idx_number_rid ON idx_number (rid, param);

CREATE TABLE idx_quantity (
    param  text COLLATE "C" NOT NULL,
    num    double precision NOT NULL,
    system text COLLATE "C" NOT NULL,
    code   text COLLATE "C" NOT NULL,
    rid    bigint NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (param, num, system, code, rid)
);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);
