SELECT orderId, status FROM orders WHERE status IN ('PENDING', 'REFUNDED');
