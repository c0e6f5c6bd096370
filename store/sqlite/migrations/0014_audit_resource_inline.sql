-- 0014: the audit trail's resource column becomes bytes (docs/design/security.md
-- AUD-ARCH-3; store/internal/sqlcore audit.go describes the encoding): a
-- resource id read only a few times is stored inline (x'01' and a UUID's 16
-- bytes, x'02' and any other id's text) instead of costing a dictionary term
-- of about 95 bytes; one read often stays an audit_terms code, now x'03' and
-- its big-endian bytes. The rows of 0013 keep their codes in that form.
UPDATE audit SET resource = CASE
    WHEN resource = 0 THEN x''
    ELSE unhex(printf('03%08x', resource))
END;
