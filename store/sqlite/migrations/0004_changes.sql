-- 0004: a change counter, incremented by every Apply transaction that writes
-- a resource version, in whichever process: an in-process read cache polls
-- it (Store.ChangeVersion) to see writes by other processes on the file,
-- which neither its own bookkeeping nor the audit trail's writes reveal.
CREATE TABLE changes (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO changes (id, seq) VALUES (1, 0);
