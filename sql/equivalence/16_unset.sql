SELECT orderId, customerId, status, orderValue, currency, named_struct('city', shipping['city'], 'country', shipping['country']) AS shipping, coupon FROM orders;
