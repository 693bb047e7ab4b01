SELECT NULL AS _id, sum(orderValue) AS total, count(*) AS n FROM orders;
