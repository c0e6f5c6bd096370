-- 0007: the security labels (meta.security) of the resources stored before
-- _security was indexed, as the token rows Apply now writes for them
-- (parameter _security, system and code of each label with a code), so
-- access control's _security:not=R excludes them like new ones. Read from
-- the current, non-deleted versions' bodies; only bodies that mention
-- "security" are parsed. changes.seq moves so an in-process read cache of
-- another process drops what it holds.
INSERT OR IGNORE INTO params (type, name)
    SELECT DISTINCT r.type, '_security'
    FROM resources r JOIN history h ON h.hid = r.hid
    WHERE r.deleted = 0 AND instr(CAST(h.body AS TEXT), '"security"') > 0
      AND json_type(CAST(h.body AS TEXT), '$.meta.security') = 'array';
INSERT OR IGNORE INTO idx_token (pid, code, system, rid, cid)
    SELECT p.pid, json_extract(s.value, '$.code'), coalesce(json_extract(s.value, '$.system'), ''), r.rid, c.cid
    FROM resources r
    JOIN history h ON h.hid = r.hid
    JOIN json_each(CAST(h.body AS TEXT), '$.meta.security') s
    JOIN params p ON p.type = r.type AND p.name = '_security'
    LEFT JOIN compartments c ON c.patient = r.patient
    WHERE r.deleted = 0 AND instr(CAST(h.body AS TEXT), '"security"') > 0
      AND json_type(s.value, '$.code') = 'text' AND json_extract(s.value, '$.code') <> '';
UPDATE changes SET seq = seq + 1;
