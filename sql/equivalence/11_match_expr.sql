SELECT orderId FROM orders WHERE orderValue * 2 > 500;
