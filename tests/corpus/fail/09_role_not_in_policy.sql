-- corpus: a GRANT to a role that does not exist and is not in grant_roles
-- expect: role "reporting_user" is not in heal.settings grant_roles
CREATE TABLE sales (amount numeric);
GRANT SELECT ON sales TO reporting_user;
