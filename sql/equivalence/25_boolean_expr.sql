SELECT orderId FROM orders WHERE orderValue > 100 AND NOT (currency = 'USD');
