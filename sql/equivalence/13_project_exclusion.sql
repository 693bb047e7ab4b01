SELECT orderId, customerId, status, orderValue, currency, coupon FROM orders;
