SELECT orderId, status, orderValue FROM orders WHERE status = 'CANCELLED' OR orderValue > 400;
