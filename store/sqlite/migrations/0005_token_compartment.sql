-- 0005: token index rows carry their resource's compartment (the patient
-- column of resources), and idx_token_patient finds one patient's resources
-- with a code directly: Observation?patient=X&code=Y reads the matches
-- instead of every resource of the patient checked for the code.
ALTER TABLE idx_token ADD COLUMN patient TEXT;
UPDATE idx_token SET patient = (SELECT r.patient FROM resources r WHERE r.rid = idx_token.rid);
CREATE INDEX idx_token_patient ON idx_token (patient, pid, code, system, rid) WHERE patient IS NOT NULL;
