SELECT orderId, orderValue FROM orders WHERE orderValue >= 100 AND orderValue < 200;
