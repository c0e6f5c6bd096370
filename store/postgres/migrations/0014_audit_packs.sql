-- 0014: the audit trail in packs (docs/design/security.md AUD-ARCH-6;
-- store/internal/sqlcore auditpack.go describes the encoding). A row of
-- audit costs a heap tuple's header, line pointer and alignment and a
-- primary-key entry, about 64 bytes before its data; a pack is one row for
-- the events of one append that fall in one second:
--   sec:      the Unix second of all its events; the partition key (one
--             partition per UTC day, auditp_YYYYMMDD, created when a batch
--             first needs it);
--   n:        how many events it holds;
--   lo, hi:   the milliseconds (into the second) of its first and last
--             events: AppendAudit decodes only the packs that overlap its
--             batch to find the ids already stored;
--   body:     the events' compact columns (recorded, idk, shape, patient,
--             resource, request, as in audit), deflated by the store, so
--             stored as is (STORAGE EXTERNAL: no second compression);
--   text_ids: the keys of its events whose ids are stored as text ('\x00'
--             and the text), NULL when none: AppendAudit finds a text id
--             stored on any day through the partial index.
-- The rows of audit (0011, 0012) stay there and are read beside the packs
-- until `ketabridge audit drop` drops their days.

CREATE TABLE audit_packs (
    sec      bigint  NOT NULL,
    n        integer NOT NULL,
    lo       smallint NOT NULL,
    hi       smallint NOT NULL,
    body     bytea   NOT NULL,
    text_ids bytea[]
) PARTITION BY RANGE (sec);
ALTER TABLE audit_packs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX audit_packs_sec ON audit_packs (sec);
CREATE INDEX audit_packs_text ON audit_packs (sec) WHERE text_ids IS NOT NULL;
