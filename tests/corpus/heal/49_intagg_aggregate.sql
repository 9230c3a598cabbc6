-- corpus: an aggregate from an extension (intagg) in a view
CREATE TABLE memberships (group_id int, user_id int);
CREATE VIEW group_members AS
    SELECT group_id, int_array_aggregate(user_id) AS members FROM memberships GROUP BY group_id;
