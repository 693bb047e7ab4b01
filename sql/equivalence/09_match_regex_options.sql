SELECT orderId FROM orders WHERE shipping['city'] ~* '^p';
