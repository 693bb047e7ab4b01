SELECT orderId, orderValue * 1.1 AS total, upper(shipping['city']) AS city, customerId || '/' || status AS label, lower(currency) AS low FROM orders;
