SELECT shipping['city'] AS _id, array_agg(DISTINCT shipping['country']) AS countries FROM orders GROUP BY shipping['city'];
