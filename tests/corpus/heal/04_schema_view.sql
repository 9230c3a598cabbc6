-- corpus: a reporting view in a missing schema
CREATE TABLE sales (amount numeric(12, 2), sold_on date);
CREATE VIEW reporting.daily_sales AS
    SELECT sold_on, sum(amount) AS total FROM sales GROUP BY sold_on;
