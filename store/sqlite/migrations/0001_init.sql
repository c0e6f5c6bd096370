-- 0001: resources with version history, search index tables, source records.
-- Times are Unix milliseconds (UTC). Index tables refer to resources by rid and
-- to search parameters by pid (an interned (resource type, parameter name)).

CREATE TABLE source_records (
    srid      INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    clinic_id TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    body      BLOB    NOT NULL,
    -- the keys ("Type/id", newline-separated) of the resources it produced
    resources TEXT    NOT NULL,
    updated   INTEGER NOT NULL,
    UNIQUE (kind, clinic_id)
);

-- One row per resource: its current version. body lives in history (hid).
CREATE TABLE resources (
    rid          INTEGER PRIMARY KEY,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    hid          INTEGER NOT NULL,  -- history row of the current version
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    patient      TEXT,              -- compartment; NULL when none
    hash         BLOB,              -- SHA-256 of the unstamped body; NULL when deleted
    src          INTEGER,           -- source record that last wrote it
    UNIQUE (type, id)
);
CREATE INDEX resources_patient ON resources (patient, type, id) WHERE patient IS NOT NULL;
CREATE INDEX resources_updated ON resources (type, last_updated, id);

-- Every version, the current one included. body is NULL for a deletion.
CREATE TABLE history (
    hid          INTEGER PRIMARY KEY,
    rid          INTEGER NOT NULL REFERENCES resources (rid),
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    patient      TEXT,              -- compartment of this version
    body         BLOB
);
CREATE UNIQUE INDEX history_version ON history (rid, version);

CREATE TABLE params (
    pid  INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (type, name)
);

-- Index tables: the primary key serves lookups by value (search drivers), the
-- *_rid index serves per-resource checks (EXISTS filters, sort keys, _include,
-- replacement on update). Both are covering.
CREATE TABLE idx_token (
    pid    INTEGER NOT NULL,
    code   TEXT    NOT NULL,
    system TEXT    NOT NULL,
    rid    INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, code, system, rid)
) WITHOUT ROWID;
CREATE INDEX idx_token_rid ON idx_token (rid, pid);

CREATE TABLE idx_string (
    pid   INTEGER NOT NULL,
    value TEXT    NOT NULL,
    rid   INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, value, rid)
) WITHOUT ROWID;
CREATE INDEX idx_string_rid ON idx_string (rid, pid);

CREATE TABLE idx_date (
    pid INTEGER NOT NULL,
    lo  INTEGER NOT NULL,
    hi  INTEGER NOT NULL,
    rid INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, lo, hi, rid)
) WITHOUT ROWID;
CREATE INDEX idx_date_rid ON idx_date (rid, pid);

CREATE TABLE idx_ref (
    pid    INTEGER NOT NULL,
    target TEXT    NOT NULL,
    rid    INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, target, rid)
) WITHOUT ROWID;
CREATE INDEX idx_ref_rid ON idx_ref (rid, pid);

CREATE TABLE idx_number (
    pid INTEGER NOT NULL,
    num REAL    NOT NULL,
    rid INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, num, rid)
) WITHOUT ROWID;
CREATE INDEX idx_number_rid ON idx_number (rid, pid);

CREATE TABLE idx_quantity (
    pid    INTEGER NOT NULL,
    num    REAL    NOT NULL,
    system TEXT    NOT NULL,
    code   TEXT    NOT NULL,
    rid    INTEGER NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (pid, num, system, code, rid)
) WITHOUT ROWID;
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, pid);
