SELECT orderId, customerId FROM orders WHERE customerId ~ '^c-0001';
