-- 0013: the compact, day-ranged audit trail (docs/design/security.md
-- AUD-ARCH-1; store/internal/sqlcore audit.go describes the encoding). The
-- 0003 audit_events rows (about 250 bytes each with their id index) move to
-- audit: a WITHOUT ROWID table keyed by (recorded, idk), the repeated
-- strings as audit_terms codes, no second index over every row.
--   shape: the code of the JSON array (of strings) of client, interaction,
--        type, version, status, fhirUser, subject, purpose, organization.
--   patient, resource: the codes of the patient and resource ids.
--   idk: the 10 bytes after the time of a UUIDv7 whose time is recorded;
--        any other id (every id of 0003's rows) is x'00' and its text.
--   request: x'01' and the bytes of a lowercase-hex request id, x'02' and
--        the text of any other, empty when none.
-- audit_exports records what `ketabridge audit export --before` wrote of
-- each day (day = days since 1970-01-01 UTC), which `audit drop` checks.

CREATE TABLE audit_terms (
    id   INTEGER PRIMARY KEY,
    term TEXT NOT NULL UNIQUE
);

CREATE TABLE audit (
    recorded INTEGER NOT NULL,
    idk      BLOB    NOT NULL,
    shape    INTEGER NOT NULL,
    patient  INTEGER NOT NULL,
    resource INTEGER NOT NULL,
    request  BLOB    NOT NULL,
    PRIMARY KEY (recorded, idk)
) WITHOUT ROWID;
-- Ids stored as text are unique across days; the writer's compact ids are
-- unique through the key (the id holds the time).
CREATE UNIQUE INDEX audit_text_ids ON audit (idk) WHERE idk < x'01';

CREATE TABLE audit_exports (
    day         INTEGER PRIMARY KEY,
    events      INTEGER NOT NULL,
    exported_at INTEGER NOT NULL,
    dropped_at  INTEGER
);

INSERT INTO audit_terms (term)
SELECT term FROM (
    SELECT patient AS term FROM audit_events e UNION SELECT resource_id FROM audit_events e
    UNION SELECT json_array(e.client_id, e.interaction, e.type, e.version, CAST(e.status AS TEXT), e.fhir_user, e.subject, e.purpose, e.organization) FROM audit_events e
) WHERE term <> '' ORDER BY term;

INSERT OR IGNORE INTO audit (recorded, idk, shape, patient, resource, request)
SELECT e.recorded, unhex('00' || hex(e.id)),
    (SELECT id FROM audit_terms WHERE term = json_array(e.client_id, e.interaction, e.type, e.version, CAST(e.status AS TEXT), e.fhir_user, e.subject, e.purpose, e.organization)),
    coalesce((SELECT id FROM audit_terms WHERE term = e.patient AND term <> ''), 0),
    coalesce((SELECT id FROM audit_terms WHERE term = e.resource_id AND term <> ''), 0),
    CASE
        WHEN e.request_id = '' THEN x''
        WHEN length(e.request_id) % 2 = 0 AND e.request_id NOT GLOB '*[^0-9a-f]*' THEN unhex('01' || e.request_id)
        ELSE unhex('02' || hex(e.request_id))
    END
FROM audit_events e ORDER BY e.recorded, e.id;

DROP TABLE audit_events;
