SELECT orderId, named_struct('city', shipping['city']) AS shipping FROM orders WHERE shipping['country'] = 'DE' AND shipping['express'] = true;
