-- 0012: the audit trail's resource column becomes bytea (docs/design/security.md
-- AUD-ARCH-3; store/internal/sqlcore audit.go describes the encoding): a
-- resource id read only a few times is stored inline ('\x01' and a UUID's 16
-- bytes, '\x02' and any other id's text) instead of costing a dictionary term
-- of about 95 bytes; one read often stays an audit_terms code, now '\x03' and
-- its big-endian bytes. The rows of 0011 keep their codes in that form.
ALTER TABLE audit ALTER COLUMN resource TYPE bytea USING CASE
    WHEN resource = 0 THEN ''::bytea
    ELSE '\x03'::bytea || int4send(resource)
END;
