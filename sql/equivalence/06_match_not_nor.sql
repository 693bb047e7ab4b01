SELECT orderId FROM orders WHERE NOT (orderValue > 50) AND NOT (currency = 'USD');
