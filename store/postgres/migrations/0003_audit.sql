-- 0003: the audit trail (store.AuditStore): one row per audit event,
-- append-only. recorded is Unix milliseconds (UTC); every text column is the
-- empty string when the event has none.

CREATE TABLE audit_events (
    id          text COLLATE "C" PRIMARY KEY,
    recorded    bigint  NOT NULL,
    patient     text    NOT NULL,
    client_id   text    NOT NULL,
    interaction text    NOT NULL,
    type        text    NOT NULL,
    resource_id text    NOT NULL,
    version     text    NOT NULL,
    status      integer NOT NULL,
    fhir_user   text    NOT NULL,
    subject     text    NOT NULL,
    purpose     text    NOT NULL,
    request_id  text    NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded, id);
