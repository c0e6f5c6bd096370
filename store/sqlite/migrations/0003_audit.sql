-- 0003: the audit trail (store.AuditStore): one row per audit event (one
-- FHIR AuditEvent, rendered from the row when read: fhir.AuditEventJSON),
-- append-only. recorded is Unix milliseconds (UTC); status is the HTTP
-- status; every text column is the empty string when the event has none.

CREATE TABLE audit_events (
    id          TEXT    PRIMARY KEY,
    recorded    INTEGER NOT NULL,
    patient     TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    interaction TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    resource_id TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    fhir_user   TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    request_id  TEXT    NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded, id);
