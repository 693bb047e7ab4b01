SELECT orderId, orderValue FROM orders ORDER BY orderValue DESC, orderId ASC LIMIT 10 OFFSET 5;
