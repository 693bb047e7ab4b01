-- The customers the PostgreSQL enrich example looks orders up in: c-00001 … c-00050,
-- every third one gold, the rest silver or basic, in four regions.
DROP TABLE IF EXISTS customers;
CREATE TABLE customers (id text PRIMARY KEY, tier text NOT NULL, region text NOT NULL);
INSERT INTO customers
SELECT format('c-%s', lpad(i::text, 5, '0')),
       CASE WHEN i % 3 = 0 THEN 'gold' WHEN i % 3 = 1 THEN 'silver' ELSE 'basic' END,
       (ARRAY['north', 'east', 'south', 'west'])[i % 4 + 1]
FROM generate_series(1, 50) AS i;
