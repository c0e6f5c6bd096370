-- 0004: token index rows carry their resource's compartment (resources.patient),
-- and idx_token_patient finds one patient's resources with a code directly:
-- Observation?patient=X&code=Y reads the matches instead of every resource
-- of the patient checked for the code. Search drives through it when the
-- query names the compartments (store.Query.Compartments).
ALTER TABLE idx_token ADD COLUMN patient text COLLATE "C";
UPDATE idx_token x SET patient = r.patient FROM resources r WHERE r.rid = x.rid AND r.patient IS NOT NULL;
CREATE INDEX idx_token_patient ON idx_token (patient, param, code, system, rid) WHERE patient IS NOT NULL;
