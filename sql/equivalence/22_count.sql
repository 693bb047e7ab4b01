SELECT count(*) AS cancelled FROM orders WHERE status = 'CANCELLED';
