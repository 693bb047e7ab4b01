SELECT orderId, named_struct('city', shipping['city']) AS shipping FROM orders ORDER BY shipping['city'] ASC, orderValue DESC, orderId ASC LIMIT 12;
