-- corpus: a policy of the same name exists with another definition
-- setup: CREATE TABLE docs (owner name)
-- setup: CREATE POLICY docs_read ON docs FOR SELECT USING (owner = current_user)
-- expect: a policy of that name already exists with another definition
CREATE POLICY docs_read ON docs FOR SELECT USING (true);
