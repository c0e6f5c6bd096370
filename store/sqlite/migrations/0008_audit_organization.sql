-- 0008: an AuditEvent names the Organization a bound client acts for
-- (agent.who, docs/design/security.md PRIV-11): a FHIR Organization id,
-- empty when the client is bound to none. Older events read as unbound.
ALTER TABLE audit_events ADD COLUMN organization TEXT NOT NULL DEFAULT '';
