-- 0005: a client is bound to the organization it acts for (a FHIR
-- Organization id, empty when none) and to a role (ehr, payer, partner;
-- empty is ehr): what it may see follows from them (docs/design/security.md PRIV-3).
-- Clients registered before read as unbound EHR clients, as they behaved.
ALTER TABLE clients ADD COLUMN organization text NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN role text NOT NULL DEFAULT '';
