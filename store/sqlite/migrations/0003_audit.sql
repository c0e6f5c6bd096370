-- 0003: the audit trail (store.AuditStore): one row per FHIR AuditEvent,
-- append-only. recorded is Unix milliseconds (UTC); patient and client_id
-- are empty strings when the event names none; body is the AuditEvent JSON.

CREATE TABLE audit_events (
    id        TEXT    PRIMARY KEY,
    recorded  INTEGER NOT NULL,
    patient   TEXT    NOT NULL,
    client_id TEXT    NOT NULL,
    body      BLOB    NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded, id);
