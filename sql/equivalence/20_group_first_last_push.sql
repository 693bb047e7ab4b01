SELECT orderId AS _id, first_value(status) AS first, last_value(orderValue) AS last, array_agg(status) AS statuses FROM orders WHERE customerId = 'c-00007' GROUP BY orderId;
