SELECT customerId AS _id, count(*) AS orderCount, sum(orderValue) AS lifetimeValue FROM orders WHERE status = 'PAID' GROUP BY customerId;
