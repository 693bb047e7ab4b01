SELECT orderId, coupon FROM orders WHERE coupon IS NOT NULL AND status <> 'PAID';
