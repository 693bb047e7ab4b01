SELECT customerId AS _id, sum(orderValue) AS spent FROM orders GROUP BY customerId HAVING sum(orderValue) > 2500 ORDER BY spent DESC, _id ASC;
