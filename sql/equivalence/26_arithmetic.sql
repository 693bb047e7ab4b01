SELECT orderId, orderValue / 4.0 AS quarter, abs(orderValue) % 7 AS rest, orderValue + 1 + 2 AS plus FROM orders;
