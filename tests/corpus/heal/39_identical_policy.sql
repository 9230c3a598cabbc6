-- corpus: a migration re-run: the policy exists already, identical
-- setup: CREATE TABLE notes (owner name, body text)
-- setup: ALTER TABLE notes ENABLE ROW LEVEL SECURITY
-- setup: CREATE POLICY notes_owner ON notes FOR ALL USING (owner = current_user)
CREATE POLICY notes_owner ON notes FOR ALL USING (owner = current_user);
CREATE INDEX notes_owner_idx ON notes (owner);
