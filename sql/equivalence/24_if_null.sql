SELECT orderId, coalesce(coupon, 'NONE') AS coupon FROM orders;
