SELECT orderId FROM orders WHERE status NOT IN ('PAID', 'CANCELLED');
