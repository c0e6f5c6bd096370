-- 0006: the security labels (meta.security) of the resources stored before
-- _security was indexed, as the token rows Apply now writes for them
-- (parameter _security, system and code of each label with a code), so
-- access control's _security:not=R excludes them like new ones. Read from
-- the current, non-deleted versions' bodies; only bodies that mention
-- "security" are parsed. jsonb refuses the escape \u0000 that JSON allows,
-- so it is dropped from the text parsed (a label's code is never one).
INSERT INTO idx_token (param, code, system, rid, patient)
    SELECT '_security', s.label ->> 'code', coalesce(s.label ->> 'system', ''), r.rid, r.patient
    FROM resources r
    JOIN history h ON h.rid = r.rid AND h.version = r.version
    CROSS JOIN LATERAL (SELECT replace(convert_from(h.body, 'UTF8'), '\u0000', '')::jsonb #> '{meta,security}' AS labels) m
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(m.labels) = 'array' THEN m.labels ELSE '[]'::jsonb END) s(label)
    WHERE NOT r.deleted AND position('"security"' IN convert_from(h.body, 'UTF8')) > 0
      AND jsonb_typeof(s.label -> 'code') = 'string' AND s.label ->> 'code' <> ''
ON CONFLICT DO NOTHING;
