SELECT orderId, status, orderValue FROM orders;
